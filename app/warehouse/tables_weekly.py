"""Weekly rollups: the big daily rollups summed over whole UTC weeks (Monday to Sunday).

The per-user rollups and the per-model ones (calls, call sets): their rows repeat day after
day (the same user, endpoint, model and call set), so a week of them sums into about a seventh
of the rows, and a 90-day question reads twelve weeks and a few days instead of 90 days
(`app.rollups.weeks`). `rollup_daily` (a few hundred rows a day) has none. Each weekly table
has its daily table's columns but `day` and `hour`, and `week`, the week's Monday; its rows are
the sums of the daily table's rows of those seven days, grouped by every other key, so they add
up like the days.

`rollup_weeks` lists the weeks whose rows are current, with how many days from the Monday they
sum: a week is summed (`app.rollups.weeks`) as far as its days are rebuilt whole (not live,
sliced or marked), so the week of the live days is summed up to them, and a day's rebuild or
compaction takes its week off the list in the same transaction, so a reader (in one snapshot)
uses a week's rows only while they equal the sum of its days. A week with a day waiting for
its rebuild (a mark) is not used either: the reader takes the week's other days from the daily
rows and that day from the base tables.
"""

from __future__ import annotations

from sqlalchemy import Column, Date, Index, SmallInteger, Table

from app.warehouse.tables import Base
from app.warehouse.tables_rollup import (
    rollup_daily_call_sets,
    rollup_daily_calls,
    rollup_daily_set_calls,
    rollup_daily_user_calls,
    rollup_daily_user_set_calls,
    rollup_daily_user_totals,
    rollup_daily_users,
)

_metadata = Base.metadata


def _weekly(daily: Table, *indexed: str) -> Table:
    """The weekly table of `daily`: `week` in place of `day` and `hour`, the same keys and
    measures, indexed by week and by (each of `indexed`, week) like the daily one by day."""
    columns = [
        Column(c.name, c.type, nullable=c.nullable)
        for c in daily.c
        if c.name not in {"day", "hour"}
    ]
    return Table(
        daily.name.replace("rollup_daily_", "rollup_weekly_", 1),
        _metadata,
        Column("week", Date, nullable=False),
        *columns,
        Index(None, "week"),
        *(Index(None, name, "week") for name in indexed),
    )


rollup_weekly_calls = _weekly(rollup_daily_calls)
rollup_weekly_call_sets = _weekly(rollup_daily_call_sets)
rollup_weekly_set_calls = _weekly(rollup_daily_set_calls)
rollup_weekly_users = _weekly(rollup_daily_users, "user_id", "endpoint")
rollup_weekly_user_totals = _weekly(rollup_daily_user_totals, "user_id")
rollup_weekly_user_calls = _weekly(rollup_daily_user_calls, "model", "user_id")
rollup_weekly_user_set_calls = _weekly(rollup_daily_user_set_calls, "model", "user_id")

# Each daily rollup that has a weekly one, and that one.
WEEKLY = {
    rollup_daily_calls: rollup_weekly_calls,
    rollup_daily_call_sets: rollup_weekly_call_sets,
    rollup_daily_set_calls: rollup_weekly_set_calls,
    rollup_daily_users: rollup_weekly_users,
    rollup_daily_user_totals: rollup_weekly_user_totals,
    rollup_daily_user_calls: rollup_weekly_user_calls,
    rollup_daily_user_set_calls: rollup_weekly_user_set_calls,
}

# The weeks (their Mondays) whose weekly rows are current, and how many of their days (from the
# Monday, 1-7) those rows sum: the latest week is summed up to its live days, and again as its
# days stop being live.
rollup_weeks = Table(
    "rollup_weeks",
    _metadata,
    Column("week", Date, primary_key=True),
    Column("days", SmallInteger, nullable=False),
)
