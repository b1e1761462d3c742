"""Rebuild the rollups of the dirty days, one UTC day per transaction.

A day is rebuilt whole from the base tables, never patched: its marks are deleted, its rollup
rows deleted and written again, in one transaction, so a refresh that fails changes nothing and
running it twice gives the same rows. One pass reads the requests of the day (the
`requests.started_at` index) with their calls and GPU shares (by primary key) once, into
`rollup_daily_users`; `rollup_daily_calls` and `rollup_daily` are sums of that day's user rows
(every request has exactly one user, endpoint and team, so the sums stay exact).

One refresh at a time per warehouse (named lock `rollup-refresh`); a refresh that finds the lock
held returns at once (`busy`), and the marks it did not handle stay for the next one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import (
    Connection,
    Date,
    Engine,
    Select,
    and_,
    case,
    delete,
    func,
    insert,
    literal,
    select,
)

from app.warehouse.locks import named_lock
from app.warehouse.tables import LlmCall, Request
from app.warehouse.tables_gpu import GpuAllocation
from app.warehouse.tables_rollup import (
    ROLLUPS,
    rollup_daily,
    rollup_daily_calls,
    rollup_daily_users,
    rollup_dirty,
)

log = logging.getLogger("spendguard.rollups")

LOCK = "rollup-refresh"
MAX_PASSES = 3  # days marked while refreshing are taken in the next pass, a few times at most
# Readers rebuild up to this many days before they read; more (a migrated warehouse, a re-price
# of months) is the worker's and `ingest`'s work, and readers use the base tables meanwhile.
LAZY_MAX_DAYS = 7
_SUMMED = (
    "llm_calls",
    "input_tokens",
    "output_tokens",
    "token_cost_nanousd",
    "gpu_cost_nanousd",
    "unpriced_calls",
)


@dataclass(slots=True)
class RefreshResult:
    days: int = 0
    seconds: float = 0.0
    busy: bool = False  # another process was refreshing: nothing done here


def dirty_days(conn: Connection) -> list[date]:
    rows = conn.execute(select(rollup_dirty.c.day).distinct().order_by(rollup_dirty.c.day))
    return [_as_date(d) for d in rows.scalars()]


def refresh(engine: Engine, progress: Callable[[date], None] | None = None) -> RefreshResult:
    """Rebuild every dirty day; `busy` when another refresh holds the lock."""
    result = RefreshResult()
    started = time.perf_counter()
    with named_lock(engine, LOCK) as held:
        if not held:
            result.busy = True
            return result
        for _ in range(MAX_PASSES):
            with engine.connect() as conn:
                days = dirty_days(conn)
            if not days:
                break
            for day in days:
                rebuild_day(engine, day)
                result.days += 1
                if progress is not None:
                    progress(day)
    result.seconds = time.perf_counter() - started
    if result.days:
        log.info("rollups: %d day(s) rebuilt in %.2f s", result.days, result.seconds)
    return result


def refresh_if_dirty(engine: Engine, max_days: int | None = LAZY_MAX_DAYS) -> RefreshResult | None:
    """The lazy refresh of readers: a no-op (one cheap query) when nothing is dirty, and when
    more than `max_days` days are."""
    with engine.connect() as conn:
        days = dirty_days(conn)
    if not days or (max_days is not None and len(days) > max_days):
        return None
    return refresh(engine)


def rebuild_day(engine: Engine, day: date) -> None:
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # One day is a small slice of llm_calls: fetch it by primary key, never by scanning
            # the table (the default page cost makes the planner prefer a hash join of all of
            # it); JIT compiles for longer than these queries run.
            conn.exec_driver_sql("SET LOCAL random_page_cost = 1.1")
            conn.exec_driver_sql("SET LOCAL jit = off")
        conn.execute(delete(rollup_dirty).where(rollup_dirty.c.day == day))
        for table in ROLLUPS:
            conn.execute(delete(table).where(table.c.day == day))
        conn.execute(_users_insert(day))
        conn.execute(_sum_insert(rollup_daily_calls, day))
        conn.execute(_sum_insert(rollup_daily, day))


def _pairs(day: date) -> Any:
    """One row per request of the day and (model, provider) it called (one row with NULLs
    for a request without calls), with the flags that keep distinct counts exact."""
    r, c, g = Request, LlmCall, GpuAllocation
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    per_pair = (
        select(
            r.trace_id,
            r.user_id,
            r.endpoint,
            r.team,
            c.model,
            c.provider,
            func.count(c.span_id).label("llm_calls"),
            func.coalesce(func.sum(c.input_tokens), 0).label("input_tokens"),
            func.coalesce(func.sum(c.output_tokens), 0).label("output_tokens"),
            func.coalesce(func.sum(c.cost_nanousd), 0).label("token_cost_nanousd"),
            func.coalesce(func.sum(g.gpu_cost_nanousd), 0).label("gpu_cost_nanousd"),
            (func.count(c.span_id) - func.count(c.cost_nanousd)).label("unpriced_calls"),
        )
        .select_from(r)
        .outerjoin(c, c.trace_id == r.trace_id)
        .outerjoin(g, and_(g.trace_id == c.trace_id, g.span_id == c.span_id))
        .where(r.started_at >= start, r.started_at < start + timedelta(days=1))
        .group_by(r.trace_id, r.user_id, r.endpoint, r.team, c.model, c.provider)
        .cte("pairs")
    )
    p = per_pair.c
    first = func.row_number().over(partition_by=p.trace_id, order_by=(p.model, p.provider))
    first_provider = func.min(p.provider).over(partition_by=(p.trace_id, p.model))
    first_model = func.min(p.model).over(partition_by=(p.trace_id, p.provider))
    return select(
        *p,
        case((first == 1, 1), else_=0).label("is_first"),
        case((p.provider == first_provider, 1), else_=0).label("is_first_provider"),
        case((p.model == first_model, 1), else_=0).label("is_first_model"),
    ).cte("flagged")


def _users_insert(day: date) -> Any:
    f = _pairs(day).c
    keys = (f.user_id, f.endpoint, f.team, f.model, f.provider)
    query = select(
        literal(day, Date).label("day"),
        *keys,
        func.count().label("requests"),
        func.sum(f.is_first).label("requests_first"),
        func.sum(f.is_first_provider).label("requests_model"),
        func.sum(f.is_first_model).label("requests_provider"),
        *(func.sum(f[name]).label(name) for name in _SUMMED),
    ).group_by(*keys)
    names = [c.name for c in query.selected_columns]
    return insert(rollup_daily_users).from_select(names, query)


def _sum_insert(table: Any, day: date) -> Any:
    """`rollup_daily_calls` or `rollup_daily` of a day, summed from its user rows."""
    u = rollup_daily_users.c
    query: Select[Any]
    if table is rollup_daily_calls:
        keys = [u.endpoint, u.team, u.model, u.provider]
        counts = [
            func.sum(u.requests).label("requests"),
            func.sum(u.requests_model).label("requests_model"),
            func.sum(u.requests_provider).label("requests_provider"),
        ]
        where = [u.day == day, u.model.is_not(None)]
    else:
        keys = [u.endpoint, u.team]
        counts = [func.sum(u.requests_first).label("requests")]
        where = [u.day == day]
    query = (
        select(u.day, *keys, *counts, *(func.sum(u[name]).label(name) for name in _SUMMED))
        .where(*where)
        .group_by(u.day, *keys)
    )
    names = [c.name for c in query.selected_columns]
    return insert(table).from_select(names, query)


def _as_date(value: Any) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])
