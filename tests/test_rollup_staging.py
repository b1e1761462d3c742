"""Staged rebuilds (`app.warehouse.tables_staged`): a day stale whole is staged first, and
readers read its rows in the rollups' twins in place of the base tables, exactly, until a mark
written after the staging sends them back; the staged rows then replace the day's rows, keeping
any such mark for the next refresh, and a refresh cut off after the staging finishes from it."""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, event, func, select, text

from app.reports.unit_costs import Scope, cost_query, unit_costs
from app.reprice import reprice
from app.rollups.day_pairs import ORDER
from app.rollups.dirty import mark_days, mark_slices
from app.rollups.refresh import dirty_days, plan, refresh
from app.rollups.staging import (
    STEPS,
    Rebuild,
    stage,
    stage_pairs,
    stage_twins,
    staged,
    write_staged,
)
from app.rollups.stale import Stale, dirty_in
from app.settings import Settings
from app.traces.batch import CallRow
from app.warehouse.tables_rollup import rollup_daily_calls
from app.warehouse.tables_staged import (
    TWINS,
    rollup_staged_marks,
    rollup_staged_paired,
    rollup_staged_pairs,
)
from tests.test_rollup_refresh import (
    assert_readers_answer_like_the_base_tables,
    load_partly_rolled_up,
)
from tests.test_rollups import (
    DAY,
    OVERRIDES,
    T0,
    _facts,
    _load,
    assert_rollups_answer_like_the_base_tables,
    traffic,
)

NEXT = DAY + timedelta(days=1)


def _call(trace: str, at: Any, model: str, cost: int) -> CallRow:
    return CallRow(trace, "1" * 16, at, 10, "p1", model, None, None, None, "otel-genai",
                   100, 0, 0, 10, 0, cost, "catalog")  # fmt: skip


def _staged_rows(engine: Engine) -> int:
    with engine.connect() as conn:
        return sum(
            int(conn.execute(select(func.count()).select_from(table)).scalar_one())
            for table in (
                *TWINS.values(),
                rollup_staged_marks,
                rollup_staged_pairs,
                rollup_staged_paired,
            )
        )


def _sql(engine: Engine, dims: list[str], scope: Scope | None = None) -> str:
    with engine.connect() as conn:
        return str(cost_query(conn, dims, scope or Scope()))


def _costs(engine: Engine, dims: list[str]) -> dict[str, tuple[int, int]]:
    rows = unit_costs(engine, dims)
    return {"/".join(r.group.values()): (r.requests, r.cost_nanousd) for r in rows}


