"""Queries the dashboard needs beyond `app.reports.unit_costs`, aggregated in SQL.

Every cost figure here is built from `cost_query` (the rollups, or the base tables), so it
follows the same counting rules as the report (a request's UTC day and dimensions decide; calls
follow their request). Only one row per group or per day comes back; nothing here reads every
request into memory.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from sqlalchemy import Engine, func, inspect, literal, select, union_all

from app.money import nanos_to_usd, per_thousand
from app.reports.unit_costs import COLUMNS, Scope, cost_query, unbounded
from app.rollups.query import option_costs
from app.rollups.refresh import refresh_in_background
from app.rollups.stale import dirty_in, skip
from app.rollups.weeks import weeks_in
from app.warehouse.engine import check_connection, snapshot
from app.warehouse.tables import CollectorRun, LlmCall, Request
from app.warehouse.tables_rollup import rollup_daily
from app.warehouse.types import as_date


@dataclass(frozen=True, slots=True)
class DataBounds:
    """When the warehouse's requests start and end (UTC), and how many there are."""

    first: datetime
    last: datetime
    requests: int


@dataclass(frozen=True, slots=True)
class DailyRow:
    """One UTC day of the scope: its requests, calls and cost (a request's day decides)."""

    day: date
    requests: int
    llm_calls: int
    cost_nanousd: int
    unpriced_calls: int

    @property
    def cost_usd(self) -> Decimal:
        return nanos_to_usd(self.cost_nanousd)

    @property
    def cost_per_1k_requests(self) -> Decimal | None:
        return per_thousand(self.cost_nanousd, self.requests)


def has_warehouse(engine: Engine) -> bool:
    """Whether the warehouse tables exist (`spendguard db upgrade` has run).

    Raises `WarehouseError`, saying what to check, when the database cannot be reached.
    """
    check_connection(engine)
    return inspect(engine).has_table(Request.__tablename__)


def data_bounds(engine: Engine) -> DataBounds | None:
    """The first and last request time, or None when the warehouse holds no request."""
    # Two subqueries: SQLite reads a min() or a max() from the index only when it is alone.
    bounds = select(
        select(func.min(Request.started_at)).scalar_subquery(),
        select(func.max(Request.started_at)).scalar_subquery(),
    )
    with snapshot(engine) as conn:
        first, last = conn.execute(bounds).one()
        if first is None:
            return None
        # Counting millions of requests takes a while: the rollups know, but for the days
        # waiting for a rebuild, counted from the base tables.
        dirty = dirty_in(conn, None, None)
        rolled = select(func.coalesce(func.sum(rollup_daily.c.requests), 0))
        rolled = rolled.where(*skip(dirty, rollup_daily))
        count = conn.execute(rolled).scalar_one()
        if dirty:
            live = select(func.count(Request.trace_id)).where(dirty.covers(Request.started_at))
            count += conn.execute(live).scalar_one()
    if not count:
        return None
    return DataBounds(first=first, last=last, requests=int(count))


def freshen(engine: Engine) -> None:
    """Have the rollups' dirty days rebuilt in the background (`refresh_in_background`); the
    queries here don't wait for it."""
    refresh_in_background(engine)


def daily_unit_costs(engine: Engine, scope: Scope) -> list[DailyRow]:
    """One row per UTC day of the scope that has requests, oldest first."""
    with snapshot(engine) as conn:
        query = cost_query(conn, [], scope, by_day=True)
        result = conn.execute(query.order_by(query.selected_columns.day)).mappings().all()
    return [
        DailyRow(
            day=as_date(r["day"]),
            requests=int(r["requests"]),
            llm_calls=int(r["llm_calls"]),
            cost_nanousd=int(r["cost_nanousd"]),
            unpriced_calls=int(r["unpriced_calls"]),
        )
        for r in result
        if int(r["requests"]) > 0
    ]


def fill_days(rows: Sequence[DailyRow], since: date, until: date) -> list[DailyRow]:
    """Every day from `since` (inclusive) to `until` (exclusive), days without requests as 0."""
    by_day = {r.day: r for r in rows}
    days = (since + timedelta(days=i) for i in range((until - since).days))
    return [by_day.get(d) or DailyRow(d, 0, 0, 0, 0) for d in days]


def filter_options(engine: Engine, dim: str, scope: Scope, limit: int = 500) -> list[str]:
    """The values of `dim` seen in the scope, most expensive first, at most `limit` of them.

    Model and provider values come from calls; endpoint, user and team from requests (with or
    without calls). Ties are broken by the value so the order is stable between reruns.
    """
    column = COLUMNS[dim]  # NULL users/teams are no option: a filter matches stored values
    cost = func.coalesce(func.sum(LlmCall.cost_nanousd), literal(0))
    query = select(column.label("value"), cost.label("cost")).select_from(Request)
    join_on = LlmCall.trace_id == Request.trace_id
    if dim in {"model", "provider"}:
        query = query.join(LlmCall, join_on)
    else:
        query = query.outerjoin(LlmCall, join_on)
    base = query
    query = base.where(*scope.conditions(), column.is_not(None)).group_by(column)
    with snapshot(engine) as conn:
        if not scope.filters:
            # The rollups, and for the days waiting for a rebuild the base tables.
            dirty = dirty_in(conn, scope.since, scope.until)
            weeks = weeks_in(conn, scope.since, scope.until, dirty)
            rolled = option_costs(dim, scope.since, scope.until, dirty, weeks)
            # The stale time only (it lies in the range; the staged days are the rollups'):
            # with the range's bounds too, the planner may scan the whole range's requests.
            stale = dirty.within(scope.since, scope.until).unstaged()
            if stale:
                live = base.where(*unbounded(scope).conditions(), column.is_not(None))
                live = live.where(stale.covers(Request.started_at)).group_by(column)
                parts = union_all(rolled, live).subquery("parts")
                summed = func.sum(parts.c.cost)
                query = select(parts.c.value, summed.label("cost")).group_by(parts.c.value)
            else:
                query = rolled
        ranked = query.subquery("ranked")
        top = select(ranked.c.value).order_by(ranked.c.cost.desc(), ranked.c.value).limit(limit)
        return [str(v) for v in conn.execute(top).scalars()]


def last_reprice(engine: Engine) -> datetime | None:
    """When stored calls were last re-priced (`spendguard reprice`), if ever."""
    query = select(func.max(CollectorRun.finished_at)).where(
        CollectorRun.collector == "reprice", CollectorRun.status == "ok"
    )
    with engine.connect() as conn:
        value = conn.execute(query).scalar_one_or_none()
    if value is None:
        return None
    parsed = datetime.fromisoformat(value) if isinstance(value, str) else value
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed
