"""The one shape every collector has.

A collector names its config section (`config`), lists its sources, each with a stable key
(`sources`), reads a source from its checkpoint as chunks of normalized rows, each carrying the
checkpoint the source will have once those rows are stored (`fetch`), and stores a chunk
(`load`). `Collector.run` does the rest, the same way for all of them: it records the run,
commits every chunk's rows and its new checkpoint in ONE transaction (a failed load leaves the
checkpoint where it was, so the next run reads the same rows again), isolates a failing source
from the others, and reports a `RunOutcome`.

    SpendguardError
    └── CollectorError     a source cannot be read; the message names it and the setting to fix
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import ClassVar, Generic, Protocol, TypeVar

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from app.errors import SpendguardError
from app.progress import Progress
from app.settings import Schedule, Settings
from app.warehouse.checkpoints import read_checkpoint, write_checkpoint
from app.warehouse.engine import session_scope
from app.warehouse.runs import finish_run, start_run

log = logging.getLogger("spendguard.collectors")


class CollectorError(SpendguardError):
    """A source cannot be read (missing, denied, unreachable); says which and what to fix."""


class CollectorConfig(Protocol):
    """What every collector section of spendguard.yaml has."""

    @property
    def enabled(self) -> bool: ...

    @property
    def schedule(self) -> Schedule: ...


ConfigT = TypeVar("ConfigT", bound=CollectorConfig)
SourceT = TypeVar("SourceT")
RowsT = TypeVar("RowsT")
Window = tuple[datetime, datetime]


@dataclass(frozen=True, slots=True)
class Chunk(Generic[RowsT]):
    """Rows to store and the source's checkpoint once they are stored. `rows=None` moves the
    checkpoint alone (a file finished with nothing left to load)."""

    rows: RowsT | None
    checkpoint: str
    window: Window | None = None  # the time the rows cover, if they have one


@dataclass(frozen=True, slots=True)
class Loaded:
    """What one load stored: rows, rejected records, and collector-specific counts."""

    rows: int
    rejected: int = 0
    details: Mapping[str, int] = field(default_factory=dict)


@dataclass(slots=True)
class RunOutcome:
    collector: str
    run_id: int
    sources: int = 0
    rows_loaded: int = 0
    rows_rejected: int = 0
    errors: list[str] = field(default_factory=list)
    details: Counter[str] = field(default_factory=Counter)
    window_start: datetime | None = None
    window_end: datetime | None = None

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def status(self) -> str:
        return "ok" if self.ok else "failed"

    @property
    def error(self) -> str | None:
        return "\n".join(self.errors) or None

    def add(self, loaded: Loaded | None, window: Window | None) -> None:
        if loaded is not None:
            self.rows_loaded += loaded.rows
            self.rows_rejected += loaded.rejected
            self.details.update(loaded.details)
        if window is not None:
            start, end = window
            self.window_start = min(start, self.window_start or start)
            self.window_end = max(end, self.window_end or end)


@dataclass(frozen=True, slots=True)
class RunContext(Generic[ConfigT]):
    """What a collector's `fetch` and `load` may use during one run."""

    collector: str
    engine: Engine
    settings: Settings
    config: ConfigT
    since: datetime | None = None  # re-read from this time instead of from the checkpoint
    progress: bool = False

    def bar(self, label: str, total: int, unit: str = "bytes") -> Progress:
        """A progress bar (shown only when asked for and stderr is a terminal)."""
        return Progress(f"{self.collector}: {label}", total, enabled=self.progress, unit=unit)


class Collector(ABC, Generic[ConfigT, SourceT, RowsT]):
    """Subclass, set `name`, implement the four methods, add one line to the registry."""

    name: ClassVar[str]
    description: ClassVar[str] = ""

    @abstractmethod
    def config(self, settings: Settings) -> ConfigT:
        """This collector's section of the settings."""

    @abstractmethod
    def sources(self, config: ConfigT) -> Sequence[tuple[str, SourceT]]:
        """Each source with its key: stable across runs, it names the source's checkpoint."""

    @abstractmethod
    def fetch(
        self, run: RunContext[ConfigT], source: SourceT, checkpoint: str | None
    ) -> Generator[Chunk[RowsT], None, None]:
        """Read a source from `checkpoint` (None: from the start, or from `run.since`).
        Raise `CollectorError` when the source itself cannot be read."""

    @abstractmethod
    def load(self, session: Session, run: RunContext[ConfigT], rows: RowsT) -> Loaded:
        """Store rows in the caller's transaction (which commits the checkpoint too)."""

    def enabled(self, settings: Settings) -> bool:
        return self.config(settings).enabled

    def schedule(self, settings: Settings) -> Schedule:
        return self.config(settings).schedule

    def has_sources(self, settings: Settings) -> bool:
        """Whether there is anything to read (enabled by default, yet nothing configured)."""
        return bool(self.sources(self.config(settings)))

    def run(
        self,
        engine: Engine,
        settings: Settings,
        *,
        since: datetime | None = None,
        progress: bool = False,
    ) -> RunOutcome:
        """Read every source once, now; never raises for a source or load failure (the run is
        recorded as failed with the error text, and the other sources are still read)."""
        config = self.config(settings)
        sources = self.sources(config)
        keys = ", ".join(key for key, _ in sources)
        outcome = RunOutcome(self.name, start_run(engine, self.name, keys), sources=len(sources))
        run = RunContext(self.name, engine, settings, config, since, progress)
        try:
            for key, source in sources:
                try:
                    self._run_source(run, key, source, outcome)
                except Exception as exc:
                    log.warning("%s: source %s failed: %s", self.name, key, exc)
                    outcome.errors.append(f"{key}: {describe(exc)}")
        except BaseException as exc:  # interrupted: record it, then let it stop us
            outcome.errors.append(f"interrupted: {type(exc).__name__}")
            self._finish(engine, outcome)
            raise
        self._finish(engine, outcome)
        return outcome

    def _run_source(
        self, run: RunContext[ConfigT], key: str, source: SourceT, outcome: RunOutcome
    ) -> None:
        with session_scope(run.engine) as session:
            checkpoint = read_checkpoint(session, self.name, key)
        chunks = self.fetch(run, source, checkpoint)
        try:
            for chunk in chunks:
                # The rows and the checkpoint that says they are stored commit together.
                with session_scope(run.engine) as session:
                    loaded = None if chunk.rows is None else self.load(session, run, chunk.rows)
                    write_checkpoint(session, self.name, key, chunk.checkpoint)
                outcome.add(loaded, chunk.window)
        finally:
            chunks.close()

    def _finish(self, engine: Engine, outcome: RunOutcome) -> None:
        finish_run(
            engine,
            outcome.run_id,
            status=outcome.status,
            rows_loaded=outcome.rows_loaded,
            rows_rejected=outcome.rows_rejected,
            error=outcome.error,
            window=(outcome.window_start, outcome.window_end),
            api_calls=outcome.details.get("api_calls"),
        )


def describe(exc: BaseException) -> str:
    """An error as one readable line: our own messages as they are, others with their type
    (the first line only: database errors append the whole statement)."""
    if isinstance(exc, SpendguardError):
        return str(exc)
    first = (str(exc).strip().splitlines() or [""])[0][:500]
    return f"{type(exc).__name__}: {first}"
