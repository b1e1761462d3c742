"""`spendguard ingest traces PATH…`: load OTLP files through the trace data path.

Files are read as a stream of documents and loaded in bounded batches (`BATCH_SPANS`), so memory
stays flat whatever the file size. Several batches share a transaction (`_Writer`: up to
`COMMIT_SPANS` spans or `COMMIT_SECONDS`): trace and span ids are random, so every batch lands
all over the tables' indexes, and each commit rewrites every index page it touched (to SQLite's
WAL, PostgreSQL's too); fewer, larger commits write those pages once for many batches.

A record that cannot be loaded is quarantined with its reason and the rest of the file is
loaded. Loading is idempotent: spans already stored are skipped, so re-ingesting a file changes
nothing.

Decoding, attribution and pricing are CPU work, done by `jobs` worker processes (one file each
at a time) while this process writes their batches to the warehouse. Batches can be written in
any order: requests merge order-independently and calls are keyed by trace and span id, so the
warehouse ends the same as with one process (`app.ingest_workers`: each worker is a bounded
number of batches ahead of the writer, so memory stays flat). A worker that fails or dies stops
the ingest with an error naming the file; every batch written before stays written, and running
the same command again loads the rest (what is stored is skipped).
"""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Connection, Engine, func, select
from sqlalchemy.orm import Session

from app.errors import InputError
from app.ingest_workers import FEW_COLLECTIONS, IngestWorkerError, run_workers

__all__ = ["IngestResult", "IngestWorkerError", "default_jobs", "file_batches", "ingest_paths"]
from app.progress import Progress
from app.rollups.patch import bounded as bounded_patches
from app.settings import Settings
from app.traces.batch import Batch
from app.traces.decoded import Decoded
from app.traces.files import Document, discover, read_documents
from app.traces.intake import Intake, IntakeCounts
from app.warehouse.runs import finish_run, start_run
from app.warehouse.tables import Request

BATCH_SPANS = 20_000
# A transaction holds batches until this many spans or this long, whichever comes first: long
# enough to write each touched index page once for many batches, short enough that the API and
# the worker (SQLite has one writer at a time) wait at most about that long.
COMMIT_SPANS = 200_000
COMMIT_SECONDS = 2.0
# SQLite settings of the ingest's connection while it writes, set back when it ends:
# - cache_size (negative: KiB; the default is 2 MB): the indexes' hot pages stay in memory
#   between batches;
# - wal_autocheckpoint (pages; the default is 1000, 4 MB): the write-ahead log is copied into
#   the database and synced when it grows past this, at a commit. At the default that is every
#   commit, copying the pages of random index positions again and again; at 256 MB, about once
#   per million spans (measured: a third of the writer's time on the bench).
_SQLITE_BULK = {"cache_size": -(64 << 10), "wal_autocheckpoint": 64 << 10}
# Below this many bytes of input, worker processes cost more (start-up) than they save.
PARALLEL_MIN_BYTES = 4 << 20


@dataclass(slots=True)
class IngestResult:
    files: int = 0
    spans: int = 0
    requests_new: int = 0  # requests the warehouse did not hold before this ingest
    calls_new: int = 0
    calls_duplicate: int = 0
    unpriced_calls: int = 0
    quarantined: int = 0
    failed: dict[str, str] = field(default_factory=dict)  # files that could not be read at all

    @property
    def ok(self) -> bool:
        return not self.failed

    def add(self, counts: IntakeCounts) -> None:
        self.spans += counts.spans
        self.calls_new += counts.calls_new
        self.calls_duplicate += counts.calls_duplicate
        self.unpriced_calls += counts.unpriced_calls
        self.quarantined += counts.quarantined


