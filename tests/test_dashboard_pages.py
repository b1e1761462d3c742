"""Every dashboard page through AppTest, with data and with an empty warehouse, on SQLite and
PostgreSQL; the key numbers equal what `spendguard report unit-costs --format json` prints;
shared filters and downloads. Roles: tests/test_dashboard_roles.py; the query functions
behind the pages: tests/test_dashboard_queries.py (both use this module's data and helpers).

Data: tests/fixtures/otlp/counting.json (five traces, 2025-11-20 and 21, see
tests/test_unit_costs.py), one rule that trips a kill switch waiting for approval, and one
switch an operator added.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine
from streamlit.testing.v1 import AppTest
from typer.testing import CliRunner

from alerts.engine import evaluate_once
from app.cli import app as cli_app
from app.dashboard import loaders
from app.dashboard.filters import filter_key
from app.dashboard.formatting import money_text
from app.ingest import ingest_paths
from app.killswitch.model import OPERATOR, PENDING, RULE, Scope
from app.killswitch.store import add_now
from app.reports.unit_costs import Scope as CostScope
from app.reports.unit_costs import unit_costs
from app.settings import Settings
from app.warehouse.engine import make_engine
from tests.conftest import FIXTURES
from tests.test_unit_costs import SONNET_A, TOTAL

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
