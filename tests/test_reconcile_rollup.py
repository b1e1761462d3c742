"""The reconciliation read from its call-day rollup (`rollup_call_days`) equals the one summed
from the calls, on SQLite and PostgreSQL.

Random traces arrive in random batches and orders (`tests.test_rollups.traffic`, through
`load_batch` in both row forms), with calls moved hours after their request's start and roots
that move requests to another day, so calls often fall on another UTC day than their request;
part of the traffic arrives after a refresh, maybe a re-price and a true-up follow, maybe no
refresh at the end (dirty days). Every reconciliation then equals the base tables' (every day
marked dirty: all read from `llm_calls`), and its traced groups equal the calls summed in
Python; after a refresh the rollup holds exactly the calls' sums.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, delete, select

from app.reports.reconcile import reconcile, reconcile_records
from app.reprice import reprice
from app.rollups.dirty import mark_all
from app.rollups.refresh import dirty_days, plan, refresh
from app.rollups.staging import stage, stage_pairs, stage_twins
from app.rollups.stale import dirty_in
from app.settings import Settings
from app.traces.batch import CallRow
from app.trueup import refresh_true_up
from app.warehouse.engine import session_scope
from app.warehouse.tables import LlmCall
from app.warehouse.tables_billing import BilledCost
from app.warehouse.tables_rollup import rollup_call_days
from app.warehouse.tables_trueup import TrueUpFactor
from app.warehouse.types import as_date
from tests.test_rollups import DAY, OVERRIDES, T0, _empty, _facts, _load, traffic

RANGES = [
    (DAY - timedelta(days=2), None),
    (DAY, DAY + timedelta(days=1)),
    (DAY + timedelta(days=1), DAY + timedelta(days=4)),
]
Groups = dict[tuple[date, str, str], tuple[int, int, int, int, int]]


@st.composite
def recon_traffic(draw: Any) -> dict[str, Any]:
    """`traffic`, with calls moved up to 30 hours after their trace's start (another UTC day
    than their request's, often), some answered by another model than requested, and bills."""
    case: dict[str, Any] = draw(traffic())
    pieces = []
    for piece in case["pieces"]:
        if isinstance(piece, CallRow):
            later = timedelta(hours=draw(st.integers(0, 30)), seconds=draw(st.integers(0, 59)))
            answered = draw(st.sampled_from([None, None, "m1", "m2-2025-01-01"]))
            piece = piece._replace(started_at=piece.started_at + later, response_model=answered)
        pieces.append(piece)
    case["pieces"] = pieces
    case["bills"] = draw(
        st.lists(
            st.tuples(
                st.sampled_from(["p1", "p2"]),
                st.integers(-1, 3),  # the day, from DAY
                st.sampled_from(["m1", "m2", "llama", None]),
                st.integers(0, 3 * 10**9),
                st.sampled_from(["USD", "USD", "EUR"]),
            ),
            min_size=1,
            max_size=6,
        )
    )
    case["held"] = draw(st.integers(0, 100))  # percent loaded and rolled up before the rest
    case["true_up"] = draw(st.booleans())
    case["refresh_at_end"] = draw(st.booleans())
    return case


def _bill(engine: Engine, bills: list[tuple[str, int, str | None, int, str]]) -> None:
    with session_scope(engine) as session:
        for i, (provider, offset, model, amount, currency) in enumerate(bills):
            session.add(
                BilledCost(
                    provider=provider,
                    day=DAY + timedelta(days=offset),
                    line_item=f"line {i}",
                    model=model,
                    model_raw=model,
                    cost_type="tokens" if model else "web_search",
                    amount_nano=amount,
                    currency=currency,
                    fetched_at=datetime.now(UTC),
                )
            )


def _reset(engine: Engine) -> None:
    _empty(engine)
    with session_scope(engine) as session:
        for table in (BilledCost, TrueUpFactor):
            session.execute(delete(table))
        session.execute(delete(rollup_call_days))


