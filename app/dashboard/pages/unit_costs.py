"""Page "Unit costs": spend and cost per 1,000 requests, by endpoint, model, user and team.

A request's UTC day decides which range it falls in; its calls follow it. Every figure comes
from `app.reports.unit_costs` rules (see ARCHITECTURE, "The meaning of the numbers").
"""

from __future__ import annotations

import streamlit as st

from app.dashboard import charts, charts_spend, data, tables
from app.dashboard.ahead import ahead
from app.dashboard.filters import Selection
from app.dashboard.formatting import count_text, local_time_text, money_text
from app.dashboard.shell import NO_MATCH, page
from app.reports.unit_costs import UnitCostRow

CHART_GROUPS = 25
TOP_USERS = 25
HEAT_ENDPOINTS = 15
HEAT_MODELS = 12
HEAT_ROWS = 2000
ALL = "(all)"


def main() -> None:
    ctx = page("Unit costs")
    if ctx is None:
        return
    assert ctx.url is not None
    assert ctx.bounds is not None
    assert ctx.settings is not None
    url, selection = ctx.url, ctx.selection
    _load_ahead(url, selection)
    latest = local_time_text(ctx.bounds.last, ctx.timezone)
    repriced = data.last_reprice(url)
    st.caption(
        f"{selection.since:%Y-%m-%d} to {selection.last_day:%Y-%m-%d} (UTC days) · "
        f"latest request {latest}"
        + (
            f" · prices recalculated {local_time_text(repriced, ctx.timezone)}"
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
    _heatmap(url, selection)
    _drill_down(url, selection)


def _load_ahead(url: str, selection: Selection) -> None:
    """Start every query of this run at once (`app.dashboard.ahead`), the drill-down's with its
    choices as they stand: the per-user ones first (the biggest rollups; the page meanwhile
    makes the small ones itself), then the days, then in the order the page draws them."""
    args = (selection.since, selection.until, selection.filters)
    days = (selection.since, selection.until)
    endpoint = _narrow(selection.filters, "endpoint", st.session_state.get("drill_endpoint"))
    scoped = _narrow(endpoint, "model", st.session_state.get("drill_model"))
    rows, top = data.unit_cost_rows, data.top_unit_cost_rows
    ahead(
        top.later(url, ("user",), *args, TOP_USERS),
        top.later(url, ("user",), *days, scoped, TOP_USERS),
        data.daily_rows.later(url, *args),
        data.daily_rows.later(url, *days, scoped),
        rows.later(url, (), *args),
        rows.later(url, ("endpoint",), *args),
        rows.later(url, ("model",), *args),
        rows.later(url, ("team",), *args),
        top.later(url, ("endpoint", "model"), *args, HEAT_ROWS),
        rows.later(url, ("model",), *days, endpoint),
    )


def _headline(total: UnitCostRow) -> None:
    cols = st.columns(5)
    cols[0].metric(
        "Spend (USD)",
        money_text(total.cost_usd),
        help=tables.SPEND_HELP,
    )
    cols[1].metric("Requests", count_text(total.requests))
    cols[2].metric("LLM calls", count_text(total.llm_calls))
    cols[3].metric(
        "Cost per 1,000 requests",
        money_text(total.cost_per_1k_requests),
        help="1000 × spend (token and GPU cost) / requests, counting requests that made no "
        "LLM call.",
    )
    cols[4].metric("Unpriced calls", count_text(total.unpriced_calls))
    tables.spend_split(total)
    if total.unpriced_calls:
        calls = (
            "1 call has" if total.unpriced_calls == 1 else f"{total.unpriced_calls:,} calls have"
        )
        st.warning(
            f"{calls} no price — add a pricing override (`pricing.overrides` in "
            "spendguard.yaml). Their cost is not in these figures; the model table shows which "
            "models they called.",
            icon=":material/warning:",
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


def _heatmap(url: str, selection: Selection) -> None:
    st.subheader("Endpoint × model")
    rows = data.top_unit_cost_rows(
        url, ("endpoint", "model"), selection.since, selection.until, selection.filters, HEAT_ROWS
    )
    endpoints = _leaders(rows, "endpoint", HEAT_ENDPOINTS)
    models = _leaders(rows, "model", HEAT_MODELS)
    shown = [r for r in rows if r.group["endpoint"] in endpoints and r.group["model"] in models]
    if not shown:
        st.info("No LLM calls in this selection.")
        return
    title = "Cost per 1,000 requests (USD) by endpoint and model"
    if len(endpoints) < len({r.group["endpoint"] for r in rows}):
        title += f" · top {HEAT_ENDPOINTS} endpoints by spend"
    st.plotly_chart(
        charts_spend.heatmap(shown, "endpoint", "model", title), width="stretch", key="heatmap"
    )
    st.caption(
        "Each cell: 1000 × the cost of that model's calls / the endpoint's requests that called "
        "it. Blank: the endpoint never called the model."
    )


def _leaders(rows: list[UnitCostRow], dim: str, limit: int) -> list[str]:
    spend: dict[str, int] = {}
    for r in rows:
        spend[r.group[dim]] = spend.get(r.group[dim], 0) + r.cost_nanousd
    return [k for k, _ in sorted(spend.items(), key=lambda kv: (-kv[1], kv[0]))][:limit]


@st.fragment
def _drill_down(url: str, selection: Selection) -> None:
    """Endpoint → its models → their users, with the daily trend of what is picked."""
    st.subheader("Drill down")
    args = (selection.since, selection.until)
    endpoints = data.unit_cost_rows(url, ("endpoint",), *args, selection.filters)
    left, right = st.columns(2)
    endpoint = left.selectbox(
        "Endpoint", [ALL, *(r.group["endpoint"] for r in endpoints)], key="drill_endpoint"
    )
    scoped = _narrow(selection.filters, "endpoint", endpoint)
    models = data.unit_cost_rows(url, ("model",), *args, scoped)
    model = right.selectbox("Model", [ALL, *(r.group["model"] for r in models)], key="drill_model")
    scoped = _narrow(scoped, "model", model)
    # (Already under way when the whole page runs; not when only the drill-down does.)
    ahead(data.daily_rows.later(url, *args, scoped))
    st.markdown("**Models** of the chosen endpoint (all endpoints when none is chosen)")
    tables.show(models, ["model"], key="drill_models")
    st.markdown(f"**Users** of the chosen endpoint and model (the top {TOP_USERS} by spend)")
    users = data.top_unit_cost_rows(url, ("user",), *args, scoped, TOP_USERS)
    tables.show(users, ["user"], key="drill_users")
    st.markdown("**Cost per 1,000 requests per day** of the chosen endpoint and model (USD)")
    rows = data.daily_rows(url, *args, scoped)
    st.plotly_chart(charts.daily_cost_per_1k(rows), width="stretch", key="drill_trend")


def _narrow(filters: data.Filters, dim: str, value: str | None) -> data.Filters:
    if value is None or value == ALL:
        return filters
    return (*((d, v) for d, v in filters if d != dim), (dim, (value,)))


if __name__ == "__main__":  # Streamlit runs a page as __main__; importing it draws nothing
    main()
