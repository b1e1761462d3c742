"""Every dashboard page through AppTest, with data and with an empty warehouse, on SQLite and
PostgreSQL; the key numbers equal what `spendguard report unit-costs --format json` prints;
roles (a viewer cannot release a switch, an operator can and the audit log says who); and the
query functions behind the new pages.

Data: tests/fixtures/otlp/counting.json (five traces, 2025-11-20 and 21, see
tests/test_unit_costs.py), one rule that trips a kill switch waiting for approval, and one
switch an operator added.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import streamlit as st
from sqlalchemy import Engine
from streamlit.testing.v1 import AppTest
from typer.testing import CliRunner

from alerts.audit import read as read_audit
from alerts.engine import evaluate_once
from app.cli import app as cli_app
from app.dashboard import actions, loaders, queries_alerts, queries_collectors, queries_spend
from app.dashboard.auth import Identity, identity_from_claims, role_for
from app.dashboard.filters import filter_key
from app.dashboard.formatting import ago_text, money_text
from app.ingest import ingest_paths
from app.killswitch.model import OPERATOR, PENDING, RULE, Scope
from app.killswitch.store import add_now, list_switches
from app.reports.unit_costs import Scope as CostScope
from app.reports.unit_costs import unit_costs
from app.settings import DashboardConfig, Settings, load_settings
from app.warehouse.engine import make_engine
from tests.conftest import FIXTURES
from tests.test_unit_costs import MINI_A, SONNET_A, TOTAL

ENTRY = Path(__file__).resolve().parents[1] / "streamlit_app.py"
COUNTING = FIXTURES / "otlp" / "counting.json"
DAY1, DAY2 = date(2025, 11, 20), date(2025, 11, 21)
EVENING = datetime(2025, 11, 20, 23, 0, tzinfo=UTC)
PAGES = {
    "overview": "Overview",
    "unit_costs": "Unit costs",
    "spend": "Spend explorer",
    "gpu": "GPU cost",
    "alerts": "Alerts & kill switches",
    "collectors": "Collectors",
}
RULES = [
    # u-1 spends MINI_A + SONNET_A on 2025-11-20: over this cap.
    {"id": "user-daily-cap", "metric": "cost_usd", "group_by": ["user"], "window": "day",
     "condition": {"above": "0.001"}},
    {"id": "daily-budget", "metric": "cost_usd", "window": "day",
     "condition": {"above": "0.004"}},
]  # fmt: skip


OIDC_SECRETS = {
    "redirect_uri": "http://localhost:8501/oauth2callback",
    "cookie_secret": "test-cookie-secret",
    "client_id": "spendguard",
    "client_secret": "test-client-secret",
    "server_metadata_url": "https://idp.example.com/.well-known/openid-configuration",
}


def write_config(folder: Path, url: str, **dashboard: Any) -> Path:
    config = {"database": {"url": url}, "rules": RULES, "dashboard": dashboard}
    path = folder / "spendguard.yaml"
    path.write_text(json.dumps(config), encoding="utf-8")  # JSON is YAML
    return path


def settings_for(url: str) -> Settings:
    return Settings(database={"url": url}, rules=RULES)


def load(engine: Engine) -> None:
    """The fixture traces, the rules evaluated at 23:00 that day, a switch a rule proposed
    (in `kill_mode: approve`; added here without expiry: the rule's own would have expired at
    that day's end, long ago) and an operator's switch."""
    url = engine.url.render_as_string(hide_password=False)
    assert ingest_paths(engine, Settings(), [COUNTING]).ok
    evaluate_once(engine, settings_for(url), EVENING)
    add_now(
        engine, settings_for(url), Scope(user="u-1"), "user-daily-cap: $0.0049 above $0.001",
        now=datetime.now(UTC), by="user-daily-cap", origin=RULE, state=PENDING,
        rule_id="user-daily-cap", group={"user": "u-1"},
    )  # fmt: skip
    add_now(
        engine, settings_for(url), Scope(endpoint="/v1/search"), "load test",
        now=datetime.now(UTC), by="alice (cli)", origin=OPERATOR,
    )  # fmt: skip


@pytest.fixture
def page_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """A clean working directory (the page reads ./spendguard.yaml) and fresh caches."""
    monkeypatch.delenv("SPENDGUARD_CONFIG", raising=False)
    monkeypatch.delenv("SPENDGUARD_DATABASE_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    st.cache_data.clear()
    st.cache_resource.clear()
    yield tmp_path
    st.cache_data.clear()
    st.cache_resource.clear()


def open_page(name: str, *, user: dict[str, Any] | None = None, **params: str) -> AppTest:
    at = AppTest.from_file(str(ENTRY), default_timeout=60)
    if user is not None:  # auth: oidc; the provider as .streamlit/secrets.toml would hold it
        at.user = user
        at.secrets["auth"] = OIDC_SECRETS
    at.query_params.update(params)
    at.run()
    if name != "overview":
        at.switch_page(f"app/dashboard/pages/{name}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def report_json(config: Path, *args: str) -> list[dict[str, Any]]:
    result = CliRunner().invoke(cli_app, ["--config", str(config), "report", *args])
    assert result.exit_code == 0, result.output
    parsed: list[dict[str, Any]] = json.loads(result.stdout)
    return parsed


# --- every page, with data and empty -------------------------------------------------------


@pytest.mark.parametrize("name", list(PAGES))
def test_every_page_renders_with_data(page_env: Path, warehouse_url: str, name: str) -> None:
    engine = make_engine(warehouse_url)
    load(engine)
    engine.dispose()
    write_config(page_env, warehouse_url)
    at = open_page(name, since="2025-11-20", until="2025-11-22")
    assert [t.value for t in at.title] == [PAGES[name]]
    assert not at.error


@pytest.mark.parametrize("name", list(PAGES))
def test_every_page_says_what_to_do_on_an_empty_warehouse(
    page_env: Path, warehouse_url: str, name: str
) -> None:
    write_config(page_env, warehouse_url)
    at = open_page(name)
    assert [t.value for t in at.title] == [PAGES[name]]
    texts = " ".join(i.value for i in at.info)
    if name in {"overview", "unit_costs", "spend"}:
        assert "spendguard demo" in texts
        assert not at.metric
    elif name == "gpu":  # no request is no reason to hide a GPU bill: it says why it is empty
        assert "No GPU pool is configured" in texts and "spendguard demo" in texts
        assert not at.metric
    elif name == "alerts":
        assert "No kill switch is active" in texts
        assert "No alert in these days" in texts
    else:
        assert "No collector has run yet" in texts
        assert "spendguard demo" in texts


def test_overview_numbers_are_the_cli_reports(page_env: Path, sqlite_engine: Engine) -> None:
    load(sqlite_engine)
    config = write_config(page_env, sqlite_engine.url.render_as_string(hide_password=False))
    by_endpoint = report_json(
        config, "unit-costs", "--by", "endpoint", "--since", "2025-11-20", "--until",
        "2025-11-22", "--format", "json",
    )  # fmt: skip
    spend = sum(Decimal(r["cost_usd"]) for r in by_endpoint)
    requests = sum(r["requests"] for r in by_endpoint)  # every request has one endpoint
    assert spend == TOTAL

    at = open_page("overview", since="2025-11-20", until="2025-11-22")

    shown = metrics(at)
    assert shown["Spend (USD)"] == money_text(spend)
    assert shown["Requests"] == f"{requests:,}"
    assert shown["Cost per 1,000 requests"] == money_text(spend * 1000 / requests)


def test_budget_groups_table_has_downloads(
    page_env: Path, sqlite_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    load(sqlite_engine)
    write_config(page_env, sqlite_engine.url.render_as_string(hide_password=False))
    monkeypatch.setattr(loaders, "now", lambda: EVENING)  # the day the users spent
    at = open_page("overview", since="2025-11-20", until="2025-11-22")
    groups = next(d.value for d in at.dataframe if "Group" in d.value.columns)
    assert len(groups) >= 1  # user-daily-cap's groups after its top one
    keys = {b.key for b in at.get("download_button")}
    assert {"budget_user-daily-cap_csv", "budget_user-daily-cap_parquet"} <= keys


def test_overview_numbers_on_both_warehouses(page_env: Path, warehouse_url: str) -> None:
    engine = make_engine(warehouse_url)
    load(engine)
    day1 = unit_costs(engine, [], CostScope(since=DAY1, until=DAY2))[0]
    engine.dispose()
    write_config(page_env, warehouse_url)

    at = open_page("overview", since="2025-11-20", until="2025-11-21")

    shown = metrics(at)
    assert shown["Spend (USD)"] == money_text(day1.cost_usd)
    assert shown["Requests"] == f"{day1.requests:,}"
    assert shown["LLM calls"] == f"{day1.llm_calls:,}"
    charts = [c.key for c in at.get("plotly_chart")]
    assert {"overview_spend", "overview_per_1k", "movers_chart"} <= set(charts)
    freshness = next(d.value for d in at.dataframe if "Source" in d.value.columns)
    assert freshness["Source"][0] == "traces"
    # The daily budget was over on 2025-11-20, but budgets are judged now: this period is empty.
    assert any("daily-budget" in m.value for m in at.markdown)


def test_spend_explorer_splits_the_reports_total(page_env: Path, warehouse_url: str) -> None:
    engine = make_engine(warehouse_url)
    load(engine)
    by_provider = unit_costs(engine, ["provider"], CostScope(since=DAY1))
    engine.dispose()
    write_config(page_env, warehouse_url)

    at = open_page("spend", since="2025-11-20", until="2025-11-22")

    table = at.dataframe[0].value
    assert list(table["Provider"]) == [r.group["provider"] for r in by_provider]
    assert list(table["Requests"]) == [r.requests for r in by_provider]
    assert "No provider bill covers these days" in " ".join(i.value for i in at.info)
    # GPU cost has its own page; the explorer links to it.
    assert "GPU cost: allocated and idle" in [link.value for link in at.page_link]


def test_alerts_page_shows_switches_history_and_rules(
    page_env: Path, warehouse_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = make_engine(warehouse_url)
    load(engine)
    engine.dispose()
    write_config(page_env, warehouse_url)

    monkeypatch.setattr(loaders, "now", lambda: EVENING + timedelta(minutes=3))

    at = open_page("alerts", since="2025-11-20", until="2025-11-22")

    buttons = {b.key: b for b in at.button}
    pending = [k for k in buttons if k.startswith("approve_")]
    assert len(pending) == 1  # the rule's switch awaits approval
    assert len([k for k in buttons if k.startswith("release_")]) == 2
    assert not any(b.disabled for b in buttons.values())  # auth: none, local_role operator
    history = next(
        d.value for d in at.dataframe if "Rule" in d.value.columns and "Event" in d.value.columns
    )
    assert set(history["Rule"]) == {"daily-budget", "user-daily-cap"}
    assert set(history["Event"]) == {"firing"}
    rules = next(d.value for d in at.dataframe if "Firing groups" in d.value.columns)
    assert dict(zip(rules["Rule"], rules["Firing groups"], strict=True)) == {
        "user-daily-cap": 1,
        "daily-budget": 1,
    }
    # load() evaluated the rules at EVENING; the page tells how long ago, relative to its clock.
    assert list(rules["Last evaluated"]) == ["3 min ago (2025-11-20 23:00 UTC)"] * 2
    assert dict(zip(rules["Rule"], rules["Groups judged"], strict=True)) == {
        "user-daily-cap": 3,  # u-1 and u-3 spent that day, and (none): requests without a user
        "daily-budget": 1,
    }


def test_collectors_page_lists_runs_and_offers_run_now(page_env: Path, warehouse_url: str) -> None:
    engine = make_engine(warehouse_url)
    load(engine)
    engine.dispose()
    write_config(page_env, warehouse_url)
    at = open_page("collectors")
    runs = at.dataframe[0].value
    assert "ingest" in set(runs["Collector"])
    run_now = {b.key: b for b in at.button if b.key and b.key.startswith("run_")}
    # Every registered collector is listed, the GPU ones (disabled by default) too.
    assert set(run_now) == {
        f"run_{n}" for n in ("anthropic", "aws_ce", "focus", "openai", "opencost", "traces")
    }
    assert all(b.disabled for b in run_now.values())  # none is configured: nothing to run


def test_an_operator_runs_a_collector_now(page_env: Path, sqlite_engine: Engine) -> None:
    url = sqlite_engine.url.render_as_string(hide_password=False)
    folder = page_env / "otel"
    folder.mkdir()
    (folder / "counting.json").write_bytes(COUNTING.read_bytes())
    os.utime(folder / "counting.json", (1_700_000_000, 1_700_000_000))  # settled, not being written
    config = {
        "database": {"url": url},
        "collectors": {"traces": {"sources": [{"kind": "folder", "path": str(folder)}]}},
    }
    (page_env / "spendguard.yaml").write_text(json.dumps(config), encoding="utf-8")

    at = open_page("collectors")
    assert "No collector has run yet" in at.info[0].value
    at.button(key="run_traces").click().run()

    assert not at.exception, [e.value for e in at.exception]
    [done] = at.success
    assert done.value.startswith("traces: ok,") and "rejected" in done.value
    assert "traces" in set(at.dataframe[0].value["Collector"])
    assert unit_costs(sqlite_engine, [])[0].requests == 5


# --- roles -----------------------------------------------------------------------------------


def _pending_id(engine: Engine) -> int:
    [switch] = [s for s in list_switches(engine, datetime.now(UTC)) if s.state == PENDING]
    return switch.id


def test_a_viewer_sees_disabled_buttons_and_cannot_release(
    page_env: Path, sqlite_engine: Engine
) -> None:
    load(sqlite_engine)
    url = sqlite_engine.url.render_as_string(hide_password=False)
    write_config(page_env, url, local_role="viewer")

    at = open_page("alerts")

    switch_buttons = [b for b in at.button if b.key and b.key.startswith(("release_", "approve_"))]
    assert switch_buttons and all(b.disabled for b in switch_buttons)
    assert "You are a viewer" in " ".join(c.value for c in at.caption)
    # The action refuses a viewer whatever the page does.
    viewer = Identity("local user", "viewer")
    switch_id = _pending_id(sqlite_engine)
    with pytest.raises(actions.NotAllowed, match="only operators may release"):
        actions.release_switch(sqlite_engine, settings_for(url), viewer, switch_id)
    with pytest.raises(actions.NotAllowed, match="only operators may approve"):
        actions.approve_switch(sqlite_engine, settings_for(url), viewer, switch_id)
    with pytest.raises(actions.NotAllowed, match="only operators may run collectors"):
        actions.run_collector_now(sqlite_engine, settings_for(url), viewer, "traces")
    assert _pending_id(sqlite_engine) == switch_id  # unchanged


def test_an_operator_approves_then_releases_and_the_audit_log_says_who(
    page_env: Path, warehouse_url: str
) -> None:
    engine = make_engine(warehouse_url)
    load(engine)
    switch_id = _pending_id(engine)
    write_config(page_env, warehouse_url, auth="oidc", operators=["group:sre"])
    ops = {"is_logged_in": True, "email": "Ops@Example.com", "groups": ["sre"]}

    at = open_page("alerts", user=ops)
    at.button(key=f"approve_{switch_id}").click().run()
    assert not at.exception, [e.value for e in at.exception]
    at.button(key=f"confirm_approve_{switch_id}").click().run()
    assert [s.value for s in at.success] == [
        f"Kill switch #{switch_id} approved by Ops@Example.com."
    ]
    at.button(key=f"release_{switch_id}").click().run()
    at.button(key=f"confirm_release_{switch_id}").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert f"release_{switch_id}" not in {b.key for b in at.button}

    entries = [e for e in read_audit(engine) if e.detail.get("switch_id") == switch_id]
    assert [(e.kind, e.detail["by"]) for e in entries] == [
        ("kill_requested", "user-daily-cap"),
        ("kill_approved", "Ops@Example.com (dashboard)"),
        ("kill_released", "Ops@Example.com (dashboard)"),
    ]
    engine.dispose()


def test_cancel_leaves_the_switch_alone(page_env: Path, sqlite_engine: Engine) -> None:
    load(sqlite_engine)
    switch_id = _pending_id(sqlite_engine)
    write_config(page_env, sqlite_engine.url.render_as_string(hide_password=False))
    at = open_page("alerts")
    at.button(key=f"release_{switch_id}").click().run()
    at.button(key=f"cancel_release_{switch_id}").click().run()
    assert not at.exception
    assert f"confirm_release_{switch_id}" not in {b.key for b in at.button}
    assert _pending_id(sqlite_engine) == switch_id


def test_oidc_asks_to_sign_in_and_refuses_strangers(page_env: Path, sqlite_engine: Engine) -> None:
    load(sqlite_engine)
    url = sqlite_engine.url.render_as_string(hide_password=False)
    write_config(page_env, url, auth="oidc", viewers=["boss@example.com"])

    at = open_page("overview", user={"is_logged_in": False})
    assert [b.label for b in at.button] == ["Sign in"]
    assert not at.metric

    at = open_page("overview", user={"is_logged_in": True, "email": "eve@example.com"})
    assert "may not view this dashboard" in at.error[0].value
    assert not at.metric

    at = open_page(
        "alerts", user={"is_logged_in": True, "email": "boss@example.com"}, since="2025-11-20"
    )
    switch_buttons = [b for b in at.button if b.key and b.key.startswith(("release_", "approve_"))]
    assert switch_buttons and all(b.disabled for b in switch_buttons)


def test_oidc_without_a_provider_says_what_to_configure(
    page_env: Path, sqlite_engine: Engine
) -> None:
    write_config(page_env, sqlite_engine.url.render_as_string(hide_password=False), auth="oidc")
    at = open_page("overview")
    assert "secrets.toml" in at.error[0].value
    assert not at.button


def test_role_mapping() -> None:
    config = DashboardConfig(
        auth="oidc", operators=["Lead@Example.com", "group:SRE"], viewers=["group:finance"]
    )
    assert role_for("lead@example.com", [], config) == "operator"
    assert role_for("x@example.com", ["sre"], config) == "operator"
    assert role_for("x@example.com", ["finance"], config) == "viewer"
    assert role_for("x@example.com", ["other"], config) is None
    assert role_for(None, [], DashboardConfig(auth="oidc")) == "viewer"  # viewers: [] = all
    claims = {"email": "x@example.com", "roles": "sre"}
    with_claim = DashboardConfig(auth="oidc", operators=["group:sre"], groups_claim="roles")
    assert identity_from_claims(claims, with_claim) == Identity("x@example.com", "operator")


def test_auth_none_serves_localhost_only(tmp_path: Path) -> None:
    from app.cli.processes import _dashboard_argv, dashboard_address

    assert dashboard_address(Settings()) == "127.0.0.1"
    assert dashboard_address(Settings(dashboard={"auth": "none", "host": "0.0.0.0"})) == (
        "127.0.0.1"
    )
    assert dashboard_address(Settings(dashboard={"auth": "oidc", "host": "10.0.0.5"})) == (
        "10.0.0.5"
    )
    argv = _dashboard_argv(8501, "127.0.0.1")
    assert argv[argv.index("--server.address") + 1] == "127.0.0.1"
    assert load_settings(write_config(tmp_path, "sqlite://")).dashboard.local_role == "operator"


# --- the query functions behind the pages ----------------------------------------------------


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


# --- shared filters --------------------------------------------------------------------------


def test_filters_follow_you_across_pages_and_into_the_url(
    page_env: Path, sqlite_engine: Engine
) -> None:
    load(sqlite_engine)
    write_config(page_env, sqlite_engine.url.render_as_string(hide_password=False))
    at = open_page("unit_costs", since="2025-11-20", until="2025-11-22")
    at.sidebar.multiselect(key=filter_key("model")).select("claude-sonnet-4-5").run()
    at.sidebar.selectbox(key="tz").set_value("Europe/Paris").run()
    assert at.query_params["model"] == "claude-sonnet-4-5"
    assert at.query_params["tz"] == "Europe/Paris"
    assert at.query_params["since"] == "2025-11-20"

    at.switch_page("app/dashboard/pages/overview.py").run()

    assert not at.exception, [e.value for e in at.exception]
    assert at.sidebar.multiselect(key=filter_key("model")).value == ["claude-sonnet-4-5"]
    assert metrics(at)["Spend (USD)"] == money_text(SONNET_A)
    assert at.query_params["model"] == "claude-sonnet-4-5"
    assert "CET" in " ".join(c.value for c in at.caption)  # times shown in the chosen zone


def test_period_presets_end_on_the_latest_data_day(page_env: Path, sqlite_engine: Engine) -> None:
    load(sqlite_engine)
    write_config(page_env, sqlite_engine.url.render_as_string(hide_password=False))
    at = open_page("overview")
    assert at.sidebar.selectbox(key="period").value == "Last 30 days"
    at.sidebar.selectbox(key="period").set_value("Last 7 days").run()
    assert at.sidebar.date_input(key="days").value == (date(2025, 11, 15), DAY2)
    assert at.query_params["period"] == "Last 7 days"
    at.sidebar.selectbox(key="period").set_value("Month to date").run()
    assert at.sidebar.date_input(key="days").value == (date(2025, 11, 1), DAY2)
    at.sidebar.date_input(key="days").set_value((DAY2, DAY2)).run()
    assert at.sidebar.selectbox(key="period").value == "Custom"
    assert metrics(at)["Requests"] == "1"
    assert at.query_params["until"] == "2025-11-22"


def test_every_table_can_be_downloaded(page_env: Path, sqlite_engine: Engine) -> None:
    load(sqlite_engine)
    write_config(page_env, sqlite_engine.url.render_as_string(hide_password=False))
    at = open_page("collectors")
    labels = [b.proto.label for b in at.get("download_button")]
    assert labels == ["CSV", "Parquet"]  # the one table on the page (runs), both formats


def test_many_open_switches_past_the_cards_are_a_table_and_a_pick(
    page_env: Path, sqlite_engine: Engine
) -> None:
    """A rule that kills per user can open thousands of switches: the first `MAX_CARDS` are
    cards, the others a table, and the one picked gets its card and buttons."""
    from app.dashboard.pages.alerts import MAX_CARDS

    url = sqlite_engine.url.render_as_string(hide_password=False)
    write_config(page_env, url)
    now = datetime.now(UTC)
    for i in range(MAX_CARDS + 5):
        add_now(
            sqlite_engine, settings_for(url), Scope(user=f"u-{i}"), "over the cap",
            now=now, by="finops", origin=OPERATOR,
        )  # fmt: skip
    at = open_page("alerts")
    assert not at.exception, [e.value for e in at.exception]
    releases = [b.key for b in at.button if b.key and b.key.startswith("release_")]
    assert len(releases) == MAX_CARDS
    assert "5 more open switches" in " ".join(c.value for c in at.caption)
    picked = at.selectbox(key="switch_pick")
    last = picked.options[-1]
    picked.set_value(int(last.split(" ")[0].lstrip("#"))).run()
    assert not at.exception, [e.value for e in at.exception]
    assert len([b for b in at.button if b.key and b.key.startswith("release_")]) == MAX_CARDS + 1
