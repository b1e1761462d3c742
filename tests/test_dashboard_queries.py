"""The query functions behind the dashboard pages (spend by day, top movers, budgets, rule
statuses, collector runs), on SQLite and PostgreSQL. Data as in tests/test_dashboard_pages.py.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from sqlalchemy import Engine

from alerts.engine import evaluate_once
from app.dashboard import loaders, queries_alerts, queries_collectors, queries_spend
from app.dashboard.formatting import ago_text
from app.reports.unit_costs import Scope as CostScope
from app.reports.unit_costs import unit_costs
from app.settings import Settings
from tests.test_dashboard_pages import (
    DAY1,
    DAY2,
    EVENING,
    RULES,
    load,
    settings_for,
)
from tests.test_reconcile import D3, D4, month, usd
from tests.test_unit_costs import MINI_A, SONNET_A, TOTAL

__all__ = ["month"]  # the fixture, imported


def test_spend_by_day_adds_up_to_the_total(engine: Engine) -> None:
    load(engine)
    for dim in ("provider", "model", "endpoint", "team"):
        rows = queries_spend.spend_by_day(engine, dim, CostScope(), top=1)
        assert sum(r.cost_usd for r in rows) == TOTAL
        [leader] = unit_costs(engine, [dim], CostScope(), limit=1)
        assert {r.group for r in rows} - {"(other)"} == {leader.group[dim]}


def test_top_movers_compare_two_periods(engine: Engine) -> None:
    load(engine)
    day1 = CostScope(since=DAY1, until=DAY2)
    day2 = CostScope(since=DAY2, until=date(2025, 11, 22))
    movers = queries_spend.top_movers(engine, "endpoint", day2, day1)
    chat = next(m for m in movers if m.group == "/v1/chat")
    assert chat.change_usd == -(MINI_A + SONNET_A)
    assert chat.change_ratio == -1
    assert movers[0].group == "/v1/chat"  # the biggest change first


def test_estimated_vs_billed_without_bills_is_empty(engine: Engine) -> None:
    load(engine)
    assert queries_spend.estimated_vs_billed(engine, DAY1, date(2025, 11, 22)) == []


def test_budget_lines_judge_budget_rules_like_the_engine(engine: Engine) -> None:
    load(engine)
    url = engine.url.render_as_string(hide_password=False)
    lines = queries_alerts.budget_lines(engine, settings_for(url), EVENING)
    by_rule = {(b.rule_id, tuple(b.group.values())): b for b in lines}
    daily = by_rule[("daily-budget", ())]
    day1_total = unit_costs(engine, [], CostScope(since=DAY1, until=DAY2))[0].cost_usd
    assert daily.spent == day1_total
    assert daily.budget == Decimal("0.004") and daily.over
    assert daily.forecast == (day1_total * 24 / 23).quantize(Decimal("0.000000001"))
    assert by_rule[("user-daily-cap", ("u-1",))].spent == MINI_A + SONNET_A
    # No budget rule: one line for the month so far, not over anything.
    [mtd] = queries_alerts.budget_lines(engine, Settings(database={"url": url}), EVENING)
    assert not mtd.configured and not mtd.over
    assert mtd.spent == TOTAL - unit_costs(engine, [], CostScope(since=DAY2))[0].cost_usd


def test_rule_statuses_switches_and_audit(engine: Engine) -> None:
    load(engine)
    url = engine.url.render_as_string(hide_password=False)
    statuses = {s.rule_id: s for s in queries_alerts.rule_statuses(engine, settings_for(url))}
    assert statuses["user-daily-cap"].firing_groups == 1
    assert statuses["user-daily-cap"].last_event == "firing"
    history = queries_alerts.alert_history(engine, EVENING.replace(hour=0), EVENING)
    assert history == []  # transitions happen at 23:00, the end is exclusive
    history = queries_alerts.alert_history(
        engine, EVENING.replace(hour=0), EVENING.replace(hour=23, minute=1)
    )
    assert {h.rule_id for h in history} == {"user-daily-cap", "daily-budget"}
    open_now = queries_alerts.open_switches(engine, datetime.now(UTC))
    assert sorted(s.state for s in open_now) == ["active", "pending_approval"]
    kinds = [e.kind for e in queries_alerts.switch_audit(engine)]
    assert kinds == ["kill_added", "kill_requested"]  # newest first


def test_each_evaluation_is_noted_on_its_rule(engine: Engine) -> None:
    load(engine)  # evaluated at EVENING
    url = engine.url.render_as_string(hide_password=False)
    settings = settings_for(url)

    def noted() -> dict[str, tuple[datetime | None, int | None, int | None]]:
        return {
            s.rule_id: (s.evaluated_at, s.evaluated_groups, s.evaluated_firing)
            for s in queries_alerts.rule_statuses(engine, settings)
        }

    assert noted() == {"user-daily-cap": (EVENING, 3, 1), "daily-budget": (EVENING, 1, 1)}
    # The next day: no request yet in its window; u-1 is judged (firing) and resolves.
    next_day = EVENING + timedelta(hours=2)
    evaluate_once(engine, settings, next_day)
    assert noted() == {"user-daily-cap": (next_day, 1, 0), "daily-budget": (next_day, 1, 0)}
    # A slower evaluator finishing late does not turn the clock back.
    evaluate_once(engine, settings, EVENING)
    assert noted()["daily-budget"][0] == next_day
    # A changed rule has not been evaluated yet: its old evaluation is not shown for it.
    changed = [{**RULES[0], "condition": {"above": "1"}}, RULES[1]]
    statuses = queries_alerts.rule_statuses(engine, Settings(database={"url": url}, rules=changed))
    assert [s.evaluated_at for s in statuses] == [None, next_day]


def test_ago_text() -> None:
    now = EVENING
    assert ago_text(now - timedelta(seconds=59), now) == "just now"
    assert ago_text(now + timedelta(seconds=5), now) == "just now"  # a clock slightly ahead
    assert ago_text(now - timedelta(minutes=3, seconds=30), now) == "3 min ago"
    assert ago_text(now - timedelta(hours=5), now) == "5 h ago"
    assert ago_text(now - timedelta(days=3), now) == "3 days ago"


def test_recent_runs_and_freshness(engine: Engine) -> None:
    load(engine)
    runs = queries_collectors.recent_runs(engine)
    assert [r.collector for r in runs] == ["ingest"]
    assert runs[0].status == "ok" and runs[0].rows_loaded > 0
    fresh = {f.source: f for f in queries_collectors.freshness(engine)}
    assert fresh["traces"].latest is not None
    assert fresh["traces"].latest.date() == DAY2
    assert fresh["ingest"].last_status == "ok"


def test_loaders_now_is_the_wall_clock() -> None:
    assert abs((loaders.now() - datetime.now(UTC)).total_seconds()) < 5


def test_the_billed_gap_leaves_out_days_not_over(month: Engine) -> None:
    """A day's bill grows while the day runs: its gap to the day's whole estimate is no gap."""
    gaps = queries_spend.estimated_vs_billed(month, D3, D4 + timedelta(days=1))
    over = queries_spend.billed_summary(gaps, D4 + timedelta(days=1))
    # The 3rd: billed 1.2 + 0.45 + 0.3 + 0.25 (openai) + 2.1 (anthropic; the EUR line is not
    # summed) against 1.5 + 2.1 estimated; the 4th has no bill yet.
    assert (over.billed_nanousd, over.compared_estimated_nanousd) == (usd("4.3"), usd("3.6"))
    assert (over.gap_nanousd, over.unbilled_days, over.partial_days) == (usd("0.7"), 1, 0)
    assert over.estimated_nanousd == usd("3.6") + usd("0.25")
    during = queries_spend.billed_summary(gaps, D3)
    assert (during.billed_nanousd, during.compared_estimated_nanousd) == (usd("4.3"), 0)
    assert (during.gap_nanousd, during.partial_days) == (0, 1)
