"""The "GPU cost" page through AppTest, reached through the app's navigation like the other
pages (the shared sidebar's days and filters drive it): the not-configured state, GPU bills
with no request yet, and a hand-made day's pools, allocation and idle, exact to the cent."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import streamlit as st
from sqlalchemy import Engine
from streamlit.testing.v1 import AppTest
from typer.testing import CliRunner

from app.cli import app as cli_app
from app.dashboard.formatting import money_text
from app.dashboard.pages.gpu import NO_ALLOCATION
from app.gpu.allocate import refresh
from app.gpu.report import AllocationRow, allocation_rows
from tests.test_gpu_allocation import (
    DAY,
    LLAMA,
    NEXT,
    POOLS,
    SETTINGS,
    add_cost,
    hand_made_day,
)

ENTRY = Path(__file__).resolve().parents[1] / "streamlit_app.py"
PAGE = "app/dashboard/pages/gpu.py"


@pytest.fixture
def page_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    monkeypatch.delenv("SPENDGUARD_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)  # no ./spendguard.yaml
    st.cache_data.clear()
    st.cache_resource.clear()
    yield
    st.cache_data.clear()
    st.cache_resource.clear()


def gpu_page(monkeypatch: pytest.MonkeyPatch, url: str, **params: str) -> AppTest:
    monkeypatch.setenv("SPENDGUARD_DATABASE_URL", url)
    at = AppTest.from_file(str(ENTRY), default_timeout=60)
    at.query_params.update(params)
    at.run()
    at.switch_page(PAGE).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


@pytest.mark.usefixtures("page_env")
def test_not_configured_says_what_to_configure(
    monkeypatch: pytest.MonkeyPatch, sqlite_engine: Engine
) -> None:
    at = gpu_page(monkeypatch, sqlite_engine.url.render_as_string(hide_password=False))
    assert at.title[0].value == "GPU cost"
    [info] = at.info
    assert "gpu_pools" in info.value and "spendguard demo" in info.value
    assert not at.metric


def frame_of(at: AppTest, column: str) -> Any:
    """The table that has `column` (tables are told apart by their columns, not their order)."""
    return next(d.value for d in at.dataframe if column in d.value.columns)


def nanos(rows: list[AllocationRow]) -> dict[str, int]:
    return {next(iter(r.group.values())): r.gpu_cost_nanousd for r in rows}


def shown_usd(frame: Any, column: str) -> dict[str, Decimal]:
    """A table's money column (exact decimals) as the stored nano-dollars, 9 places."""
    return {
        str(k): Decimal(str(v)).quantize(Decimal("0.000000001"))
        for k, v in zip(frame[frame.columns[0]], frame[column], strict=True)
    }


@pytest.mark.usefixtures("page_env")
def test_pools_allocation_and_idle(monkeypatch: pytest.MonkeyPatch, engine: Engine) -> None:
    hand_made_day(engine)
    refresh(engine, SETTINGS, DAY, NEXT)
    at = gpu_page(monkeypatch, engine.url.render_as_string(hide_password=False))
    # The shared shell: one title, the sidebar's days (the default preset ends on the latest
    # day with requests, the hand-made day) and no page-own date picker.
    assert [t.value for t in at.title] == ["GPU cost"]
    assert [d.key for d in at.date_input] == ["days"]
    assert at.date_input(key="days").value == (DAY - timedelta(days=29), DAY)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics == {
        "GPU cost (USD)": money_text(Decimal("302.51")),
        "Allocated to calls": money_text(Decimal("199.84")),
        "Idle": money_text(Decimal("102.67")),
        "In no pool": money_text(Decimal("10.4328")),
    }
    pools = frame_of(at, "Pool")
    assert list(pools["Pool"]) == ["llama-70b", "embed", "(unassigned)"]
    assert list(pools["Idle (USD)"]) == [Decimal("98.17"), Decimal("4.5"), 0]
    assert list(pools["Utilisation"])[1] == 0.5
    by_endpoint = frame_of(at, "Endpoint")
    assert list(by_endpoint["Endpoint"]) == ["/search", "/chat", "/embed"]
    assert shown_usd(by_endpoint, "GPU cost (USD)") == {
        "/search": Decimal("113.948333333"),
        "/chat": Decimal("81.391666667"),
        "/embed": Decimal("4.500000000"),
    }
    by_user = shown_usd(frame_of(at, "User"), "GPU cost (USD)")
    assert sum(by_user.values()) == Decimal("199.84")  # every allocated nano-dollar, once
    assert set(frame_of(at, "Model")["Model"]) == {"llama-3.1-70b", "llama-3.1-8b", "bge-large"}
    assert set(frame_of(at, "Team")["Team"]) == {"(none)"}
    # Every table has its downloads.
    keys = {b.key for b in at.get("download_button")}
    assert {"gpu_pools_csv", "gpu_endpoint_parquet", "gpu_team_csv"} <= keys
    # No pool in this page's config: the stored figures are shown, with a warning.
    assert "gpu_pools" in at.warning[0].value
    assert not any("whole pools" in c.value for c in at.caption)  # no filter, no note

    # Narrowing to one pool narrows the allocation tables.
    at.multiselect(key="gpu_pool_filter").set_value(["embed"]).run()
    assert list(frame_of(at, "Endpoint")["Endpoint"]) == ["/embed"]