def default_jobs() -> int:
    """Worker processes by default: the CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def ingest_paths(
    engine: Engine,
    settings: Settings,
    paths: Sequence[Path],
    *,
    progress: bool = False,
    collector: str = "ingest",
    jobs: int | None = None,
) -> IngestResult:
    """Load trace files. `jobs`: decode worker processes (None: one per CPU when the input is
    large enough to be worth it; 0 or 1: decode in this process)."""
    files = discover(paths)
    intake = Intake(settings, collector)
    result = IngestResult()
    run_id = start_run(engine, collector, ", ".join(str(p) for p in paths))
    requests_before = count_requests(engine)
    sizes = [f.stat().st_size for f in files]
    if jobs is None:
        jobs = default_jobs() if sum(sizes) >= PARALLEL_MIN_BYTES else 1
    jobs = max(1, min(jobs, len(files)))

    def bar() -> Progress:
        return Progress("Ingesting traces", sum(sizes), enabled=progress)

    try:
        # (A bulk run: its batches patch the days they land on up to a budget, then mark.)
        with _Writer(engine, intake, result) as writer, _few_collections(), bounded_patches():
            if jobs > 1:
                dialect = type(engine.dialect)
                run_workers(
                    dialect,
                    settings,
                    collector,
                    files,
                    sizes,
                    jobs,
                    file_batches,
                    writer.write,
                    result,
                    bar,
                )
            else:
                with bar() as progress_bar:
                    for path, size in zip(files, sizes, strict=True):
                        try:
                            for batch in file_batches(intake, path):
                                writer.write(batch, path)
                        except InputError as exc:
                            result.failed[str(path)] = str(exc)
                        else:
                            result.files += 1
                        progress_bar.advance(size)
    except BaseException as exc:
        finish_run(
            engine,
            run_id,
            status="failed",
            rows_loaded=result.calls_new,
            error=f"{type(exc).__name__}: {exc}",
        )
        raise
    result.requests_new = count_requests(engine) - requests_before
    finish_run(
        engine,
        run_id,
        status="ok" if result.ok else "failed",
        rows_loaded=result.calls_new + result.requests_new,
        rows_rejected=result.quarantined + len(result.failed),
        error="\n".join(f"{p}: {e}" for p, e in result.failed.items()) or None,
    )
    return result


class _Writer:
    """Writes batches in transactions of several batches (`COMMIT_SPANS`, `COMMIT_SECONDS`);
    counts reach the result only once their transaction commits.

    When the block ends, what is pending commits, also when the ingest stops for another reason
    (a worker failed, a file could not be read, Ctrl-C): every batch handed over was whole, so
    "what was written before stays written" holds. Only a failure of the write itself rolls
    its transaction back (the batches in it are loaded again by the next run).

    One connection serves every transaction, so SQLite's settings for a bulk write are raised
    once and its page cache stays warm from one transaction to the next (`_SQLITE_BULK`); they
    are set back, and the write-ahead log checkpointed, when the block ends."""

    def __init__(self, engine: Engine, intake: Intake, result: IngestResult) -> None:
        self._engine = engine
        self._intake = intake
        self._result = result
        self._conn: Connection | None = None
        self._session: Session | None = None
        self._pending: list[IntakeCounts] = []
        self._spans = 0
        self._opened = 0.0
        self._restore: dict[str, int] = {}  # SQLite's settings before the ingest changed them

    def write(self, batch: Batch, path: Path) -> None:
        if self._session is None:
            if self._conn is None:
                self._conn = self._engine.connect()
                self._bulk_settings(self._conn)
            self._session = Session(bind=self._conn, expire_on_commit=False)
            self._opened = time.monotonic()
        try:
            self._pending.append(self._intake.load(self._session, batch, str(path), batch.spans))
        except BaseException:
            self._rollback()
            raise
        self._spans += batch.spans
        if self._spans >= COMMIT_SPANS or time.monotonic() - self._opened >= COMMIT_SECONDS:
            self.commit()

    def commit(self) -> None:
        session = self._session
        if session is None:
            return
        try:
            session.commit()
        except BaseException:
            self._rollback()
            raise
        for counts in self._pending:
            self._result.add(counts)
        self._end()

    def __enter__(self) -> _Writer:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if self._session is not None:
                self.commit()
        finally:
            conn, self._conn = self._conn, None
            if conn is not None:
                try:
                    self._settings_back(conn)
                finally:
                    conn.close()

    def _rollback(self) -> None:
        assert self._session is not None
        try:
            self._session.rollback()
        finally:
            self._end()

    def _end(self) -> None:
        session, self._session = self._session, None
        self._pending, self._spans = [], 0
        if session is not None:
            session.close()

    def _bulk_settings(self, conn: Connection) -> None:
        if conn.dialect.name != "sqlite":
            return
        for name, value in _SQLITE_BULK.items():
            self._restore[name] = int(conn.exec_driver_sql(f"PRAGMA {name}").scalar_one())
            conn.exec_driver_sql(f"PRAGMA {name}={value}")
        conn.commit()

    def _settings_back(self, conn: Connection) -> None:
        if not self._restore:
            return
        for name, value in self._restore.items():
            conn.exec_driver_sql(f"PRAGMA {name}={value}")
        # The log the ingest let grow goes into the database now (readers are not blocked;
        # what a reader still needs stays for the next checkpoint).
        conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")
        conn.commit()


@contextmanager
def _few_collections() -> Iterator[None]:
    """The writer's GC thresholds as the workers' (`FEW_COLLECTIONS`) while it writes the
    batches it unpickles, then as they were."""
    before = gc.get_threshold()
    gc.set_threshold(*FEW_COLLECTIONS)
    try:
        yield
    finally:
        gc.set_threshold(*before)


def file_batches(intake: Intake, path: Path) -> Iterator[Batch]:
    """A file's batches, built as its documents are read (JSON read straight into rows)."""
    docs = (doc.decoded for doc in read_documents(path, deferred=True))
    return intake.batches(docs, BATCH_SPANS)


def count_requests(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(Request)).scalar_one())


def batched(documents: Iterator[Document], limit: int = BATCH_SPANS) -> Iterator[Decoded]:
    """Group documents into batches of about `limit` spans (a document is never split)."""
    chunk = Decoded()
    for doc in documents:
        chunk.extend(doc.decoded)
        if len(chunk) >= limit:
            yield chunk
            chunk = Decoded()
    if len(chunk):
        yield chunk