def test_a_staged_day_is_read_from_its_twins_until_a_later_mark(engine: Engine) -> None:
    # Two days: DAY is past (rebuilt whole), NEXT is live.
    _load(engine, [
        _facts("a" * 32, T0 + timedelta(hours=3), True, "/a", "u1"),
        _call("a" * 32, T0 + timedelta(hours=3), "m1", 5),
        _facts("b" * 32, T0 + timedelta(hours=5), True, "/b", "u2"),
        _call("b" * 32, T0 + timedelta(hours=5), "m2", 7),
        _call("c" * 32, T0 + timedelta(days=1, hours=5), "m1", 11),
    ], [], False)  # fmt: skip
    refresh(engine)
    reprice(engine, Settings(pricing={"overrides": OVERRIDES}), None)  # marks both days
    with engine.connect() as conn:
        jobs = plan(conn)
    assert [job.day for job in jobs if job.hours is None] == [DAY]
    job = Rebuild(DAY, None, sliced=False)
    # The staging's first commit: the day's request rollups are read from its pairs (and the
    # GPU and call-day ones from their twins); a refresh cut off here stages it again.
    stage_pairs(engine, job)
    with engine.connect() as conn:
        dirty = dirty_in(conn, None, None)
        assert not staged(conn, job)
    names = sorted(name for step in STEPS for name in step)
    assert dirty.staged == (DAY,) and dirty.paired == tuple((DAY, name) for name in names)
    sql = _sql(engine, ["model"], Scope(since=DAY, until=NEXT))
    assert "rollup_staged_pairs" in sql and "FROM requests" not in sql, sql
    assert_readers_answer_like_the_base_tables(engine, random.Random(0))
    # Its twins are committed step by step: the call days', the GPU rollups', then
    # rollup_daily's and rollup_daily_calls'.
    stage_twins(engine, job, limit=4)
    with engine.connect() as conn:
        dirty = dirty_in(conn, None, None)
    assert [name for _, name in dirty.paired] == sorted(t.name for t in ORDER[2:])
    sql = _sql(engine, ["model"], Scope(since=DAY, until=NEXT))
    assert TWINS[rollup_daily_calls].name in sql and "rollup_staged_pairs" not in sql, sql
    assert_readers_answer_like_the_base_tables(engine, random.Random(7))
    stage_twins(engine, job)
    with engine.connect() as conn:
        dirty = dirty_in(conn, None, None)
        assert staged(conn, job)
        assert not staged(conn, Rebuild(DAY, None, sliced=True))  # staged whole, not by hour
    assert dirty.days == (DAY,) and dirty.staged == (DAY,) and dirty.paired == ()
    assert dirty.unstaged() == Stale((), dirty.hours)
    # The staged day is read from the twins: only NEXT's stale hour is read from the base.
    twin = TWINS[rollup_daily_calls].name
    sql = _sql(engine, ["model"], Scope(since=DAY, until=NEXT))
    assert twin in sql and "FROM requests" not in sql, sql
    assert_readers_answer_like_the_base_tables(engine, random.Random(1))
    repriced = _costs(engine, ["model"])

    # A late span on DAY after the staging: its mark is not the staging's, so readers go back
    # to the base tables for the day, and see the span.
    _load(engine, [_call("d" * 32, T0 + timedelta(hours=9), "m1", 1000)], [], False)
    with engine.connect() as conn:
        dirty = dirty_in(conn, None, None)
        assert not staged(conn, job)
    assert dirty.days == (DAY,) and dirty.staged == ()
    assert twin not in _sql(engine, ["model"])
    assert _costs(engine, ["model"])["m1"][0] == repriced["m1"][0] + 1
    assert_readers_answer_like_the_base_tables(engine, random.Random(2))

    # The staged rows written: the staging's marks go, the late span's stays (the day is still
    # read from the base tables), and the next refresh takes it.
    write_staged(engine, job)
    assert _staged_rows(engine) == 0
    with engine.connect() as conn:
        assert DAY in dirty_days(conn)
        assert dirty_in(conn, DAY, NEXT) == Stale((DAY,), ())
    assert_readers_answer_like_the_base_tables(engine, random.Random(3))
    refresh(engine)
    with engine.connect() as conn:
        assert dirty_days(conn) == []
    assert_readers_answer_like_the_base_tables(engine, random.Random(4))


def test_a_refresh_cut_off_after_the_staging_finishes_from_it(engine: Engine) -> None:
    _load(engine, [
        _facts("a" * 32, T0 + timedelta(hours=3), True, "/a", "u1"),
        _call("a" * 32, T0 + timedelta(hours=3), "m1", 5),
    ], [], False)  # fmt: skip
    with engine.connect() as conn:
        [job] = plan(conn)
    assert job == Rebuild(DAY, None, sliced=True)  # the only day: live, into hour slices
    stage(engine, job)  # … and the worker is killed here
    assert _costs(engine, ["model"]) == {"m1": (1, 5)}
    with engine.connect() as conn:
        assert dirty_in(conn, None, None).staged == (DAY,)
    assert refresh(engine).days == 1
    assert _staged_rows(engine) == 0
    with engine.connect() as conn:
        assert dirty_days(conn) == []
        assert "rollup_staged" not in str(cost_query(conn, ["model"], Scope()))
        if conn.dialect.name == "postgresql":  # the staging's dead rows vacuumed after it
            vacuumed = text(
                "SELECT vacuum_count FROM pg_stat_user_tables "
                "WHERE schemaname = current_schema() AND relname = 'rollup_staged_pairs'"
            )
            assert conn.execute(vacuumed).scalar_one() >= 1
    assert _costs(engine, ["model"]) == {"m1": (1, 5)}


