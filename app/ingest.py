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
warehouse ends the same as with one process. A bounded queue between them keeps memory flat
(a worker waits while `QUEUED_BATCHES` per worker are not yet written). A worker that fails or
dies stops the ingest with an error naming the file; every batch written before stays written,
and running the same command again loads the rest (what is stored is skipped).
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import queue
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from multiprocessing.context import BaseContext
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, select
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Session, sessionmaker

from app.errors import InputError, SpendguardError
from app.progress import Progress
from app.settings import Settings
from app.traces.batch import Batch
from app.traces.decoded import Decoded
from app.traces.files import Document, discover, read_documents
from app.traces.intake import Intake, IntakeCounts
from app.warehouse.load import prepare
from app.warehouse.runs import finish_run, start_run
from app.warehouse.tables import Request

BATCH_SPANS = 20_000
# A transaction holds batches until this many spans or this long, whichever comes first: long
# enough to write each touched index page once for many batches, short enough that the API and
# the worker (SQLite has one writer at a time) wait at most about that long.
COMMIT_SPANS = 200_000
COMMIT_SECONDS = 2.0
# SQLite's page cache for the ingest's connection while it writes (KiB; the default is 2 MB):
# the indexes' hot pages stay in memory between batches. Set back when the ingest ends.
SQLITE_CACHE_KIB = 64 << 10
# Below this many bytes of input, worker processes cost more (start-up) than they save.
PARALLEL_MIN_BYTES = 4 << 20
QUEUED_BATCHES = 2  # per worker: batches decoded ahead of the writer


class IngestWorkerError(SpendguardError):
    """A decode worker process failed or died; what was written before stays written."""


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
        with _Writer(engine, intake, result) as writer:
            if jobs > 1:
                dialect = type(engine.dialect)
                _parallel(
                    dialect, settings, collector, files, sizes, jobs, writer.write, result, bar
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
    its transaction back (the batches in it are loaded again by the next run)."""

    def __init__(self, engine: Engine, intake: Intake, result: IngestResult) -> None:
        self._factory = sessionmaker(engine, expire_on_commit=False)
        self._intake = intake
        self._result = result
        self._session: Session | None = None
        self._pending: list[IntakeCounts] = []
        self._spans = 0
        self._opened = 0.0
        self._cache_kib: int | None = None  # SQLite's cache_size before the ingest raised it

    def write(self, batch: Batch, path: Path) -> None:
        if self._session is None:
            self._session = self._factory()
            self._opened = time.monotonic()
            self._raise_cache(self._session)
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
        if self._session is not None:
            self.commit()

    def _rollback(self) -> None:
        assert self._session is not None
        try:
            self._session.rollback()
        finally:
            self._end()

    def _end(self) -> None:
        session, self._session = self._session, None
        self._pending, self._spans = [], 0
        if session is None:
            return
        try:
            if self._cache_kib is not None:
                session.connection().exec_driver_sql(f"PRAGMA cache_size={self._cache_kib}")
                session.commit()
        finally:
            session.close()

    def _raise_cache(self, session: Session) -> None:
        conn = session.connection()
        if conn.dialect.name != "sqlite":
            return
        if self._cache_kib is None:
            self._cache_kib = int(conn.exec_driver_sql("PRAGMA cache_size").scalar_one())
        conn.exec_driver_sql(f"PRAGMA cache_size={-SQLITE_CACHE_KIB}")


def file_batches(intake: Intake, path: Path) -> Iterator[Batch]:
    """A file's batches, built as its documents are read (JSON read straight into rows)."""
    docs = (doc.decoded for doc in read_documents(path, deferred=True))
    return intake.batches(docs, BATCH_SPANS)


# ── worker processes ─────────────────────────────────────────────────────────────────────────

# Messages from a worker: (kind, worker number, file index, payload).
_BATCH, _DONE, _FAILED, _ERROR, _EXIT = "batch", "done", "failed", "error", "exit"


def _worker(
    number: int,
    settings: Settings,
    collector: str,
    files: list[Path],
    tasks: Any,
    results: Any,
    reading: Any,
    dialect_class: type[Dialect],
) -> None:
    """Decode, attribute and price whole files; put their batches on `results`, already as
    the warehouse driver's rows (less work for the writer). The file a worker is on is in
    shared memory (`reading[number]`), so it can be named if it dies."""
    intake = Intake(settings, collector)
    dialect = dialect_class()
    user_teams = settings.attribution.user_teams
    # What is alive now (the modules, the price catalog) lives as long as the worker: frozen,
    # the cyclic GC no longer walks it on every full collection, which the worker's millions
    # of short-lived objects trigger often (10-20% of its CPU, measured on the bench's files).
    gc.collect()
    gc.freeze()
    while True:
        index = tasks.get()
        if index is None:
            results.put((_EXIT, number, None, None))
            return
        reading[number] = index
        try:
            for batch in file_batches(intake, files[index]):
                prepare(dialect, batch, user_teams)
                results.put((_BATCH, number, index, batch))
        except InputError as exc:
            results.put((_FAILED, number, index, str(exc)))
        except BaseException:
            results.put((_ERROR, number, index, traceback.format_exc()))
            return
        else:
            results.put((_DONE, number, index, None))


def _context() -> BaseContext:
    # fork starts a worker in milliseconds with everything imported; elsewhere, spawn.
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else "spawn")


