"""Late spans of a past day patch its rollup rows in the load's own transaction
(`app.rollups.patch`): no mark, readers keep reading the day from the rollups, and the rows are
those a rebuild writes. Whatever cannot be patched is marked, as before."""

from __future__ import annotations

import random
from datetime import date, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, func, select, update

from app.reports.unit_costs import Scope, unit_costs
from app.rollups import patch, swap
from app.rollups.day_pairs import ORDER
from app.rollups.dirty import mark_all, mark_days
from app.rollups.refresh import CHANGE_LOCK, LOCK, refresh
from app.traces.batch import CallRow
from app.trueup import refresh_true_up
from app.warehouse.engine import session_scope
from app.warehouse.locks import named_lock, wait_transaction_lock
from app.warehouse.tables import Request
from app.warehouse.tables_rollup import (
    GPU_ROLLUPS,
    rollup_call_days,
    rollup_daily,
    rollup_daily_gpu_spread,
    rollup_dirty,
)
from app.warehouse.tables_trueup import TrueUpFactor
from app.warehouse.tables_weekly import WEEKLY, rollup_weeks
from tests.test_reconcile import D3, add_call, at, load_month, usd
from tests.test_rollup_refresh import assert_readers_answer_like_the_base_tables
from tests.test_rollup_swap import D5, D6, _doubled, refreshed_at
from tests.test_rollups import DAY, T0, _allocate_gpu, _empty, _facts, _load, traffic

ALL = (*ORDER, *GPU_ROLLUPS, rollup_call_days, *WEEKLY.values())
LATER = T0 + timedelta(days=10)  # the live day: the traffic's days are settled


def _call(trace: str, span: int, at: datetime, model: str = "m1", cost: int = 1000) -> CallRow:
    return CallRow(trace, f"{span:016x}", at, 10, "p1", model, None, None, None, "otel-genai",
                   100, 0, 0, 10, 0, cost, "catalog")  # fmt: skip


def _anchor() -> list[Any]:
    """A request on a later day, so that the days before it are past (not live)."""
    trace = "f" * 32
    return [_facts(trace, LATER, True, "/a", "u1"), _call(trace, 1, LATER)]


def _fillers() -> list[Any]:
    """A request at noon of each day the random traffic may touch, so that each is summed."""
    out: list[Any] = []
    for n in range(-2, 5):
        trace, noon = f"e{n + 2:031x}", T0 + timedelta(days=n, hours=12)
        out += [_facts(trace, noon, True, "/a", "u1"), _call(trace, 1, noon)]
    return out


def rows(engine: Engine, skip: set[date] = frozenset()) -> dict[str, list[Any]]:  # type: ignore[assignment]
    """Every rollup's rows (days as text, all values as text), but those of the `skip` days."""
    got = {}
    with engine.connect() as conn:
        for table in ALL:
            found = conn.execute(select(table)).mappings()
            got[table.name] = sorted(
                tuple(str(v) for v in r.values())
                for r in found
                if _day(r["day"] if "day" in r else r["week"]) not in skip
            )
    return got


def _day(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])


def marks(engine: Engine) -> list[tuple[date, int | None]]:
    with engine.connect() as conn:
        found = conn.execute(select(rollup_dirty.c.day, rollup_dirty.c.hour)).all()
    return sorted({(_day(d), h) for d, h in found}, key=lambda m: (m[0], m[1] or -1))


def rebuilt(engine: Engine) -> dict[str, list[Any]]:
    """The rows a full rebuild writes."""
    with engine.begin() as conn:
        mark_all(conn)
    refresh(engine)
    return rows(engine)


