"""`spendguard ingest traces PATH…`: load OTLP files through the trace data path.

Each file is decoded completely before anything of it is written, then loaded in one
transaction, so a malformed file is refused whole (and named), never half-stored. Loading is
idempotent: spans already stored are skipped, so re-ingesting a file changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine

from app.errors import InputError
from app.pricing import Pricer
from app.progress import Progress
from app.settings import Settings
from app.traces.batch import Batch, BatchBuilder
from app.traces.files import discover, iter_documents
from app.warehouse.engine import session_scope
from app.warehouse.load import load_batch
from app.warehouse.runs import finish_run, start_run


@dataclass(slots=True)
class IngestResult:
    files: int = 0
    spans: int = 0
    requests_new: int = 0
    requests_updated: int = 0
    calls_new: int = 0
    calls_duplicate: int = 0
    unpriced_calls: int = 0
    failed: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failed


def ingest_paths(
    engine: Engine,
    settings: Settings,
    paths: Sequence[Path],
    *,
    progress: bool = False,
    builder: BatchBuilder | None = None,
) -> IngestResult:
    files = discover(paths)
    builder = builder or BatchBuilder(settings.attribution, Pricer(settings.pricing.overrides))
    user_teams = settings.attribution.user_teams
    result = IngestResult()
    run_id = start_run(engine, "ingest", ", ".join(str(p) for p in paths))
    total_bytes = sum(f.stat().st_size for f in files)
    with Progress("Ingesting traces", total_bytes, enabled=progress) as bar:
        for path in files:
            try:
                batch, spans = _decode_file(path, builder)
                with session_scope(engine) as session:
                    counts = load_batch(session, batch, user_teams)
            except InputError as exc:
                result.failed[str(path)] = str(exc)
            else:
                result.files += 1
                result.spans += spans
                result.requests_new += counts.requests_new
                result.requests_updated += counts.requests_updated
                result.calls_new += counts.calls_new
                result.calls_duplicate += counts.calls_duplicate
                result.unpriced_calls += batch.unpriced
            bar.advance(path.stat().st_size)
    finish_run(
        engine,
        run_id,
        status="ok" if result.ok else "failed",
        rows_loaded=result.calls_new + result.requests_new,
        rows_rejected=len(result.failed),
        error="\n".join(result.failed.values()) or None,
    )
    return result


def _decode_file(path: Path, builder: BatchBuilder) -> tuple[Batch, int]:
    """Decode and price a whole file before anything of it is written."""
    batch = Batch()
    spans = 0
    for document in iter_documents(path):
        for span in document:
            builder.add(batch, span)
            spans += 1
    return batch, spans