def _parallel(
    dialect_class: type[Dialect],
    settings: Settings,
    collector: str,
    files: list[Path],
    sizes: list[int],
    jobs: int,
    write: Any,
    result: IngestResult,
    make_bar: Callable[[], Progress],
) -> None:
    """Start the workers (before the progress bar's thread: they are forked), then write
    their batches as they come."""
    ctx = _context()
    tasks = ctx.Queue()
    results = ctx.Queue(maxsize=QUEUED_BATCHES * jobs)
    for index in range(len(files)):
        tasks.put(index)
    for _ in range(jobs):
        tasks.put(None)
    reading = ctx.Array("i", [-1] * jobs)
    workers: list[BaseProcess] = [
        ctx.Process(  # type: ignore[attr-defined]
            target=_worker,
            args=(n, settings, collector, files, tasks, results, reading, dialect_class),
            name=f"spendguard-ingest-{n}",
            daemon=True,
        )
        for n in range(jobs)
    ]
    for w in workers:
        w.start()
    exited: set[int] = set()
    try:
        with make_bar() as bar:
            _consume(workers, results, reading, files, sizes, write, result, bar, exited)
    finally:
        for w in workers:
            if w.is_alive():
                w.terminate()
        for w in workers:
            w.join()
        tasks.close()
        results.close()


def _consume(
    workers: list[BaseProcess],
    results: Any,
    reading: Any,
    files: list[Path],
    sizes: list[int],
    write: Any,
    result: IngestResult,
    bar: Progress,
    exited: set[int],
) -> None:
    jobs = len(workers)
    while len(exited) < jobs:
        try:
            kind, number, index, payload = results.get(timeout=0.5)
        except queue.Empty:
            _check_alive(workers, exited, reading, files)
            continue
        if kind == _BATCH:
            write(payload, files[index])
        elif kind in (_DONE, _FAILED):
            if kind == _DONE:
                result.files += 1
            else:
                result.failed[str(files[index])] = payload
            bar.advance(sizes[index])
        elif kind == _ERROR:
            raise IngestWorkerError(
                f"a decode worker failed while reading {files[index]}; the batches "
                "written before are stored, run the command again to load the rest "
                f"(stored spans are skipped):\n{payload}"
            )
        elif kind == _EXIT:
            exited.add(number)


def _check_alive(
    workers: list[BaseProcess], exited: set[int], reading: Any, files: list[Path]
) -> None:
    for number, w in enumerate(workers):
        if number not in exited and not w.is_alive():
            on = reading[number]
            where = f" while reading {files[on]}" if on >= 0 else ""
            raise IngestWorkerError(
                f"decode worker {number} (pid {w.pid}) died with exit code {w.exitcode}{where}; "
                "the batches written before are stored, run the command again to load the rest "
                "(stored spans are skipped)"
            )


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
