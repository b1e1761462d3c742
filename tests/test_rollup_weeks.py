"""Weekly rollups: per-user questions over long ranges read whole weeks, and stay exact.

The refresh sums each week whose seven days are all rebuilt whole (none live, sliced or marked)
into the weekly tables and lists it in `rollup_weeks`; a day's rebuild takes its week off the
list. Readers take the listed weeks that lie whole in their range and hold no stale day from the
weekly rows, the rest from the daily rows (and the stale time from the base tables). Random
traffic over four weeks, random ranges and a late request into a summed week: every answer
equals the base tables', on SQLite and PostgreSQL.
"""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, func, select

from app.dashboard.queries import filter_options
from app.reports.unit_costs import Scope, cost_query, unit_costs
from app.rollups.dirty import mark_days
from app.rollups.refresh import dirty_days, live_from, refresh
from app.rollups.stale import dirty_in
from app.rollups.weeks import WEEK, weeks_in
from app.traces.batch import CallRow
from app.warehouse.engine import snapshot
from app.warehouse.tables import Request
from app.warehouse.tables_rollup import MEASURES
from app.warehouse.tables_weekly import WEEKLY, rollup_weeks
from tests.test_rollups import (
    DIMS,
    FILTERS,
    SEVERAL,
    _base,
    _empty,
    _facts,
    _load,
    _rows,
    filter_options_from_base,
)

MONDAY = date(2025, 11, 3)
T0 = datetime(2025, 11, 3, tzinfo=UTC)
SPAN_DAYS = 26  # Monday 3 to Friday 28 November: weeks of the 3rd, 10th and 17th are whole
DAY = timedelta(days=1)
MODELS = ("m1", "m2", "llama")
PROVIDERS = ("p1", "p2")


def _call(trace: str, span: int, at: datetime, provider: str, model: str, cost: int) -> CallRow:
    return CallRow(trace, f"{span:016x}", at, 10, provider, model, None, None, None,
                   "otel-genai", 100, 0, 0, 10, 0, cost, "catalog")  # fmt: skip


@st.composite
def month(draw: Any) -> list[Any]:
    """Requests over SPAN_DAYS days, by a few users, each with up to three calls, some with
    a root a day or so away from its first span."""
    pieces: list[Any] = []
    for t in range(draw(st.integers(4, 30))):
        trace = f"{t:032x}"
        first = T0 + timedelta(minutes=draw(st.integers(0, SPAN_DAYS * 24 * 60 - 1)))
        user = draw(st.sampled_from([None, "u1", "u2", "u3"]))
        pieces.append(_facts(trace, first, False, "", user))
        for s in range(draw(st.integers(0, 3))):
            provider = draw(st.sampled_from(PROVIDERS))
            model = draw(st.sampled_from(MODELS))
            cost = draw(st.one_of(st.none(), st.integers(0, 10**9)))
            pieces.append(_call(trace, s, first + timedelta(seconds=s), provider, model, cost))  # type: ignore[arg-type]
        if draw(st.booleans()):
            shift = timedelta(hours=draw(st.integers(-30, 30)))
            endpoint = draw(st.sampled_from(["/a", "/b"]))
            pieces.append(_facts(trace, first + shift, True, endpoint, user))
    return pieces


def _ranges(rnd: random.Random) -> list[tuple[date | None, date | None]]:
    """All time, whole weeks, and ranges cut inside weeks."""
    cut = MONDAY + timedelta(days=rnd.randrange(1, 7))
    end = MONDAY + timedelta(days=rnd.randrange(14, SPAN_DAYS + 2))
    return [(None, None), (MONDAY, MONDAY + 2 * WEEK), (cut, end), (None, end), (cut, None)]


def _current_weeks(engine: Engine) -> list[tuple[date, int]]:
    """The summed weeks: (Monday, days summed)."""
    w = rollup_weeks.c
    with engine.connect() as conn:
        weeks = conn.execute(select(w.week, w.days).order_by(w.week))
        return [(d if isinstance(d, date) else date.fromisoformat(str(d)), n) for d, n in weeks]


def _expected_weeks(engine: Engine) -> list[tuple[date, int]]:
    """With nothing marked: every week summed up to the live days (`live_from`), where that
    is two days or more and holds a day with requests or after one."""
    with engine.connect() as conn:
        assert dirty_days(conn) == []
        first, last = conn.execute(
            select(func.min(Request.started_at), func.max(Request.started_at))
        ).one()
    live = live_from(last)
    start = first.date() - timedelta(days=first.weekday())
    mondays = [start + k * WEEK for k in range(SPAN_DAYS)]
    return [
        (m, min(7, (live - m).days))
        for m in mondays
        if m + 2 * DAY <= live and min(m + WEEK, live) > first.date()
    ]


