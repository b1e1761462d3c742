"""Page "Unit costs": spend and cost per 1,000 requests, by endpoint, model, user and team.

A request's UTC day decides which range it falls in; its calls follow it. Every figure comes
from `app.reports.unit_costs` rules (see ARCHITECTURE, "The meaning of the numbers").
"""

from __future__ import annotations

import streamlit as st
from sqlalchemy.exc import SQLAlchemyError

from app.dashboard import charts, data, tables
from app.dashboard.filters import Selection, sidebar
from app.dashboard.formatting import count_text, local_time_text, money_text
from app.errors import SpendguardError
from app.reports.unit_costs import UnitCostRow

CHART_GROUPS = 25
TOP_USERS = 25

NO_DATA = (
    "The warehouse has no requests yet. Load some with `spendguard demo` (generated demo "
    "traffic) or `spendguard ingest traces PATH` (your OTLP JSON files), then reload this page."
)
NO_SCHEMA = (
    "The warehouse has no tables yet. Run `spendguard db upgrade`, then load data with "
    "`spendguard demo` or `spendguard ingest traces PATH`."
)
NO_MATCH = "No requests in these days with these filters. Widen the days or clear a filter."


def main() -> None:
    st.title("Unit costs")
    try:
        settings = data.settings()
        url = settings.database.url
        if not data.has_warehouse(url):
            data.has_warehouse.clear(url)  # look again on the next run, not after the TTL
            st.info(NO_SCHEMA)
            return
        bounds = data.data_bounds(url)
    except (SpendguardError, SQLAlchemyError) as exc:
        st.error("spendguard cannot read its configuration or warehouse:")
        st.code(str(exc).splitlines()[0] if isinstance(exc, SQLAlchemyError) else str(exc))
        return
    if bounds is None:
        data.data_bounds.clear(url)  # so data loaded a moment from now shows on reload
        st.info(NO_DATA)
        return
    selection = sidebar(url, bounds)
    latest = local_time_text(bounds.last, settings.dashboard.timezone)
    repriced = data.last_reprice(url)
    st.caption(
        f"{selection.since:%Y-%m-%d} to {selection.last_day:%Y-%m-%d} (UTC days) · "
        f"latest request {latest}"
        + (
            f" · prices recalculated {local_time_text(repriced, settings.dashboard.timezone)}"
            if repriced is not None
            else ""
        )
    )
    overall = data.unit_cost_rows(url, (), selection.since, selection.until, selection.filters)
    if not overall or overall[0].requests == 0:
        st.info(NO_MATCH)
        return
    _headline(overall[0])
    _trend(url, selection)
    _breakdowns(url, selection)


def _headline(total: UnitCostRow) -> None:
    cols = st.columns(5)
    cols[0].metric(
        "Spend (USD)",
        money_text(total.cost_usd),
        help="Estimated from traces: each call's tokens × its model's price at the call's time.",
    )
    cols[1].metric("Requests", count_text(total.requests))
    cols[2].metric("LLM calls", count_text(total.llm_calls))
    cols[3].metric(
        "Cost per 1,000 requests",
        money_text(total.cost_per_1k_requests),
        help="1000 × spend / requests, counting requests that made no LLM call.",
    )
    cols[4].metric("Unpriced calls", count_text(total.unpriced_calls))
    if total.unpriced_calls:
        calls = (
            "1 call has" if total.unpriced_calls == 1 else f"{total.unpriced_calls:,} calls have"
        )
        st.warning(
            f"{calls} no price — add a pricing override (`pricing.overrides` in "
            "spendguard.yaml). Their cost is not in these figures; the model table shows which "
            "models they called.",
            icon="⚠️",
        )


def _trend(url: str, selection: Selection) -> None:
    rows = data.daily_rows(url, selection.since, selection.until, selection.filters)
    left, right = st.columns(2)
    left.markdown("**Spend per day** (UTC)")
    left.plotly_chart(charts.daily_spend(rows), width="stretch", key="daily_spend")
    right.markdown("**Cost per 1,000 requests per day** (UTC)")
    right.plotly_chart(charts.daily_cost_per_1k(rows), width="stretch", key="daily_per_1k")


def _breakdowns(url: str, selection: Selection) -> None:
    by_endpoint, by_model, by_user, by_team = st.tabs(
        ["By endpoint", "By model", "By user", "By team"]
    )
    args = (selection.since, selection.until, selection.filters)
    with by_endpoint:
        _breakdown(data.unit_cost_rows(url, ("endpoint",), *args), "endpoint", "endpoints")
    with by_model:
        st.caption("A request that called two models counts once for each.")
        _breakdown(data.unit_cost_rows(url, ("model",), *args), "model", "models")
    with by_user:
        st.caption(f"The top {TOP_USERS} users by spend; (none) is requests without a user.")
        rows = data.top_unit_cost_rows(url, ("user",), *args, TOP_USERS)
        _breakdown(rows, "user", "users")
    with by_team:
        _breakdown(data.unit_cost_rows(url, ("team",), *args), "team", "teams")


def _breakdown(rows: list[UnitCostRow], dim: str, plural: str) -> None:
    shown = rows[:CHART_GROUPS]
    heading = f"**Cost per 1,000 requests** by {tables.title(dim).lower()}"
    if len(rows) > CHART_GROUPS:
        heading += f" (the top {CHART_GROUPS} {plural} by spend)"
    st.markdown(heading)
    st.plotly_chart(charts.cost_per_1k_bars(shown, dim), width="stretch", key=f"bars_{dim}")
    tables.show(rows, [dim], key=f"table_{dim}")


if __name__ == "__main__":  # Streamlit runs a page as __main__; importing it draws nothing
    main()
