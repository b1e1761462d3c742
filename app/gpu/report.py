"""GPU cost per pool, and its allocation per endpoint, user, team or model, from the stored
allocation (`app.gpu.allocate`). Aggregated in SQL; money as exact integers. The allocation's
breakdowns read the GPU rollups for the days they hold and the base tables for the others
(`allocation_query`): the dashboard's GPU page and `spendguard report gpu` share them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Engine, Select, case, func, literal, select, union_all

from app.money import nanos_to_usd
from app.rollups.gpu import gpu_rollup_parts
from app.rollups.stale import Stale, dirty_in, unindexed
from app.settings.models import UNASSIGNED_POOL
from app.warehouse.engine import snapshot
from app.warehouse.tables import CollectorRun, LlmCall, Request
from app.warehouse.tables_gpu import GpuAllocation, GpuPoolHour
from app.warehouse.tables_rollup import GPU_ROLLUPS
from app.warehouse.types import as_date

MISSING = "(none)"
BREAKDOWNS: dict[str, Any] = {
    "endpoint": Request.endpoint,
    "user": Request.user_id,
    "team": Request.team,
    "model": LlmCall.model,
    "pool": GpuAllocation.pool,
}


@dataclass(frozen=True, slots=True)
class PoolRow:
    """One pool's GPU bill over a range and how it was split."""

    pool: str
    sources: str
    hours: int
    busy_hours: int
    calls: int
    cost_nanousd: int
    credits_nanousd: int
    allocated_nanousd: int
    idle_nanousd: int
    weight: int
    capacity: int | None  # summed over the hours that have one
    usage_milli: int | None

    @property
    def utilisation(self) -> Decimal | None:
        """Used / capacity, where the pool configures `capacity_per_hour`."""
        if not self.capacity:
            return None
        return (Decimal(self.weight) / Decimal(self.capacity)).quantize(Decimal("0.0001"))

    def usd(self, field: str) -> Decimal:
        return nanos_to_usd(int(getattr(self, field)))


@dataclass(frozen=True, slots=True)
class AllocationRow:
    group: dict[str, str]
    requests: int
    calls: int
    gpu_cost_nanousd: int

    @property
    def gpu_cost_usd(self) -> Decimal:
        return nanos_to_usd(self.gpu_cost_nanousd)


def _bounds(since: date | None, until: date | None, column: Any) -> list[Any]:
    conds = []
    if since is not None:
        conds.append(column >= datetime.combine(since, time.min, tzinfo=UTC))
    if until is not None:
        conds.append(column < datetime.combine(until, time.min, tzinfo=UTC))
    return conds


def pool_rows(
    engine: Engine, since: date | None = None, until: date | None = None
) -> list[PoolRow]:
    """One row per pool with a bill in the range, most expensive first; `(unassigned)` last."""
    h = GpuPoolHour
    query = (
        select(
            h.pool,
            func.count().label("hours"),
            func.sum(case((h.calls > 0, 1), else_=0)),
            func.sum(h.calls),
            func.sum(h.cost_nanousd),
            func.sum(h.credits_nanousd),
            func.sum(h.allocated_nanousd),
            func.sum(h.idle_nanousd),
            # Used capacity, each hour at most its capacity (a busier hour is simply full).
            func.sum(
                case(
                    (h.capacity.is_(None), 0),
                    (h.weight > h.capacity, h.capacity),
                    else_=h.weight,
                )
            ),
            func.sum(h.capacity),
            func.sum(h.usage_milli),
        )
        .where(*_bounds(since, until, h.hour))
        .group_by(h.pool)
    )
    sources_query = select(h.pool, h.source).where(*_bounds(since, until, h.hour)).distinct()
    with engine.connect() as conn:
        result = conn.execute(query).all()
        sources: dict[str, list[str]] = {}
        for pool, source in conn.execute(sources_query):
            sources.setdefault(pool, []).append(source)
    rows = [
        PoolRow(
            pool=pool,  # one group's sums, in the order selected
            sources=",".join(sorted(sources.get(pool, []))),
            hours=int(hours),
            busy_hours=int(busy or 0),
            calls=int(calls or 0),
            cost_nanousd=int(cost or 0),
            credits_nanousd=int(credits or 0),
            allocated_nanousd=int(allocated or 0),
            idle_nanousd=int(idle or 0),
            weight=int(weight or 0),
            capacity=None if capacity is None else int(capacity),
            usage_milli=None if usage is None else int(usage),
        )
        for (pool, hours, busy, calls, cost, credits, allocated, idle, weight, capacity, usage) in (
            tuple(r) for r in result
        )
    ]
    rows.sort(key=lambda r: (r.pool == UNASSIGNED_POOL, -r.cost_nanousd, r.pool))
    return rows