@pytest.fixture
def settled(engine: Engine) -> Engine:
    """Two past days of traffic, summed: t1 on /a with two calls the 20th, t2 the 21st, t3
    the 21st with a GPU model's calls that day and the next (a spread request: two cells); and
    the live day."""
    pieces = [
        *_anchor(),
        _facts("1" * 32, T0 + timedelta(hours=9), True, "/a", "u1"),
        _call("1" * 32, 1, T0 + timedelta(hours=9)),
        _call("1" * 32, 2, T0 + timedelta(hours=9, seconds=5), "m2", 2000),
        _facts("2" * 32, T0 + timedelta(hours=30), True, "/b", "u2"),
        _call("2" * 32, 1, T0 + timedelta(hours=30), "m2", 3000),
        _facts("3" * 32, T0 + timedelta(hours=33), True, "/b", "u3"),
        _call("3" * 32, 1, T0 + timedelta(hours=33), "llama", 0),
        _call("3" * 32, 2, T0 + timedelta(hours=49), "llama", 0),  # spread: two call days
    ]
    _load(engine, pieces, [], False)
    refresh(engine)
    _allocate_gpu(engine)
    refresh(engine)
    assert marks(engine) == []
    return engine


def test_a_late_call_patches_its_day_like_a_rebuild(settled: Engine) -> None:
    """A late call of t1 and a new request on the 20th: nothing marked, the dashboard's stamp
    moves, the answers are the base tables' from the rollups alone, and the rows are a
    rebuild's, the weekly rollups' too."""
    stamped = refreshed_at(settled)
    with settled.connect() as conn:
        weeks = conn.execute(select(rollup_weeks.c.week)).scalars().all()
    assert weeks  # summed: the patch merges its change into the week's rows too
    late = [
        _call("1" * 32, 3, T0 + timedelta(hours=9, seconds=9), "m1", 500),
        _facts("4" * 32, T0 + timedelta(hours=20), True, "/a", None),
        _call("4" * 32, 1, T0 + timedelta(hours=20), "m2", 700),
    ]
    _load(settled, late, [], False)
    assert marks(settled) == []
    assert refreshed_at(settled) > stamped
    assert_readers_answer_like_the_base_tables(settled, random.Random(1))
    [row] = unit_costs(settled, ["endpoint"], Scope(DAY, DAY + timedelta(days=1)))
    assert (row.group, row.requests, row.llm_calls) == ({"endpoint": "/a"}, 2, 4)
    patched = rows(settled)
    assert refresh(settled).weeks == 0  # (current: nothing to sum again)
    assert rows(settled) == patched
    assert rebuilt(settled) == patched


def test_a_late_root_changing_a_request_with_gpu_shares(settled: Engine) -> None:
    """t3's root arrives: it started earlier that day (the 21st), on /a, for another user. The
    request keeps its day but moves hour, endpoint, user and team, with its GPU shares and its
    spread rows, and a new llama call (no share yet). Patched, rows a rebuild's."""
    with settled.connect() as conn:
        assert conn.execute(select(rollup_daily_gpu_spread)).all()
    late = [
        _facts("3" * 32, T0 + timedelta(hours=26), True, "/a", "u2"),
        _call("3" * 32, 3, T0 + timedelta(hours=26), "llama", 0),
    ]
    _load(settled, late, [], True)
    assert marks(settled) == []
    assert_readers_answer_like_the_base_tables(settled, random.Random(2))
    patched = rows(settled)
    assert rebuilt(settled) == patched


def test_a_request_moved_to_another_day_is_marked(settled: Engine) -> None:
    """t2's root arrives: it started the day before (the 20th). A re-price, true-up or
    re-allocation under way may have read the request on the 21st: both days are marked, and
    nothing is patched."""
    before = rows(settled)
    _load(settled, [_facts("2" * 32, T0 + timedelta(hours=23), True, "/b", "u2")], [], False)
    assert rows(settled) == before
    assert marks(settled) == [(DAY, 23), (DAY + timedelta(days=1), 6)]
    refresh(settled)
    assert_readers_answer_like_the_base_tables(settled, random.Random(5))


def test_a_batch_across_two_weeks(settled: Engine) -> None:
    """A late request that started on a Sunday at 23:59 and called at 00:00:05 on Monday:
    two days of two summed weeks patched, each week's rows once."""
    _load(settled, _fillers(), [], False)
    refresh(settled)
    sunday = T0 + timedelta(days=3, hours=23, minutes=59)
    assert sunday.weekday() == 6
    late = [_facts("6" * 32, sunday, True, "/a", "u1"),
            _call("6" * 32, 1, sunday + timedelta(seconds=65))]  # fmt: skip
    _load(settled, late, [], False)
    assert marks(settled) == []
    with settled.connect() as conn:
        weeks = set(conn.execute(select(rollup_weeks.c.week)).scalars())
    assert {_day(w) for w in weeks} >= {DAY - timedelta(days=3), DAY + timedelta(days=4)}
    assert rows(settled) == rebuilt(settled)


