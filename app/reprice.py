"""Re-price stored LLM calls after a price change (catalog update or a new override).

Calls are read in pages of `PAGE` by primary key, priced again from their stored tokens at
their own time, and updated only where the price changed; each page is its own transaction,
so a long re-price can be interrupted and run again. Each page marks, in its transaction, the
days whose rollups it made stale: its changed calls' requests' days and the calls' own days
(`app.rollups.dirty`). The run is recorded as a collector run named `reprice` (its window is
the repriced range), which the dashboard shows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import cast

from sqlalchemy import Engine, Table, and_, bindparam, select, tuple_, update

from app.pricing import Pricer
from app.rollups.dirty import mark_traces
from app.settings import Settings
from app.traces.usage import Usage, pricing_model
from app.warehouse.engine import session_scope
from app.warehouse.runs import finish_run, start_run
from app.warehouse.tables import LlmCall

PAGE = 5000


@dataclass(frozen=True, slots=True)
class RepriceResult:
    calls: int
    changed: int
    newly_priced: int
    now_unpriced: int
    cost_before_nanousd: int
    cost_after_nanousd: int


def reprice(
    engine: Engine,
    settings: Settings,
    since: date | None,
    until: date | None = None,
    progress: Callable[[int], None] | None = None,
) -> RepriceResult:
    pricer = Pricer(settings.pricing.overrides)
    window = (_midnight(since), _midnight(until))
    run_id = start_run(engine, "reprice", "llm_calls")
    calls = changed = newly = lost = before = after = 0
    last: tuple[str, str] | None = None
    try:
        while True:
            with session_scope(engine) as session:
                query = select(LlmCall).order_by(LlmCall.trace_id, LlmCall.span_id).limit(PAGE)
                conds = []
                if window[0] is not None:
                    conds.append(LlmCall.started_at >= window[0])
                if window[1] is not None:
                    conds.append(LlmCall.started_at < window[1])
                if last is not None:
                    conds.append(tuple_(LlmCall.trace_id, LlmCall.span_id) > last)
                rows = session.scalars(query.where(*conds)).all()
                if not rows:
                    break
                updates = []
                call_hours = set()  # the hours of `rollup_call_days` the changes make stale
                for call in rows:
                    price = pricer.price(_usage_of(call), call.started_at)
                    before += call.cost_nanousd or 0
                    after += price.cost_nanousd or 0
                    if (price.cost_nanousd, price.source) != (call.cost_nanousd, call.price_source):
                        newly += call.cost_nanousd is None and price.cost_nanousd is not None
                        lost += call.cost_nanousd is not None and price.cost_nanousd is None
                        updates.append(
                            {
                                "t": call.trace_id,
                                "s": call.span_id,
                                "cost": price.cost_nanousd,
                                "source": price.source,
                                "priced": price.priced_model,
                            }
                        )
                        at = call.started_at
                        call_hours.add((at.date(), at.hour))
                if updates:
                    session.connection().execute(
                        update(cast(Table, LlmCall.__table__))
                        .where(
                            and_(
                                LlmCall.trace_id == bindparam("t"),
                                LlmCall.span_id == bindparam("s"),
                            )
                        )
                        .values(
                            cost_nanousd=bindparam("cost"),
                            price_source=bindparam("source"),
                            priced_model=bindparam("priced"),
                        ),
                        updates,
                    )
                    ids = [str(u["t"]) for u in updates]
                    mark_traces(session.connection(), ids, also=call_hours)
                calls += len(rows)
                changed += len(updates)
                last = (rows[-1].trace_id, rows[-1].span_id)
            if progress is not None:
                progress(len(rows))
    except BaseException as exc:
        finish_run(
            engine,
            run_id,
            status="failed",
            rows_loaded=changed,
            error=f"{type(exc).__name__}: {exc}",
            window=window,
        )
        raise
    finish_run(engine, run_id, status="ok", rows_loaded=changed, window=window)
    return RepriceResult(calls, changed, newly, lost, before, after)


def _usage_of(call: LlmCall) -> Usage:
    return Usage(
        family=call.family,
        provider=None if call.provider == "(unknown)" else call.provider,
        model=None if call.model == "(unknown)" else call.model,
        response_model=call.response_model,
        pricing_model=pricing_model(
            None if call.model == "(unknown)" else call.model, call.response_model
        ),
        operation=call.operation,
        input_tokens=call.input_tokens,
        output_tokens=call.output_tokens,
        cache_read_tokens=call.cache_read_tokens,
        cache_write_tokens=call.cache_write_tokens,
        reasoning_tokens=call.reasoning_tokens,
    )


def _midnight(day: date | None) -> datetime | None:
    return None if day is None else datetime.combine(day, time.min, tzinfo=UTC)


__all__ = ["RepriceResult", "reprice"]
