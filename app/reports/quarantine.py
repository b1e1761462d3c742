"""`spendguard report quarantine`: the records that could not be loaded, and why."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time

from sqlalchemy import Engine, select

from app.warehouse.tables import QuarantinedRecord


@dataclass(frozen=True, slots=True)
class QuarantineRow:
    received_at: datetime
    collector: str
    source: str
    location: str
    reason: str
    trace_id: str | None
    span_id: str | None


def quarantined(
    engine: Engine, since: date | None = None, limit: int = 1000
) -> list[QuarantineRow]:
    """The newest quarantined records first."""
    query = select(QuarantinedRecord).order_by(
        QuarantinedRecord.received_at.desc(), QuarantinedRecord.id.desc()
    )
    if since is not None:
        query = query.where(
            QuarantinedRecord.received_at >= datetime.combine(since, time.min, tzinfo=UTC)
        )
    with engine.connect() as conn:
        rows = conn.execute(query.limit(limit)).mappings().all()
    return [
        QuarantineRow(
            received_at=r["received_at"],
            collector=r["collector"],
            source=r["source"],
            location=r["location"],
            reason=r["reason"],
            trace_id=r["trace_id"],
            span_id=r["span_id"],
        )
        for r in rows
    ]
