"""`spendguard report unpriced`: models with calls but no price, so overrides can be added."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time

from sqlalchemy import Engine, func, select

from app.warehouse.tables import LlmCall


@dataclass(frozen=True, slots=True)
class UnpricedModel:
    provider: str
    model: str
    calls: int
    input_tokens: int
    output_tokens: int
    first_seen: datetime
    last_seen: datetime


def unpriced_models(engine: Engine, since: date | None = None) -> list[UnpricedModel]:
    """Unpriced calls grouped by provider and model, most calls first."""
    calls = func.count().label("calls")
    query = (
        select(
            LlmCall.provider,
            LlmCall.model,
            calls,
            func.sum(LlmCall.input_tokens),
            func.sum(LlmCall.output_tokens),
            func.min(LlmCall.started_at),
            func.max(LlmCall.started_at),
        )
        .where(LlmCall.cost_nanousd.is_(None))
        .group_by(LlmCall.provider, LlmCall.model)
        .order_by(calls.desc(), LlmCall.provider, LlmCall.model)
    )
    if since is not None:
        query = query.where(LlmCall.started_at >= datetime.combine(since, time.min, tzinfo=UTC))
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    return [
        UnpricedModel(p, m, int(n), int(i or 0), int(o or 0), _utc(first), _utc(last))
        for p, m, n, i, o, first, last in rows
    ]


def _utc(value: datetime | str) -> datetime:
    # min()/max() of a timestamp come back as text on SQLite.
    parsed = datetime.fromisoformat(value) if isinstance(value, str) else value
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed
