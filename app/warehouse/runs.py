"""Collector run records: every run (and every `ingest`) leaves one row with its outcome."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Engine, update

from app.warehouse.engine import session_scope
from app.warehouse.tables import CollectorRun


def start_run(engine: Engine, collector: str, source: str = "") -> int:
    with session_scope(engine) as session:
        run = CollectorRun(
            collector=collector,
            source=source[:512],
            status="running",
            started_at=datetime.now(UTC),
            rows_loaded=0,
            rows_rejected=0,
        )
        session.add(run)
        session.flush()
        return run.id


def finish_run(
    engine: Engine,
    run_id: int,
    *,
    status: str,
    rows_loaded: int,
    rows_rejected: int = 0,
    error: str | None = None,
    window: tuple[datetime | None, datetime | None] = (None, None),
    api_calls: int | None = None,
) -> None:
    with session_scope(engine) as session:
        session.execute(
            update(CollectorRun)
            .where(CollectorRun.id == run_id)
            .values(
                status=status,
                finished_at=datetime.now(UTC),
                rows_loaded=rows_loaded,
                rows_rejected=rows_rejected,
                error=error,
                window_start=window[0],
                window_end=window[1],
                api_calls=api_calls,
            )
        )
