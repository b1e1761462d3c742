"""A true-up, and a GPU re-allocation, write their change with the rollup rows it changes, in
one transaction (`app.rollups.swap`): readers never read those days from the base tables for
it, and never see the new data with the old rollup rows, or the reverse."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.exc import OperationalError

from app.reports.unit_costs import Scope, cost_query, unit_cost_query
from app.rollups import swap
from app.rollups.day_pairs import ORDER
from app.rollups.dirty import mark_days, provider_call_hours
from app.rollups.refresh import dirty_days, rebuild_day
from app.rollups.refresh import refresh as rollup_refresh
from app.rollups.staging import Rebuild, stage_pairs
from app.rollups.stale import dirty_in, sliced_in
from app.rollups.swap import MAX_DAYS, NewFactors, prestage, swap_in
from app.trueup import refresh_true_up
from app.warehouse.tables import Checkpoint
from app.warehouse.tables_rollup import WHOLE_DAY, rollup_daily, rollup_sliced
from app.warehouse.tables_staged import TWINS, rollup_staged_pairs
from app.warehouse.tables_trueup import TrueUpFactor
from app.warehouse.types import as_date
from tests.test_reconcile import D3, D4, add_call, add_line, at, month, usd

__all__ = ["month"]  # the fixture, imported

D5, D6 = date(2025, 11, 5), date(2025, 11, 6)
TRUED = Scope(true_up=True)
TWO = {"model": ["gpt-4o-mini", "claude-sonnet-4-5"]}
QUESTIONS: list[tuple[tuple[str, ...], dict[str, list[str]]]] = [
    ((), {}),
    (("model",), {}),
    (("endpoint",), {"provider": ["openai"]}),
    (("provider", "model"), {}),
    (("user",), TWO),
    (("endpoint",), TWO),
]


@pytest.fixture
def settled(month: Engine) -> Engine:
    """The month with a later (live) day, so that the 3rd and 4th are stored whole: trued up
    and refreshed."""
    add_call(month, "t9", "s1", at(D6), "openai", "gpt-4o-mini", usd("0.3"))
    for provider in ("openai", "anthropic"):
        refresh_true_up(month, provider, D3, D5)
    rollup_refresh(month)
    with month.connect() as conn:
        assert dirty_days(conn) == []
        assert sliced_in(conn, None, None) == {D6}
    return month


def answers(engine: Engine) -> dict[Any, list[Any]]:
    """The trued-up unit costs of every question, as the report reads them (rollups, and the
    base tables for what is marked), each checked against the base tables alone."""
    got = {}
    for dims, filters in QUESTIONS:
        scope = Scope(filters=filters or None, true_up=True)
        with engine.connect() as conn:
            rows = _plain(conn.execute(cost_query(conn, list(dims), scope)).mappings())
            base = _plain(conn.execute(unit_cost_query(list(dims), scope)).mappings())
        assert rows == base, (dims, filters)
        got[(dims, tuple(filters))] = rows
    return got


def _plain(rows: Any) -> list[Any]:
    return sorted(
        tuple((k, v if isinstance(v, str) or v is None else int(v)) for k, v in sorted(r.items()))
        for r in rows
        if int(r["requests"])
    )


def refreshed_at(engine: Engine) -> datetime:
    """When the rollups last changed, as the dashboard's data version sees it."""
    c = Checkpoint
    query = select(c.updated_at).where(c.collector == "rollups", c.source == "refresh")
    with engine.connect() as conn:
        stamp: datetime = conn.execute(query).scalar_one()
    return stamp


def reads_base_tables(engine: Engine) -> bool:
    """Whether the report reads some time from the base tables (the calls joined)."""
    with engine.connect() as conn:
        return "llm_calls.trace_id" in str(cost_query(conn, ["model"], TRUED))


def nothing_staged(engine: Engine) -> bool:
    with engine.connect() as conn:
        for table in (*TWINS.values(), rollup_staged_pairs):
            if conn.execute(select(func.count()).select_from(table)).scalar_one():
                return False
    return True


