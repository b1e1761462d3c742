"""The true-up: after it, the trued-up costs of each billed model-day add up to the bill to the
nano-dollar, every view of the unit-cost report still adds up to one total, and days, models
and currencies that cannot be trued up keep their estimate."""

from __future__ import annotations

from datetime import UTC, date, datetime
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from app.reports.unit_costs import Scope, cost_query, unit_cost_query, unit_costs
from app.rollups.query import rollup_query
from app.rollups.refresh import LOCK, dirty_days
from app.rollups.refresh import refresh as rollup_refresh
from app.rollups.stale import dirty_in
from app.settings import Settings
from app.trueup import bounded_fraction, refresh_true_up
from app.warehouse.locks import named_lock
from app.warehouse.tables_trueup import MAX_TERM, TrueUpFactor
from app.worker import run_collector
from collectors import registry
from collectors.base import RunOutcome
from tests.test_reconcile import D3, D4, add_call, add_line, at, cli, month, usd

__all__ = ["month"]  # the fixture, imported

D5 = date(2025, 11, 5)
TRUED = Scope(true_up=True)


def refresh_all(engine: Engine, since: date = D3, until: date = D5) -> None:
    for provider in ("openai", "anthropic"):
        assert not refresh_true_up(engine, provider, since, until).busy


def total(engine: Engine, dims: list[str], scope: Scope = TRUED) -> int:
    return sum(r.cost_nanousd for r in unit_costs(engine, dims, scope))


def test_bounded_fraction_is_exact_when_it_fits_and_close_when_not() -> None:
    assert bounded_fraction(1_650_000_001, 1_500_000_000) == Fraction(1_650_000_001, 1_500_000_000)
    big = bounded_fraction(10**15 + 7, 9 * 10**14 + 123_456_789)
    assert big.numerator <= MAX_TERM and big.denominator <= MAX_TERM
    assert abs(big - Fraction(10**15 + 7, 9 * 10**14 + 123_456_789)) < Fraction(1, 10**15)
    assert bounded_fraction(0, 5) == 0


def test_trued_up_model_days_add_up_to_the_bill(month: Engine) -> None:
    add_line(month, "openai", D3, "rounding", 1, "gpt-4o-mini")  # 1.650000001: a residual
    refresh_all(month)
    rows = {r.group["model"]: r for r in unit_costs(month, ["model"], TRUED)}
    # gpt-4o-mini of the 3rd is called as "gpt-4o-mini" (2 calls) and as the snapshot (1):
    # together they are the bill, 1.650000001; the 4th has no bill and keeps 0.25.
    mini = rows["gpt-4o-mini"].cost_nanousd - usd("0.25")
    snapshot = rows["gpt-4o-mini-2024-07-18"].cost_nanousd
    assert mini + snapshot == usd("1.65") + 1
    # floor(0.6 × f) + floor(0.4 × f) + floor(0.5 × f) leaves 1 nano; the costliest call has it.
    assert snapshot == 550_000_000
    assert rows["gpt-4o-mini"].trued_up_calls == 2
    assert rows["claude-sonnet-4-5-20250929"].cost_nanousd == usd("2.1")
    # Not trued up: no priced call (mystery-x), billed in EUR (haiku).
    assert rows["claude-haiku-4-5"].cost_nanousd == usd("0.1")
    assert rows["claude-haiku-4-5"].trued_up_calls == 0
    assert rows["mystery-x"].unpriced_calls == 1 and rows["mystery-x"].cost_nanousd == 0


def test_every_view_adds_up_to_the_same_trued_up_total(month: Engine) -> None:
    add_line(month, "openai", D3, "rounding", 7, "gpt-4o-mini")
    refresh_all(month)
    expected = (usd("1.65") + 7) + usd("0.25") + usd("2.1") + usd("0.1")
    for dims in (["model"], ["endpoint"], ["provider"], ["user"], ["endpoint", "model"], []):
        assert total(month, dims) == expected, dims
    assert total(month, ["model"], Scope()) == usd("1.5") + usd("0.25") + usd("2") + usd("0.1")