def test_a_refresh_cut_off_between_the_two_commits_writes_the_twins_only(
    engine: Engine,
) -> None:
    """The worker killed after the staging's first commit: the next refresh sums the twins
    from the staged pairs (no second read of the base tables) and writes the day, unless the
    day is no longer written as it was staged (hour slices or whole), when it stages it again."""
    _load(engine, [
        _facts("a" * 32, T0 + timedelta(hours=3), True, "/a", "u1"),
        _call("a" * 32, T0 + timedelta(hours=3), "m1", 5),
    ], [], False)  # fmt: skip
    refresh(engine)
    with engine.begin() as conn:
        mark_days(conn, [DAY])
    job = Rebuild(DAY, None, sliced=True)
    stage_pairs(engine, job)  # … and the worker is killed here
    with engine.connect() as conn:
        assert staged(conn, job, pairs=True) and not staged(conn, job)
        assert not staged(conn, Rebuild(DAY, None, sliced=False), pairs=True)
    statements: list[str] = []

    def record(*args: Any) -> None:
        statements.append(args[2])

    event.listen(engine, "before_cursor_execute", record)
    assert refresh(engine).days == 1
    event.remove(engine, "before_cursor_execute", record)
    assert not any(s.startswith("INSERT INTO rollup_staged_pairs") for s in statements)
    assert any(s.startswith("INSERT INTO rollup_staged_daily ") for s in statements)
    assert _staged_rows(engine) == 0
    assert _costs(engine, ["model"]) == {"m1": (1, 5)}
    assert_rollups_answer_like_the_base_tables(engine, random.Random(5))

    # Staged as a live day, then the day is no longer live: staged again, whole.
    with engine.begin() as conn:
        mark_days(conn, [DAY])
    stage_pairs(engine, Rebuild(DAY, None, sliced=True))
    _load(engine, [_facts("b" * 32, T0 + timedelta(days=3), True, "/a", "u1")], [], False)
    with engine.connect() as conn:
        assert Rebuild(DAY, None, sliced=False) in plan(conn)
    refresh(engine)
    assert _staged_rows(engine) == 0
    assert assert_rollups_answer_like_the_base_tables(engine, random.Random(6)) > 0


def test_only_a_day_stale_whole_is_read_from_its_staging(engine: Engine) -> None:
    """A sliced day with a few hours marked has only those hours stale, staged or not."""
    _load(engine, [_call("a" * 32, T0 + timedelta(hours=3), "m1", 5)], [], False)
    refresh(engine)  # DAY sliced (live)
    with engine.begin() as conn:
        mark_slices(conn, [(DAY, 3)])
    stage(engine, Rebuild(DAY, None, sliced=True))
    with engine.connect() as conn:
        assert dirty_in(conn, None, None) == Stale((), ((DAY, 3),))
    with engine.begin() as conn:
        mark_days(conn, [DAY])  # now whole, and that mark is not the staging's
    with engine.connect() as conn:
        assert dirty_in(conn, None, None) == Stale((DAY,), ())
    stage(engine, Rebuild(DAY, None, sliced=True))
    with engine.connect() as conn:
        assert dirty_in(conn, None, None) == Stale((DAY,), (), (DAY,))
    assert _costs(engine, ["model"]) == {"m1": (1, 5)}


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(traffic(), traffic(), st.integers(0, 100), st.randoms(use_true_random=False))
def test_staged_days_answer_like_the_base_tables(
    engine: Engine, case: dict[str, Any], late: dict[str, Any], held: int, rnd: random.Random
) -> None:
    """Part of the traffic is rolled up; the rest (and maybe a re-price) marks its days, some
    of which are staged; then maybe more traffic marks some days after their staging: every
    answer, filter list and count equals the base tables', and after a refresh the rollups
    do, with nothing left staged."""
    load_partly_rolled_up(engine, case, held)
    if case["reprice"]:
        reprice(engine, Settings(pricing={"overrides": OVERRIDES}), None)
    with engine.connect() as conn:
        jobs = [job for job in plan(conn) if job.hours is None]
    for job in jobs:  # staged, or cut off after some of the staging's commits, or not
        chance = rnd.random()
        if chance < 0.4:
            stage(engine, job)
        elif chance < 0.8:
            stage_pairs(engine, job)
            stage_twins(engine, job, limit=rnd.randrange(len(STEPS)))
    if late["reloads"]:  # later traffic (other traces): its marks are not the stagings'
        _load(engine, [_renamed(p) for p in late["pieces"]], [], late["prepared"])
    assert_readers_answer_like_the_base_tables(engine, rnd)
    refresh(engine)
    with engine.connect() as conn:
        assert dirty_days(conn) == []
    assert _staged_rows(engine) == 0
    assert assert_rollups_answer_like_the_base_tables(engine, rnd) > 0


def _renamed(piece: Any) -> Any:
    """A piece of another trace (ids "f…"): new requests on the same days."""
    return piece._replace(trace_id="f" + piece.trace_id[1:])
