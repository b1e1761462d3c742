"""The decode worker processes of `spendguard ingest` (`app.ingest`).

Each worker decodes, attributes and prices whole files and sends their batches, already as the
warehouse driver's rows, to the writer (the ingesting process) through a pipe of its own. The
pipe's write end lives only in its worker: when a worker dies, however it dies (an exception,
the OOM killer, a SIGKILL in the middle of sending a batch), the writer reads end-of-file on
its pipe, where a shared queue would leave it waiting for the rest of a message that never
comes. A worker that ends normally says so (`EXIT`) before it closes its pipe.

A worker sends from a thread of its own, so it decodes up to `QUEUED_BATCHES` batches ahead of
the writer; the pipe's back-pressure keeps memory flat.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import queue
import threading
import traceback
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection, wait
from multiprocessing.context import BaseContext
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy.engine import Dialect

from app.errors import InputError, SpendguardError
from app.progress import Progress
from app.settings import Settings
from app.traces.batch import Batch
from app.traces.intake import Intake
from app.warehouse.load import prepare

if TYPE_CHECKING:
    from app.ingest import IngestResult

QUEUED_BATCHES = 2  # per worker: batches decoded ahead of the writer
# The cyclic GC's thresholds while spans are decoded and written. A batch keeps some 200,000
# tuples and dicts alive until it is sent or written, and each youngest-generation collection
# walks them again. perf on the ingest bench: the GC took about 5% of a worker's CPU at 20,000
# and 6.5% of the writer's at the default 700; at 500,000 a worker used 3-5% less CPU and the
# writer 2-4% less (noisy A/B runs). Cycles are rare here, and still collected, only later.
FEW_COLLECTIONS = (500_000, 10, 10)

# Messages from a worker: (kind, file index, payload).
BATCH, DONE, FAILED, ERROR, EXIT = "batch", "done", "failed", "error", "exit"

BatchesOf = Callable[[Intake, Path], Iterator[Batch]]


class IngestWorkerError(SpendguardError):
    """A decode worker process failed or died; what was written before stays written."""


def run_workers(
    dialect_class: type[Dialect],
    settings: Settings,
    collector: str,
    files: list[Path],
    sizes: list[int],
    jobs: int,
    batches_of: BatchesOf,
    write: Callable[[Batch, Path], None],
    result: IngestResult,
    make_bar: Callable[[], Progress],
) -> None:
    """Start the workers (before the progress bar's thread: they are forked), then write
    their batches as they come, until every worker has exited."""
    ctx = _context()
    tasks = ctx.Queue()
    for index in range(len(files)):
        tasks.put(index)
    for _ in range(jobs):
        tasks.put(None)
    reading = ctx.Array("i", [-1] * jobs)
    pipes = [ctx.Pipe(duplex=False) for _ in range(jobs)]
    workers: list[BaseProcess] = []
    try:
        for n, (_, own) in enumerate(pipes):
            # Every pipe end but its own write end is closed in the worker (a forked child
            # inherits them all), so that only the worker holds it.
            others = [end for i, pair in enumerate(pipes) for end in pair if end is not own]
            worker = ctx.Process(  # type: ignore[attr-defined]
                target=_worker,
                args=(n, settings, collector, files, tasks, own, others, reading, dialect_class),
                kwargs={"batches_of": batches_of},
                name=f"spendguard-ingest-{n}",
                daemon=True,
            )
            worker.start()
            workers.append(worker)
        for _, own in pipes:
            own.close()
        readers = {pipe: n for n, (pipe, _) in enumerate(pipes)}
        with make_bar() as bar:
            _consume(workers, readers, reading, files, sizes, write, result, bar)
    finally:
        for w in workers:
            if w.is_alive():
                w.terminate()
        for w in workers:
            w.join()
        for pipe, own in pipes:
            pipe.close()
            own.close()
        tasks.close()


def _consume(
    workers: list[BaseProcess],
    readers: dict[Connection, int],
    reading: Any,
    files: list[Path],
    sizes: list[int],
    write: Callable[[Batch, Path], None],
    result: IngestResult,
    bar: Progress,
) -> None:
    while readers:
        for ready in wait(list(readers)):
            pipe = cast(Connection, ready)
            number = readers[pipe]
            try:
                kind, index, payload = cast(tuple[str, int, Any], pipe.recv())
            except (EOFError, OSError):  # OSError: end of file in the middle of a message
                raise _died(workers[number], number, reading[number], files) from None
            if kind == BATCH:
                write(payload, files[index])
            elif kind in (DONE, FAILED):
                if kind == DONE:
                    result.files += 1
                else:
                    result.failed[str(files[index])] = payload
                bar.advance(sizes[index])
            elif kind == ERROR:
                raise IngestWorkerError(
                    f"a decode worker failed while reading {files[index]}; the batches "
                    "written before are stored, run the command again to load the rest "
                    f"(stored spans are skipped):\n{payload}"
                )
            elif kind == EXIT:
                del readers[pipe]


def _died(worker: BaseProcess, number: int, on: int, files: list[Path]) -> IngestWorkerError:
    worker.join(timeout=5)  # its pipe closed as it died: the exit code follows
    where = f" while reading {files[on]}" if on >= 0 else ""
    return IngestWorkerError(
        f"decode worker {number} (pid {worker.pid}) died with exit code {worker.exitcode}"
        f"{where}; the batches written before are stored, run the command again to load the "
        "rest (stored spans are skipped)"
    )


def _worker(
    number: int,
    settings: Settings,
    collector: str,
    files: list[Path],
    tasks: Any,
    out: Connection,
    others: list[Connection],
    reading: Any,
    dialect_class: type[Dialect],
    *,
    batches_of: BatchesOf,
) -> None:
    """Decode, attribute and price whole files; send their batches through `out`, already as
    the warehouse driver's rows (less work for the writer). The file a worker is on is in
    shared memory (`reading[number]`), so it can be named if it dies."""
    for end in others:
        end.close()
    intake = Intake(settings, collector)
    dialect = dialect_class()
    user_teams = settings.attribution.user_teams
    sender = _Sender(out)
    # What is alive now (the modules, the price catalog) lives as long as the worker: frozen,
    # the cyclic GC no longer walks it on every full collection, which the worker's millions
    # of short-lived objects trigger often (10-20% of its CPU, measured on the bench's files).
    gc.collect()
    gc.freeze()
    # And the youngest generation is collected every `FEW_COLLECTIONS[0]` allocations, not
    # 700: almost all of them are freed by reference counting anyway.
    gc.set_threshold(*FEW_COLLECTIONS)
    try:
        while (index := tasks.get()) is not None:
            reading[number] = index
            try:
                for batch in batches_of(intake, files[index]):
                    prepare(dialect, batch, user_teams)
                    sender.put((BATCH, index, batch))
            except InputError as exc:
                sender.put((FAILED, index, str(exc)))
            except BaseException:
                sender.put((ERROR, index, traceback.format_exc()))
                return
            else:
                sender.put((DONE, index, None))
        sender.put((EXIT, -1, None))
    finally:
        sender.close()


class _Sender:
    """Sends a worker's messages from a thread, up to `QUEUED_BATCHES` behind its decoding.
    If the writer is gone (its end of the pipe closed), the worker exits: nobody would read."""

    def __init__(self, out: Connection) -> None:
        self._out = out
        self._queue: queue.Queue[tuple[str, int, Any] | None] = queue.Queue(QUEUED_BATCHES)
        self._thread = threading.Thread(target=self._run, name="send", daemon=True)
        self._thread.start()

    def put(self, message: tuple[str, int, Any]) -> None:
        self._queue.put(message)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()
        self._out.close()

    def _run(self) -> None:
        try:
            while (message := self._queue.get()) is not None:
                self._out.send(message)
        except OSError:
            os._exit(1)


def _context() -> BaseContext:
    # fork starts a worker in milliseconds with everything imported; elsewhere, spawn.
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else "spawn")
