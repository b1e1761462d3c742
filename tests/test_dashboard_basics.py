"""The unit-cost queries behind the dashboard (bounds, days, top groups, filter lists) on both
warehouses, and its formatting, chart labels and default range.

Data: tests/fixtures/otlp/counting.json (five traces with hand-computed costs, see
tests/test_unit_costs.py): 2025-11-20 holds A, B, C and D, 2025-11-21 holds E.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import Engine

from app.dashboard import charts, queries
from app.dashboard.filters import default_range
from app.dashboard.formatting import chart_label, local_time_text, money_text
from app.dashboard.queries import DailyRow, DataBounds
from app.ingest import ingest_paths
from app.reports.unit_costs import Scope, unit_costs
from app.settings import Settings
from app.warehouse.engine import make_engine
from tests.conftest import FIXTURES
from tests.test_unit_costs import MINI_A, MINI_D, MINI_E, SONNET_A, TOTAL

ENTRY = Path(__file__).resolve().parents[1] / "streamlit_app.py"
COUNTING = FIXTURES / "otlp" / "counting.json"
DAY1, DAY2 = date(2025, 11, 20), date(2025, 11, 21)


@pytest.fixture
def loaded(engine: Engine) -> Engine:
    assert ingest_paths(engine, Settings(), [COUNTING]).ok
    return engine


# --- queries -----------------------------------------------------------------------------


def test_has_warehouse(sqlite_engine: Engine, tmp_path: Path) -> None:
    assert queries.has_warehouse(sqlite_engine)
    bare = make_engine(f"sqlite:///{tmp_path / 'bare.db'}")
    assert not queries.has_warehouse(bare)
    bare.dispose()


def test_data_bounds(engine: Engine) -> None:
    assert queries.data_bounds(engine) is None
    ingest_paths(engine, Settings(), [COUNTING])
    bounds = queries.data_bounds(engine)
    assert bounds is not None
    assert bounds.requests == 5
    assert (bounds.first.date(), bounds.last.date()) == (DAY1, DAY2)
    assert bounds.last.tzinfo is not None


def test_daily_unit_costs_split_the_total_by_request_day(loaded: Engine) -> None:
    days = queries.daily_unit_costs(loaded, Scope())
    assert [(d.day, d.requests, d.llm_calls, d.unpriced_calls) for d in days] == [
        (DAY1, 4, 4, 1),
        (DAY2, 1, 1, 0),
    ]
    assert days[0].cost_usd == MINI_A + SONNET_A + MINI_D
    assert days[1].cost_usd == MINI_E
    assert days[0].cost_per_1k_requests == (MINI_A + SONNET_A + MINI_D) * 1000 / 4
    assert sum(d.cost_usd for d in days) == TOTAL


def test_daily_unit_costs_follow_the_counting_rules_of_filters(loaded: Engine) -> None:
    by_model = queries.daily_unit_costs(loaded, Scope(filters={"model": ["gpt-4o-mini"]}))
    assert [(d.day, d.requests, d.cost_usd) for d in by_model] == [
        (DAY1, 2, MINI_A + MINI_D),  # A and D called it; A's sonnet call is not counted
        (DAY2, 1, MINI_E),
    ]
    by_endpoint = queries.daily_unit_costs(loaded, Scope(filters={"endpoint": ["/v1/chat"]}))
    # B made no call but is a /v1/chat request all the same.
    assert [(d.day, d.requests, d.cost_usd) for d in by_endpoint] == [(DAY1, 2, MINI_A + SONNET_A)]
    assert queries.daily_unit_costs(loaded, Scope(since=DAY2, until=DAY2)) == []


def test_fill_days_adds_empty_days() -> None:
    row = DailyRow(DAY2, 1, 1, 21_000, 0)
    filled = queries.fill_days([row], DAY1, date(2025, 11, 23))
    assert [d.day for d in filled] == [DAY1, DAY2, date(2025, 11, 22)]
    assert filled[1] is row
    assert (filled[0].requests, filled[0].cost_nanousd, filled[0].cost_per_1k_requests) == (
        0,
        0,
        None,
    )


@pytest.mark.parametrize("dim", ["endpoint", "model", "user", "team"])
def test_top_unit_costs_is_unit_costs_cut_in_sql(loaded: Engine, dim: str) -> None:
    everything = unit_costs(loaded, [dim])
    assert unit_costs(loaded, [dim], Scope(), limit=2) == everything[:2]
    assert unit_costs(loaded, [dim], Scope(), limit=100) == everything


def test_filter_options(loaded: Engine) -> None:
    everything = Scope()
    assert queries.filter_options(loaded, "endpoint", everything) == [
        "/v1/chat",
        "(none)",
        "/v1/search",
    ]
    # Users and teams that are not set are not options; the order is by spend.
    assert queries.filter_options(loaded, "user", everything) == ["u-1", "u-3", "u-2"]
    assert queries.filter_options(loaded, "team", everything) == ["payments"]
    assert queries.filter_options(loaded, "model", everything) == [
        "claude-sonnet-4-5",
        "gpt-4o-mini",
        "llama-3.1-70b",
    ]
    assert queries.filter_options(loaded, "user", everything, limit=1) == ["u-1"]
    assert queries.filter_options(loaded, "user", Scope(since=DAY2)) == ["u-3"]


# --- formatting, charts, defaults ----------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "text"),
    [
        (Decimal("1234.565"), "$1,234.56"),
        (Decimal("0.005196"), "$0.0052"),
        (Decimal(0), "$0.0000"),
        (Decimal("-2.5"), "-$2.50"),
        (None, "—"),
    ],
)
def test_money_text(amount: Decimal | None, text: str) -> None:
    assert money_text(amount) == text


def test_chart_labels_are_escaped_and_categorical(loaded: Engine) -> None:
    rows = unit_costs(loaded, ["endpoint"])
    rows[0].group["endpoint"] = "<b>1042</b>"
    fig = charts.cost_per_1k_bars(rows, "endpoint")
    assert fig.layout.yaxis.type == "category"
    assert chart_label("<b>1042</b>") == "&lt;b&gt;1042&lt;/b&gt;"
    assert "&lt;b&gt;1042&lt;/b&gt;" in fig.data[0].y
    assert all("<" not in label for label in fig.data[0].y)


def test_local_time_text() -> None:
    moment = datetime(2025, 11, 21, 9, 0, tzinfo=UTC)
    assert local_time_text(moment, "Europe/Paris") == "2025-11-21 10:00 CET"
    assert local_time_text(moment, "Not/AZone") == "2025-11-21 09:00 UTC"


def test_default_range_ends_on_the_latest_data_day() -> None:
    last = datetime(2025, 11, 21, 23, 30, tzinfo=UTC)
    bounds = DataBounds(first=last - timedelta(days=90), last=last, requests=10)
    assert default_range(bounds) == (date(2025, 10, 23), DAY2)
    assert default_range(None, today=DAY1) == (date(2025, 10, 22), DAY1)
