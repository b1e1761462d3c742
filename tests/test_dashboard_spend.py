"""The Spend explorer page (AppTest, SQLite and PostgreSQL): its split adds up to the
unit-cost report's total, and its estimated-vs-billed headline leaves a day not over out of the
gap (today's bill is partial)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from app.dashboard import loaders
from app.dashboard.formatting import money_text
from app.reports.unit_costs import Scope as CostScope
from app.reports.unit_costs import unit_costs
from app.warehouse.engine import make_engine
from tests.test_dashboard_pages import DAY1, load, metrics, open_page, write_config
from tests.test_reconcile import D3, load_month


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


@pytest.mark.parametrize("clock", ["day over", "during the day"])
def test_spend_explorer_leaves_a_partial_bill_out_of_the_gap(
    page_env: Path, warehouse_url: str, monkeypatch: pytest.MonkeyPatch, clock: str
) -> None:
    """Bills of the 3rd (tests/test_reconcile.py): 4.30 in USD against 3.60 estimated; the 4th
    has no bill. While the 3rd runs its bill is partial: billed, but no gap to its estimate."""
    engine = make_engine(warehouse_url)
    load_month(engine)
    engine.dispose()
    write_config(page_env, warehouse_url)
    at_hour = 24 if clock == "day over" else 15
    monkeypatch.setattr(
        loaders, "now", lambda: datetime(2025, 11, 3, tzinfo=UTC) + timedelta(hours=at_hour)
    )

    at = open_page("spend", since=D3.isoformat(), until="2025-11-05")

    shown = metrics(at)
    assert shown["Billed (invoices)"] == money_text(Decimal("4.3"))
    assert shown["Estimated (traces)"] == money_text(Decimal("3.85"))
    captions = " ".join(c.value for c in at.caption)
    assert "1 day(s) have no bill yet" in captions
    if clock == "day over":
        assert shown["Gap (billed − estimated)"] == money_text(Decimal("0.7"))
        assert "Today's bill is partial" not in captions
    else:
        assert shown["Gap (billed − estimated)"] == money_text(Decimal(0))
        assert "Today's bill is partial" in captions
