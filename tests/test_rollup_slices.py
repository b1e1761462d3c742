"""Hour slices: the live days' rollups are rebuilt an hour at a time, and stay exact.

The live days (the latest with requests, and the day before for its first two hours) are
stored as hour slices (`rollup_sliced`); an ingest's
marks name hours, so on those days only the marked hours are stale (readers take them from the
base tables), and the refresh rebuilds only them; a day that stops being live is compacted into
whole-day rows. Random traffic arrives in rounds, the live edge moving forward, a refresh after
some rounds and not others: every answer equals the base tables', on SQLite and PostgreSQL.
"""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import BigInteger, Engine, func, select

from app.dashboard.queries import data_bounds, filter_options
from app.reports.reconcile import traced_groups
from app.reports.unit_costs import Scope, cost_query
from app.rollups.dirty import mark_days
from app.rollups.refresh import LOCK, dirty_days, live_from, plan, refresh
from app.rollups.staging import Rebuild
from app.rollups.stale import Stale, dirty_in
from app.traces.batch import CallRow
from app.warehouse.engine import snapshot
from app.warehouse.locks import named_lock
from app.warehouse.tables import LlmCall, Request
from app.warehouse.tables_rollup import (
    MEASURES,
    ROLLUPS,
    WHOLE_DAY,
    rollup_call_days,
    rollup_sliced,
)
from tests.test_rollups import (
    DIMS,
    FILTERS,
    _base,
    _empty,
    _facts,
    _load,
    _rows,
    filter_options_from_base,
    traffic,
)

DAY = date(2025, 11, 20)
T0 = datetime(2025, 11, 20, tzinfo=UTC)


def _call(trace: str, span: int, at: datetime, cost: int, model: str = "m1") -> CallRow:
    return CallRow(trace, f"{span:016x}", at, 10, "p1", model, None, None, None, "otel-genai",
                   100, 0, 0, 10, 0, cost, "catalog")  # fmt: skip


def _sliced(engine: Engine) -> list[date]:
    with engine.connect() as conn:
        days = conn.execute(select(rollup_sliced.c.day).order_by(rollup_sliced.c.day)).scalars()
        return [d if isinstance(d, date) else date.fromisoformat(str(d)) for d in days]


def _hours(engine: Engine, day: date) -> set[int]:
    """The `hour` values of a day's rows, across every rollup."""
    out: set[int] = set()
    with engine.connect() as conn:
        for table in (*ROLLUPS, rollup_call_days):
            hours = conn.execute(select(table.c.hour).where(table.c.day == day)).scalars()
            out |= {int(h) for h in hours}
    return out


def test_live_days_are_sliced_marked_by_the_hour_and_compacted_when_old(engine: Engine) -> None:
    _load(engine, [_call("a" * 32, 1, T0 + timedelta(hours=9), 100)], [], False)
    _load(engine, [_call("b" * 32, 1, T0 + timedelta(hours=10, minutes=5), 20)], [], False)
    with engine.connect() as conn:
        assert plan(conn) == [Rebuild(DAY, None, sliced=True)]  # live, not yet sliced: whole
    refresh(engine)
    assert _sliced(engine) == [DAY]
    assert _hours(engine, DAY) == {9, 10}

    # A new call in hour 10: only that hour is stale, read from the base tables meanwhile.
    _load(engine, [_call("c" * 32, 1, T0 + timedelta(hours=10, minutes=30), 3)], [], False)
    with engine.connect() as conn:
        assert dirty_in(conn, None, None) == Stale((), ((DAY, 10),))
        assert plan(conn) == [Rebuild(DAY, (10,), sliced=True)]
    with named_lock(engine, LOCK):
        with snapshot(engine) as conn:
            [row] = conn.execute(cost_query(conn, [], Scope())).mappings().all()
        assert (row["requests"], row["cost_nanousd"]) == (3, 123)
        with snapshot(engine) as conn:
            sql = str(cost_query(conn, [], Scope()))
        assert "UNION ALL" in sql and "hour" in sql
    assert refresh(engine).days == 1
    with snapshot(engine) as conn:
        [row] = conn.execute(cost_query(conn, [], Scope())).mappings().all()
    assert (row["requests"], row["cost_nanousd"]) == (3, 123)

    # A whole-day mark (a re-price, say) makes the whole day stale; it is rebuilt whole, still
    # into hour slices (it is live).
    with engine.begin() as conn:
        mark_days(conn, [DAY])
    with engine.connect() as conn:
        assert dirty_in(conn, None, None) == Stale((DAY,), ())
        assert plan(conn) == [Rebuild(DAY, None, sliced=True)]
    refresh(engine)
    assert _sliced(engine) == [DAY] and _hours(engine, DAY) == {9, 10}

    # Then two days later it is no longer live: compacted into whole-day rows with the same
    # sums, and a mark on it rebuilds it whole into whole-day rows.
    _load(engine, [_call("d" * 32, 1, T0 + timedelta(hours=23), 4)], [], False)
    refresh(engine)
    assert _hours(engine, DAY) == {9, 10, 23}
    later = T0 + timedelta(days=2, hours=1)
    _load(engine, [_call("e" * 32, 1, later, 5000)], [], False)
    result = refresh(engine)
    assert result.compacted == 1
    assert _sliced(engine) == [later.date()]
    assert _hours(engine, DAY) == {WHOLE_DAY} and _hours(engine, later.date()) == {1}
    with engine.begin() as conn:
        mark_days(conn, [DAY])
    with engine.connect() as conn:
        assert plan(conn) == [Rebuild(DAY, None, sliced=False)]
    refresh(engine)
    assert _hours(engine, DAY) == {WHOLE_DAY}
    with snapshot(engine) as conn:
        rows = conn.execute(cost_query(conn, ["model"], Scope(DAY, DAY + timedelta(days=1))))
        [row] = rows.mappings().all()
    assert (row["requests"], row["cost_nanousd"]) == (4, 127)
    [group] = traced_groups(engine, DAY, DAY + timedelta(days=1), ["p1"])
    assert (group.day, group.cost_nanousd) == (DAY, 127)


