"""A progress bar for long CLI work, shown only when stderr is a terminal."""

from __future__ import annotations

import sys
from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)
from rich.progress import Progress as RichProgress


class Progress:
    def __init__(self, label: str, total: int, *, enabled: bool = True, unit: str = "bytes"):
        self._enabled = enabled and sys.stderr.isatty()
        self._bar: RichProgress | None = None
        self._label = label
        self._total = total
        self._unit = unit

    def __enter__(self) -> Progress:
        if self._enabled:
            counter = DownloadColumn() if self._unit == "bytes" else TaskProgressColumn()
            self._bar = RichProgress(
                TextColumn("{task.description}"),
                BarColumn(),
                counter,
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=False,
            )
            self._bar.__enter__()
            self._task = self._bar.add_task(self._label, total=self._total)
        return self

    def advance(self, amount: int) -> None:
        if self._bar is not None:
            self._bar.advance(self._task, amount)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._bar is not None:
            self._bar.__exit__(exc_type, exc, tb)
