"""The weekly rollups (`app.warehouse.tables_weekly`): summing whole weeks, and reading them.

- `build_weeks` (the refresh's last step, under its lock) sums each week as far as its days
  are rebuilt whole (none live, sliced or marked): whole weeks, and the week of the live days
  up to them. One week per transaction, listed in `rollup_weeks` with its days in it.
- `invalidate` (in the transaction of a day's rebuild or compaction) takes that day's week off
  `rollup_weeks`; its rows stay until the week is summed again, unread.
- `weeks_in` (in a reader's snapshot) gives the current weeks whose summed days lie in a range
  and hold no stale day; `source` reads a daily rollup's rows of a range as those weeks' rows plus
  the daily rows of the other days, which add up to the same answer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from datetime import date, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    Table,
    and_,
    delete,
    func,
    insert,
    literal,
    or_,
    select,
    union_all,
)
from sqlalchemy.sql import Select, Subquery

from app.rollups.stale import Stale, day_conditions, keys_and_sums
from app.warehouse.tables_rollup import (
    WHOLE_DAY,
    rollup_daily,
    rollup_dirty,
    rollup_sliced,
)
from app.warehouse.tables_weekly import WEEKLY, rollup_weeks
from app.warehouse.types import as_date

log = logging.getLogger("spendguard.rollups")

WEEK = timedelta(days=7)
Week = tuple[date, int]  # a week's Monday, and how many of its days (1-7) its sums hold


def week_of(day: date) -> date:
    """The Monday of `day`'s week."""
    return day - timedelta(days=day.weekday())


def invalidate(conn: Connection, days: Iterable[date]) -> None:
    """Take the weeks whose sums hold one of `days` off the current ones (those days' daily
    rows are being replaced); a week summed up to before such a day stays."""
    w = rollup_weeks.c
    held = [and_(w.week == week_of(d), w.days > (d - week_of(d)).days) for d in sorted(set(days))]
    if held:
        conn.execute(delete(rollup_weeks).where(or_(*held)))


def build_weeks(engine: Engine, live_from: date | None) -> int:
    """Sum each week as far as its days (from the Monday) precede `live_from` (the first live
    day) and are neither sliced nor marked, where that is at least two days and more than its
    current sums hold; the number of weeks summed. Call it under the refresh lock: no day's rows
    change meanwhile (a mark may be written, and readers skip a week with a mark)."""
    if live_from is None:
        return 0
    with engine.connect() as conn:
        first, last = conn.execute(
            select(func.min(rollup_daily.c.day), func.max(rollup_daily.c.day))
        ).one()
        if first is None:
            return 0
        w = rollup_weeks.c
        current = {as_date(k): int(n) for k, n in conn.execute(select(w.week, w.days))}
        blocked = {as_date(v) for v in conn.execute(_blocking()).scalars()}
    todo: list[Week] = []
    first_day = as_date(first)
    week = week_of(first_day)
    while week <= as_date(last) and week < live_from:
        days = 0
        while days < 7 and week + timedelta(days=days) < live_from:
            if week + timedelta(days=days) in blocked:
                break
            days += 1
        # (Days before the first with requests hold nothing to sum.)
        if days >= 2 and week + timedelta(days=days) > first_day and current.get(week, 0) < days:
            todo.append((week, days))
        week += WEEK
    for week, days in todo:
        with engine.begin() as conn:
            _sum_week(conn, week, days)
    if todo:
        log.info("rollups: %d week(s) summed", len(todo))
    return len(todo)


def _blocking() -> Any:
    """The days a week's sums cannot hold: sliced or marked."""
    return select(rollup_sliced.c.day).union(select(rollup_dirty.c.day))


def _sum_week(conn: Connection, week: date, days: int) -> None:
    """Replace `week`'s weekly rows by the sums of its first `days` days' daily rows, and list
    it so."""
    for daily, weekly in WEEKLY.items():
        c = daily.c
        keys, sums = keys_and_sums(daily)
        query = (
            select(literal(week, weekly.c.week.type).label("week"), *keys, *sums)
            .where(c.day >= week, c.day < week + timedelta(days=days))
            .group_by(*keys)
        )
        conn.execute(delete(weekly).where(weekly.c.week == week))
        names = [col.name for col in query.selected_columns]
        conn.execute(insert(weekly).from_select(names, query))
    conn.execute(delete(rollup_weeks).where(rollup_weeks.c.week == week))
    conn.execute(insert(rollup_weeks).values(week=week, days=days))


def weeks_in(
    conn: Connection, since: date | None, until: date | None, stale: Stale | None
) -> tuple[Week, ...]:
    """The current weeks whose summed days lie in [since, until) and none of which is stale,
    as (Monday, days summed)."""
    if since is not None and until is not None and until - since < timedelta(days=2):
        return ()
    w = rollup_weeks.c
    query = select(w.week, w.days).where(*day_conditions(w.week, since, until))
    stale_days = set(stale.days) | {d for d, _ in stale.hours} if stale else set()
    found = []
    for value, n in conn.execute(query):
        week, days = as_date(value), int(n)
        end = week + timedelta(days=days)
        if until is not None and end > until:
            continue
        if any(week <= d < end for d in stale_days):
            continue
        found.append((week, days))
    return tuple(sorted(found))


def source(
    daily: Table,
    weeks: Sequence[Week],
    since: date | None,
    until: date | None,
    filters: Callable[[Any], list[ColumnElement[bool]]],
    day_conds: Callable[[Any], list[ColumnElement[bool]]],
    more: Sequence[Select[Any]] = (),
) -> Subquery:
    """`daily`'s rows of [since, until) as its weekly rows of `weeks` and its own rows of the
    other days: a subquery with the daily table's columns (a weekly row's `day` is its Monday,
    its `hour` WHOLE_DAY). `filters(columns)`, the filters' conditions, apply to every part;
    `day_conds(columns)`, the conditions on `day` and `hour` (the stale rows left out, hours),
    to the daily rows only: `weeks` must lie in the range and hold no stale day (`weeks_in`).
    The daily rows are read one stretch of days between weeks at a time, each an index range.
    `more`: other rows of the daily table's columns (staged days'), in the same subquery."""
    weekly = WEEKLY[daily]
    d, w = daily.c, weekly.c
    parts: list[Select[Any]] = [
        select(*d).where(*day_conditions(d.day, lo, hi), *filters(d), *day_conds(d))
        for lo, hi in _between(since, until, weeks)
    ]
    columns = [
        w.week.label("day") if c.name == "day" else
        literal(WHOLE_DAY).label("hour") if c.name == "hour" else
        w[c.name]
        for c in d
    ]  # fmt: skip
    parts.append(select(*columns).where(w.week.in_([k for k, _ in weeks]), *filters(w)))
    return union_all(*parts, *more).subquery(daily.name)


def _between(
    since: date | None, until: date | None, weeks: Sequence[Week]
) -> list[tuple[date | None, date | None]]:
    """The stretches of [since, until) that `weeks` (sorted, in the range) leave, as [from, to)
    ranges (None: open)."""
    stretches: list[tuple[date | None, date | None]] = []
    start = since
    for week, days in weeks:
        if start is None or start < week:
            stretches.append((start, week))
        start = week + timedelta(days=days)
    if until is None or start is None or start < until:
        stretches.append((start, until))
    return stretches