def test_changed_factors_are_written_with_their_rollups(settled: Engine) -> None:
    """A restated bill of the 4th: its request days (the 4th, and the 3rd of t7's request
    across midnight) are rebuilt with the new factors and written with them, nothing is
    marked, and every question answers from the rollups like the base tables."""
    before = answers(settled)
    stamped = refreshed_at(settled)
    add_line(settled, "openai", D4, "restated", usd("0.1"), "gpt-4o-mini")
    result = refresh_true_up(settled, "openai", D3, D5)
    assert refreshed_at(settled) > stamped  # the dashboard's loaders read again
    assert result.changed_days == [D4]
    assert result.rebuilt_days == [D3, D4]
    with settled.connect() as conn:
        assert dirty_days(conn) == []
        assert sliced_in(conn, None, None) == {D6}  # as they were stored: whole
    assert not reads_base_tables(settled)
    assert nothing_staged(settled)
    after = answers(settled)
    assert after != before
    # The 4th's openai calls (t6, t7: $0.25 estimated) are billed $0.10 now.
    total = dict(after[((), ())][0])["cost_nanousd"]
    assert total == dict(before[((), ())][0])["cost_nanousd"] - usd("0.25") + usd("0.1")
    # The same bills again: nothing changes, nothing is rebuilt.
    again = refresh_true_up(settled, "openai", D3, D5)
    assert again.changed_days == [] and again.rebuilt_days == []
    assert answers(settled) == after


def _doubled(engine: Engine, day: date) -> NewFactors:
    """openai's stored factors (the 3rd's: the 4th has no openai bill), those of `day`
    doubled."""
    f = TrueUpFactor.__table__
    with engine.connect() as conn:
        query = select(f).where(f.c.provider == "openai")
        rows = [dict(r) for r in conn.execute(query).mappings()]
    assert {as_date(r["day"]) for r in rows} == {D3}
    for row in rows:
        if as_date(row["day"]) == day:
            row["factor_num"] *= 2
    return NewFactors("openai", D3, D5, rows)


def test_readers_see_the_old_factors_until_the_swap(settled: Engine) -> None:
    """Between the prestaging and the swap, readers read the stored rollup rows with the stored
    factors (the twins are not theirs); the swap brings both at once. A call written between
    the two keeps its mark after the swap, and its day is read from the base tables."""
    before = answers(settled)
    new = _doubled(settled, D3)
    prestage(settled, Rebuild(D3, None, sliced=False), new)
    with settled.connect() as conn:
        assert dirty_in(conn, None, None).staged == ()
        assert conn.execute(select(func.count()).select_from(TWINS[rollup_daily])).scalar_one()
    assert answers(settled) == before
    assert not reads_base_tables(settled)

    add_call(settled, "t10", "s1", at(D3, 18), "openai", "gpt-4o-mini", usd("0.7"))
    with settled.begin() as conn:
        new.write(conn)
        swap_in(conn, D3)
    assert nothing_staged(settled)
    with settled.connect() as conn:
        assert dirty_days(conn) == [D3]
    assert reads_base_tables(settled)
    after = answers(settled)  # (each checked against the base tables)
    assert after != before
    rollup_refresh(settled)
    assert not reads_base_tables(settled)
    assert answers(settled) == after


def test_a_prestaged_day_with_a_mark_is_read_from_the_base_tables(settled: Engine) -> None:
    """A day marked whole and prestaged (with other factors than those stored) is not staged
    for readers: no mark of it is listed, so they read it from the base tables, not from the
    prestaged twins."""
    with settled.begin() as conn:
        mark_days(conn, [D3])
    prestage(settled, Rebuild(D3, None, sliced=False), _doubled(settled, D3))
    with settled.connect() as conn:
        stale = dirty_in(conn, None, None)
    assert stale.days == (D3,) and stale.staged == ()
    assert reads_base_tables(settled)
    answers(settled)  # (each checked against the base tables)


