"""The rollups of the requests (all but the GPU ones and `rollup_call_days`) of one day or some
of its hours, summed from the base tables in one pass (`app.rollups.refresh.rebuild`).

The requests that started in the time being rebuilt are read once, with their calls, GPU shares
and true-up factors (by primary key), into a temporary table: one row per request and
(model, provider) it called, one row with NULLs for a request without calls, with the request's
set of pairs as one text and the flags that keep distinct-request counts exact (two sorts of
those rows in all). Each rollup is a GROUP BY of that table, written into the rollup. For a day
being staged (`app.warehouse.tables_staged`) the pairs go into `rollup_staged_pairs`, readers
read them as rollup rows (`pair_rows`) until each rollup's twin is written from them or, for
two, from a finer twin (`write_twin`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Connection,
    Date,
    MetaData,
    Select,
    Table,
    and_,
    case,
    delete,
    func,
    insert,
    literal,
    select,
)
from sqlalchemy.schema import CreateTable

from app.rollups.stale import in_spans, keys_and_sums
from app.warehouse.tables import LlmCall, Request
from app.warehouse.tables_gpu import GpuAllocation, Reallocated
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
from app.warehouse.tables_staged import TWINS, pair_columns, rollup_staged_pairs
from app.warehouse.tables_trueup import TrueUpFactor, factor_join, trued_cost

# Twins summed from the twin of a finer rollup, written before them for the same day, instead of
# from the pairs: the other groups by every key of this one and more. Summing its rows is
# exact, distinct-request counts included: a request has one pairs text, so it is on one row
# of the other for each row of this one it is on. On a day stored whole that reads a fifth of
# the rows (on a sliced day about as many).
_SUMMED_FROM = {
    rollup_daily_user_calls: rollup_daily_user_set_calls,
    rollup_daily_set_calls: rollup_daily_user_set_calls,
}
# The order they are written in, each after the rollup it is summed from: for a day being
# staged, whose twins are committed one by one, the small ones that most pages and every
# filter list read first.
ORDER = (
    rollup_daily,
    rollup_daily_calls,
    rollup_daily_call_sets,
    rollup_daily_user_totals,
    rollup_daily_users,
    rollup_daily_user_set_calls,
    *_SUMMED_FROM,
)
assert set(ORDER) == set(ROLLUPS) - set(GPU_ROLLUPS)


# The day being rebuilt, one row per request and (model, provider) it called (one row with
# NULLs for a request without calls): read from the base tables once, summed into each rollup.
_day_pairs = Table("rollup_day_pairs", MetaData(), *pair_columns(), prefixes=["TEMPORARY"])


def rebuild_request_slices(
    conn: Connection,
    day: date,
    spans: list[tuple[datetime, datetime]],
    hour: Any,
) -> None:
    """Write the rollups' rows (but the GPU ones) of the requests that started in `spans` (UTC
    ranges of `day`), whose rows the caller deleted; `hour`: the rows' hour (an expression of
    the request's start, or WHOLE_DAY)."""
    conn.execute(CreateTable(_day_pairs, if_not_exists=True))
    conn.execute(delete(_day_pairs))
    write_pairs(conn, day, spans, hour, _day_pairs)
    for table in ORDER:  # (none summed from another here: see `write_twin`)
        conn.execute(_insert(table, _grouped(table, _day_pairs, day)))


def write_pairs(
    conn: Connection,
    day: date,
    spans: list[tuple[datetime, datetime]],
    hour: Any,
    target: Table,
    factors: Table | None = None,
    shares: Reallocated | None = None,
) -> None:
    """The pairs of the requests that started in `spans` (UTC ranges of `day`) written into
    `target` (`_day_pairs`, or `rollup_staged_pairs` for a day being staged); `hour`: the
    rows' hour (an expression of the request's start, or WHOLE_DAY); `factors`: the true-up
    factors their trued-up costs apply (`app.warehouse.tables_trueup.trued_cost`), and
    `shares` GPU shares to read in place of some hours' stored ones (both `app.rollups.swap`)."""
    pairs = _pairs(day, spans, hour, conn.dialect.name, factors, shares)
    conn.execute(insert(target).from_select(list(pairs.selected_columns.keys()), pairs))


def write_twin(conn: Connection, table: Table, day: date) -> None:
    """A request rollup's staged rows of `day`, summed from the day's pairs in
    `rollup_staged_pairs`, or from the twin of the finer rollup it is summed from
    (`_SUMMED_FROM`, written before it: `ORDER`), written into its twin. (Only for twins,
    which hold the days being staged alone: the rows of some hours of a sliced day would be a
    filter on `hour` that a rollup's indexes do not serve, so `rebuild_request_slices` sums
    every rollup from its pairs.)"""
    derived_from = _SUMMED_FROM.get(table)
    if derived_from is None:
        query = _grouped(table, rollup_staged_pairs, day)
    else:
        query = _summed(table, TWINS[derived_from], day)
    conn.execute(_insert(TWINS[table], query))


def pair_rows(table: Table, source: Table, days: Sequence[date]) -> tuple[Select[Any], Any]:
    """A request rollup's rows of the `days` as rows of their pairs in `source`, each weighted
    as the rollup counts it (`_weighted`): ungrouped, so summing any selection of them by any
    of the rollup's keys gives what its rows give. The query, and the columns for filters."""
    p = source.c
    keys, measures, where = _weighted(table, source)
    names = [c.name for c in table.c]
    columns = {"day": p.day, **{k.name: k for k in keys}, **measures}
    query = select(*(columns[n].label(n) for n in names)).where(p.day.in_(days), *where)
    return query, p


