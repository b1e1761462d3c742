"""Merging a change into rollup rows, in the caller's transaction: `merge` sums a change's
signed sums (a *delta*, by group) into a rollup's rows of the groups it touches, and
`merge_weeks` the same change into the weekly rollups' rows of the weeks whose sums hold its
days (`app.rollups.weeks`). The rows come out as a rebuild writes them: one per group, a group
whose sums are all zero left out. What `app.rollups.patch` writes late spans with.

Each rollup has a temporary *work* table of its columns and `src` (0: the change, 1: the
stored rows of the groups it touches); `prepare` creates them on a connection.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import date
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    Date,
    Index,
    MetaData,
    Select,
    SmallInteger,
    Table,
    and_,
    delete,
    exists,
    func,
    literal,
    literal_column,
    or_,
    select,
)
from sqlalchemy.schema import CreateIndex, CreateTable

from app.rollups.day_pairs import ORDER, _insert
from app.rollups.weeks import week_of
from app.warehouse.tables_rollup import (
    MEASURES,
    rollup_call_days,
    rollup_daily_gpu,
    rollup_daily_gpu_user_totals,
    rollup_daily_gpu_users,
)
from app.warehouse.tables_weekly import WEEKLY, rollup_weeks
from app.warehouse.types import as_date

# The GPU rollups summed by key (the spread requests' are listed, not summed).
GPU = (rollup_daily_gpu, rollup_daily_gpu_users, rollup_daily_gpu_user_totals)
_NULL = "\x1d"  # a nullable key's NULL, for PostgreSQL's hashable comparison of keys


def temporary(name: str, *columns: Column[Any]) -> Table:
    """A temporary table (emptied at commit on PostgreSQL; SQLite keeps its rows)."""
    return Table(
        name, MetaData(), *columns, prefixes=["TEMPORARY"], postgresql_on_commit="DELETE ROWS"
    )


# Per rollup: its rows of the groups a change touches (src 1) and the change (src 0), summed
# into the rows written back.
_WORK = {
    table: temporary(
        f"patch_{table.name}",
        *(Column(c.name, c.type) for c in table.c),
        Column("src", SmallInteger),
    )
    for table in (*ORDER, *GPU, rollup_call_days, *WEEKLY.values())
}
# SQLite: each work table indexed by its keys, so that the join to its rollup reads the day's
# rows once (by the rollup's day index), each looking up its group here, rather than the day's
# rows once per group of the change.
_KEYED = [
    Index(f"ix_{work.name}", *(c for c in work.c if c.name not in (*MEASURES, "src")))
    for work in _WORK.values()
]


def prepare(conn: Connection) -> None:
    """The work tables (and, on SQLite, their indexes) on this connection."""
    for work in _WORK.values():
        conn.execute(CreateTable(work, if_not_exists=True))
    if conn.dialect.name == "sqlite":
        for index in _KEYED:
            conn.execute(CreateIndex(index, if_not_exists=True))


def insert_from(conn: Connection, target: Table, query: Select[Any]) -> None:
    conn.execute(_insert(target, query))


def summed_weeks(conn: Connection, days: Collection[date]) -> dict[date, list[date]]:
    """Of `days`, those that their week's weekly rows hold (`app.rollups.weeks`), by week."""
    w = rollup_weeks.c
    found = conn.execute(
        select(w.week, w.days).where(w.week.in_(sorted({week_of(d) for d in days})))
    )
    held = {as_date(week): int(n) for week, n in found}
    weeks: dict[date, list[date]] = {}
    for day in sorted(days):
        week = week_of(day)
        if (day - week).days < held.get(week, 0):
            weeks.setdefault(week, []).append(day)
    return weeks


def merge_weeks(conn: Connection, daily: Table, weeks: dict[date, list[date]]) -> None:
    """The change just merged into `daily` (its work table's rows of src 0), merged into its
    weekly rollup too, for the weeks whose sums hold its days."""
    weekly, w = WEEKLY[daily], _WORK[daily].c
    keys = [w[c.name] for c in weekly.c if c.name != "week" and c.name not in MEASURES]
    sums = [func.sum(w[c.name]).label(c.name) for c in weekly.c if c.name in MEASURES]
    for week, days in weeks.items():
        delta = select(literal(week, Date).label("week"), *keys, *sums)
        delta = delta.where(w.src == 0, w.day.in_(days)).group_by(*keys)
        merge(conn, weekly, delta, [week], by="week")


def merge(
    conn: Connection, table: Table, delta: Select[Any], days: Collection[date], by: str = "day"
) -> None:
    """`delta` (the rollup's columns: a change's signed sums by group) merged into the rows of
    `table` on `days` (of its column `by`): the rows of the groups it touches summed with it
    and written back, a group whose sums are all zero left out."""
    work = _WORK[table]
    w, t = work.c, table.c
    conn.execute(delete(work))  # (a weekly one is merged once per week)
    keys = [c.name for c in table.c if c.name not in MEASURES]
    sums = [c.name for c in table.c if c.name in MEASURES]
    insert_from(conn, work, delta.add_columns(literal(0).label("src")))
    if conn.dialect.name == "postgresql":  # its size, for the planner: a hash join, not loops
        conn.exec_driver_sql(f"ANALYZE {work.name}")
    same = and_(w.src == 0, *(_same(conn, w[k], t[k]) for k in keys))
    on_days = t[by].in_(sorted(days))
    stored = select(*t, literal(1).label("src")).select_from(work.join(table, same))
    insert_from(conn, work, stored.where(on_days))
    if conn.dialect.name == "sqlite":  # driven from the change's few rows, by rowid
        rowid: Any = literal_column(f"{table.name}.rowid")
        matched = select(rowid).select_from(work.join(table, same)).where(on_days)
        conn.execute(delete(table).where(rowid.in_(matched)))
    else:  # a hash semi-join on the day's rows
        conn.execute(delete(table).where(on_days, exists(select(literal(1)).where(same))))
    merged = (
        select(*(w[k] for k in keys), *(func.sum(w[s]).label(s) for s in sums))
        .group_by(*(w[k] for k in keys))
        .having(or_(*(func.sum(w[s]) != 0 for s in sums)))
    )
    insert_from(conn, table, merged)


def _same(conn: Connection, a: Any, b: Any) -> Any:
    """Key `a` equals key `b`, NULL equal to NULL: SQLite's IS (which its indexes serve), and
    on PostgreSQL a comparison of non-NULL values, which a hash join can take."""
    if not b.nullable:
        return a == b
    if conn.dialect.name == "sqlite":
        return a.is_(b)
    return func.coalesce(a, _NULL) == func.coalesce(b, _NULL)
