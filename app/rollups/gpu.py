"""The GPU rollups: rebuilt with the others for each dirty day, and the GPU breakdowns' answer
from them.

A day's GPU shares (`gpu_allocations` of the calls of the requests that started that UTC day)
are read once into a temporary table, one row per request and cell — (the calls' UTC day, pool,
model) — with the request's endpoint, user and team; a request with one cell only is *single*.
`rollup_daily_gpu`, `rollup_daily_gpu_users` and `rollup_daily_gpu_user_totals` sum the rows
by key, counting the single requests; the others are listed in `rollup_daily_gpu_spread`, one
row per cell. A question about users reads the user totals, or with the endpoint the users'.

Why that keeps distinct-request counts exact under any grouping and filter the GPU page or
`spendguard report gpu` asks (by endpoint, user, team, model or pool; filters on those, a range
of the calls' days): a single request is on exactly one rollup row, so summing `requests` over
the rows that pass counts it once or not at all; a spread request is counted by distinct
`trace_id` over its spread rows that pass, grouped the same way. The two sets of requests are
disjoint, so the counts add up. Spread requests are few (a request that used two pooled models
or pools, or whose calls straddle midnight), so that distinct count reads few rows.

`gpu_rollup_parts` answers from the rollups; `stale` (request days and hours) is left out, for the
caller to read from the base tables (`app.gpu.report.allocation_query`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Date,
    Integer,
    MetaData,
    Select,
    String,
    Table,
    and_,
    case,
    delete,
    func,
    insert,
    literal,
    select,
    union_all,
)
from sqlalchemy.schema import CreateTable

from app.rollups.query import MISSING
from app.rollups.stale import Stale, day_conditions, in_spans, skip
from app.warehouse.tables import LlmCall, Request
from app.warehouse.tables_gpu import GpuAllocation, Reallocated
from app.warehouse.tables_rollup import (
    GPU_SUMMED,
    rollup_daily_gpu,
    rollup_daily_gpu_spread,
    rollup_daily_gpu_user_totals,
    rollup_daily_gpu_users,
)
from app.warehouse.tables_staged import TWINS

# A breakdown's column in the GPU rollups (the page's and the CLI's names).
COLUMNS = {
    "endpoint": "endpoint",
    "user": "user_id",
    "team": "team",
    "model": "model",
    "pool": "pool",
}

# One day's GPU shares, one row per request and (call day, pool, model).
DAY_SHARES = Table(
    "rollup_day_gpu_shares",
    MetaData(),
    Column("trace_id", String(32)),
    Column("hour", Integer),  # the request's UTC hour, or WHOLE_DAY
    Column("call_day", Date),
    Column("pool", String(128)),
    Column("model", String(256)),
    Column("endpoint", String(512)),
    Column("user_id", String(256)),
    Column("team", String(256)),
    Column("calls", BigInteger),
    Column("gpu_cost_nanousd", BigInteger),
    Column("single", Integer),  # 1: the request's only cell
    prefixes=["TEMPORARY"],
)


def rebuild_gpu_slices(
    conn: Connection,
    day: date,
    spans: list[tuple[datetime, datetime]],
    hour: Any,
    into: Callable[[Table], Table] = lambda table: table,
    reallocated: Reallocated | None = None,
) -> None:
    """Write the GPU rollups of the requests that started in `spans` (UTC ranges of one
    request day); `hour`: the rows' hour, an expression of the request's start or WHOLE_DAY;
    `into`: the table to write a rollup's rows into (its staged twin); `reallocated`: shares
    to read in place of some hours' stored ones (`app.rollups.swap`). The caller has deleted
    those rows, in the same transaction (`app.rollups.refresh`)."""
    conn.execute(CreateTable(DAY_SHARES, if_not_exists=True))
    conn.execute(delete(DAY_SHARES))
    shares = _shares(spans, hour) if reallocated is None else _new_shares(spans, hour, reallocated)
    conn.execute(insert(DAY_SHARES).from_select(list(shares.selected_columns.keys()), shares))
    f = DAY_SHARES.c
    for table in (rollup_daily_gpu, rollup_daily_gpu_users, rollup_daily_gpu_user_totals):
        keys = [f[c.name] for c in table.c if c.name not in ("day", *GPU_SUMMED)]
        query = select(
            literal(day, Date).label("day"),
            *keys,
            func.sum(f.single).label("requests"),
            func.sum(f.calls).label("calls"),
            func.sum(f.gpu_cost_nanousd).label("gpu_cost_nanousd"),
        ).group_by(*keys)
        names = [c.name for c in query.selected_columns]
        conn.execute(insert(into(table)).from_select(names, query))
    spread = rollup_daily_gpu_spread
    query = select(
        literal(day, Date).label("day"), *(f[c.name] for c in spread.c if c.name != "day")
    ).where(f.single == 0)
    conn.execute(insert(into(spread)).from_select([c.name for c in query.selected_columns], query))


def _shares(spans: list[tuple[datetime, datetime]], hour: Any, traces: Any = None) -> Select[Any]:
    """The rows of `DAY_SHARES` for the requests that started in `spans`: the shares joined
    to their call (by primary key) and request (by the `started_at` index). `traces` (a
    select of trace ids) in place of `spans`: those requests' rows, with their request's UTC
    `day` (`app.rollups.patch`)."""
    r, c, g = Request, LlmCall, GpuAllocation
    call_day = func.date(g.hour)
    which = in_spans(r.started_at, spans) if traces is None else r.trace_id.in_(traces)
    day = [] if traces is None else [func.date(r.started_at).label("day")]
    cells = (
        select(
            *day,
            g.trace_id,
            hour.label("hour"),
            call_day.label("call_day"),
            g.pool,
            c.model,
            r.endpoint,
            r.user_id,
            r.team,
            func.count().label("calls"),
            func.sum(g.gpu_cost_nanousd).label("gpu_cost_nanousd"),
        )
        .select_from(r)
        .join(g, g.trace_id == r.trace_id)
        .join(c, and_(c.trace_id == g.trace_id, c.span_id == g.span_id))
        .where(which)
        .group_by(
            g.trace_id, r.started_at, call_day, g.pool, c.model, r.endpoint, r.user_id, r.team
        )
        .subquery("cells")
    )
    return _with_single(cells)


def _new_shares(
    spans: list[tuple[datetime, datetime]], hour: Any, reallocated: Reallocated
) -> Select[Any]:
    """`_shares` with the `reallocated` hours' shares in place of the stored ones: the shares
    of each source joined to their calls and requests (the stored of other hours, and the
    new), then summed into cells."""
    r, c = Request, LlmCall

    def rows(shares: Any, *conds: Any) -> Select[Any]:
        s = shares.c
        return (
            select(
                s.trace_id,
                hour.label("hour"),
                func.date(s.hour).label("call_day"),
                s.pool,
                c.model,
                r.endpoint,
                r.user_id,
                r.team,
                s.gpu_cost_nanousd,
            )
            .select_from(r)
            .join(shares, s.trace_id == r.trace_id)
            .join(c, and_(c.trace_id == s.trace_id, c.span_id == s.span_id))
            .where(in_spans(r.started_at, spans), *conds)
        )

    stored = rows(GpuAllocation.__table__, reallocated.kept())
    both = union_all(stored, rows(reallocated.table)).subquery("shares")
    b = both.c
    keys = (b.trace_id, b.hour, b.call_day, b.pool, b.model, b.endpoint, b.user_id, b.team)
    cells = (
        select(
            *keys,
            func.count().label("calls"),
            func.sum(b.gpu_cost_nanousd).label("gpu_cost_nanousd"),
        )
        .group_by(*keys)
        .subquery("cells")
    )
    return _with_single(cells)


def _with_single(cells: Any) -> Select[Any]:
    """The cells with `single`: 1 on the only cell of its request."""
    k = cells.c
    single = case((func.count().over(partition_by=k.trace_id) == 1, 1), else_=0)
    return select(*k, single.label("single"))


def _sources(table: Table) -> tuple[tuple[Table, bool], ...]:
    """The rollup read, and the spread requests' (True)."""
    return ((table, False), (rollup_daily_gpu_spread, True))