def _pairs(
    day: date,
    spans: list[tuple[datetime, datetime]],
    hour: Any,
    dialect: str,
    factors: Table | None = None,
    shares: Reallocated | None = None,
    traces: Any = None,
) -> Select[Any]:
    """The pairs of `day` for the requests that started in `spans` (UTC ranges), with the
    request's pairs text and the flags that keep distinct counts exact; `hour`: the rows'
    hour (an expression of the request's start, or WHOLE_DAY); `factors`, `shares`: see
    `write_pairs`. `traces` (a select of trace ids) in place of `day` and `spans`: the pairs
    of those requests, on whatever day each started (`app.rollups.patch`)."""
    r, c, g = Request, LlmCall, GpuAllocation
    joined: Any = TrueUpFactor if factors is None else factors
    f: Any = TrueUpFactor if factors is None else factors.c
    share = and_(g.trace_id == c.trace_id, g.span_id == c.span_id)
    gpu_cost: Any = g.gpu_cost_nanousd
    if shares is not None:  # a call has one share, stored (of another hour) or new
        new = shares.table.c
        new_share = and_(new.trace_id == c.trace_id, new.span_id == c.span_id)
        share = and_(share, shares.kept())
        gpu_cost = func.coalesce(new.gpu_cost_nanousd, g.gpu_cost_nanousd)
    day_of: Any = literal(day, Date) if traces is None else func.date(r.started_at)
    query = (
        select(
            r.trace_id,
            day_of.label("day"),
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
            func.coalesce(func.sum(gpu_cost), 0).label("gpu_cost_nanousd"),
            (func.count(c.span_id) - func.count(c.cost_nanousd)).label("unpriced_calls"),
            func.coalesce(func.sum(trued_cost(factors)), 0).label("trued_cost_nanousd"),
            func.count(f.factor_den).label("trued_up_calls"),
        )
        .select_from(r)
        .outerjoin(c, c.trace_id == r.trace_id)
        .outerjoin(g, share)
        # At most one factor per call; its day spelled out too, so the lookup is by key.
        .outerjoin(joined, and_(factor_join(factors), f.day == func.date(c.started_at)))
        .where(in_spans(r.started_at, spans) if traces is None else r.trace_id.in_(traces))
        .group_by(r.trace_id, r.started_at, r.user_id, r.endpoint, r.team, c.model, c.provider)
    )
    if shares is not None:
        query = query.outerjoin(shares.table, new_share)
    per_pair = query.subquery("pairs")
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
        *(column for column in p if column.name != "trace_id"),  # (no rollup keeps it)
        (literal(PAIR_START) + text).label("pairs"),
        case((first == 1, 1), else_=0).label("is_first"),
        case((previous_model.is_(None), 1), (previous_model != p.model, 1), else_=0).label(
            "is_first_provider"
        ),
        case((p.model == first_model, 1), else_=0).label("is_first_model"),
    )


def _insert(target: Table, query: Select[Any]) -> Any:
    return insert(target).from_select(list(query.selected_columns.keys()), query)


def _weighted(table: Table, source: Table) -> tuple[list[Any], dict[str, Any], list[Any]]:
    """How a request rollup counts a row of the pairs in `source`: the rollup's keys (but
    `day`), its measures (name: the row's part of it) and the rows it takes. The
    distinct-request counts: by call (a table with a model), the requests that made one,
    `requests_model` counting each at its first provider of the model, `requests_provider` at
    its first model of the provider; the call sets (`rollup_daily_call_sets`), each request
    with calls once, by its pairs text; else every request once (its first row), with or
    without calls."""
    p = source.c
    one = literal(1, BigInteger)
    counts: dict[str, Any] = {"requests": p.is_first}
    where: list[Any] = []
    if "model" in table.c:
        counts = {
            "requests": one,
            "requests_model": p.is_first_provider,
            "requests_provider": p.is_first_model,
        }
        where = [p.model.is_not(None)]
    elif "pairs" in table.c:
        counts = {"requests": one}
        where = [p.is_first == 1, p.model.is_not(None)]
    keys = [p[c.name] for c in table.c if c.name != "day" and c.name not in MEASURES]
    sums = {c.name: p[c.name] for c in table.c if c.name in SUMMED}
    return keys, {**counts, **sums}, where


def _grouped(table: Table, source: Table, day: date) -> Select[Any]:
    """One rollup's rows of `day`, summed from its pairs in `source`."""
    p = source.c
    keys, measures, where = _weighted(table, source)
    return (
        select(p.day, *keys, *(func.sum(m).label(name) for name, m in measures.items()))
        .where(p.day == day, *where)
        .group_by(p.day, *keys)
    )


def _summed(table: Table, source: Table, day: date) -> Select[Any]:
    """One rollup's rows of `day`, summed from the rows of `source` (the twin of its entry in
    `_SUMMED_FROM`) just written."""
    s = source.c
    keys, sums = keys_and_sums(table, source)
    return select(s.day, s.hour, *keys, *sums).where(s.day == day).group_by(s.day, s.hour, *keys)