def allocation_rows(
    engine: Engine,
    dims: Sequence[str],
    since: date | None = None,
    until: date | None = None,
    pools: Sequence[str] = (),
    limit: int | None = None,
    filters: Mapping[str, Sequence[str]] | None = None,
) -> list[AllocationRow]:
    """Allocated GPU cost by `dims` (endpoint, user, team, model, pool), most expensive first;
    the range is of the calls' hours. `filters` keeps the calls whose request (endpoint, user,
    team) or own model is among the given values, as the dashboard's sidebar does; with no
    `dims`, one row: the total of what matched (none when nothing did)."""
    with snapshot(engine) as conn:
        query = allocation_query(conn, dims, since, until, pools, filters)
        cols = query.selected_columns
        query = query.order_by(cols.cost.desc(), *(cols[d] for d in dims))
        if limit is not None:
            query = query.limit(limit)
        result = conn.execute(query).mappings().all()
    return [
        AllocationRow(
            group={d: str(r[d]) for d in dims},
            requests=int(r["requests"]),
            calls=int(r["calls"]),
            gpu_cost_nanousd=int(r["cost"] or 0),
        )
        for r in result
        if int(r["calls"])
    ]


def allocation_query(
    conn: Connection,
    dims: Sequence[str],
    since: date | None = None,
    until: date | None = None,
    pools: Sequence[str] = (),
    filters: Mapping[str, Sequence[str]] | None = None,
) -> Select[Any]:
    """`base_allocation_query`'s answer, from the GPU rollups (`app.rollups.gpu`) for the
    request days that are rolled up and from the base tables for those waiting for a rebuild
    (`dirty_in`), added up by group: a request belongs to one day, so the parts count disjoint
    requests and their sums are exact. Readers never rebuild: the worker and `spendguard
    ingest` do. Every dirty day is read, not only those of the range: a request's calls (and so
    its GPU shares) may fall on another day than the request."""
    # A staged day is read from the GPU rollups' twins once they are written.
    dirty = dirty_in(conn, None, None).ready(*GPU_ROLLUPS)
    parts = gpu_rollup_parts(dims, since, until, pools, filters, dirty)
    base = dirty.unstaged()  # (the staged days are the rollups' twins')
    if base:
        parts.append(base_allocation_query(dims, since, until, pools, filters, stale=base))
    both = union_all(*parts).subquery("parts")
    keys = [both.c[d] for d in dims]
    query = select(
        *keys,
        *(func.coalesce(func.sum(both.c[m]), 0).label(m) for m in ("requests", "calls", "cost")),
    )
    return query.group_by(*keys) if keys else query