def test_a_late_root_moving_a_request_to_another_hour_marks_the_hour_it_leaves(
    engine: Engine,
) -> None:
    """On PostgreSQL the trigger of migration 0015 marks the hour left; on SQLite the batch
    reads the stored hours before its write."""
    trace = "f" * 32
    noon = T0 + timedelta(hours=12)
    _load(engine, [_call(trace, 1, noon, 50), _call("0" * 32, 1, noon, 1)], [], False)
    refresh(engine)
    assert _sliced(engine) == [DAY]
    # Its root started two hours earlier: the request moves from hour 12 to hour 10.
    _load(engine, [_facts(trace, noon - timedelta(hours=2), True, "/a", "u1")], [], False)
    with engine.connect() as conn:
        stale = dirty_in(conn, None, None)
    assert set(stale.hours) == {(DAY, 10), (DAY, 12)} and not stale.days
    refresh(engine)
    with snapshot(engine) as conn:
        rows = conn.execute(cost_query(conn, ["endpoint"], Scope())).mappings().all()
    got = sorted((r["endpoint"], r["requests"], r["cost_nanousd"]) for r in rows)
    assert got == [("(none)", 1, 1), ("/a", 1, 50)]
    assert _hours(engine, DAY) == {10, 12}


def test_a_snapshot_reads_one_state_of_the_warehouse(engine: Engine) -> None:
    _load(engine, [_call("a" * 32, 1, T0, 1)], [], False)
    count = select(func.count()).select_from(Request)
    with snapshot(engine) as conn:
        assert conn.execute(count).scalar_one() == 1
        _load(engine, [_call("b" * 32, 1, T0, 1)], [], False)  # committed by another writer
        assert conn.execute(count).scalar_one() == 1
    with engine.connect() as conn:
        assert conn.execute(count).scalar_one() == 2


def test_stale_time_as_ranges_and_skip_conditions() -> None:
    stale = Stale((DAY,), ((DAY + timedelta(days=1), 0), (DAY + timedelta(days=1), 5)))
    assert stale.periods() == [
        (T0, T0 + timedelta(days=1, hours=1)),  # the day and the next day's first hour merged
        (T0 + timedelta(days=1, hours=5), T0 + timedelta(days=1, hours=6)),
    ]
    assert stale.within(DAY + timedelta(days=1), None) == Stale((), stale.hours)
    assert stale.within(None, DAY + timedelta(days=1)) == Stale((DAY,), ())
    assert not Stale() and not Stale().within(None, None)
    assert len(stale.skip(rollup_call_days.c.day, rollup_call_days.c.hour)) == 2


