"""The "Unit costs" page through AppTest, on both warehouses (its queries and formatting:
tests/test_dashboard_basics.py).

Most tests use tests/fixtures/otlp/counting.json (five traces with hand-computed costs, see
tests/test_unit_costs.py): 2025-11-20 holds A, B, C and D, 2025-11-21 holds E. The page runs
for real in Streamlit's AppTest against a warehouse named by SPENDGUARD_DATABASE_URL.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, event
from streamlit.testing.v1 import AppTest

from app.dashboard.filters import filter_key
from app.dashboard.formatting import money_text
from app.demo import DEMO_PRICE_OVERRIDES, DEMO_USER_TEAMS, write_demo_files
from app.ingest import ingest_paths
from app.reports.unit_costs import Scope, unit_costs
from app.settings import Settings
from app.warehouse.engine import make_engine
from app.warehouse.migrate import upgrade
from tests.conftest import FIXTURES
from tests.test_unit_costs import MINI_A, MINI_E, SONNET_A, TOTAL

ENTRY = Path(__file__).resolve().parents[1] / "streamlit_app.py"
COUNTING = FIXTURES / "otlp" / "counting.json"
DAY1, DAY2 = date(2025, 11, 20), date(2025, 11, 21)


# --- the page, through AppTest -------------------------------------------------------------


UNIT_COSTS = "app/dashboard/pages/unit_costs.py"


def _run_page(monkeypatch: pytest.MonkeyPatch, url: str) -> AppTest:
    """The "Unit costs" page (Overview is the default one: tests/test_dashboard_pages.py)."""
    monkeypatch.setenv("SPENDGUARD_DATABASE_URL", url)
    at = AppTest.from_file(str(ENTRY), default_timeout=60)
    at.run()
    at.switch_page(UNIT_COSTS).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


@pytest.mark.usefixtures("page_env")
def test_page_shows_headline_breakdowns_and_trend(
    monkeypatch: pytest.MonkeyPatch, warehouse_url: str
) -> None:
    engine = make_engine(warehouse_url)
    ingest_paths(engine, Settings(), [COUNTING])
    total = unit_costs(engine, [])[0]
    engine.dispose()

    at = _run_page(monkeypatch, warehouse_url)

    assert [t.value for t in at.title] == ["Unit costs"]
    assert _metrics(at) == {
        "Spend (USD)": money_text(total.cost_usd),
        "Requests": "5",
        "LLM calls": "5",
        "Cost per 1,000 requests": money_text(total.cost_per_1k_requests),
        "Unpriced calls": "1",
    }
    assert money_text(TOTAL) == "$0.0052" == _metrics(at)["Spend (USD)"]
    assert ["1 call has no price" in w.value for w in at.warning] == [True]
    assert [t.label for t in at.tabs] == ["By endpoint", "By model", "By user", "By team"]
    endpoint_table, model_table, user_table, team_table = (d.value for d in at.dataframe[:4])
    assert list(endpoint_table["Endpoint"]) == ["/v1/chat", "(none)", "/v1/search"]
    assert list(model_table["Unpriced calls"]) == [0, 0, 1]  # llama on vllm has no price
    assert list(user_table["User"]) == ["u-1", "(none)", "u-3", "u-2"]
    assert list(team_table["Requests"]) == [2, 3]
    assert endpoint_table["Spend (USD)"].sum() == TOTAL  # exact decimals, not floats
    charts_drawn = [c.key for c in at.get("plotly_chart")]
    assert charts_drawn == [
        "daily_spend",
        "daily_per_1k",
        "bars_endpoint",
        "bars_model",
        "bars_user",
        "bars_team",
        "heatmap",
        "drill_trend",
    ]
    assert at.sidebar.date_input(key="days").value == (date(2025, 10, 23), DAY2)


@pytest.mark.usefixtures("page_env")
def test_page_filters_and_days_narrow_every_figure(
    monkeypatch: pytest.MonkeyPatch, sqlite_engine: Engine
) -> None:
    ingest_paths(sqlite_engine, Settings(), [COUNTING])
    at = _run_page(monkeypatch, sqlite_engine.url.render_as_string(hide_password=False))

    at.sidebar.multiselect(key=filter_key("model")).select("claude-sonnet-4-5").run()
    assert not at.exception
    assert _metrics(at)["Requests"] == "1"
    assert _metrics(at)["Spend (USD)"] == money_text(SONNET_A)
    assert not at.warning  # the unpriced llama call is outside this filter

    at.sidebar.multiselect(key=filter_key("model")).unselect("claude-sonnet-4-5")
    at.sidebar.date_input(key="days").set_value((DAY2, DAY2)).run()
    assert _metrics(at)["Requests"] == "1"
    assert _metrics(at)["Spend (USD)"] == money_text(MINI_E)

    at.sidebar.multiselect(key=filter_key("endpoint")).select("/v1/search").run()
    at.sidebar.date_input(key="days").set_value((DAY1, DAY1)).run()
    assert _metrics(at)["Requests"] == "1"  # C, whose only call is unpriced
    assert _metrics(at)["Unpriced calls"] == "1"


@pytest.mark.usefixtures("page_env")
def test_empty_warehouse_says_how_to_load_data(
    monkeypatch: pytest.MonkeyPatch, sqlite_engine: Engine
) -> None:
    at = _run_page(monkeypatch, sqlite_engine.url.render_as_string(hide_password=False))
    [info] = at.info
    assert "spendguard demo" in info.value
    assert "spendguard ingest traces PATH" in info.value
    assert not at.metric
    assert not at.get("plotly_chart")

    # Data loaded while the page is open shows on the next run, not after the cache's TTL.
    ingest_paths(sqlite_engine, Settings(), [COUNTING])
    at.run()
    assert not at.info
    assert _metrics(at)["Requests"] == "5"


@pytest.mark.usefixtures("page_env")
def test_unmigrated_warehouse_says_to_upgrade(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'new.db'}"
    at = _run_page(monkeypatch, url)
    [info] = at.info
    assert "spendguard db upgrade" in info.value
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    at.run()
    assert "spendguard demo" in at.info[0].value  # migrated now, still empty


@pytest.mark.usefixtures("page_env")
def test_unreachable_warehouse_is_an_error_not_a_traceback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    at = _run_page(monkeypatch, "postgresql+psycopg://nobody:s3cret@127.0.0.1:1/none")
    [error] = at.error
    assert "cannot read its configuration or warehouse" in error.value
    [detail] = at.code
    assert "cannot connect to the warehouse" in detail.value
    assert "s3cret" not in detail.value


@pytest.mark.usefixtures("page_env")
def test_user_supplied_names_are_shown_as_typed(
    monkeypatch: pytest.MonkeyPatch, sqlite_engine: Engine, tmp_path: Path
) -> None:
    hostile_endpoint = "<img src=x onerror=alert(1)>/v1/chat"
    hostile_user = "**u-1** $x$"
    doc = COUNTING.read_text(encoding="utf-8")
    doc = doc.replace(json.dumps("/v1/chat"), json.dumps(hostile_endpoint))
    doc = doc.replace(json.dumps("u-1"), json.dumps(hostile_user))
    (tmp_path / "hostile.json").write_text(doc, encoding="utf-8")
    assert ingest_paths(sqlite_engine, Settings(), [tmp_path / "hostile.json"]).ok

    at = _run_page(monkeypatch, sqlite_engine.url.render_as_string(hide_password=False))

    endpoint_table, _, user_table, _ = (d.value for d in at.dataframe[:4])
    assert hostile_endpoint in list(endpoint_table["Endpoint"])
    assert hostile_user in list(user_table["User"])
    texts = [m.value for m in at.markdown] + [c.value for c in at.caption]
    texts += [i.value for i in at.info] + [w.value for w in at.warning]
    assert not any("onerror" in t or "**u-1**" in t for t in texts)
    bars = next(c for c in at.get("plotly_chart") if c.key == "bars_endpoint")
    spec = bars.proto.spec
    assert "onerror" in spec and "<img" not in spec and "\\u003cimg" not in spec


@pytest.mark.slow
@pytest.mark.usefixtures("page_env")
def test_page_on_demo_data(
    monkeypatch: pytest.MonkeyPatch, sqlite_engine: Engine, tmp_path: Path
) -> None:
    end = datetime(2025, 11, 22, 12, tzinfo=UTC)
    files = write_demo_files(tmp_path / "demo", days=3, seed=3, end=end, requests_per_day=60)
    settings = Settings(
        pricing={"overrides": DEMO_PRICE_OVERRIDES},
        attribution={"user_teams": DEMO_USER_TEAMS},
    )
    assert ingest_paths(sqlite_engine, settings, files).ok
    shown = Scope(since=date(2025, 10, 24), until=date(2025, 11, 23))
    total = unit_costs(sqlite_engine, [], shown)[0]

    at = _run_page(monkeypatch, sqlite_engine.url.render_as_string(hide_password=False))

    assert _metrics(at)["Spend (USD)"] == money_text(total.cost_usd)
    assert _metrics(at)["Requests"] == f"{total.requests:,}"
    assert total.requests > 100
    assert _metrics(at)["Unpriced calls"] == "0"
    assert not at.warning
    assert len(at.dataframe) == 6  # four breakdowns, the drill-down's models and users


@pytest.mark.usefixtures("page_env")
def test_a_link_from_an_alert_opens_the_filtered_view(
    monkeypatch: pytest.MonkeyPatch, sqlite_engine: Engine
) -> None:
    ingest_paths(sqlite_engine, Settings(), [COUNTING])
    monkeypatch.setenv(
        "SPENDGUARD_DATABASE_URL", sqlite_engine.url.render_as_string(hide_password=False)
    )
    at = AppTest.from_file(str(ENTRY), default_timeout=60)
    # What alerts.messages.dashboard_link writes for a user's daily cap on 2025-11-20.
    at.query_params.update({"user": "u-1", "since": "2025-11-20", "until": "2025-11-21"})
    at.run()
    at.switch_page(UNIT_COSTS).run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.sidebar.date_input(key="days").value == (DAY1, DAY1)
    assert at.sidebar.multiselect(key=filter_key("user")).value == ["u-1"]
    assert _metrics(at)["Requests"] == "2"
    assert _metrics(at)["Spend (USD)"] == money_text(MINI_A + SONNET_A)


@pytest.mark.usefixtures("page_env")
def test_new_data_shows_at_once_and_unchanged_data_comes_from_the_cache(
    monkeypatch: pytest.MonkeyPatch, warehouse_url: str
) -> None:
    """The loaders are keyed by the data version (app.dashboard.versions), not by a clock: a
    push of traces (no collector run, only rollup marks) shows on the next run, so does one
    whose rollups were rebuilt before the page looked again, and a run with nothing new reads
    nothing but the version."""
    from app.rollups.refresh import dirty_days, refresh, wait_for_background
    from tests.test_reconcile import add_call

    engine = make_engine(warehouse_url)
    ingest_paths(engine, Settings(), [COUNTING])
    at = _run_page(monkeypatch, warehouse_url)
    assert _metrics(at)["Requests"] == "5"
    wait_for_background()  # the rebuild that the first run started (the ingest left marks)
    at.run()  # sees the warehouse without marks: a new version

    statements: list[str] = []

    def count(conn: object, cursor: object, sql: str, *args: object) -> None:
        statements.append(sql)

    event.listen(Engine, "before_cursor_execute", count)
    try:
        at.run()
        assert _metrics(at)["Requests"] == "5"
        assert len(statements) == 1 and "collector_runs" in statements[0]  # the version only

        noon = datetime(2025, 11, 21, 12, tzinfo=UTC)
        add_call(engine, "9" * 32, "1" * 16, noon, "openai", "gpt-4o-mini", 1_000_000)
        at.run()
        assert _metrics(at)["Requests"] == "6"
        wait_for_background()  # that run saw the marks and started the rebuild, in a thread
        with engine.connect() as conn:
            assert dirty_days(conn) == []
        at.run()  # the rollups rebuilt meanwhile: the page has seen the warehouse without marks
        assert _metrics(at)["Requests"] == "6"

        add_call(engine, "8" * 32, "1" * 16, noon, "openai", "gpt-4o-mini", 1_000_000)
        refresh(engine)  # the marks come and go before the page looks again
        at.run()
        assert _metrics(at)["Requests"] == "7"
    finally:
        event.remove(Engine, "before_cursor_execute", count)
        engine.dispose()
