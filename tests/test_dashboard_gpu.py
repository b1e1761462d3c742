"""The "GPU cost" page through AppTest, reached through the app's navigation: the not-configured
state, and a hand-made day's pools, allocation and idle."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
import streamlit as st
from sqlalchemy import Engine
from streamlit.testing.v1 import AppTest

from app.dashboard.formatting import money_text
from app.gpu.allocate import refresh
from tests.test_gpu_allocation import DAY, NEXT, SETTINGS, hand_made_day

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


def gpu_page(monkeypatch: pytest.MonkeyPatch, url: str) -> AppTest:
    monkeypatch.setenv("SPENDGUARD_DATABASE_URL", url)
    at = AppTest.from_file(str(ENTRY), default_timeout=60)
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


@pytest.mark.usefixtures("page_env")
def test_pools_allocation_and_idle(monkeypatch: pytest.MonkeyPatch, engine: Engine) -> None:
    hand_made_day(engine)
    refresh(engine, SETTINGS, DAY, NEXT)
    at = gpu_page(monkeypatch, engine.url.render_as_string(hide_password=False))
    metrics = {m.label: m.value for m in at.metric}
    assert metrics == {
        "GPU cost (USD)": money_text(Decimal("302.51")),
        "Allocated to calls": money_text(Decimal("199.84")),
        "Idle": money_text(Decimal("102.67")),
        "In no pool": money_text(Decimal("10.4328")),
    }
    pools, by_endpoint, by_user, by_model = (d.value for d in at.dataframe)
    assert list(pools["Pool"]) == ["llama-70b", "embed", "(unassigned)"]
    assert list(pools["Idle (USD)"]) == [98.17, 4.5, 0.0]
    assert list(pools["Utilisation"])[1] == 0.5
    assert list(by_endpoint["Endpoint"]) == ["/search", "/chat", "/embed"]
    assert sum(by_user["GPU cost (USD)"]) == pytest.approx(199.84)
    assert set(by_model["Model"]) == {"llama-3.1-70b", "llama-3.1-8b", "bge-large"}
    # No pool in this page's config: the stored figures are shown, with a warning.
    assert "gpu_pools" in at.warning[0].value

    # Narrowing to one pool narrows the allocation tables.
    at.multiselect(key="gpu_pool_filter").set_value(["embed"]).run()
    assert list(at.dataframe[1].value["Endpoint"]) == ["/embed"]
