"""The rollups of the requests (all but the GPU ones and `rollup_call_days`) of one day or some
of its hours, summed from the base tables in one pass (`app.rollups.refresh.rebuild`).

The requests that started in the time being rebuilt are read once, with their calls, GPU shares
and true-up factors (by primary key), into a temporary table: one row per request and
(model, provider) it called, one row with NULLs for a request without calls, with the request's
set of pairs as one text and the flags that keep distinct-request counts exact (two sorts of
those rows in all). Three rollups are GROUP BYs of that table: the finest per-user ones and the
call sets. The others are GROUP BYs of rows just written (`_SUMMED_FROM`), several times fewer.
Each is written into the rollup or, for a day being staged, into its twin
(`app.warehouse.tables_staged`).
"""

from __future__ import annotations

from collections.abc import Callable
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
    Text,
    and_,
    case,
    delete,
    func,
    insert,
    literal,
    select,
)
from sqlalchemy.schema import CreateTable

from app.rollups.stale import in_spans
from app.warehouse.tables import LlmCall, Request
from app.warehouse.tables_gpu import GpuAllocation
from app.warehouse.tables_rollup import (
    GPU_ROLLUPS,
    MEASURES,
    PAIR_MID,
    PAIR_START,
    ROLLUPS,
    SUMMED,
    rollup_daily,
    rollup_daily_call_sets,
    rollup_daily_calls,
    rollup_daily_set_calls,
    rollup_daily_user_calls,
    rollup_daily_user_set_calls,
    rollup_daily_user_totals,
    rollup_daily_users,
)
from app.warehouse.tables_trueup import TrueUpFactor, factor_join, trued_cost

# Rollups summed from the rows of another, just written for the same day and hours, instead of
# from `_day_pairs`: the other groups by every key of this one and more. Summing its rows is
# exact, distinct-request counts included: a request has one user, endpoint, team and pairs
# text, so it is on one row of the other for each row of this one it is on (once per
# (model, provider) in the call tables, where it is counted per row as well).
_SUMMED_FROM = {
    rollup_daily_user_calls: rollup_daily_user_set_calls,
    rollup_daily_set_calls: rollup_daily_user_set_calls,
    rollup_daily_calls: rollup_daily_user_calls,
    rollup_daily_user_totals: rollup_daily_users,
    rollup_daily: rollup_daily_users,
}
# The order they are written in: each after the rollup it is summed from.
_ORDER = (
    rollup_daily_user_set_calls,
    rollup_daily_users,
    rollup_daily_call_sets,
    *_SUMMED_FROM,
)
assert set(_ORDER) == set(ROLLUPS) - set(GPU_ROLLUPS)


def rebuild_request_slices(
    conn: Connection,
    day: date,
    spans: list[tuple[datetime, datetime]],
    hour: Any,
    hours: tuple[int, ...],
    into: Callable[[Table], Table] = lambda table: table,
) -> None:
    """Write the rollups' rows (but the GPU ones) of the requests that started in `spans` (UTC
    ranges of `day`), whose rows the caller deleted; `hour`: the rows' hour (an expression of
    the request's start, or WHOLE_DAY), one of `hours`; `into`: the table to write a rollup's
    rows into (its staged twin, `app.warehouse.tables_staged`)."""
    conn.execute(CreateTable(_day_pairs, if_not_exists=True))
    conn.execute(delete(_day_pairs))
    pairs = _pairs(spans, hour, conn.dialect.name)
    conn.execute(insert(_day_pairs).from_select(list(pairs.selected_columns.keys()), pairs))
    for table in _ORDER:
        source = _SUMMED_FROM.get(table)
        if source is None:
            conn.execute(_insert(table, day, into(table)))
        else:
            conn.execute(_summed(table, into(source), day, hours, into(table)))


# The day being rebuilt, one row per request and (model, provider) it called (one row with
# NULLs for a request without calls): read from the base tables once, summed into each rollup.
_day_pairs = Table(
    "rollup_day_pairs",
    MetaData(),
    Column("trace_id", String(32)),
    Column("hour", Integer),  # the request's UTC hour, or WHOLE_DAY
    Column("user_id", String(256)),
    Column("endpoint", String(512)),
    Column("team", String(256)),
    Column("model", String(256)),
    Column("provider", String(64)),
    # The request's set of pairs as one text (`PAIR_START` model `PAIR_MID` provider
    # `PAIR_START` …, sorted), the same on each of its rows; NULL without calls.
    Column("pairs", Text),
    *(Column(name, BigInteger) for name in SUMMED),
    Column("is_first", Integer),  # the request's first row: counts the request once
    Column("is_first_provider", Integer),  # its first provider for this model
    Column("is_first_model", Integer),  # its first model for this provider
    prefixes=["TEMPORARY"],
)


