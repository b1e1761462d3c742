"""Marking days whose rollups are stale, in the writer's own transaction.

A mark is a plain INSERT into `rollup_dirty` (never an upsert): concurrent writers never wait
on each other's marks, and the refresh deletes only the marks it saw (see
`app.warehouse.tables_rollup`). The day marked is the *request's* UTC day as stored after the
write, read back from `requests`, since that is where the rollups count a call; a request that
moves to another day also marks the day it left (the trigger of migration 0009).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from datetime import date, datetime
from typing import Any, TypeVar

from sqlalchemy import Connection, and_, func, insert, select
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Session

from app.warehouse.tables import Request
from app.warehouse.tables_gpu import GpuAllocation
from app.warehouse.tables_rollup import rollup_dirty

_CHUNK = 5000
F = TypeVar("F", bound=Callable[..., Any])


def mark_traces(conn: Connection, trace_ids: Iterable[str]) -> None:
    """Mark the stored days of these traces' requests."""
    ids = list(dict.fromkeys(trace_ids))
    for i in range(0, len(ids), _CHUNK):
        days = (
            select(func.date(Request.started_at))
            .where(Request.trace_id.in_(ids[i : i + _CHUNK]))
            .distinct()
        )
        conn.execute(insert(rollup_dirty).from_select(["day"], days))


def mark_days(conn: Connection, days: Iterable[date]) -> None:
    rows = [{"day": d} for d in sorted(set(days))]
    if rows:
        conn.execute(insert(rollup_dirty), rows)


def mark_allocated(conn: Connection, start: datetime, end: datetime) -> None:
    """Mark the request days of the calls whose GPU allocation falls in [start, end)."""
    days = (
        select(func.date(Request.started_at))
        .join(GpuAllocation, GpuAllocation.trace_id == Request.trace_id)
        .where(and_(GpuAllocation.hour >= start, GpuAllocation.hour < end))
        .distinct()
    )
    conn.execute(insert(rollup_dirty).from_select(["day"], days))


def mark_all(conn: Connection) -> None:
    """Mark every day with requests (a full rebuild)."""
    days = select(func.date(Request.started_at)).distinct()
    conn.execute(insert(rollup_dirty).from_select(["day"], days))


def batch_trace_ids(batch: Any, dialect: Dialect) -> list[str]:
    """The trace ids of a loaded `app.traces.batch.Batch`, whichever form its rows took."""
    if batch.requests:
        return list(batch.requests)
    rows: Sequence[tuple[Any, ...]] = batch.rows.requests if batch.rows is not None else ()
    if not rows:
        return []
    from app.warehouse import load  # the driver's column order, known to load.py only

    index = 0
    if dialect.name == "sqlite":  # the compiled statement's order; COPY's is the columns'
        order = load._param_order(dialect, "requests")
        index = order.index(load.REQUEST_COLUMNS.index("trace_id"))
    return [str(row[index]) for row in rows]


def marks_rollups(load_batch: F) -> F:
    """Wraps `load_batch(session, batch, …)`: after the batch is written, in the same
    transaction, the days of its traces' requests are marked dirty."""

    @functools.wraps(load_batch)
    def wrapper(session: Session, batch: Any, *args: Any, **kwargs: Any) -> Any:
        ids = batch_trace_ids(batch, session.get_bind().dialect)
        counts = load_batch(session, batch, *args, **kwargs)
        mark_traces(session.connection(), ids)
        return counts

    return wrapper  # type: ignore[return-value]
