"""Rule windows read the rollups where they can, with the base tables' totals.

`SqlMeasurer`: a window's whole UTC days from the daily (and weekly) rollups; the whole hours
of a live partial day from its hour slices; most of a day stored whole as its rollup rows less
the rest of the day (a rolling `24h` window ending today reaches into the day before, which is
sliced only for the first two hours of today, `LIVE_GRACE`); the rest, and whatever waits for a
rebuild, from the base tables. Every total equals the base tables', on SQLite and PostgreSQL.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, event

from alerts.config import RuleConfig
from alerts.rules import compile_rule
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
        assert_measured_like_the_base_tables(engine, rule, start, end)

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


@pytest.mark.parametrize("group_by", [[], ["user"], ["model"], ["endpoint", "model"]])
def test_whole_days_of_a_window_come_from_the_rollups_with_the_same_totals(
    engine: Engine, group_by: list[str]
) -> None:
    """A month-to-date budget reads its whole UTC days from the daily rollups and only the
    partial days at its ends from the base tables; the totals are the base tables' own."""
    from alerts.metrics import SqlMeasurer
    from alerts.windows import Window
    from app.rollups.dirty import mark_all, mark_days
    from app.rollups.refresh import refresh
    from app.rollups.staging import Rebuild, stage_pairs, stage_twins

    for d in range(6):
        at = DAY - timedelta(days=d, hours=-3 * d)
        calls = [("gpt-4o", "1.25"), ("gpt-4o-mini", None)] if d % 2 else [("gpt-4o", "0.5")]
        add_request(engine, at, user=f"u-{d % 3}", endpoint=f"/v{d % 2}", calls=calls)
    with engine.begin() as conn:
        mark_all(conn)
    refresh(engine)
    rule = compile_rule(RuleConfig.model_validate({**CAP, "group_by": group_by}))
    start, end = DAY - timedelta(days=4, hours=2), DAY + timedelta(hours=7)
    statements: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *a: statements.append(a[2]))

    def measured_from(table: str) -> None:
        """A fresh measurer's totals are the base tables', read from `table` too."""
        statements.clear()
        measurer = SqlMeasurer(engine, rule)
        got = measurer.measure(Window(start, end, end, "test"))
        assert any(table in s for s in statements)
        with engine.connect() as conn:
            assert got == measurer._base(conn, start, end) != {}

    measured_from("rollup_daily")
    # Live ingest: a day inside the window waits for its rebuild. It is read from the base
    # tables, the other whole days still from the rollups, with the same totals.
    add_request(
        engine, DAY - timedelta(days=2), user="u-9", endpoint="/v0", calls=[("gpt-4o", "2")]
    )
    with engine.begin() as conn:  # as `load_batch` would
        mark_days(conn, [(DAY - timedelta(days=2)).date()])
    measured_from("rollup_daily")
    # The refresh stages that day: it is read from its staged pairs, then from the rollups'
    # twins, not the base tables (`app.warehouse.tables_staged`).
    job = Rebuild((DAY - timedelta(days=2)).date(), None, sliced=False)
    stage_pairs(engine, job)
    measured_from("rollup_staged_pairs")
    stage_twins(engine, job)
    measured_from("rollup_staged_daily")


@pytest.mark.parametrize("group_by", [[], ["user"], ["model"]])
def test_the_whole_hours_of_a_live_partial_day_come_from_the_hour_slices(
    engine: Engine, group_by: list[str]
) -> None:
    """A window ending now: its last, partial UTC day is live (sliced), so its whole hours come
    from the rollups' hour rows, its minutes and its stale hours from the base tables; any
    window of the live days, with or without stale hours, totals as the base tables do."""
    import random

    from app.rollups.dirty import mark_days, mark_slices
    from app.rollups.refresh import refresh
    from app.rollups.stale import sliced_in

    rnd = random.Random(3)
    today = DAY.date()
    # The day before and today's first 100 minutes, at random minutes: both days are live
    # (the day before stays live for the first hours of the latest, `LIVE_GRACE`).
    for i in range(80):
        at = DAY - timedelta(days=1) + timedelta(minutes=rnd.randrange(24 * 60 + 100))
        calls = [("gpt-4o", "1.25"), ("gpt-4o-mini", None)] if i % 3 else [("gpt-4o", "0.5")]
        add_request(engine, at, user=f"u-{i % 4}", endpoint=f"/v{i % 2}", calls=calls)
    with engine.begin() as conn:
        mark_slices(conn, [(today - timedelta(days=1), 0), (today, 0)])
    refresh(engine)
    with engine.connect() as conn:
        assert sliced_in(conn, None, None) == {today - timedelta(days=1), today}
    rule = compile_rule(RuleConfig.model_validate({**CAP, "group_by": group_by}))

    def check(start: datetime, end: datetime) -> None:
        assert_measured_like_the_base_tables(engine, rule, start, end)

    statements: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    check(DAY - timedelta(days=1, minutes=-7), DAY + timedelta(hours=17, minutes=41))
    assert any("rollup_daily" in s and "hour" in s for s in statements)
    for _ in range(12):
        a, b = sorted(rnd.randrange(2 * 24 * 60) for _ in range(2))
        check(DAY - timedelta(days=1, minutes=-a), DAY - timedelta(days=1, minutes=-b))
    # Live ingest: new requests in two hours of today, waiting for their rebuild.
    for hour in (5, 17):
        add_request(engine, DAY + timedelta(hours=hour, minutes=3), user="u-9")
    with engine.begin() as conn:
        mark_slices(conn, [(today, 5), (today, 17)])
    check(DAY + timedelta(minutes=30), DAY + timedelta(hours=20, minutes=1))
    check(DAY - timedelta(hours=3), DAY + timedelta(hours=17))
    with engine.begin() as conn:  # and the whole day stale
        mark_days(conn, [today])
    check(DAY + timedelta(minutes=30), DAY + timedelta(hours=20, minutes=1))
    # The refresh stages it: in hour slices (a live day), whose whole hours the window reads
    # from the rollups' twins; staged whole, all from the base tables.
    from app.rollups.staging import Rebuild, stage

    for by_hour in (True, False):
        stage(engine, Rebuild(today, None, sliced=by_hour))
        statements.clear()
        check(DAY + timedelta(minutes=30), DAY + timedelta(hours=20, minutes=1))
        check(DAY - timedelta(hours=3), DAY + timedelta(hours=17))
        summed = [s for s in statements if "rollup_staged_daily" in s and "sum(" in s]
        assert bool(summed) == by_hour


def assert_measured_like_the_base_tables(
    engine: Engine, rule: Any, start: datetime, end: datetime
) -> None:
    """A fresh measurer's totals of [start, end) are the base tables' own."""
    from alerts.metrics import SqlMeasurer
    from alerts.windows import Window

    measurer = SqlMeasurer(engine, rule)
    got = measurer.measure(Window(start, end, end, "test"))
    with engine.connect() as conn:
        assert got == measurer._base(conn, start, end), (start, end)