def summed_calls(engine: Engine) -> Groups:
    """The calls, read one by one and summed in Python per call day, provider and served
    model: calls, input and output tokens, priced estimate, unpriced calls."""
    sums: dict[tuple[date, str, str], list[int]] = defaultdict(lambda: [0, 0, 0, 0, 0])
    with engine.connect() as conn:
        for call in conn.execute(select(LlmCall)).all():
            key = (call.started_at.date(), call.provider, call.response_model or call.model)
            row = sums[key]
            row[0] += 1
            row[1] += call.input_tokens
            row[2] += call.output_tokens
            row[3] += call.cost_nanousd or 0
            row[4] += call.cost_nanousd is None
    return {k: (a, b, c, d, e) for k, (a, b, c, d, e) in sums.items()}


def rolled_up(engine: Engine) -> Groups:
    with engine.connect() as conn:
        rows = conn.execute(select(rollup_call_days)).all()
    out: Groups = {}
    hours: set[tuple[Any, ...]] = set()
    for day, provider, model, *measures, hour in rows:
        key = (as_date(day), provider, model)
        assert (key, hour) not in hours, (key, hour)  # one row per key and hour
        hours.add((key, hour))
        was = out.get(key, (0, 0, 0, 0, 0))
        out[key] = tuple(a + int(m) for a, m in zip(was, measures, strict=True))  # type: ignore[assignment]
    return out


def _answers(engine: Engine) -> list[Any]:
    out = []
    for since, until in RANGES:
        result = reconcile(engine, since, until)
        traced = sorted((g.day, g.provider, g.raw_model, g.cost_nanousd, g.unpriced_calls)
                        for g in result.traced)  # fmt: skip
        out.append((reconcile_records(result.rows), result.unpriced_calls, traced))
    return out


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(recon_traffic())
def test_the_rollup_reconciles_like_the_calls(engine: Engine, case: dict[str, Any]) -> None:
    _reset(engine)
    _bill(engine, case["bills"])
    pieces = case["pieces"]
    cut = case["held"] * len(pieces) // 100
    _load(engine, pieces[:cut], [], case["prepared"])
    refresh(engine)
    _load(engine, pieces[cut:], case["cuts"], case["prepared"])
    if case["reloads"]:  # the same spans again: nothing changes
        _load(engine, pieces, [], not case["prepared"])
    if case["reprice"]:
        reprice(engine, Settings(pricing={"overrides": OVERRIDES}), None)
    if case["true_up"]:  # scales no estimate: the reconciliation's figures stay the calls'
        for provider in ("p1", "p2"):
            refresh_true_up(engine, provider, DAY - timedelta(days=2), DAY + timedelta(days=4))
    if case["refresh_at_end"]:
        refresh(engine)
        assert rolled_up(engine) == summed_calls(engine)
    with engine.connect() as conn:
        dirty = dirty_days(conn)
    answers = _answers(engine)

    calls = summed_calls(engine)
    with engine.connect() as conn:
        billed = set(conn.execute(select(BilledCost.provider).distinct()).scalars())
    for (since, until), (_, unpriced, traced) in zip(RANGES, answers, strict=True):
        expected = sorted(
            (day, provider, model, cost, missing)
            for (day, provider, model), (_, _, _, cost, missing) in calls.items()
            if provider in billed and day >= since and (until is None or day < until)
        )
        assert traced == expected, (since, until, dirty)
        assert unpriced == sum(g[4] for g in expected)

    with engine.begin() as conn:  # every day dirty: the reconciliation from the calls alone
        mark_all(conn)
    assert _answers(engine) == answers, dirty
    with engine.connect() as conn:  # every day staged: from the rollup's twin alone
        whole = [job for job in plan(conn) if job.hours is None]
        # (A sliced day no longer live is rebuilt whole; left with no request or call, it is
        # not marked whole by `mark_all`, and only its marked hours are stale to readers.)
        staged_days = {job.day for job in whole} & set(dirty_in(conn, None, None).days)
    for job in whole:  # the first commit: the call days' twin is not written yet
        stage_pairs(engine, job)
    with engine.connect() as conn:
        paired = {day for day, _ in dirty_in(conn, None, None).paired}
        assert paired == staged_days
    assert _answers(engine) == answers, dirty
    for job in whole:  # the next: the call days' twin
        stage_twins(engine, job, limit=1)
    assert _answers(engine) == answers, dirty
    for job in whole:
        stage(engine, job)
    with engine.connect() as conn:
        assert dirty_in(conn, None, None).staged == tuple(sorted(staged_days))
    assert _answers(engine) == answers, dirty


