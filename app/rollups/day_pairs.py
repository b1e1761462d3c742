"""The rollups of the requests (all but the GPU ones and `rollup_call_days`) of one day or some
of its hours, summed from the base tables in one pass (`app.rollups.refresh.rebuild`).

The requests that started in the time being rebuilt are read once, with their calls, GPU shares
and true-up factors (by primary key), into a pairs table: one row per request and
(model, provider) it called, one row with NULLs for a request without calls, with the request's
set of pairs as one text and the flags that keep distinct-request counts exact (two sorts of
those rows in all). Each rollup is then a GROUP BY of that table (`rows_of`, summed).

Some hours of a live day go through a temporary table, in the rebuild's transaction. A whole
day is staged first (`stage`, its own transaction: `app.warehouse.tables_staged`), so that
readers sum its staged rows (`rows_of`) while its rollups are written from them.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
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
from app.warehouse.tables_gpu import GpuAllocation
from app.warehouse.tables_rollup import (
    GPU_ROLLUPS,
    PAIR_MID,
    PAIR_START,
    ROLLUPS,
    rollup_dirty,
)
from app.warehouse.tables_staged import pair_columns
from app.warehouse.tables_staged import rollup_staged_marks as STAGED_MARKS
from app.warehouse.tables_staged import rollup_staged_pairs as STAGED
from app.warehouse.tables_trueup import TrueUpFactor, factor_join, trued_cost


def rebuild_request_slices(
    conn: Connection, day: date, spans: list[tuple[datetime, datetime]], hour: Any
) -> None:
    """Write the rollups' rows (but the GPU ones) of the requests that started in `spans` (UTC
    ranges of `day`), whose rows the caller deleted; `hour`: the rows' hour (an expression of
    the request's start, or WHOLE_DAY)."""
    conn.execute(CreateTable(_day_pairs, if_not_exists=True))
    conn.execute(delete(_day_pairs))
    _fill(conn, _day_pairs, day, spans, hour)
    write_rollups(conn, day, _day_pairs)


def stage(conn: Connection, day: date, spans: list[tuple[datetime, datetime]], hour: Any) -> None:
    """Stage `day` (`app.warehouse.tables_staged`): its marks, then the pairs of the requests
    that started in `spans` (the whole day), replacing what was staged of it before. The marks
    are read first: on PostgreSQL each statement sees the writes committed before it, so every
    mark listed is of a write that the pairs hold, and a write they may hold whose mark is
    not listed only sends readers to the base tables."""
    conn.execute(delete(STAGED_MARKS).where(STAGED_MARKS.c.day == day))
    conn.execute(delete(STAGED).where(STAGED.c.day == day))
    marks = select(rollup_dirty.c.id, rollup_dirty.c.day).where(rollup_dirty.c.day == day)
    conn.execute(insert(STAGED_MARKS).from_select(["mark_id", "day"], marks))
    _fill(conn, STAGED, day, spans, hour)


def write_rollups(conn: Connection, day: date, pairs: Table) -> None:
    """Write the rollups' rows (but the GPU ones) of `day` from its rows in `pairs`
    (`_day_pairs`, or the staged ones)."""
    for table in ROLLUPS:
        if table not in GPU_ROLLUPS:  # (app.rollups.gpu)
            conn.execute(_insert(table, day, pairs))


def _fill(
    conn: Connection, pairs: Table, day: date, spans: list[tuple[datetime, datetime]], hour: Any
) -> None:
    query = _pairs(day, spans, hour, conn.dialect.name)
    conn.execute(insert(pairs).from_select(list(query.selected_columns.keys()), query))


# The day being rebuilt, one row per request and (model, provider) it called (one row with
# NULLs for a request without calls): read from the base tables once, summed into each rollup.
_day_pairs = Table(
    "rollup_day_pairs",
    MetaData(),
    Column("day", Date),
    *pair_columns(),
    prefixes=["TEMPORARY"],
)


def _pairs(
    day: date, spans: list[tuple[datetime, datetime]], hour: Any, dialect: str
) -> Select[Any]:
    """The rows of a pairs table (`_day_pairs`, `rollup_staged_pairs`) of `day` for the
    requests that started in `spans` (UTC ranges), with the request's pairs text and the flags
    that keep distinct counts exact; `hour`: the rows' hour (an expression of the request's
    start, or WHOLE_DAY)."""
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
        literal(day, Date).label("day"),
        *p,
        (literal(PAIR_START) + text).label("pairs"),
        case((first == 1, 1), else_=0).label("is_first"),
        case((previous_model.is_(None), 1), (previous_model != p.model, 1), else_=0).label(
            "is_first_provider"
        ),
        case((p.model == first_model, 1), else_=0).label("is_first_model"),
    )


def rows_of(table: Table, pairs: Table) -> Select[Any]:
    """`pairs` rows (`_day_pairs`, `rollup_staged_pairs`) as rows of a request rollup, before
    grouping: its columns, with the distinct-request counts that add up. By call (a table with
    a model), a row per call group, of the requests that made one: `requests` 1,
    `requests_model` on the request's first provider of the model, `requests_provider` on its
    first model of the provider. The call sets (`rollup_daily_call_sets`): each request with
    calls once, by its pairs text. Else every request once (its first row), with or without
    calls. Summed by the table's keys, they are the table's rows."""
    p = pairs.c
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
    columns = [(counts[c.name] if c.name in counts else p[c.name]).label(c.name) for c in table.c]
    return select(*columns).where(*where)


def _insert(table: Table, day: date, pairs: Table) -> Any:
    """One rollup's rows of `day`, summed from its rows in `pairs`."""
    rows = rows_of(table, pairs).where(pairs.c.day == day).subquery()
    keys, sums = keys_and_sums(table)
    by = [rows.c[c.name] for c in (table.c.day, table.c.hour, *keys)]
    measures = [func.sum(rows.c[s.name]).label(s.name) for s in sums]
    query = select(*by, *measures).group_by(*by)
    return insert(table).from_select([c.name for c in query.selected_columns], query)