def test_a_scope_filter_sees_the_same_per_call_costs(month: Engine) -> None:
    add_line(month, "openai", D3, "rounding", 1, "gpt-4o-mini")
    refresh_all(month)
    by_provider = {
        r.group["provider"]: r.cost_nanousd for r in unit_costs(month, ["provider"], TRUED)
    }
    only_openai = Scope(filters={"provider": ["openai"]}, true_up=True)
    assert total(month, ["model"], only_openai) == by_provider["openai"]
    day = Scope(since=D3, until=D4, true_up=True)  # requests of the 3rd (t7's call is the 4th)
    assert total(month, ["provider"], day) == usd("1.65") + 1 + usd("2.1") + usd("0.1") + usd(
        "0.05"
    )


def test_the_rollups_answer_the_trued_up_costs_like_the_base_tables(month: Engine) -> None:
    """The rollups sum each call's trued-up cost: every grouping and filter gives the base
    tables' figures, residual carrier included; a new true-up marks the days it scales."""
    add_line(month, "openai", D3, "rounding", 7, "gpt-4o-mini")
    refresh_all(month)
    rollup_refresh(month)
    with month.connect() as conn:
        assert dirty_days(conn) == []
    openai = {"provider": ["openai"]}
    for dims, filters in [
        ((), {}),
        (("model",), {}),
        (("endpoint",), openai),
        (("provider", "model"), {}),
        (("user",), {}),
        (("endpoint",), {"model": ["gpt-4o-mini", "claude-sonnet-4-5"]}),
    ]:
        scope = Scope(filters=filters or None, true_up=True)
        rolled = rollup_query(dims, filters, None, None, true_up=True)
        assert rolled is not None
        with month.connect() as conn:
            assert "rollup" in str(cost_query(conn, dims, scope))
            got = sorted(tuple(r.items()) for r in conn.execute(rolled).mappings())
            base = conn.execute(unit_cost_query(dims, scope)).mappings()
            want = sorted(tuple(r.items()) for r in base)
        assert got == want, (dims, filters)
    add_line(month, "anthropic", D3, "restated", usd("0.9"), "claude-sonnet-4-5")
    with named_lock(month, LOCK) as held:  # a refresh running: the changed days are marked
        assert held
        result = refresh_true_up(month, "anthropic", D3, D5, wait=0)
    assert result.changed_days == [D3] and result.rebuilt_days == []
    with month.connect() as conn:
        assert D3 in dirty_days(conn)
    rows = {r.group["model"]: r for r in unit_costs(month, ["model"], TRUED)}
    assert rows["claude-sonnet-4-5-20250929"].cost_nanousd == usd("3")
    # The dirty day is read from the base tables and added to the rollups' other days.
    two = {"model": ["gpt-4o-mini", "claude-sonnet-4-5"]}
    for dims, filters in [((), {}), (("model",), {}), (("user",), two), (("endpoint",), two)]:
        scope = Scope(filters=filters or None, true_up=True)
        with month.connect() as conn:
            query = cost_query(conn, dims, scope)
            assert "UNION ALL" in str(query)
            got = _plain(conn.execute(query).mappings())
            want = _plain(conn.execute(unit_cost_query(dims, scope)).mappings())
        assert got == want, (dims, filters)