def _pairs(spans: list[tuple[datetime, datetime]], hour: Any, dialect: str) -> Select[Any]:
    """The rows of `_day_pairs` for the requests that started in `spans` (UTC ranges), with
    the request's pairs text and the flags that keep distinct counts exact; `hour`: the rows'
    hour (an expression of the request's start, or WHOLE_DAY)."""
    r, c, g, f = Request, LlmCall, GpuAllocation, TrueUpFactor
    per_pair = (
        select(
            r.trace_id,
            hour.label("hour"),
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
            func.coalesce(func.sum(trued_cost()), 0).label("trued_cost_nanousd"),
            func.count(f.factor_den).label("trued_up_calls"),
        )
        .select_from(r)
        .outerjoin(c, c.trace_id == r.trace_id)
        .outerjoin(g, and_(g.trace_id == c.trace_id, g.span_id == c.span_id))
        # At most one factor per call; its day spelled out too, so the lookup is by key.
        .outerjoin(f, and_(factor_join(), f.day == func.date(c.started_at)))
        .where(in_spans(r.started_at, spans))
        .group_by(r.trace_id, r.started_at, r.user_id, r.endpoint, r.team, c.model, c.provider)
        .subquery("pairs")
    )
    p = per_pair.c
    # A request's rows in (model, provider) order, unique: one sort gives its first row, the
    # first row of each of its models (the previous row has another model), and its pairs
    # text; the first model of each provider needs the other order.
    order = (p.model, p.provider)
    first = func.row_number().over(partition_by=p.trace_id, order_by=order)
    previous_model = func.lag(p.model).over(partition_by=p.trace_id, order_by=order)
    piece = p.model + literal(PAIR_MID) + p.provider + literal(PAIR_START)
    joined = func.string_agg if dialect == "postgresql" else func.group_concat
    text = joined(piece, literal("")).over(
        partition_by=p.trace_id, order_by=order, rows=(None, None)
    )
    first_model = func.min(p.model).over(partition_by=(p.trace_id, p.provider))
    return select(
        *p,
        (literal(PAIR_START) + text).label("pairs"),
        case((first == 1, 1), else_=0).label("is_first"),
        case((previous_model.is_(None), 1), (previous_model != p.model, 1), else_=0).label(
            "is_first_provider"
        ),
        case((p.model == first_model, 1), else_=0).label("is_first_model"),
    )


def _insert(table: Table, day: date, target: Table) -> Any:
    """One rollup's rows of the day, summed from `_day_pairs`, written into `target` (the
    rollup, or its twin). The distinct-request counts: by call (a table with a model), the
    requests that made one, `requests_model` counting each at its first provider of the model,
    `requests_provider` at its first model of the provider; the call sets
    (`rollup_daily_call_sets`), each request with calls once, by its pairs text; else every
    request once (its first row), with or without calls."""
    p = _day_pairs.c
    counts: dict[str, Any] = {"requests": func.sum(p.is_first)}
    where: list[Any] = []
    if "model" in table.c:
        counts = {
            "requests": func.count(),
            "requests_model": func.sum(p.is_first_provider),
            "requests_provider": func.sum(p.is_first_model),
        }
        where = [p.model.is_not(None)]
    elif "pairs" in table.c:
        counts = {"requests": func.count()}
        where = [p.is_first == 1, p.model.is_not(None)]
    keys = [p[c.name] for c in table.c if c.name != "day" and c.name not in MEASURES]
    sums = [func.sum(p[c.name]).label(c.name) for c in table.c if c.name in SUMMED]
    query = (
        select(
            literal(day, Date).label("day"),
            *keys,
            *(count.label(name) for name, count in counts.items()),
            *sums,
        )
        .where(*where)
        .group_by(*keys)
    )
    return insert(target).from_select([c.name for c in query.selected_columns], query)


def _summed(table: Table, source: Table, day: date, hours: tuple[int, ...], target: Table) -> Any:
    """One rollup's rows of the day's `hours`, summed from the rows of `source` (its entry in
    `_SUMMED_FROM`, or that rollup's twin) just written, into `target`."""
    s = source.c
    keys = [s[c.name] for c in table.c if c.name != "day" and c.name not in MEASURES]
    sums = [func.sum(s[c.name]).label(c.name) for c in table.c if c.name in MEASURES]
    query = (
        select(s.day, *keys, *sums).where(s.day == day, s.hour.in_(hours)).group_by(s.day, *keys)
    )
    return insert(target).from_select([c.name for c in query.selected_columns], query)