def _weekly_rows_are_their_days_sums(engine: Engine) -> None:
    """Each current week's weekly rows equal its summed days' daily rows, summed by key."""
    with engine.connect() as conn:
        for week, days in _current_weeks(engine):
            for daily, weekly in WEEKLY.items():
                keys = [c.name for c in weekly.c if c.name not in ("week", *MEASURES)]
                sums = [c.name for c in weekly.c if c.name in MEASURES]
                d = daily.c
                from_days = select(*(d[k] for k in keys), *(func.sum(d[s]) for s in sums))
                from_days = from_days.where(d.day >= week, d.day < week + timedelta(days=days))
                w = weekly.c
                stored = select(*(w[k] for k in keys), *(w[s] for s in sums))
                stored = stored.where(w.week == week)

                def rows(query: Any) -> list[tuple[Any, ...]]:
                    return sorted(
                        tuple("" if v is None else v if isinstance(v, str) else int(v) for v in r)
                        for r in conn.execute(query)
                    )

                assert rows(stored) == rows(from_days.group_by(*(d[k] for k in keys))), week


# The groupings that read a per-user rollup (with a filter on users, every one does); the
# others read the per-model weekly rollups when a model or provider is asked.
USER_DIMS = [d for d in DIMS if "user" in d]


def _assert_answers_like_the_base_tables(engine: Engine, rnd: random.Random) -> int:
    """Every per-user grouping and three others (some with a filter on users), filtered at
    random, over ranges that hold whole weeks and ranges cut inside them; the number of
    questions in which weeks were read."""
    read_weeks = 0
    others = [d for d in DIMS if "user" not in d]
    for dims in [*USER_DIMS, *rnd.sample(others, 3)]:
        users = {}
        if "user" not in dims and rnd.random() < 0.5:
            users = {"user": rnd.choice([["u1"], ["u2", "u3"]])}
        for filters in ({**rnd.choice(FILTERS), **users}, {**rnd.choice(SEVERAL), **users}):
            for since, until in rnd.sample(_ranges(rnd), 3):
                scope = Scope(since, until, filters)
                with snapshot(engine) as conn:
                    query = cost_query(conn, dims, scope)
                    weeks = weeks_in(conn, since, until, dirty_in(conn, since, until))
                sql = str(query.compile(engine))
                read_weeks += "rollup_weekly" in sql
                if "user" in dims or "user" in filters:
                    assert ("rollup_weekly" in sql) == bool(weeks), (dims, filters, since, until)
                expected = _rows(engine, _base(dims, scope, False))
                assert _rows(engine, query) == expected, (dims, filters, since, until)
    for since, until in _ranges(rnd):
        scope = Scope(since, until)
        for dim in ("user", "model", "provider"):
            with engine.connect() as conn:
                base = filter_options_from_base(conn, dim, scope)
            assert filter_options(engine, dim, scope) == base, (dim, since, until)
    return read_weeks


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(month(), st.randoms(use_true_random=False))
def test_weeks_answer_like_the_base_tables(
    engine: Engine, pieces: list[Any], rnd: random.Random
) -> None:
    _empty(engine)
    _load(engine, pieces, [], False)
    refresh(engine)
    weeks = _current_weeks(engine)
    assert weeks == _expected_weeks(engine)
    _weekly_rows_are_their_days_sums(engine)
    read = _assert_answers_like_the_base_tables(engine, rnd)
    assert read or not weeks

    # A late request into the first week. A day never summed is marked: stale (read from the
    # base tables) and, if the week's sums hold that day, they are not read until the refresh
    # has rebuilt the day and summed the week again. A summed day is patched with its week's
    # rows (`app.rollups.patch`): the week is still read, and still its days' sums.
    late = T0 + timedelta(days=rnd.randrange(0, 7), hours=5)
    trace = "f" * 32
    _load(engine, [_facts(trace, late, True, "/a", "u1"), _call(trace, 1, late, "p1", "m1", 7)],
          [], False)  # fmt: skip
    if weeks and weeks[0][0] == MONDAY and late.date() < MONDAY + weeks[0][1] * DAY:
        with snapshot(engine) as conn:
            stale = dirty_in(conn, None, None)
            read = [m for m, _ in weeks_in(conn, None, None, stale)]
        assert (MONDAY in read) == (late.date() not in stale.days)
        _weekly_rows_are_their_days_sums(engine)
    _assert_answers_like_the_base_tables(engine, rnd)
    refresh(engine)
    assert _current_weeks(engine) == _expected_weeks(engine)
    _weekly_rows_are_their_days_sums(engine)
    _assert_answers_like_the_base_tables(engine, rnd)