def _call(trace: str, span: str, at: datetime, cost: int | None, model: str = "m1") -> CallRow:
    return CallRow(trace, span, at, 10, "p1", model, None, None, None, "otel-genai",
                   100, 0, 0, 10, 0, cost, "catalog")  # fmt: skip


def _estimates(engine: Engine, since: date, until: date) -> dict[date, int]:
    days: dict[date, int] = defaultdict(int)
    for group in reconcile(engine, since, until).traced:
        days[group.day] += group.cost_nanousd
    return dict(days)


def test_a_call_after_midnight_counts_on_its_own_day_through_every_rebuild(
    engine: Engine,
) -> None:
    """A request that starts at 23:59 makes calls before and after midnight, the second one in
    a later batch after a refresh: the reconciliation counts each on its own day, whether read
    from the rollup or (before the next refresh) from the calls."""
    _bill(engine, [("p1", 0, "m1", 10**9, "USD")])
    trace, late = "b" * 32, T0 + timedelta(hours=23, minutes=59)
    next_day = DAY + timedelta(days=1)
    _load(engine, [_facts(trace, late, True, "/a", "u1"), _call(trace, "1" * 16, late, 700)],
          [], False)  # fmt: skip
    refresh(engine)
    assert _estimates(engine, DAY, DAY + timedelta(days=3)) == {DAY: 700}

    # Its second call, in the next batch: the call's day (not the request's) is marked.
    _load(engine, [_call(trace, "2" * 16, late + timedelta(minutes=2), 300)], [], True)
    with engine.connect() as conn:
        assert next_day in dirty_days(conn)
    assert _estimates(engine, DAY, DAY + timedelta(days=3)) == {DAY: 700, next_day: 300}
    refresh(engine)
    with engine.connect() as conn:
        assert dirty_days(conn) == []
    assert rolled_up(engine) == summed_calls(engine)
    assert _estimates(engine, DAY, DAY + timedelta(days=3)) == {DAY: 700, next_day: 300}

    # A re-price changes the second call only: its day is marked, and read from the calls.
    reprice(engine, Settings(pricing={"overrides": OVERRIDES}), next_day)
    with engine.connect() as conn:
        assert next_day in dirty_days(conn)
    estimates = _estimates(engine, DAY, DAY + timedelta(days=3))
    assert estimates[DAY] == 700 and estimates[next_day] != 300
    refresh(engine)
    assert _estimates(engine, DAY, DAY + timedelta(days=3)) == estimates
    assert rolled_up(engine) == summed_calls(engine)


def test_a_staged_day_beside_a_stale_hour_reads_all_three_parts(engine: Engine) -> None:
    """The rollup, a staged day's twin and a live day's stale hour from the calls, in one
    query (SQLite rejects a union nested in another): the estimates are the calls'."""
    _bill(engine, [("p1", 0, "m1", 10**9, "USD")])
    live = DAY + timedelta(days=1)
    first, second, third = "a" * 32, "b" * 32, "c" * 32
    noon, live_noon = T0 + timedelta(hours=12), T0 + timedelta(days=1, hours=12)
    _load(engine, [_facts(first, noon, True, "/a", "u1"), _call(first, "1" * 16, noon, 700),
                   _facts(second, live_noon, True, "/a", "u1"),
                   _call(second, "1" * 16, live_noon, 50)], [], False)  # fmt: skip
    refresh(engine)
    # A late call on the past day (marked whole) and a call in an hour of the live day.
    _load(engine, [_call(first, "2" * 16, noon + timedelta(minutes=1), 300),
                   _facts(third, live_noon, True, "/a", "u2"),
                   _call(third, "1" * 16, live_noon, 5)], [], True)  # fmt: skip
    with engine.connect() as conn:
        jobs = plan(conn)
    assert [(job.day, job.hours) for job in jobs] == [(DAY, None), (live, (12,))]
    stage(engine, jobs[0])
    with engine.connect() as conn:
        stale = dirty_in(conn, None, None)
    assert stale.staged == (DAY,) and stale.unstaged()
    assert _estimates(engine, DAY, live + timedelta(days=1)) == {DAY: 1000, live: 55}
