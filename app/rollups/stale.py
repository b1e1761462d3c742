"""What the rollups don't hold yet, and where to read it instead.

A rollup row is stale when its day (or, on a sliced day, its hour) is marked in `rollup_dirty`
(`app.rollups.dirty`): `dirty_in` reads the marks of a range as a `Stale`, whose `skip` leaves
those rows out of a rollup query and whose `covers` picks the same time from the base tables,
so that the two parts add up to the base tables' answer. A day stale whole whose rebuild is
staged after its every mark (`app.warehouse.tables_staged`) is `staged`: the rollups' readers
read its rows in the rollups' staged twins instead (`unstaged` is what they still read from
the base tables), or, for a request rollup whose twin is not written yet (`paired`), from the
day's staged pairs. Also the SQL helpers the rollups
share: a stored timestamp's UTC hour (`hour_of`), a time-spans condition (`in_spans`), a
column SQLite's planner must not use an index for (`unindexed`), and a rollup's keys and summed
measures (`keys_and_sums`).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Connection, Integer, Table, and_, func, or_, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from app.warehouse.tables_rollup import (
    MEASURES,
    WHOLE_DAY,
    rollup_call_days,
    rollup_daily,
    rollup_dirty,
    rollup_sliced,
)
from app.warehouse.tables_staged import (
    TWINS,
    rollup_staged_marks,
    rollup_staged_paired,
    rollup_staged_pairs,
)
from app.warehouse.types import as_date


def day_conditions(day: Any, since: date | None, until: date | None) -> list[ColumnElement[bool]]:
    """A rollup's days in [since, until)."""
    conds: list[ColumnElement[bool]] = []
    if since is not None:
        conds.append(day >= since)
    if until is not None:
        conds.append(day < until)
    return conds


def keys_and_sums(table: Table, source: Table | None = None) -> tuple[list[Any], list[Any]]:
    """A rollup's key columns (all but `day`, `hour` and the measures) and its measures summed
    (labelled by name): what summing its rows over time (hours into a day, days into a week)
    groups by and adds up; of `source`'s columns of those names, to sum a finer rollup's rows
    into this one's."""
    of = (source if source is not None else table).c
    keys = [of[col.name] for col in table.c if col.name not in ("day", "hour", *MEASURES)]
    sums = [func.sum(of[col.name]).label(col.name) for col in table.c if col.name in MEASURES]
    return keys, sums


def skip(stale: Stale | None, table: Any, day: str = "day") -> list[ColumnElement[bool]]:
    """The conditions that leave a rollup's `stale` rows out (`table`: a table or its `.c`;
    `day`: the column that the marks' days are of)."""
    if not stale:
        return []
    columns = getattr(table, "c", table)
    return stale.skip(columns[day], columns.hour)


def day_ranges(days: Collection[date]) -> list[tuple[date, date]]:
    """`days` as [first, end) ranges, consecutive days merged."""
    ranges: list[tuple[date, date]] = []
    for day in sorted(days):
        if ranges and ranges[-1][1] == day:
            ranges[-1] = (ranges[-1][0], day + timedelta(days=1))
        else:
            ranges.append((day, day + timedelta(days=1)))
    return ranges


# A sliced day with more stale hours than this is read whole from the base tables: one range
# scan, and a shorter skip condition for the rollups.
MAX_STALE_HOURS = 6


@dataclass(frozen=True, slots=True)
class Stale:
    """What the rollups don't hold yet, for readers to take from the base tables instead:
    whole UTC `days`, and `hours` (day, UTC hour) of sliced days (`rollup_sliced`), whose
    other hours' rows are current. A request (or call) starts in one hour, so the rollups'
    rows but these and the base tables' rows of these add up to the base tables' answer."""

    days: tuple[date, ...] = ()
    hours: tuple[tuple[date, int], ...] = ()
    # Of `days`, those staged after every mark they have (`app.warehouse.tables_staged`): the
    # rollups' readers read their rows in the rollups' twins (`app.rollups.query`, `.gpu`,
    # `.call_days`); a reader that does not still reads `covers` from the base tables.
    staged: tuple[date, ...] = ()
    # Of `staged` days, the rollups (day, rollup name) whose twins are not written yet: a
    # request rollup's rows are read from the day's staged pairs
    # (`app.rollups.day_pairs.pair_rows`); the readers of the others take the day as unstaged
    # (`ready`).
    paired: tuple[tuple[date, str], ...] = ()

    def __bool__(self) -> bool:
        return bool(self.days or self.hours)

    def unstaged(self) -> Stale:
        """What the base tables answer for a reader of the staged twins: all but the staged
        days."""
        return Stale(tuple(d for d in self.days if d not in self.staged), self.hours)

    def ready(self, *tables: Table) -> Stale:
        """For a reader of these rollups' twins: staged only the days whose twins of them
        are all written (the others are read from the base tables)."""
        names = {table.name for table in tables}
        waiting = {day for day, name in self.paired if name in names}
        staged = tuple(d for d in self.staged if d not in waiting)
        return Stale(self.days, self.hours, staged, self.paired)

    def skip(self, day: Any, hour: Any) -> list[ColumnElement[bool]]:
        """Conditions on a rollup's `day` and `hour` columns that leave the stale rows out."""
        conds: list[ColumnElement[bool]] = []
        if self.days:
            conds.append(day.not_in(self.days))
        by_day: dict[date, list[int]] = {}
        for d, h in self.hours:
            by_day.setdefault(d, []).append(h)
        if by_day:
            stale = [and_(day == d, hour.in_(hs)) for d, hs in sorted(by_day.items())]
            conds.append(~or_(*stale))
        return conds

    def periods(self) -> list[tuple[datetime, datetime]]:
        """The stale time as [start, end) UTC ranges, consecutive ones merged."""
        spans = [(_midnight(lo), _midnight(hi)) for lo, hi in day_ranges(self.days)]
        spans += [
            (_midnight(d) + timedelta(hours=h), _midnight(d) + timedelta(hours=h + 1))
            for d, h in self.hours
        ]
        merged: list[tuple[datetime, datetime]] = []
        for lo, hi in sorted(spans):
            if merged and merged[-1][1] >= lo:
                merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
            else:
                merged.append((lo, hi))
        return merged

    def covers(self, column: Any) -> ColumnElement[bool]:
        """`column` (a UTC timestamp: a request's or a call's start) in the stale time, as
        ranges that its index can serve."""
        return in_spans(column, self.periods())

    def within(self, since: date | None, until: date | None) -> Stale:
        """Only the stale days (and hours) in [since, until)."""

        def keep(d: date) -> bool:
            return (since is None or d >= since) and (until is None or d < until)

        return Stale(
            tuple(d for d in self.days if keep(d)),
            tuple(x for x in self.hours if keep(x[0])),
            tuple(d for d in self.staged if keep(d)),
            tuple(x for x in self.paired if keep(x[0])),
        )