def test_a_day_stale_whole_or_staged_is_marked_not_prestaged(settled: Engine) -> None:
    """A day already stale whole is read from the base tables (or its staging) until the
    refresh, which rebuilds it anyway: a change to it marks it. Here the 3rd, left staged by
    a refresh that was cut off after its pairs: the true-up's mark is not one the staging
    holds, so readers go back to the base tables, and the refresh rebuilds it."""
    with settled.begin() as conn:
        mark_days(conn, [D3])
    stage_pairs(settled, Rebuild(D3, None, sliced=False))  # a refresh cut off here
    with settled.connect() as conn:
        assert dirty_in(conn, None, None).staged == (D3,)
    add_line(settled, "openai", D3, "restated", usd("0.2"), "gpt-4o-mini")
    result = refresh_true_up(settled, "openai", D3, D5)
    assert result.changed_days == [D3] and result.rebuilt_days == []
    with settled.connect() as conn:
        stale = dirty_in(conn, None, None)
    assert stale.days == (D3,) and stale.staged == ()
    answers(settled)
    rollup_refresh(settled)
    assert not reads_base_tables(settled) and nothing_staged(settled)
    answers(settled)


def test_a_failed_prestaging_marks_the_days_and_loses_nothing(
    settled: Engine, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A prestaging that fails (a statement timeout on a busy day, say) is logged, the change
    is written all the same and its days marked, and nothing staged is left behind."""

    def fails(*args: Any) -> None:
        raise OperationalError("SELECT …", {}, Exception("canceling statement due to timeout"))

    monkeypatch.setattr(swap, "write_twin", fails)
    add_line(settled, "openai", D3, "restated", usd("0.2"), "gpt-4o-mini")
    result = refresh_true_up(settled, "openai", D3, D5)
    assert result.changed_days == [D3] and result.rebuilt_days == []
    assert "summing a change failed" in caplog.text
    with settled.connect() as conn:
        assert dirty_days(conn) == [D3]
    assert nothing_staged(settled)
    after = answers(settled)  # the new factors, from the base tables
    monkeypatch.undo()
    assert refresh_true_up(settled, "openai", D3, D5).changed_days == []  # they were written
    rollup_refresh(settled)
    assert answers(settled) == after


def test_the_change_and_its_rows_are_written_together_or_not_at_all(
    settled: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If replacing the rollup rows fails, the change is not written either: the factors, the
    rollup rows and the answers are as they were."""
    before = answers(settled)
    factors = _factors(settled)

    def fails(*args: Any) -> None:
        raise OperationalError("INSERT …", {}, Exception("disk full"))

    monkeypatch.setattr(swap, "replace_rows", fails)
    add_line(settled, "openai", D3, "restated", usd("0.2"), "gpt-4o-mini")
    with pytest.raises(OperationalError):
        refresh_true_up(settled, "openai", D3, D5)
    assert _factors(settled) == factors
    with settled.connect() as conn:
        assert dirty_days(conn) == []
    assert answers(settled) == before


def _factors(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return sorted(tuple(map(str, r)) for r in conn.execute(select(TrueUpFactor.__table__)))


def test_the_swapped_rows_are_the_refreshs_rows(settled: Engine) -> None:
    """What the swap writes is what a refresh of the day writes, row for row."""
    new = _doubled(settled, D3)
    prestage(settled, Rebuild(D3, None, sliced=False), new)
    with settled.begin() as conn:
        new.write(conn)
        swap_in(conn, D3)
    swapped = rows_of(settled, D3)
    rebuild_day(settled, D3)
    assert rows_of(settled, D3) == swapped


def rows_of(engine: Engine, day: date, tables: Any = ORDER) -> dict[str, list[Any]]:
    got = {}
    with engine.connect() as conn:
        for table in tables:
            rows = conn.execute(select(table).where(table.c.day == day)).all()
            got[table.name] = sorted(tuple(str(v) for v in r) for r in rows)
    return got


def test_a_live_day_is_marked_by_hour_or_rebuilt_in_hour_slices(month: Engine) -> None:
    """The live day is stored as hour slices. A change to a few of its hours marks them (the
    refresh rebuilds them alone); a change to more is rebuilt into hour slices and swapped in,
    the day still sliced."""
    for hour in range(1, 9):  # the 4th's calls in eight hours (and t6's at noon)
        add_call(month, f"h{hour}", "s1", at(D4, hour), "openai", "gpt-4o-mini", usd("0.1"))
    add_line(month, "openai", D4, "usage", usd("1.5"), "gpt-4o-mini")
    rollup_refresh(month)
    with month.connect() as conn:
        assert sliced_in(conn, None, None) == {D4}
    new_day = datetime(2025, 11, 5, 1, tzinfo=UTC)  # the 4th is over
    result = refresh_true_up(month, "openai", D4, D5, now=new_day)
    assert result.changed_days == [D4]
    # The 4th's first factor: its requests in nine hours, more than a few: rebuilt, in
    # slices; t7's request on the 3rd (whole) too.
    assert result.rebuilt_days == [D3, D4]
    with month.connect() as conn:
        assert dirty_days(conn) == []
        assert sliced_in(conn, None, None) == {D4}
        hours = set(conn.execute(select(rollup_daily.c.hour).where(rollup_daily.c.day == D4)))
    assert (WHOLE_DAY,) not in hours and len(hours) == 9
    assert not reads_base_tables(month)
    answers(month)

    # Anthropic's first factor of the 4th: its one call, at noon.
    add_call(month, "a4", "s1", at(D4, 12), "anthropic", "claude-haiku-4-5", usd("0.3"))
    add_line(month, "anthropic", D4, "Haiku 4.5 - Input", usd("0.4"), "claude-haiku-4-5")
    rollup_refresh(month)
    result = refresh_true_up(month, "anthropic", D4, D5, now=new_day)
    assert result.changed_days == [D4] and result.rebuilt_days == []
    with month.connect() as conn:
        assert dirty_in(conn, None, None).hours == ((D4, 12),)
    answers(month)
    rollup_refresh(month)
    assert not reads_base_tables(month)
    answers(month)


def test_more_days_than_a_true_up_rebuilds_are_marked(engine: Engine) -> None:
    """A true-up that changes more request days than MAX_DAYS (the first of months) marks them
    for the refresh instead; one changed day after it is rebuilt."""
    first = date(2025, 10, 1)
    days = [first + timedelta(days=i) for i in range(MAX_DAYS + 1)]
    for i, day in enumerate(days):
        add_call(engine, f"d{i}", "s1", at(day), "openai", "gpt-4o-mini", usd("1"))
        add_line(engine, "openai", day, "usage", usd("1.1"), "gpt-4o-mini")
    add_call(engine, "live", "s1", at(days[-1] + timedelta(days=2)), "openai", "gpt-4o", 5)
    rollup_refresh(engine)
    result = refresh_true_up(engine, "openai", days[0], days[-1] + timedelta(days=1))
    assert result.changed_days == days and result.rebuilt_days == []
    with engine.connect() as conn:
        assert dirty_days(conn) == days
    answers(engine)
    rollup_refresh(engine)
    add_line(engine, "openai", days[2], "restated", usd("0.5"), "gpt-4o-mini")
    result = refresh_true_up(engine, "openai", days[0], days[-1] + timedelta(days=1))
    assert result.changed_days == [days[2]] and result.rebuilt_days == [days[2]]
    with engine.connect() as conn:
        assert dirty_days(conn) == []
        sliced = set(conn.execute(select(rollup_sliced.c.day)).scalars())
    assert {as_date(d) for d in sliced} == {days[-1] + timedelta(days=2)}
    answers(engine)


def test_the_marked_hours_are_those_of_the_calls(settled: Engine) -> None:
    """`provider_call_hours`: the request day and hour of each of the provider's calls."""
    with settled.connect() as conn:
        got = {(as_date(d), int(h)) for d, h in conn.execute(
            provider_call_hours("openai", datetime(2025, 11, 4, tzinfo=UTC),
                                datetime(2025, 11, 5, tzinfo=UTC))
        )}  # fmt: skip
    assert got == {(D3, 23), (D4, 12)}
