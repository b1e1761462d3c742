"""Unpriced models are listed, and re-pricing after adding an override fixes stored costs."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
import streamlit as st
from sqlalchemy import Engine, select

from app.ingest import ingest_paths
from app.reports.unit_costs import unit_costs
from app.reports.unpriced import unpriced_models
from app.reprice import reprice
from app.settings import PriceOverride, Settings
from app.warehouse.tables import CollectorRun
from tests.conftest import FIXTURES
from tests.test_cli import spendguard
from tests.test_dashboard import _metrics, _run_page
from tests.test_unit_costs import TOTAL

LLAMA = PriceOverride(
    provider="vllm", model="llama-3.1-70b", input_per_mtok="0.60", output_per_mtok="0.80"
)
LLAMA_COST = Decimal("0.0024") + Decimal("0.00032")  # 4000 in × $0.60/M + 400 out × $0.80/M


def test_unpriced_listed_then_repriced(engine: Engine) -> None:
    ingest_paths(engine, Settings(), [FIXTURES / "otlp" / "counting.json"])
    (missing,) = unpriced_models(engine)
    assert (missing.provider, missing.model, missing.calls) == ("vllm", "llama-3.1-70b", 1)
    assert (missing.input_tokens, missing.output_tokens) == (4000, 400)

    result = reprice(engine, Settings(pricing={"overrides": [LLAMA]}), date(2025, 11, 1))
    assert (result.calls, result.changed, result.newly_priced) == (5, 1, 1)
    assert unpriced_models(engine) == []
    total = sum(r.cost_usd for r in unit_costs(engine, ["model"]))
    assert total == TOTAL + LLAMA_COST
    with engine.connect() as conn:
        run = conn.execute(select(CollectorRun).where(CollectorRun.collector == "reprice")).one()
    assert run.status == "ok" and run.rows_loaded == 1

    again = reprice(engine, Settings(pricing={"overrides": [LLAMA]}), date(2025, 11, 1))
    assert again.changed == 0


def test_reprice_window_only_touches_its_days(engine: Engine) -> None:
    ingest_paths(engine, Settings(), [FIXTURES / "otlp" / "counting.json"])
    result = reprice(engine, Settings(pricing={"overrides": [LLAMA]}), date(2025, 11, 21))
    assert (result.calls, result.changed) == (1, 0)  # only trace E's call is on the 21st
    assert len(unpriced_models(engine)) == 1


def test_cli_report_unpriced_and_reprice(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'w.db'}"
    spendguard("ingest", "traces", str(FIXTURES / "otlp" / "counting.json"), url=url, cwd=tmp_path)
    listed = json.loads(
        spendguard("report", "unpriced", "--format", "json", url=url, cwd=tmp_path).stdout
    )
    assert [(r["provider"], r["model"], r["calls"]) for r in listed] == [
        ("vllm", "llama-3.1-70b", 1)
    ]
    (tmp_path / "spendguard.yaml").write_text(
        "pricing:\n  overrides:\n    - {provider: vllm, model: llama-3.1-70b, "
        'input_per_mtok: "0.60", output_per_mtok: "0.80"}\n'
    )
    out = spendguard("reprice", "--since", "2025-11-01", url=url, cwd=tmp_path).stdout
    assert "5 calls re-priced, 1 changed (1 newly priced" in out
    assert (
        json.loads(
            spendguard("report", "unpriced", "--format", "json", url=url, cwd=tmp_path).stdout
        )
        == []
    )


@pytest.mark.usefixtures("page_env")
def test_dashboard_notes_when_prices_were_recalculated(
    monkeypatch: pytest.MonkeyPatch, sqlite_engine: Engine
) -> None:
    ingest_paths(sqlite_engine, Settings(), [FIXTURES / "otlp" / "counting.json"])
    url = sqlite_engine.url.render_as_string(hide_password=False)
    before = _run_page(monkeypatch, url)
    assert not any("prices recalculated" in c.value for c in before.caption)
    reprice(sqlite_engine, Settings(pricing={"overrides": [LLAMA]}), date(2025, 11, 1))
    st.cache_data.clear()
    after = _run_page(monkeypatch, url)
    assert any("prices recalculated" in c.value for c in after.caption)
    assert _metrics(after)["Unpriced calls"] == "0"
