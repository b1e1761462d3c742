"""Rule windows over a day stored whole: most of it is its rollup rows less the rest of the day.

A rolling window (`24h`) ending today reaches into the day before, which is sliced only for
the first two hours of today (`LIVE_GRACE`); after that its rows are whole-day rows, so the
measurer takes the day's rollup rows and subtracts the part outside the window, read from the
base tables: the same totals as the base tables, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta

import pytest
from sqlalchemy import Engine, event

from alerts.config import RuleConfig
from alerts.metrics import SqlMeasurer
from alerts.rules import compile_rule
from alerts.windows import Window
from app.rollups.dirty import mark_slices
from app.rollups.refresh import refresh
from app.rollups.stale import sliced_in
from tests.test_rules import CAP, DAY, add_request


@pytest.mark.parametrize("group_by", [[], ["user"], ["endpoint", "model"]])
def test_most_of_a_day_stored_whole_is_its_rows_less_the_rest(
    engine: Engine, group_by: list[str]
) -> None:
    rnd = random.Random(5)
    yesterday, today = (DAY - timedelta(days=1)).date(), DAY.date()
    for i in range(90):  # the day before and today up to 10:00, at random minutes
        at = DAY - timedelta(days=1) + timedelta(minutes=rnd.randrange(34 * 60))
        calls = [("gpt-4o", "1.25"), ("gpt-4o-mini", None)] if i % 3 else [("gpt-4o", "0.5")]
        add_request(engine, at, user=f"u-{i % 5}", endpoint=f"/v{i % 2}", calls=calls)
    with engine.begin() as conn:
        mark_slices(conn, [(yesterday, 0), (today, 0)])
    refresh(engine)
    with engine.connect() as conn:
        assert sliced_in(conn, None, None) == {today}  # the day before is whole
    rule = compile_rule(RuleConfig.model_validate({**CAP, "group_by": group_by}))

    def check(start: datetime, end: datetime) -> None:
        measurer = SqlMeasurer(engine, rule)
        got = measurer.measure(Window(start, end, end, "test"))
        with engine.connect() as conn:
            assert got == measurer._base(conn, start, end), (start, end)

    statements: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    for _ in range(8):  # 24 hours ending this morning: most of the day before
        end = DAY + timedelta(minutes=rnd.randrange(10, 10 * 60))
        check(end - timedelta(hours=24), end)
    assert any("rollup_daily" in s and "hour" not in s for s in statements)
    check(DAY - timedelta(hours=20, minutes=7), DAY - timedelta(hours=2))  # inside it
    check(DAY - timedelta(hours=5), DAY + timedelta(hours=1))  # a little of it: base tables
    with engine.begin() as conn:  # a late span on the day before: its hour is stale
        mark_slices(conn, [(yesterday, 13)])
    add_request(engine, DAY - timedelta(hours=11), user="u-1")
    check(DAY - timedelta(hours=22), DAY + timedelta(hours=2))