def test_a_true_up_rebuilds_only_the_days_whose_factors_changed(month: Engine) -> None:
    """A billing collector re-reads its last days every run: a day whose factors and residual
    come out as they were keeps its rollup rows (no rebuild), and they still answer like the
    base tables; a changed bill rebuilds the request days of its day's calls alone."""
    add_line(month, "openai", D3, "rounding", 7, "gpt-4o-mini")
    add_line(month, "openai", D4, "later", usd("0.3"), "gpt-4o-mini")
    refresh_all(month)
    rollup_refresh(month)
    for provider in ("openai", "anthropic"):
        assert refresh_true_up(month, provider, D3, D5).changed_days == []
    with month.connect() as conn:
        assert dirty_days(conn) == []
        assert "rollup" in str(cost_query(conn, ["model"], TRUED))
    assert _by_model(month) == _by_model_in_base_tables(month)

    before = total(month, ["model"])
    add_line(month, "openai", D4, "restated", 1, "gpt-4o-mini")  # the 4th's factor moves
    result = refresh_true_up(month, "openai", D3, D5)
    assert result.changed_days == [D4]
    # The request days of the 4th's calls: t7's, the 3rd, is stored whole, and rebuilt with
    # the factors; t6's hour of the 4th, the live day (hour slices), is marked.
    assert result.rebuilt_days == [D3]
    with month.connect() as conn:
        assert dirty_days(conn) == [D4]
        assert dirty_in(conn, None, None).hours == ((D4, 12),)
    assert total(month, ["model"]) == before + 1
    rollup_refresh(month)
    assert _by_model(month) == _by_model_in_base_tables(month)


def _by_model(engine: Engine) -> dict[str, tuple[int, int]]:
    """Requests and trued-up cost by model, as the report answers (from the rollups when clean)."""
    return {
        r.group["model"]: (r.requests, r.cost_nanousd) for r in unit_costs(engine, ["model"], TRUED)
    }


def _by_model_in_base_tables(engine: Engine) -> dict[str, tuple[int, int]]:
    with engine.connect() as conn:
        rows = conn.execute(unit_cost_query(["model"], TRUED)).mappings()
        return {r["model"]: (int(r["requests"]), int(r["cost_nanousd"])) for r in rows}


def _plain(rows: Any) -> list[tuple[tuple[str, Any], ...]]:
    """Rows comparable across the rollups' sums and the base tables' (ints, not Decimals)."""
    return sorted(
        tuple((k, v if isinstance(v, str) else int(v)) for k, v in sorted(r.items()))
        for r in rows
        if int(r["requests"])
    )


def test_huge_amounts_stay_exact_without_overflow(engine: Engine) -> None:
    costs = [450_000_000_000_000, 449_999_876_543_211, 500_000_000_000, 3]
    for i, cost in enumerate(costs):
        add_call(engine, f"h{i}", "s1", at(D3, 10 + i), "openai", "o1-pro", cost)
    bill = 10**15 + 7
    add_line(engine, "openai", D3, "o1-pro, output", bill, "o1-pro")
    refresh_all(engine)
    assert total(engine, ["model"]) == bill
    assert total(engine, ["endpoint"]) == bill


def test_a_refresh_replaces_the_days_it_covers(month: Engine) -> None:
    refresh_all(month)
    add_line(month, "anthropic", D3, "restated", usd("0.9"), "claude-sonnet-4-5")
    refresh_all(month)
    with month.connect() as conn:
        assert conn.execute(select(func.count()).select_from(TrueUpFactor)).scalar_one() == 3
    rows = {r.group["model"]: r for r in unit_costs(month, ["model"], TRUED)}
    assert rows["claude-sonnet-4-5-20250929"].cost_nanousd == usd("3")


def test_what_is_left_as_estimated_says_why(month: Engine) -> None:
    add_line(month, "openai", D4, "credit", -usd("1"), "gpt-4o-mini")
    result = refresh_true_up(month, "openai", D3, D5)
    reasons = sorted(result.skipped)
    assert reasons == [
        "2025-11-03 mystery-x: no priced call to scale",
        "2025-11-04 gpt-4o-mini: billed amount is negative (a credit)",
    ]
    assert (result.model_days, result.billed_nanousd, result.estimated_nanousd) == (
        1,
        usd("1.65"),
        usd("1.5"),
    )
    haiku = refresh_true_up(month, "anthropic", D3, D5).skipped
    assert haiku == ["2025-11-03 claude-haiku-4-5: billed in another currency"]


