"""`traces`: pull OTLP traces from folders (the Collector file exporter) and S3 prefixes (the
Collector's awss3exporter), through the same intake as `ingest` and the OTLP receiver.

Each source is read from its checkpoint in batches of about `app.ingest.BATCH_SPANS` spans;
each batch and the source's advanced checkpoint commit together (see `collectors.base`).
Rows loaded = spans read; bad records are quarantined and counted as rejected, and reading
goes on past them. How each kind of source is read and checkpointed: `traces_folder`,
`traces_s3`.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from app.rollups.patch import bounded as bounded_patches
from app.settings import FolderSource, Settings, TracesCollectorConfig, TraceSource
from app.traces.batch import Batch
from app.traces.decoded import Decoded
from app.traces.intake import Intake
from collectors.base import Chunk, Collector, Loaded, RunContext, RunOutcome, Window
from collectors.traces_folder import SourceBatch, read_folder
from collectors.traces_s3 import read_s3


@dataclass(frozen=True, slots=True)
class TraceSourceRef:
    index: int  # its place in collectors.traces.sources, to name the setting to fix
    config: TraceSource

    @property
    def setting(self) -> str:
        return f"collectors.traces.sources[{self.index}]"


@dataclass(frozen=True, slots=True)
class TraceRows:
    intake: Intake
    batch: Batch
    spans: int
    source: str  # names the source of quarantined records


class TracesCollector(Collector[TracesCollectorConfig, TraceSourceRef, TraceRows]):
    name = "traces"
    description = "OpenTelemetry trace files from folders and S3 prefixes"

    def config(self, settings: Settings) -> TracesCollectorConfig:
        return settings.collectors.traces

    def run(self, engine: Engine, settings: Settings, **options: Any) -> RunOutcome:
        """A run is a bulk load: its batches patch the past days they land on up to a budget
        (`app.rollups.patch.bounded`), then mark them for one rebuild each."""
        with bounded_patches():
            return super().run(engine, settings, **options)

    def sources(self, config: TracesCollectorConfig) -> Sequence[tuple[str, TraceSourceRef]]:
        return [(source_key(s), TraceSourceRef(i, s)) for i, s in enumerate(config.sources)]

    def fetch(
        self,
        run: RunContext[TracesCollectorConfig],
        source: TraceSourceRef,
        checkpoint: str | None,
    ) -> Generator[Chunk[TraceRows], None, None]:
        intake = Intake(run.settings, self.name)
        cfg = source.config
        bar = partial(run.bar, source_key(cfg))
        if isinstance(cfg, FolderSource):
            path = cfg.path.expanduser()
            batches = read_folder(path, source.setting, checkpoint, run.since, bar)
        else:
            batches = read_s3(cfg, source.setting, checkpoint, run.since, bar)
        for piece in batches:
            yield _chunk(intake, piece)

    def load(
        self, session: Session, run: RunContext[TracesCollectorConfig], rows: TraceRows
    ) -> Loaded:
        counts = rows.intake.load(session, rows.batch, rows.source, rows.spans)
        return Loaded(
            rows=counts.spans,
            rejected=counts.quarantined,
            details={"new_llm_calls": counts.calls_new, "unpriced_calls": counts.unpriced_calls},
        )


def source_key(source: TraceSource) -> str:
    """The checkpoint key of a source: `folder:/path` or `s3://bucket/prefix`."""
    if isinstance(source, FolderSource):
        return f"folder:{source.path.expanduser()}"
    return f"s3://{source.bucket}/{source.prefix}"


def _chunk(intake: Intake, piece: SourceBatch) -> Chunk[TraceRows]:
    decoded = piece.decoded
    if not len(decoded):
        return Chunk(None, piece.checkpoint)
    # Attribute and price before the transaction opens: the CPU part holds no lock.
    rows = TraceRows(intake, intake.build(decoded), len(decoded.spans), piece.source)
    return Chunk(rows, piece.checkpoint, _window(decoded))


def _window(decoded: Decoded) -> Window | None:
    if not decoded.spans:
        return None
    first = min(decoded.spans, key=lambda s: s.start_ns)
    last = max(decoded.spans, key=lambda s: s.start_ns)
    return (first.started_at, last.started_at)