def _assert_like_the_base_tables(engine: Engine, rnd: random.Random) -> None:
    ranges = [(None, None), (DAY + timedelta(days=2), None), (DAY, DAY + timedelta(days=3))]
    for dims in DIMS:
        filters, (since, until) = rnd.choice(FILTERS), rnd.choice(ranges)
        by_day = rnd.random() < 0.5
        scope = Scope(since, until, filters)
        with snapshot(engine) as conn:
            rows = _rows(engine, cost_query(conn, dims, scope, by_day=by_day))
        assert rows == _rows(engine, _base(dims, scope, by_day)), (dims, filters, since, until)
    for dim in ("endpoint", "user", "model"):
        since, until = rnd.choice(ranges)
        with engine.connect() as conn:
            base = filter_options_from_base(conn, dim, Scope(since, until))
        assert filter_options(engine, dim, Scope(since, until)) == base
    bounds = data_bounds(engine)
    c = LlmCall
    day, served = func.date(c.started_at), func.coalesce(c.response_model, c.model)
    by_call_day = select(
        day, c.provider, served, func.sum(c.cost_nanousd), func.count() - func.count(c.cost_nanousd)
    ).group_by(day, c.provider, served)
    with engine.connect() as conn:
        count = conn.execute(select(func.count()).select_from(Request)).scalar_one()
        base = sorted(
            (str(d)[:10], p, m, int(cost or 0), int(n))
            for d, p, m, cost, n in conn.execute(by_call_day)
        )
    assert (bounds.requests if bounds else 0) == count
    groups = traced_groups(engine, DAY - timedelta(days=1), DAY + timedelta(days=5), ["p1", "p2"])
    got = sorted(
        (g.day.isoformat(), g.provider, g.raw_model, g.cost_nanousd, g.unpriced_calls)
        for g in groups
    )
    assert got == base


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    traffic(),
    st.lists(st.booleans(), min_size=1, max_size=4),
    st.randoms(use_true_random=False),
)
def test_rounds_of_live_traffic_equal_the_base_tables(
    engine: Engine, case: dict[str, Any], refreshes: list[bool], rnd: random.Random
) -> None:
    """The traffic (three days) in rounds, oldest first, so the live edge moves; a refresh
    after some rounds; then every answer with what is still stale, and again refreshed."""
    _empty(engine)
    pieces = sorted(case["pieces"], key=lambda p: p.started_at)
    rounds = len(refreshes)
    for i, refreshed in enumerate(refreshes):
        part = pieces[i * len(pieces) // rounds : (i + 1) * len(pieces) // rounds]
        rnd.shuffle(part)
        _load(engine, part, [], case["prepared"])
        if refreshed:
            refresh(engine)
    _assert_like_the_base_tables(engine, rnd)
    refresh(engine)
    with engine.connect() as conn:
        assert dirty_days(conn) == []
        last = conn.execute(select(func.max(Request.started_at))).scalar_one()
    assert all(day >= live_from(last) for day in _sliced(engine))
    _assert_like_the_base_tables(engine, rnd)


def test_compaction_sums_exactly_the_measures() -> None:
    """Every summed column is a BIGINT listed in MEASURES, every other column a key: a new
    measure of another type would otherwise be grouped on, not summed."""
    for table in (*ROLLUPS, rollup_call_days):
        big = {c.name for c in table.c if isinstance(c.type, BigInteger)}
        assert big == {c.name for c in table.c if c.name in MEASURES}, table.name


def test_the_gpu_breakdown_drives_from_little_stale_time_only() -> None:
    """A stale hour's GPU shares are found from its requests (the (pool, hour) index kept out
    of SQLite's choice); a pending full rebuild's are bounded by the range's hours instead."""
    from app.gpu.report import _little

    hour = Stale((), ((DAY, 3),))
    month = Stale(tuple(DAY - timedelta(days=d) for d in range(30)), ())
    assert _little(hour, DAY - timedelta(days=30), DAY)
    assert not _little(month, DAY - timedelta(days=30), DAY)
    assert _little(Stale((DAY,), ()), None, None)
    assert not _little(Stale((DAY, DAY + timedelta(days=2)), ()), None, None)


def test_the_day_before_stays_live_for_the_first_hours_of_the_latest() -> None:
    assert live_from(datetime(2025, 11, 22, 1, 59)) == date(2025, 11, 21)
    assert live_from(datetime(2025, 11, 22, 2, 0)) == date(2025, 11, 22)
