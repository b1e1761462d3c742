"""Marking days whose rollups are stale, in the writer's own transaction.

A mark is a plain INSERT into `rollup_dirty` (never an upsert): concurrent writers never wait
on each other's marks, and the refresh deletes only the marks it saw (see
`app.warehouse.tables_rollup`). The day marked is the *request's* UTC day, since that is where
the rollups count a call. A batch's merge leaves each request on the day it was stored on or
on the day of the batch's candidate (`app.warehouse.load`), and a request that moves leaves a
day that must be rebuilt too; so a batch marks:

- on PostgreSQL, the stored days read back after the write, and the days requests leave, by the
  trigger of migration 0009 (under READ COMMITTED a read before the write could miss another
  writer's move committed in between);
- on SQLite, the stored days of the batch's traces read *before* the write, and its candidates'
  days (known without reading). The read is an INSERT … SELECT, which takes the database's one
  write lock before it reads, so no other writer can move a request between the read and the
  write; it costs a failed index probe per new trace, where reading back costs a row fetch
  per trace, and SQLite's upsert is much slower on a table with a trigger (migration 0010
  drops it there).

The reconciliation's rollup (`rollup_call_days`) counts a call on the *call's* UTC day, which
can differ from its request's (a request spanning midnight, a late root moving the request).
A call's day never changes, and only its write or a re-price changes what that rollup sums, so
a batch also marks the days of its calls, known from the batch without a read (on PostgreSQL in
the statement that marks the requests' days); `app.reprice` marks the days of the calls it
re-prices, `mark_all` every day with a request or a call. A mark says "this UTC day's rollups
are stale", both kinds: the refresh rebuilds them together, and readers of either read the day
from the base tables until then.

Marks name the hour too where the writer knows it (a batch, a re-price: the stored hour, the
candidates' and the calls' hours; PostgreSQL's trigger marks the hour a request leaves, migration
0015), so that on a sliced (live) day only those hours are stale (`app.rollups.refresh`); the GPU
allocation (the requests whose calls' shares it changed: `request_hours`) and the true-up (the
calls of the days whose factors it changed: `provider_call_hours`) mostly rebuild those hours'
days themselves, written with their change (`app.rollups.swap`), and mark them otherwise; a
mark without an hour (`mark_days`, `mark_all`) stales the whole day.

A batch of at most `PATCH_MAX` requests on at most `PATCH_DAYS` days, all past, summed and
unmarked (late spans of a past day: an exporter's backlog, a trace file collected late) marks
nothing: it patches those days' rollup rows in its own transaction (`app.rollups.patch`), and
marks as above only when the patch cannot be made.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable, Sequence
from datetime import date, datetime
from typing import Any, TypeVar

from sqlalchemy import Connection, Select, func, insert, select, union
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Session

from app.rollups.patch import begin as begin_patch
from app.rollups.stale import hour_of
from app.warehouse.tables import LlmCall, Request
from app.warehouse.tables_rollup import rollup_dirty
from app.warehouse.types import as_date

_CHUNK = 5000
F = TypeVar("F", bound=Callable[..., Any])


Slice = tuple[date, int | None]  # a UTC day and hour (None: the whole day)


def mark_traces(conn: Connection, trace_ids: Iterable[str], also: Iterable[Slice] = ()) -> None:
    """Mark the stored day and hour of these traces' requests, in one statement whose ids are
    one parameter (a JSON array on SQLite, an array on PostgreSQL): no SQL text built per
    call. `also`: more days and hours to mark (on PostgreSQL in the same statement)."""
    ids = list(dict.fromkeys(trace_ids))
    more = sorted(set(also), key=_order)
    if not ids:
        mark_slices(conn, more)
        return
    name = conn.dialect.name
    if name == "postgresql" and more:
        conn.exec_driver_sql(
            "INSERT INTO rollup_dirty (day, hour) SELECT started_at::date, "
            "extract(hour FROM started_at)::integer FROM requests WHERE trace_id = ANY(%s) "
            "UNION SELECT * FROM unnest(%s::date[], %s::integer[])",
            (ids, [d for d, _ in more], [h for _, h in more]),
        )
        return
    mark_slices(conn, more)
    if name == "sqlite":
        conn.exec_driver_sql(
            "INSERT INTO rollup_dirty (day, hour) SELECT DISTINCT date(r.started_at), "
            "CAST(substr(r.started_at, 12, 2) AS INTEGER) "
            "FROM json_each(?) AS j JOIN requests AS r ON r.trace_id = j.value",
            (json.dumps(ids),),
        )
    elif name == "postgresql":
        conn.exec_driver_sql(
            "INSERT INTO rollup_dirty (day, hour) SELECT DISTINCT started_at::date, "
            "extract(hour FROM started_at)::integer FROM requests WHERE trace_id = ANY(%s)",
            (ids,),
        )
    else:
        for i in range(0, len(ids), _CHUNK):
            days = (
                select(func.date(Request.started_at))
                .where(Request.trace_id.in_(ids[i : i + _CHUNK]))
                .distinct()
            )
            conn.execute(insert(rollup_dirty).from_select(["day"], days))


def request_hours(conn: Connection, trace_ids: Iterable[str]) -> set[tuple[date, int]]:
    """The stored UTC days and hours of these traces' requests."""
    ids = list(dict.fromkeys(trace_ids))
    hours: set[tuple[date, int]] = set()
    for i in range(0, len(ids), _CHUNK):
        query = (
            select(func.date(Request.started_at), hour_of(Request.started_at))
            .where(Request.trace_id.in_(ids[i : i + _CHUNK]))
            .distinct()
        )
        hours.update((as_date(d), int(h)) for d, h in conn.execute(query))
    return hours