def in_spans(column: Any, spans: Sequence[tuple[datetime, datetime]]) -> ColumnElement[bool]:
    """`column` (a UTC timestamp) in one of the [start, end) `spans`: ranges its index serves."""
    return or_(*(and_(column >= lo, column < hi) for lo, hi in spans))


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def sliced_in(conn: Connection, since: date | None, until: date | None) -> set[date]:
    """The days in [since, until) whose rollup rows are hour slices."""
    d = rollup_sliced.c.day
    days = conn.execute(select(d).where(*day_conditions(d, since, until))).scalars()
    return {as_date(v) for v in days}


def dirty_in(conn: Connection, since: date | None, until: date | None) -> Stale:
    """What waits for a rebuild in the days [since, until): a marked day is stale whole, but a
    sliced day whose marks all name an hour, which has only those hours stale (at most
    MAX_STALE_HOURS, else the whole day). A day stale whole is `staged` when its rows were
    staged after every mark it has; its request rollups whose twins are not written yet are
    `paired`."""
    m, s = rollup_dirty.c, rollup_staged_marks.c
    query = (
        select(
            m.day,
            m.hour,
            rollup_sliced.c.day.is_not(None).label("sliced"),
            s.mark_id.is_not(None).label("staged"),
        )
        .distinct()
        .select_from(
            rollup_dirty.outerjoin(rollup_sliced, rollup_sliced.c.day == m.day).outerjoin(
                rollup_staged_marks, s.mark_id == m.id
            )
        )
        .where(*day_conditions(m.day, since, until))
    )
    marks: dict[date, set[int | None]] = {}
    unstaged: set[date] = set()
    for value, hour, sliced, staged in conn.execute(query):
        day = as_date(value)
        marks.setdefault(day, set()).add(hour if sliced else None)
        if not staged:
            unstaged.add(day)
    whole = {day for day, hs in marks.items() if None in hs or len(hs) > MAX_STALE_HOURS}
    hours = sorted(
        (day, h) for day, hs in marks.items() if day not in whole for h in hs if h is not None
    )
    staged = whole - unstaged
    paired: list[tuple[date, str]] = []
    if staged:
        p = rollup_staged_paired.c
        rows = conn.execute(select(p.day, p.rollup).where(p.day.in_(staged)))
        paired = sorted((as_date(day), name) for day, name in rows)
    return Stale(tuple(sorted(whole)), tuple(hours), tuple(sorted(staged)), tuple(paired))


def staged_by_hour(conn: Connection, day: date) -> bool | None:
    """Whether `day`'s staged rows (`app.warehouse.tables_staged`) are hour slices (staged as
    a live day) or whole-day rows; None when it has none."""
    for table in (TWINS[rollup_daily], rollup_staged_pairs, TWINS[rollup_call_days]):
        hour = conn.execute(select(table.c.hour).where(table.c.day == day).limit(1)).scalar()
        if hour is not None:
            return bool(hour != WHOLE_DAY)
    return None


class hour_of(FunctionElement[int]):
    """The UTC hour (0-23) of a stored timestamp (naive UTC on both backends)."""

    type = Integer()
    inherit_cache = True


@compiles(hour_of)
def _sqlite_hour(element: hour_of, compiler: SQLCompiler, **kw: Any) -> str:
    # SQLite stores 'YYYY-MM-DD HH:MM:SS[.ffffff]': the hour is the text's 12th and 13th.
    return f"CAST(substr({compiler.process(element.clauses, **kw)}, 12, 2) AS INTEGER)"


@compiles(hour_of, "postgresql")
def _pg_hour(element: hour_of, compiler: SQLCompiler, **kw: Any) -> str:
    return f"CAST(extract(hour FROM {compiler.process(element.clauses, **kw)}) AS INTEGER)"


class unindexed(FunctionElement[Any]):
    """A column that SQLite's planner will not take an index for (`+column`: the documented
    no-op that disqualifies a term), e.g. to make it drive a query from another table's index;
    the column itself elsewhere."""

    inherit_cache = True

    def __init__(self, column: Any) -> None:
        super().__init__(column)
        self.type = column.type


@compiles(unindexed)
def _unindexed(element: unindexed, compiler: SQLCompiler, **kw: Any) -> str:
    return str(compiler.process(element.clauses, **kw))


@compiles(unindexed, "sqlite")
def _sqlite_unindexed(element: unindexed, compiler: SQLCompiler, **kw: Any) -> str:
    return f"+{compiler.process(element.clauses, **kw)}"