def test_a_day_not_over_keeps_its_estimate(month: Engine) -> None:
    """Today's bill is partial: a factor from it would scale today's calls down to what has
    been billed so far. The day gets its factors once it is over."""
    during = refresh_true_up(
        month, "anthropic", D3, D5, now=datetime(2025, 11, 3, 23, 59, 59, tzinfo=UTC)
    )
    assert (during.model_days, during.changed_days) == (0, [])
    assert "2025-11-03 claude-sonnet-4-5: the day is not over yet: its bill is partial" in (
        during.skipped
    )
    rows = {r.group["model"]: r for r in unit_costs(month, ["model"], TRUED)}
    assert rows["claude-sonnet-4-5-20250929"].cost_nanousd == usd("2")  # the estimate
    assert rows["claude-sonnet-4-5-20250929"].trued_up_calls == 0
    after = refresh_true_up(month, "anthropic", D3, D5, now=datetime(2025, 11, 4, tzinfo=UTC))
    assert (after.model_days, after.changed_days) == (1, [D3])
    rows = {r.group["model"]: r for r in unit_costs(month, ["model"], TRUED)}
    assert rows["claude-sonnet-4-5-20250929"].cost_nanousd == usd("2.1")  # the bill
    # A factor stored for a day not over (by an earlier version) is taken away, and the day's
    # rollups are marked.
    again = refresh_true_up(month, "anthropic", D3, D5, now=datetime(2025, 11, 3, 12, tzinfo=UTC))
    assert (again.model_days, again.changed_days) == (0, [D3])
    rows = {r.group["model"]: r for r in unit_costs(month, ["model"], TRUED)}
    assert rows["claude-sonnet-4-5-20250929"].cost_nanousd == usd("2")
    with pytest.raises(ValueError, match="timezone-aware"):
        refresh_true_up(month, "anthropic", D3, D5, now=datetime(2025, 11, 4))


def test_the_trueup_command(month: Engine, warehouse_url: str, tmp_path: Path) -> None:
    out = cli(warehouse_url, tmp_path, "trueup", "--since", "2025-11-03", "--until", "2025-11-05")
    assert out.exit_code == 0, out.output
    assert "anthropic: 1 model-day(s) trued up, estimated $2.000000000 → billed $2.100000000" in (
        out.stdout
    )
    assert "openai: 1 model-day(s) trued up" in out.stdout
    assert "pricing.true_up is false" in out.stdout
    on = cli(warehouse_url, tmp_path, "trueup", "--since", "2025-11-03", true_up=True)
    assert on.exit_code == 0 and "pricing.true_up is false" not in on.stdout


class FakeBilling:
    """Stands in for the openai collector: its run re-read the 3rd."""

    def run(self, engine: Engine, settings: Settings, **_: Any) -> RunOutcome:
        outcome = RunOutcome("openai", 0, rows_loaded=4)
        outcome.window_start = datetime(2025, 11, 3, tzinfo=UTC)
        outcome.window_end = datetime(2025, 11, 4, tzinfo=UTC)
        return outcome


@pytest.mark.parametrize("true_up", [True, False])
def test_the_worker_refreshes_after_a_billing_run_when_true_up_is_on(
    month: Engine, monkeypatch: pytest.MonkeyPatch, true_up: bool
) -> None:
    monkeypatch.setattr(registry, "get", lambda name: FakeBilling())
    settings = Settings(pricing={"true_up": true_up})  # type: ignore[arg-type]
    run_collector("openai", month, settings)
    with month.connect() as conn:
        factors = conn.execute(select(TrueUpFactor.model, TrueUpFactor.day)).all()
    expected = {("gpt-4o-mini", D3), ("gpt-4o-mini-2024-07-18", D3)} if true_up else set()
    assert set(factors) == expected
