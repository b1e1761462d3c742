"""`spendguard ingest traces PATH…`: load OTLP files through the trace data path.

Files are read as a stream of documents and loaded in bounded batches (`BATCH_SPANS`), each in
its own transaction, so memory stays flat whatever the file size. A record that cannot be
loaded is quarantined with its reason and the rest of the file is loaded. Loading is idempotent:
spans already stored are skipped, so re-ingesting a file changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine, func, select

from app.errors import InputError
from app.progress import Progress
from app.settings import Settings
from app.traces.decoded import Decoded
from app.traces.files import Document, discover, read_documents
from app.traces.intake import Intake, IntakeCounts
from app.warehouse.engine import session_scope
from app.warehouse.runs import finish_run, start_run
from app.warehouse.tables import Request

BATCH_SPANS = 20_000


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


def ingest_paths(
    engine: Engine,
    settings: Settings,
    paths: Sequence[Path],
    *,
    progress: bool = False,
    collector: str = "ingest",
) -> IngestResult:
    files = discover(paths)
    intake = Intake(settings, collector)
    result = IngestResult()
    run_id = start_run(engine, collector, ", ".join(str(p) for p in paths))
    requests_before = count_requests(engine)
    total_bytes = sum(f.stat().st_size for f in files)
    try:
        with Progress("Ingesting traces", total_bytes, enabled=progress) as bar:
            for path in files:
                try:
                    for chunk in batched(read_documents(path, deferred=True)):
                        batch = intake.build(chunk)
                        with session_scope(engine) as session:
                            result.add(intake.load(session, batch, str(path), batch.spans))
                except InputError as exc:
                    result.failed[str(path)] = str(exc)
                else:
                    result.files += 1
                bar.advance(path.stat().st_size)
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