def gpu_rollup_parts(
    dims: Sequence[str],
    since: date | None,
    until: date | None,
    pools: Sequence[str] = (),
    filters: Mapping[str, Sequence[str]] | None = None,
    stale: Stale | None = None,
) -> list[Select[Any]]:
    """The allocated GPU cost by `dims` from the rollups, in two queries of the same columns:
    the dims (NULL as "(none)"), `requests`, `calls`, `cost`. `since`/`until` bound the calls'
    UTC days, `pools` and `filters` keep the shares of those pools and values, `stale` leaves
    those request days and hours out. The first sums the rollup rows (calls, cost, the single
    requests), the second counts the spread requests: a group's figures are the sum of its rows
    in both (`app.gpu.report.allocation_query` adds them up, with the skipped days'). The
    staged days of `stale` are read from the rollups' twins (`app.warehouse.tables_staged`),
    in two more such queries: a spread request is on its own day's rows only, so it is
    counted in one of the two."""
    chosen = {d: list(v) for d, v in (filters or {}).items() if v}
    used = set(dims) | set(chosen)
    table = rollup_daily_gpu
    if "user" in used:
        table = rollup_daily_gpu_users if "endpoint" in used else rollup_daily_gpu_user_totals
    sources = [(t, spread, skip(stale, t)) for t, spread in _sources(table)]
    if stale and stale.staged:
        sources += [
            (TWINS[t], spread, [TWINS[t].c.day.in_(stale.staged)]) for t, spread in _sources(table)
        ]
    parts = []
    for t, spread, kept in sources:
        cols = [func.coalesce(t.c[COLUMNS[d]], literal(MISSING)).label(d) for d in dims]
        conds = day_conditions(t.c.call_day, since, until) + kept
        if pools:
            conds.append(t.c.pool.in_(list(pools)))
        for dim, values in chosen.items():
            conds.append(t.c[COLUMNS[dim]].in_(values))
        if spread:
            sums: list[Any] = [
                func.count(func.distinct(t.c.trace_id)).label("requests"),
                literal(0, BigInteger).label("calls"),
                literal(0, BigInteger).label("cost"),
            ]
        else:
            sums = [
                func.coalesce(func.sum(t.c.requests), 0).label("requests"),
                func.coalesce(func.sum(t.c.calls), 0).label("calls"),
                func.coalesce(func.sum(t.c.gpu_cost_nanousd), 0).label("cost"),
            ]
        query = select(*cols, *sums).where(*conds)
        parts.append(query.group_by(*cols) if cols else query)
    return parts