def _order(mark: Slice) -> tuple[date, int]:
    return mark[0], -1 if mark[1] is None else mark[1]


def mark_days(conn: Connection, days: Iterable[date]) -> None:
    """Mark whole days."""
    mark_slices(conn, ((d, None) for d in days))


def mark_slices(conn: Connection, marks: Iterable[Slice]) -> None:
    """Mark days and hours (an hour None: the whole day)."""
    rows = [{"day": d, "hour": h} for d, h in sorted(set(marks), key=_order)]
    if rows:
        conn.execute(insert(rollup_dirty), rows)


def provider_call_hours(provider: str, start: datetime, end: datetime) -> Select[Any]:
    """The request days and hours (distinct) of the provider's calls that started in
    [start, end)."""
    return (
        select(func.date(Request.started_at), hour_of(Request.started_at))
        .join(LlmCall, LlmCall.trace_id == Request.trace_id)
        .where(LlmCall.provider == provider, LlmCall.started_at >= start, LlmCall.started_at < end)
        .distinct()
    )


def mark_all(conn: Connection) -> None:
    """Mark every day with requests or calls (a full rebuild)."""
    days = union(select(func.date(Request.started_at)), select(func.date(LlmCall.started_at)))
    conn.execute(insert(rollup_dirty).from_select(["day"], days))


def batch_trace_ids(batch: Any, dialect: Dialect) -> list[str]:
    """The trace ids of a loaded `app.traces.batch.Batch`, whichever form its rows took."""
    if batch.requests:
        return list(batch.requests)
    return [str(v) for v in _row_values(batch, dialect, "trace_id")]


def batch_hours(batch: Any, dialect: Dialect) -> set[tuple[date, int]]:
    """The UTC days and hours of a batch's request candidates (their `started_at`), whichever
    form its rows took: datetimes, or stored text."""
    if batch.requests:
        return {(f.started_at.date(), f.started_at.hour) for f in batch.requests.values()}
    return _text_hours(_row_values(batch, dialect, "started_at"))


def batch_call_hours(batch: Any, dialect: Dialect) -> set[tuple[date, int]]:
    """The UTC days and hours of a batch's calls (their `started_at`), whichever form its rows
    took: the hours of `rollup_call_days` that its new calls make stale."""
    if batch.calls:
        return {(c.started_at.date(), c.started_at.hour) for c in batch.calls.values()}
    values = _row_values(batch, dialect, "started_at", "calls")
    if dialect.name == "sqlite":  # stored text, many calls to an hour: slice before parsing
        return _text_hours(values)
    return {(v.date(), v.hour) for v in values}  # naive UTC datetimes


def _text_hours(values: Iterable[Any]) -> set[tuple[date, int]]:
    """'YYYY-MM-DD HH…' (or ISO 'T') texts as (day, hour), each distinct prefix parsed once."""
    return {(date.fromisoformat(t[:10]), int(t[11:13])) for t in {str(v)[:13] for v in values}}


def _row_values(batch: Any, dialect: Dialect, name: str, kind: str = "requests") -> list[Any]:
    """One column of the batch's driver rows of `kind`, requests or calls (SQLite's or
    PostgreSQL's COPY rows); PostgreSQL's request `started_at` as ISO text."""
    rows: Sequence[tuple[Any, ...]] = ()
    if batch.rows is not None:
        rows = batch.rows.requests if kind == "requests" else batch.rows.calls
    if not rows:
        return []
    from app.warehouse import load  # the driver's column order, known to load.py only

    columns = load.REQUEST_COLUMNS if kind == "requests" else load.CALL_COLUMNS
    index = columns.index(name)
    if dialect.name == "sqlite":  # the compiled statement's order; COPY's is the columns'
        index = load._param_order(dialect, kind).index(index)
    if kind == "calls":
        return [row[index] for row in rows]
    if name == "started_at" and dialect.name != "sqlite":
        return [row[index].isoformat() for row in rows]  # naive UTC datetimes
    return [row[index] for row in rows]


def marks_rollups(load_batch: F) -> F:
    """Wraps `load_batch(session, batch, …)`: in the same transaction, the days and hours of
    the batch's requests and of its calls are marked dirty (how: the module's docstring), or
    their rollup rows patched (`app.rollups.patch`)."""

    @functools.wraps(load_batch)
    def wrapper(session: Session, batch: Any, *args: Any, **kwargs: Any) -> Any:
        conn = session.connection()
        dialect = conn.dialect
        ids = batch_trace_ids(batch, dialect)
        call_hours: set[tuple[date, int]] = batch_call_hours(batch, dialect)
        candidates = batch_hours(batch, dialect)
        patch = begin_patch(session, ids, candidates, call_hours)
        if patch is not None:  # a past day's late spans: its rows patched, no mark
            counts = load_batch(session, batch, *args, **kwargs)
            if not patch.apply(session):
                mark_slices(conn, patch.hours)
            return counts
        if dialect.name == "sqlite":
            hours: set[Slice] = {*call_hours, *candidates}
            mark_traces(conn, ids)  # where they are now: a request may leave its hour
            counts = load_batch(session, batch, *args, **kwargs)
            mark_slices(conn, hours)
        else:
            counts = load_batch(session, batch, *args, **kwargs)
            mark_traces(conn, ids, also=set(call_hours))
        return counts

    return wrapper  # type: ignore[return-value]
