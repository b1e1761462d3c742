"""The rollups' bookkeeping: a refresh that runs twice, a late root that moves a request to
another day, marked days read from the base tables and added to the rollups' answer, readers
that start a rebuild in the background (or leave a long one to the worker), and the trace ids
of a batch in every row form."""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import BigInteger, Engine, func, select

from app.dashboard.queries import data_bounds, filter_options
from app.reports.unit_costs import Scope, cost_query, unit_costs
from app.reprice import reprice
from app.rollups.dirty import mark_all
from app.rollups.refresh import LOCK, dirty_days, refresh, refresh_in_background
from app.rollups.stale import dirty_in
from app.settings import Settings
from app.traces.batch import Batch, CallRow
from app.warehouse.engine import session_scope
from app.warehouse.load import load_batch, prepare
from app.warehouse.locks import named_lock
from app.warehouse.tables import Request
from app.warehouse.tables_rollup import ROLLUPS
from tests.test_rollups import (
    DAY,
    DIMS,
    FILTERS,
    OVERRIDES,
    RANGES,
    T0,
    _base,
    _empty,
    _facts,
    _load,
    _rows,
    filter_options_from_base,
    traffic,
)


def _day_rows(engine: Engine) -> list[list[tuple[Any, ...]]]:
    """Every rollup's rows summed over their hours: the same whether a day is stored whole or
    as hour slices."""
    out = []
    with engine.connect() as conn:
        for table in ROLLUPS:
            keys = [c for c in table.c if c.name != "hour" and not isinstance(c.type, BigInteger)]
            sums = [func.sum(c) for c in table.c if isinstance(c.type, BigInteger)]
            rows = conn.execute(select(*keys, *sums).group_by(*keys)).all()
            out.append(sorted(tuple(str(v) for v in r) for r in rows))
    return out


def test_refresh_is_idempotent_and_a_late_root_marks_the_day_it_leaves(engine: Engine) -> None:
    trace = "a" * 32
    evening = T0 + timedelta(hours=23)
    call = CallRow(trace, "1" * 16, evening, 10, "p1", "m1", None, None, None, "otel-genai",
                   100, 0, 0, 10, 0, 1234, "catalog")  # fmt: skip
    _load(engine, [call], [], False)
    with engine.connect() as conn:
        assert dirty_days(conn) == [DAY]
    refresh(engine)
    before = _day_rows(engine)
    with engine.begin() as conn:
        mark_all(conn)
    assert refresh(engine).days == 1
    assert _day_rows(engine) == before

    # The root arrives: it started the day before, on /a. Both days are rebuilt.
    _load(engine, [_facts(trace, evening - timedelta(days=1), True, "/a", "u1")], [], False)
    with engine.connect() as conn:
        assert dirty_days(conn) == [DAY - timedelta(days=1), DAY]
    refresh(engine)
    [row] = unit_costs(engine, ["endpoint"], Scope(DAY - timedelta(days=1), DAY))
    assert (row.group, row.requests, row.cost_nanousd) == ({"endpoint": "/a"}, 1, 1234)
    assert unit_costs(engine, ["endpoint"], Scope(DAY, DAY + timedelta(days=1))) == []


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(traffic(), st.integers(0, 100), st.booleans(), st.randoms(use_true_random=False))
def test_dirty_days_are_read_from_the_base_tables_and_added_to_the_rollups(
    engine: Engine, case: dict[str, Any], held: int, reprice_after: bool, rnd: random.Random
) -> None:
    """Part of the traffic is rolled up, the rest (and maybe a re-price) only marks its days:
    every answer, filter list and count still equals the base tables'."""
    load_partly_rolled_up(engine, case, held)
    if reprice_after:
        reprice(engine, Settings(pricing={"overrides": OVERRIDES}), None)
    with engine.connect() as conn:
        dirty = dirty_days(conn)
    assert_readers_answer_like_the_base_tables(engine, rnd)
    with engine.connect() as conn:
        assert dirty_days(conn) == dirty  # readers never rebuilt anything themselves


def load_partly_rolled_up(engine: Engine, case: dict[str, Any], held: int) -> None:
    """An empty warehouse, then `held`% of the traffic's pieces loaded and rolled up, and the
    rest loaded (their days marked)."""
    _empty(engine)
    pieces = case["pieces"]
    cut = held * len(pieces) // 100
    _load(engine, pieces[:cut], [], case["prepared"])
    refresh(engine)
    _load(engine, pieces[cut:], case["cuts"], case["prepared"])