@pytest.mark.usefixtures("page_env")
def test_the_sidebar_filters_narrow_the_allocation_not_the_pools(
    monkeypatch: pytest.MonkeyPatch, engine: Engine
) -> None:
    hand_made_day(engine)
    refresh(engine, SETTINGS, DAY, NEXT)
    url = engine.url.render_as_string(hide_password=False)
    at = gpu_page(monkeypatch, url, since="2025-11-20", until="2025-11-21", user="u-2")

    # u-2 made B (/search, 97.67 × 1/6) and C (/chat, 97.67 × 2/6 + the remainder nano-dollar).
    expected = nanos(allocation_rows(engine, ["endpoint"], DAY, NEXT, filters={"user": ["u-2"]}))
    assert expected == {"/chat": 32_556_666_667, "/search": 16_278_333_333}
    by_endpoint = frame_of(at, "Endpoint")
    assert shown_usd(by_endpoint, "GPU cost (USD)") == {
        k: Decimal(v).scaleb(-9) for k, v in expected.items()
    }
    assert set(frame_of(at, "User")["User"]) == {"u-2"}
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Allocated to the filtered requests"] == money_text(Decimal("48.835"))
    # Pools and idle are not per user: unchanged, and the page says so.
    assert metrics["Idle"] == money_text(Decimal("102.67"))
    assert metrics["GPU cost (USD)"] == money_text(Decimal("302.51"))
    assert any("whole pools" in c.value and "user filter" in c.value for c in at.caption)

    # A model filter keeps that model's calls only.
    at = gpu_page(monkeypatch, url, since="2025-11-20", until="2025-11-21", model="bge-large")
    assert list(frame_of(at, "Model")["Model"]) == ["bge-large"]
    assert {m.label: m.value for m in at.metric}["Allocated to the filtered requests"] == (
        money_text(Decimal("4.5"))
    )


@pytest.mark.usefixtures("page_env")
def test_days_without_gpu_cost_say_where_it_is(
    monkeypatch: pytest.MonkeyPatch, engine: Engine
) -> None:
    hand_made_day(engine)
    refresh(engine, SETTINGS, DAY, NEXT)
    url = engine.url.render_as_string(hide_password=False)
    at = gpu_page(monkeypatch, url, since="2025-11-25", until="2025-11-26")
    [info] = at.info
    assert "No GPU cost in these days" in info.value and "2025-11-20" in info.value
    assert not at.metric


@pytest.mark.usefixtures("page_env")
def test_gpu_bills_show_before_any_request(
    monkeypatch: pytest.MonkeyPatch, sqlite_engine: Engine
) -> None:
    """A pool idle all day is a bill with no request: the page shows it (the cost pages wait
    for requests; this one does not)."""
    today = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    add_cost(sqlite_engine, "focus", today, today + timedelta(hours=1), "98.17", tags=LLAMA)
    refresh(sqlite_engine, SETTINGS, today.date(), today.date() + timedelta(days=1))
    at = gpu_page(monkeypatch, sqlite_engine.url.render_as_string(hide_password=False))
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["GPU cost (USD)"] == money_text(Decimal("98.17"))
    assert metrics["Idle"] == money_text(Decimal("98.17"))
    assert [i.value for i in at.info][-1] == NO_ALLOCATION


@pytest.mark.usefixtures("page_env")
def test_unit_costs_and_overview_carry_the_gpu_cost_like_the_cli(
    monkeypatch: pytest.MonkeyPatch, sqlite_engine: Engine, tmp_path: Path
) -> None:
    """Managers read spend on Unit costs and Overview: there, allocated GPU cost is part of it,
    in its own column, and every figure is `spendguard report unit-costs`'s."""
    hand_made_day(sqlite_engine)
    refresh(sqlite_engine, SETTINGS, DAY, NEXT)
    url = sqlite_engine.url.render_as_string(hide_password=False)
    config = tmp_path / "spendguard.yaml"
    config.write_text(json.dumps({"database": {"url": url}, "gpu_pools": POOLS}), encoding="utf-8")
    result = CliRunner().invoke(
        cli_app,
        ["--config", str(config), "report", "unit-costs", "--by", "endpoint", "--since",
         "2025-11-20", "--until", "2025-11-21", "--format", "json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    cli = {r["endpoint"]: r for r in json.loads(result.stdout)}
    gpu_total = sum(Decimal(r["gpu_cost_usd"]) for r in cli.values())
    assert gpu_total == Decimal("199.84")  # every allocated nano-dollar reaches the requests
    spend = sum(Decimal(r["cost_usd"]) for r in cli.values())

    at = AppTest.from_file(str(ENTRY), default_timeout=60)
    at.query_params.update(since="2025-11-20", until="2025-11-21")
    at.run()
    overview = {m.label: m for m in at.metric}
    assert overview["Spend (USD)"].value == money_text(spend)
    assert "GPU cost" in (overview["Spend (USD)"].help or "")
    assert any(f"allocated GPU cost {money_text(gpu_total)}" in c.value for c in at.caption), [
        c.value for c in at.caption
    ]
    assert any("allocated GPU cost" in c.value for c in at.caption if "budget" in c.value)

    at.switch_page("app/dashboard/pages/unit_costs.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert {m.label: m.value for m in at.metric}["Spend (USD)"] == money_text(spend)
    table = frame_of(at, "Endpoint")
    for column, key in (
        ("Spend (USD)", "cost_usd"),
        ("Token cost (USD)", "token_cost_usd"),
        ("GPU cost (USD)", "gpu_cost_usd"),
    ):
        assert shown_usd(table, column) == {e: Decimal(r[key]) for e, r in cli.items()}, column