def test_spans_sent_again_change_nothing(settled: Engine) -> None:
    before = rows(settled)
    again = [_facts("2" * 32, T0 + timedelta(hours=30), True, "/b", "u2"),
             _call("2" * 32, 1, T0 + timedelta(hours=30), "m2", 3000)]  # fmt: skip
    _load(settled, again, [], False)
    assert marks(settled) == []
    assert rows(settled) == before


def test_what_cannot_be_patched_is_marked(settled: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    late = [_call("1" * 32, 7, T0 + timedelta(hours=9, seconds=20))]
    # The live day: its hour marked, as ever.
    _load(settled, [_call("f" * 32, 2, LATER + timedelta(hours=3))], [], False)
    assert {d for d, _ in marks(settled)} == {LATER.date()}
    refresh(settled)
    # A day marked already: marked again.
    with settled.begin() as conn:
        mark_days(conn, [DAY])
    _load(settled, late, [], False)
    assert {d for d, _ in marks(settled)} == {DAY}
    refresh(settled)
    # The refresh lock held elsewhere.
    with named_lock(settled, LOCK) as held:
        assert held
        _load(settled, [_call("1" * 32, 8, T0 + timedelta(hours=9, seconds=21))], [], False)
    assert marks(settled) == [(DAY, 9)]
    refresh(settled)
    # More requests than a patch takes.
    monkeypatch.setattr(patch, "PATCH_MAX", 1)
    two = [_call("1" * 32, 9, T0 + timedelta(hours=9, seconds=22)),
           _call("2" * 32, 9, T0 + timedelta(hours=30, seconds=22))]  # fmt: skip
    _load(settled, two, [], False)
    assert {d for d, _ in marks(settled)} == {DAY, DAY + timedelta(days=1)}
    refresh(settled)
    monkeypatch.undo()  # (PATCH_MAX as it was)
    # A day never summed (a bulk load's): marked, so that its next batches are marked too.
    empty = T0 - timedelta(days=5)
    _load(
        settled, [_facts("5" * 32, empty, True, "/a", None), _call("5" * 32, 1, empty)], [], False
    )
    assert marks(settled) == [(empty.date(), 0)]
    refresh(settled)
    assert_readers_answer_like_the_base_tables(settled, random.Random(3))
    assert rows(settled) == rebuilt(settled)


def test_a_request_found_on_a_day_not_settled_drops_the_patch(settled: Engine) -> None:
    """What the patch read back lies on a day it did not check (another writer moved a
    request meanwhile): nothing merged, and the caller marks every hour it knows of."""
    before = rows(settled)
    with session_scope(settled) as session:
        begun = patch.begin(session, ["2" * 32], {(DAY + timedelta(days=1), 6)}, set())
        assert begun is not None
        begun.stored.clear()  # (as if it were new: the move itself is not what drops it)
        moved = LATER + timedelta(hours=1)
        session.execute(
            update(Request).where(Request.trace_id == "2" * 32).values(started_at=moved)
        )
        assert not begun.apply(session)
        assert begun.hours == {(DAY + timedelta(days=1), 6), (LATER.date(), 1)}
        session.rollback()
    assert rows(settled) == before


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(traffic(), st.integers(0, 100), st.randoms(use_true_random=False))
def test_random_late_traffic_patches_like_a_rebuild(
    engine: Engine, case: dict[str, Any], held: int, rnd: random.Random
) -> None:
    """Part of random traffic (roots late and on other days) is loaded and summed, maybe with
    GPU shares; the rest arrives in random batches. Every answer is the base tables', and
    after a refresh of what was marked every row is a rebuild's."""
    _empty(engine)
    pieces = case["pieces"]
    first = len(pieces) * held // 100
    _load(engine, [*_anchor(), *_fillers(), *pieces[:first]], [], case["prepared"])
    if case["gpu"]:
        refresh(engine)
        _allocate_gpu(engine)
    refresh(engine)
    cuts = [c - first for c in case["cuts"] if first < c < len(pieces)]
    _load(engine, pieces[first:], cuts, case["prepared"])
    assert_readers_answer_like_the_base_tables(engine, rnd)
    refresh(engine)  # (the marked days rebuilt: no row of the patches' may stay wrong)
    assert rows(engine) == rebuilt(engine)


@pytest.fixture
def trued(engine: Engine) -> Engine:
    """The reconciliation's month, trued up and summed, with a later (live) day."""
    load_month(engine)
    add_call(engine, "t9", "s1", at(D6), "openai", "gpt-4o-mini", usd("0.3"))
    for provider in ("openai", "anthropic"):
        refresh_true_up(engine, provider, D3, D5)
    refresh(engine)
    return engine


def _factor(conn: Any, day: date) -> int:
    f = TrueUpFactor
    query = select(f.factor_num).where(f.provider == "openai", f.day == day).limit(1)
    return int(conn.execute(query).scalar_one())


def test_a_change_reads_its_hours_once_no_patch_can_commit_before_it(trued: Engine) -> None:
    """A true-up's or re-allocation's hours (`swap.write_change`) are read under the refresh
    lock, which a patch needs; or, when that is busy, in the transaction that writes the
    change, after its write: a patch committed before the change is in them."""
    with trued.connect() as conn:
        old = _factor(conn, D3)
    seen: list[Any] = []

    def hours(conn: Any) -> set[tuple[date, int | None]]:
        with named_lock(trued, LOCK) as free:
            seen.append(("lock free", free, "factor", _factor(conn, D3)))
        return {(D3, None)}

    written = swap.write_change(trued, _doubled(trued, D3), hours)
    assert written.rebuilt == [D3]
    assert seen == [("lock free", False, "factor", old)]  # before the change's write
    with named_lock(trued, LOCK) as held:
        assert held
        written = swap.write_change(trued, _doubled(trued, D3), hours, wait=0)
    assert written.busy
    assert seen[1] == ("lock free", False, "factor", old * 2 * 2)  # in the change's write
    assert marks(trued) == [(D3, None)]


def test_a_patch_counts_the_trued_up_costs(trued: Engine) -> None:
    """A late openai call of the 3rd, whose factor is stored: patched with its trued-up cost,
    rows a rebuild's."""
    at_noon = at(D3, 12, 1800)
    late = [_facts("t1", at_noon, False, "", None),
            CallRow("t1", "s9", at_noon, 10, "openai", "gpt-4o-mini", None, None, None,
                    "otel-genai", 100, 0, 0, 10, 0, usd("0.2"), "catalog")]  # fmt: skip
    _load(trued, late, [], False)
    assert marks(trued) == []
    with trued.connect() as conn:
        trued_up = select(func.sum(rollup_daily.c.trued_cost_nanousd)).where(
            rollup_daily.c.day == D3
        )
        assert conn.execute(trued_up).scalar_one() != 0
    assert rows(trued) == rebuilt(trued)


def test_a_change_being_written_with_marks_makes_a_patch_mark(settled: Engine) -> None:
    """PostgreSQL: while a true-up or re-allocation writes its change with marks (the refresh
    lock was busy), it holds CHANGE_LOCK for its transaction: a batch of late spans then marks
    its days instead of patching them. (On SQLite the database's one write lock keeps the two
    transactions apart.)"""
    if settled.dialect.name != "postgresql":
        pytest.skip("SQLite's writers take turns: no lock to hold")
    with settled.connect() as other, other.begin():
        wait_transaction_lock(other, CHANGE_LOCK)
        _load(settled, [_call("1" * 32, 5, T0 + timedelta(hours=9, seconds=30))], [], False)
    assert marks(settled) == [(DAY, 9)]
    refresh(settled)
    _load(settled, [_call("1" * 32, 6, T0 + timedelta(hours=9, seconds=31))], [], False)
    assert marks(settled) == []
