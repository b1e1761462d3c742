"""Cost per 1,000 requests, grouped by any of endpoint, model, user, team, provider.

The counting rules (ARCHITECTURE, "The meaning of the numbers"):
- grouped or filtered only by request dimensions (endpoint, user, team), every request counts,
  including those that made no LLM call;
- grouped or filtered by a call dimension (model, provider), a group counts the requests that
  made at least one call in it, and its cost is the cost of those calls; a request that called
  two models counts once per model;
- every view's costs add up to the same total. Unpriced calls are counted, never priced as 0.

A call's cost is its token cost plus its share of the self-hosted GPU pool that served it
(`gpu_allocations`, see `app.gpu.allocate`): `token_cost_nanousd + gpu_cost_nanousd =
cost_nanousd`. A call has at most one allocation row, so the join never counts a call twice.

With `Scope(true_up=True)` (`pricing.true_up`), a call's cost is its trued-up cost: scaled so
that its provider's model-day adds up to the bill (`app.warehouse.tables_trueup`); calls of a
day without a bill keep their estimate, and `trued_up_calls` counts those that were scaled.

Aggregation runs in SQL; only one row per group comes back. `cost_query` answers from the
daily rollups (`app.rollups.query`) when they can answer exactly (the days waiting for a rebuild
from the base tables, added), else from the base tables with `unit_cost_query`: the same
columns, the same numbers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    and_,
    case,
    func,
    literal,
    select,
    union_all,
)
from sqlalchemy.sql import Select

from app.money import nanos_to_usd, per_thousand
from app.rollups.query import TRUED_UP, rollup_query
from app.rollups.stale import dirty_in
from app.rollups.weeks import weeks_in
from app.warehouse.engine import snapshot
from app.warehouse.tables import LlmCall, Request
from app.warehouse.tables_gpu import GpuAllocation
from app.warehouse.tables_trueup import TrueUpFactor, factor_join, trued_cost

DIMENSIONS = ("endpoint", "model", "user", "team", "provider")
CALL_DIMENSIONS = frozenset({"model", "provider"})
MISSING = "(none)"

# Each dimension's column: request dimensions on `requests`, call dimensions on `llm_calls`.
COLUMNS: dict[str, Any] = {
    "endpoint": Request.endpoint,
    "user": Request.user_id,
    "team": Request.team,
    "model": LlmCall.model,
    "provider": LlmCall.provider,
}


@dataclass(frozen=True, slots=True)
class Scope:
    """Which requests and calls a report covers: a UTC date range and value filters."""

    since: date | None = None
    until: date | None = None
    filters: Mapping[str, Sequence[str]] | None = None
    true_up: bool = False  # costs scaled to the providers' bills where a factor exists

    def conditions(self) -> list[ColumnElement[bool]]:
        conds: list[ColumnElement[bool]] = []
        if self.since is not None:
            conds.append(Request.started_at >= _midnight(self.since))
        if self.until is not None:
            conds.append(Request.started_at < _midnight(self.until))
        for dim, values in (self.filters or {}).items():
            if values:
                conds.append(COLUMNS[dim].in_(list(values)))
        return conds

    def filters_calls(self) -> bool:
        return any(d in CALL_DIMENSIONS and v for d, v in (self.filters or {}).items())


def unbounded(scope: Scope) -> Scope:
    """The scope without its date range: for the part of a query that reads the stale time
    (which lies in the range) from the base tables. With the range's bounds as well, SQLite's
    planner may take the range's index scan (every request of 90 days) over the stale hour's."""
    return replace(scope, since=None, until=None)


@dataclass(frozen=True, slots=True)
class UnitCostRow:
    group: dict[str, str]
    requests: int
    llm_calls: int
    input_tokens: int
    output_tokens: int
    cost_nanousd: int  # token + GPU
    unpriced_calls: int
    trued_up_calls: int = 0  # calls whose cost was scaled to the bill (Scope.true_up)
    token_cost_nanousd: int | None = None  # None: all of cost_nanousd is token cost
    gpu_cost_nanousd: int = 0  # allocated self-hosted GPU cost

    @property
    def cost_usd(self) -> Decimal:
        return nanos_to_usd(self.cost_nanousd)

    @property
    def token_cost_usd(self) -> Decimal:
        token = self.token_cost_nanousd
        return nanos_to_usd(self.cost_nanousd - self.gpu_cost_nanousd if token is None else token)

    @property
    def gpu_cost_usd(self) -> Decimal:
        return nanos_to_usd(self.gpu_cost_nanousd)

    @property
    def cost_per_1k_requests(self) -> Decimal | None:
        return per_thousand(self.cost_nanousd, self.requests)


def parse_dimensions(text: str) -> list[str]:
    dims = [d.strip() for d in text.split(",") if d.strip()]
    unknown = [d for d in dims if d not in DIMENSIONS]
    if unknown or not dims:
        raise ValueError(
            f"unknown dimension(s) {', '.join(unknown) or '(empty)'}; "
            f"choose a comma list of {', '.join(DIMENSIONS)}"
        )
    return list(dict.fromkeys(dims))


def unit_cost_query(dims: Sequence[str], scope: Scope) -> Select[Any]:
    call_level = bool(CALL_DIMENSIONS.intersection(dims)) or scope.filters_calls()
    group_cols = [func.coalesce(COLUMNS[d], literal(MISSING)).label(d) for d in dims]
    unpriced = case(
        (and_(LlmCall.span_id.is_not(None), LlmCall.cost_nanousd.is_(None)), 1), else_=0
    )
    cost = trued_cost() if scope.true_up else LlmCall.cost_nanousd
    token_cost = func.coalesce(func.sum(cost), 0)
    gpu_cost = func.coalesce(func.sum(GpuAllocation.gpu_cost_nanousd), 0)
    query = select(
        *group_cols,
        func.count(func.distinct(Request.trace_id)).label("requests"),
        func.count(LlmCall.span_id).label("llm_calls"),
        func.coalesce(func.sum(LlmCall.input_tokens), 0).label("input_tokens"),
        func.coalesce(func.sum(LlmCall.output_tokens), 0).label("output_tokens"),
        (token_cost + gpu_cost).label("cost_nanousd"),
        func.coalesce(func.sum(unpriced), 0).label("unpriced_calls"),
        token_cost.label("token_cost_nanousd"),
        gpu_cost.label("gpu_cost_nanousd"),
    ).select_from(Request)
    join_on = LlmCall.trace_id == Request.trace_id
    query = query.join(LlmCall, join_on) if call_level else query.outerjoin(LlmCall, join_on)
    # At most one allocation per call (a model is served by one pool): no fan-out.
    query = query.outerjoin(
        GpuAllocation,
        and_(GpuAllocation.trace_id == LlmCall.trace_id, GpuAllocation.span_id == LlmCall.span_id),
    )
    if scope.true_up:  # at most one factor per call: its provider, served model and UTC day
        trued = func.count(TrueUpFactor.factor_den).label("trued_up_calls")
        query = query.add_columns(trued).outerjoin(TrueUpFactor, factor_join())
    conds = scope.conditions()
    if conds:
        query = query.where(*conds)
    if group_cols:
        query = query.group_by(*group_cols)
    return query


def cost_query(
    conn: Connection, dims: Sequence[str], scope: Scope, *, by_day: bool = False
) -> Select[Any]:
    """`unit_cost_query`, from the rollups when they answer it exactly, else from the base
    tables. `by_day` adds the request's UTC day (`day`) to the grouping.

    Days and hours waiting for a rebuild (new spans, a re-price) are read from the base tables
    and added to the rollups' answer for the others: a request starts in one UTC hour of one
    day, so the parts add up exactly, and a reader never waits for a rebuild nor scans more
    than that stale time (`spendguard ingest` and the worker rebuild it). `conn` should read
    one state of the warehouse (`app.warehouse.engine.snapshot`): the marks and the rows
    they describe."""
    dirty = dirty_in(conn, scope.since, scope.until)
    rolled = rollup_query(
        dims,
        scope.filters,
        scope.since,
        scope.until,
        true_up=scope.true_up,
        by_day=by_day,
        stale=dirty,
        weeks=() if by_day else weeks_in(conn, scope.since, scope.until, dirty),
    )
    if rolled is None:
        return _base_query(dims, scope, by_day)
    # The stale time in the range only, so that the range's own bounds can go (`unbounded`),
    # but the staged days, which the rollups' answer holds (`app.warehouse.tables_staged`).
    dirty = dirty.within(scope.since, scope.until).unstaged()
    if not dirty:
        return rolled
    live = _base_query(dims, unbounded(scope), by_day).where(dirty.covers(Request.started_at))
    parts = union_all(rolled, live).subquery("parts")
    keys = [parts.c[d] for d in (*dims, *(["day"] if by_day else []))]
    measures = (*MEASURES, TRUED_UP) if scope.true_up else MEASURES
    sums = [func.coalesce(func.sum(parts.c[m]), 0).label(m) for m in measures]
    query = select(*keys[: len(dims)], *sums, *keys[len(dims) :])
    return query.group_by(*keys) if keys else query


# The summed columns of `unit_cost_query` (and of the rollups' answer), in their order; with
# `Scope.true_up`, `TRUED_UP` after them.
MEASURES = (
    "requests",
    "llm_calls",
    "input_tokens",
    "output_tokens",
    "cost_nanousd",
    "unpriced_calls",
    "token_cost_nanousd",
    "gpu_cost_nanousd",
)


def _base_query(dims: Sequence[str], scope: Scope, by_day: bool) -> Select[Any]:
    query = unit_cost_query(dims, scope)
    if by_day:
        day = func.date(Request.started_at)
        query = query.add_columns(day.label("day")).group_by(day)
    return query


def unit_costs(
    engine: Engine, dims: Sequence[str], scope: Scope = Scope(), limit: int | None = None
) -> list[UnitCostRow]:
    """One row per group, most expensive first (ties broken by the group's values); with
    `limit`, only the `limit` most expensive groups, cut in SQL."""
    with snapshot(engine) as conn:
        query = cost_query(conn, dims, scope)
        if limit is not None:
            cols = query.selected_columns
            order = (cols.cost_nanousd.desc(), *(cols[d] for d in dims))
            query = query.order_by(*order).limit(limit)
        result = conn.execute(query).mappings().all()
    rows = [
        UnitCostRow(
            group={d: str(r[d]) for d in dims},
            requests=int(r["requests"]),
            llm_calls=int(r["llm_calls"]),
            input_tokens=int(r["input_tokens"]),
            output_tokens=int(r["output_tokens"]),
            cost_nanousd=int(r["cost_nanousd"]),
            unpriced_calls=int(r["unpriced_calls"]),
            trued_up_calls=int(r.get("trued_up_calls", 0)),
            token_cost_nanousd=int(r["token_cost_nanousd"]),
            gpu_cost_nanousd=int(r["gpu_cost_nanousd"]),
        )
        for r in result
        if int(r["requests"]) > 0
    ]
    rows.sort(key=lambda row: (-row.cost_nanousd, tuple(row.group.values())))
    return rows


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)