def assert_readers_answer_like_the_base_tables(engine: Engine, rnd: random.Random) -> None:
    """Every grouping (with a filter, a range and a daily split drawn at random), every filter
    list and the request count, as the readers ask them (the rollups, and whatever stands in
    for their stale time), equal the base tables' answers."""
    with engine.connect() as conn:
        dirty = dirty_in(conn, None, None)
    for dims in DIMS:
        filters, (since, until) = rnd.choice(FILTERS), rnd.choice(RANGES)
        by_day = rnd.random() < 0.5
        scope = Scope(since, until, filters)
        with engine.connect() as conn:
            query = cost_query(conn, dims, scope, by_day=by_day)
        expected = _rows(engine, _base(dims, scope, by_day))
        assert _rows(engine, query) == expected, (dims, filters, since, until, by_day, dirty)
    for dim in ("endpoint", "user", "team", "model", "provider"):
        since, until = rnd.choice(RANGES)
        listed = filter_options(engine, dim, Scope(since, until))
        with engine.connect() as conn:
            base = filter_options_from_base(conn, dim, Scope(since, until))
        assert listed == base, (dim, since, until, dirty)
    bounds = data_bounds(engine)
    with engine.connect() as conn:
        count = conn.execute(select(func.count()).select_from(Request)).scalar_one()
    assert (bounds.requests if bounds else 0) == count


def test_readers_read_dirty_days_from_the_base_tables_and_rebuild_in_the_background(
    engine: Engine,
) -> None:
    call = CallRow("b" * 32, "1" * 16, T0, 10, "p1", "m1", None, None, None, "otel-genai",
                   100, 0, 0, 10, 0, 99, "catalog")  # fmt: skip
    _load(engine, [call], [], False)
    with named_lock(engine, LOCK):
        # Another process is refreshing: the background one finds the lock held and leaves
        # the marks; the report adds the dirty day from the base tables.
        thread = refresh_in_background(engine)
        assert thread is not None
        thread.join(timeout=30)
        [row] = unit_costs(engine, ["model"])
        assert (row.requests, row.cost_nanousd) == (1, 99)
        with engine.connect() as conn:
            assert dirty_days(conn) == [DAY]
            sql = str(cost_query(conn, ["model"], Scope()))
        assert "rollup_daily_calls" in sql and "llm_calls" in sql and "UNION ALL" in sql
    thread = refresh_in_background(engine)
    assert thread is not None
    thread.join(timeout=30)
    assert refresh_in_background(engine) is None  # nothing dirty: no thread
    with engine.connect() as conn:
        assert dirty_days(conn) == []
        sql = str(cost_query(conn, ["model"], Scope()))
    assert "rollup_daily_calls" in sql and "UNION" not in sql
    [row] = unit_costs(engine, ["model"])
    assert (row.requests, row.cost_nanousd) == (1, 99)


def test_readers_leave_a_long_rebuild_to_the_worker(engine: Engine) -> None:
    rng = random.Random(7)
    calls = [
        CallRow(f"{i:032x}", "1" * 16, T0 + timedelta(days=i), 10, "p1", "m1", None, None,
                None, "otel-genai", rng.randint(0, 99), 0, 0, 1, 0, 5, "catalog")
        for i in range(9)
    ]  # fmt: skip
    _load(engine, calls, [], False)
    assert refresh_in_background(engine) is None  # nine dirty days: too many for a reader
    [row] = unit_costs(engine, [])
    assert row.requests == 9
    with engine.connect() as conn:
        assert len(dirty_days(conn)) == 9
    assert refresh(engine).days == 9


def test_the_trace_ids_of_a_batch_in_every_row_form(engine: Engine) -> None:
    """load_batch marks the days of its traces whichever form its rows took: request facts,
    or driver rows prepared in a decode worker (COPY rows on PostgreSQL: 500 rows or more)."""
    from app.rollups.dirty import batch_trace_ids

    ids = [f"{i:032x}" for i in range(600)]
    batch = Batch(requests={t: _facts(t, T0, True, "/a", "u1") for t in ids})
    assert batch_trace_ids(batch, engine.dialect) == ids
    prepare(engine.dialect, batch, {})
    assert batch.rows is not None and not batch.requests
    assert batch_trace_ids(batch, engine.dialect) == ids
    with session_scope(engine) as session:
        load_batch(session, batch, {})
    with engine.connect() as conn:
        assert dirty_days(conn) == [DAY]