def _steady(engine: Engine, days: int) -> None:
    """A request by u1 and u2 every day from MONDAY on, each calling m1 and m2."""
    pieces: list[Any] = []
    for day in range(days):
        for u, user in enumerate(("u1", "u2")):
            trace = f"{day:016x}{u:016x}"
            at = T0 + timedelta(days=day, hours=10 + u)
            pieces += [_facts(trace, at, True, "/a", user), _call(trace, 1, at, "p1", "m1", 100),
                       _call(trace, 2, at, "p2", "m2", 1000 + day)]  # fmt: skip
    _load(engine, pieces, [], False)


def test_a_week_is_summed_up_to_the_live_days_and_taken_off_when_a_day_is_rebuilt(
    engine: Engine,
) -> None:
    _steady(engine, 15)  # the 3rd to the 17th, 11:00: the 17th is live
    refresh(engine)
    second, third = MONDAY + WEEK, MONDAY + 2 * WEEK
    assert _current_weeks(engine) == [(MONDAY, 7), (second, 7)]
    with snapshot(engine) as conn:
        assert weeks_in(conn, MONDAY, MONDAY + WEEK, None) == ((MONDAY, 7),)
        assert weeks_in(conn, MONDAY + DAY, None, None) == ((second, 7),)
        assert weeks_in(conn, MONDAY, second + 5 * DAY, None) == ((MONDAY, 7),)
    _steady(engine, 17)  # two more days: the 19th is live; the third week summed to the 18th
    refresh(engine)
    assert _current_weeks(engine) == [(MONDAY, 7), (second, 7), (third, 2)]
    # Live ingest on the 19th: its hour's rebuild leaves the week summed up to the 18th be.
    at = T0 + timedelta(days=16, hours=20)
    _load(engine, [_facts("d" * 32, at, True, "/a", "u1")], [], False)
    assert refresh(engine).weeks == 0
    assert _current_weeks(engine) == [(MONDAY, 7), (second, 7), (third, 2)]
    _weekly_rows_are_their_days_sums(engine)
    # A user's 14 days in two weekly rows, not 14 daily ones; the same answer.
    scope = Scope(MONDAY, MONDAY + 2 * WEEK, {"model": ["m1", "m2"]})
    [u1, u2] = unit_costs(engine, ["user"], scope)
    assert (u2.group, u2.requests, u2.llm_calls) == ({"user": "u2"}, 14, 28)
    assert u2.cost_nanousd == 14 * 100 + sum(1000 + d for d in range(14))
    assert (u1.group, u1.cost_nanousd) == ({"user": "u1"}, u2.cost_nanousd)
    # A late call on the 5th: patched with its day's rows and its week's (`app.rollups.patch`),
    # so both weeks are still read, and answer like the base tables.
    late = T0 + timedelta(days=2, hours=3)
    _load(engine, [_facts("e" * 32, late, True, "/b", "u1"), _call("e" * 32, 1, late, "p1", "m1",
                                                                     5)], [], False)  # fmt: skip
    with snapshot(engine) as conn:
        read = weeks_in(conn, MONDAY, third, dirty_in(conn, None, None))
    assert read == ((MONDAY, 7), (second, 7))
    _weekly_rows_are_their_days_sums(engine)
    [first, _] = unit_costs(engine, ["user"], scope)
    assert (first.group, first.requests, first.cost_nanousd) == (
        {"user": "u1"},
        15,
        u1.cost_nanousd + 5,
    )
    # The 5th marked (a re-price, say): the first week is not read until the refresh has
    # rebuilt the day (its rebuild takes the week off in its own transaction) and summed it.
    with engine.begin() as conn:
        mark_days(conn, [late.date()])
    with snapshot(engine) as conn:
        assert weeks_in(conn, MONDAY, third, dirty_in(conn, None, None)) == ((second, 7),)
    assert unit_costs(engine, ["user"], scope)[0] == first
    refresh(engine)
    assert _current_weeks(engine) == [(MONDAY, 7), (second, 7), (third, 2)]
    _weekly_rows_are_their_days_sums(engine)
    assert unit_costs(engine, ["user"], scope)[0] == first