def base_allocation_query(
    dims: Sequence[str],
    since: date | None = None,
    until: date | None = None,
    pools: Sequence[str] = (),
    filters: Mapping[str, Sequence[str]] | None = None,
    stale: Stale | None = None,
) -> Select[Any]:
    """The allocated GPU cost by `dims` from the base tables, as columns: the dims (NULL as
    "(none)"), `requests` (distinct), `calls`, `cost`. `stale`: only the requests that
    started in that time (days and hours waiting for a rebuild)."""
    cols = [func.coalesce(BREAKDOWNS[d], literal(MISSING)).label(d) for d in dims]
    query = select(
        *cols,
        func.count(func.distinct(GpuAllocation.trace_id)).label("requests"),
        func.count().label("calls"),
        func.sum(GpuAllocation.gpu_cost_nanousd).label("cost"),
    ).select_from(GpuAllocation)
    # A little stale time's shares are found from its requests (their `started_at` index, then
    # the shares' primary key); SQLite's planner would rather scan the range's shares by the
    # (pool, hour) index, a month of them for an hour's: that index is kept out of its choice.
    # Much stale time (a full rebuild pending) is better bounded by the range's hours.
    hour: Any = GpuAllocation.hour
    pool: Any = GpuAllocation.pool
    if stale is not None and _little(stale, since, until):
        hour, pool = unindexed(hour), unindexed(pool)
    query = query.where(*_bounds(since, until, hour))
    # Only the tables the breakdown or the filters read: every allocation has its call and
    # every call its request, so a join changes no figure, it only costs a lookup per share.
    used = set(dims) | {d for d, values in (filters or {}).items() if values}
    if "model" in used:
        query = query.join(
            LlmCall,
            (LlmCall.trace_id == GpuAllocation.trace_id)
            & (LlmCall.span_id == GpuAllocation.span_id),
        )
    if used & {"endpoint", "user", "team"}:
        query = query.join(Request, Request.trace_id == GpuAllocation.trace_id)
    if stale is not None:
        # (A join would let SQLite's planner scan the shares of the whole range first.)
        of_days = select(Request.trace_id).where(stale.covers(Request.started_at))
        query = query.where(GpuAllocation.trace_id.in_(of_days))
    if pools:
        query = query.where(pool.in_(list(pools)))
    for dim, values in (filters or {}).items():
        if values:
            query = query.where(BREAKDOWNS[dim].in_(list(values)))
    return query.group_by(*cols) if cols else query


def _little(stale: Stale, since: date | None, until: date | None) -> bool:
    """Whether the stale time is small beside the range (a tenth of it, or of a day)."""
    spans = sum((hi - lo for lo, hi in stale.periods()), timedelta())
    if since is None or until is None:
        return spans <= timedelta(days=1)
    return spans * 10 <= max(until - since, timedelta(days=1))


def last_allocation(engine: Engine) -> datetime | None:
    """When the allocation was last refreshed successfully, if ever."""
    query = select(func.max(CollectorRun.finished_at)).where(
        CollectorRun.collector == "gpu_allocation", CollectorRun.status == "ok"
    )
    with engine.connect() as conn:
        value = conn.execute(query).scalar()
    return value if isinstance(value, datetime) else None


RECORD_COLUMNS = [
    "pool",
    "sources",
    "hours",
    "busy_hours",
    "calls",
    "cost_usd",
    "credits_usd",
    "allocated_usd",
    "idle_usd",
    "utilisation",
]


def pool_record(row: PoolRow) -> dict[str, Any]:
    from app.money import format_usd

    return {
        "pool": row.pool,
        "sources": row.sources,
        "hours": row.hours,
        "busy_hours": row.busy_hours,
        "calls": row.calls,
        "cost_usd": format_usd(row.usd("cost_nanousd")),
        "credits_usd": format_usd(row.usd("credits_nanousd")),
        "allocated_usd": format_usd(row.usd("allocated_nanousd")),
        "idle_usd": format_usd(row.usd("idle_nanousd")),
        "utilisation": None if row.utilisation is None else f"{row.utilisation:f}",
    }


@dataclass(frozen=True, slots=True)
class DailySplit:
    day: date
    allocated_nanousd: int
    idle_nanousd: int
    unassigned_nanousd: int


def daily_split(
    engine: Engine, since: date | None = None, until: date | None = None
) -> list[DailySplit]:
    """Per UTC day: GPU cost allocated to calls, idle, and in no pool."""
    h = GpuPoolHour
    day = func.date(h.hour).label("day")
    unassigned = case((h.pool == UNASSIGNED_POOL, h.cost_nanousd), else_=0)
    query = (
        select(day, func.sum(h.allocated_nanousd), func.sum(h.idle_nanousd), func.sum(unassigned))
        .where(*_bounds(since, until, h.hour))
        .group_by(day)
        .order_by(day)
    )
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    return [DailySplit(as_date(d), int(a or 0), int(i or 0), int(u or 0)) for d, a, i, u in rows]


def hour_bounds(engine: Engine) -> tuple[datetime, datetime] | None:
    """The first and last pool-hour stored, or None when there is none."""
    with engine.connect() as conn:
        first, last = conn.execute(
            select(func.min(GpuPoolHour.hour), func.max(GpuPoolHour.hour))
        ).one()
    return None if first is None else (first, last)
