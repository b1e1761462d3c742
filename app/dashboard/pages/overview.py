"""Page "Overview": the period's spend against the previous one and against the budgets, the
forecast to each budget period's end, cost per 1,000 requests per day, what moved most week
over week, and how fresh each source's data is.

Budgets are rules (`metric: cost_usd` over a calendar `window` with an `above` or
`forecast_above` threshold); they are judged here exactly as the alert engine judges them.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

import polars as pl
import streamlit as st

from app.dashboard import charts, charts_spend, data, loaders, tables
from app.dashboard.ahead import ahead
from app.dashboard.filters import Selection
from app.dashboard.formatting import count_text, local_time_text, money_text
from app.dashboard.queries_alerts import BudgetLine
from app.dashboard.shell import NO_MATCH, Context, page
from app.money import nanos_to_usd
from app.reports.unit_costs import UnitCostRow

MOVERS = 10
STALE_AFTER = timedelta(hours=6)


def main() -> None:
    ctx = page("Overview")
    if ctx is None:
        return
    assert ctx.url is not None
    assert ctx.bounds is not None
    sel = ctx.selection
    _load_ahead(ctx.url, sel)
    st.caption(
        f"{sel.since:%Y-%m-%d} to {sel.last_day:%Y-%m-%d} (UTC days) · latest request "
        f"{local_time_text(ctx.bounds.last, ctx.timezone)}"
    )
    overall = data.unit_cost_rows(ctx.url, (), sel.since, sel.until, sel.filters)
    if not overall or overall[0].requests == 0:
        st.info(NO_MATCH)
    else:
        before_since, before_until = sel.previous()
        before = data.unit_cost_rows(ctx.url, (), before_since, before_until, sel.filters)
        _headline(overall[0], before[0] if before else None, sel.days)
    _budgets(ctx)
    _trend(ctx)
    _movers(ctx)
    _freshness(ctx)


def _load_ahead(url: str, sel: Selection) -> None:
    """Start the page's queries at once (`app.dashboard.ahead`), in the order it draws them."""
    args = (sel.since, sel.until, sel.filters)
    ahead(
        data.unit_cost_rows.later(url, (), *args),
        data.unit_cost_rows.later(url, (), *sel.previous(), sel.filters),
        loaders.budget_lines.later(url, _budget_time()),
        data.daily_rows.later(url, *args),
        loaders.top_movers.later(url, _movers_dim(), *_movers_days(sel), sel.filters, MOVERS),
        loaders.freshness.later(url),
    )


def _budget_time() -> datetime:
    """The minute budgets are judged at (a minute's results are cached)."""
    return loaders.now().replace(second=0, microsecond=0)


def _movers_dim() -> str:
    return str(st.session_state.get("movers_dim") or "endpoint")


def _movers_days(sel: Selection) -> tuple[date, date, date]:
    """`top_movers`' days: the range's last 7 days [since, until), and the first of the 7
    days before them."""
    end = sel.until
    return end - timedelta(days=7), end, end - timedelta(days=14)


def _headline(now: UnitCostRow, before: UnitCostRow | None, days: int) -> None:
    cols = st.columns(4)
    label = f"vs the {days} days before"

    def delta(a: object, b: object) -> str | None:
        if before is None or b is None or a is None:
            return None
        return f"{money_text(a - b)} {label}"  # type: ignore[operator]

    cols[0].metric(
        "Spend (USD)",
        money_text(now.cost_usd),
        delta=delta(now.cost_usd, before.cost_usd if before else None),
        delta_color="inverse",  # spending more is bad news: red
        help=tables.SPEND_HELP,
    )
    cols[1].metric(
        "Cost per 1,000 requests",
        money_text(now.cost_per_1k_requests),
        delta=delta(now.cost_per_1k_requests, before.cost_per_1k_requests if before else None),
        delta_color="inverse",
        help="1000 × spend (token and GPU cost) / requests, counting requests that made no "
        "LLM call.",
    )
    cols[2].metric(
        "Requests",
        count_text(now.requests),
        delta=f"{now.requests - before.requests:+,} {label}" if before else None,
        delta_color="off",
    )
    cols[3].metric("LLM calls", count_text(now.llm_calls))
    tables.spend_split(now)


@st.fragment
def _budgets(ctx: Context) -> None:
    assert ctx.url is not None
    st.subheader("Budgets this period")
    st.caption(
        "Spend against each budget rule as the alert engine judges it: token cost plus "
        "allocated GPU cost."
    )
    lines = loaders.budget_lines(ctx.url, _budget_time())
    if lines and not lines[0].configured:
        st.info(
            "No budget is configured. A budget is a rule on `cost_usd` over a calendar window, "
            "e.g. `{id: monthly-budget, metric: cost_usd, window: month, condition: "
            "{above: 5000}}` under `rules:` in spendguard.yaml. Meanwhile, the month so far:",
            icon=":material/lightbulb:",
        )
    by_rule: dict[str, list[BudgetLine]] = {}
    for line in lines:
        by_rule.setdefault(line.rule_id, []).append(line)
    cols = st.columns(min(len(by_rule), 3) or 1)
    for i, rule_lines in enumerate(by_rule.values()):
        with cols[i % len(cols)], st.container(border=True):
            _budget_card(rule_lines, ctx.timezone)


def _budget_card(lines: list[BudgetLine], zone: str) -> None:
    """One rule: its most-spending group (or its only line), then the other groups briefly."""
    line = lines[0]
    st.markdown(f"**{line.rule_id}**")  # rule ids are [A-Za-z0-9_.-]: safe as markdown
    st.caption(
        f"{line.period} from {local_time_text(line.period_start, zone)} to "
        f"{local_time_text(line.period_end, zone)}"
    )
    spent = money_text(line.spent)
    if not line.configured:
        st.metric("Spent so far", spent)
        st.metric("Forecast to month end", money_text(line.forecast))
        return
    if line.group:  # group values come from traces: shown as plain text
        st.text("top: " + ", ".join(f"{k}={v}" for k, v in line.group.items()))
    share = float(line.spent / line.budget) if line.budget > 0 else 1.0
    colour = "red" if line.over else ("orange" if line.forecast_over else "green")
    st.markdown(f"#### :{colour}[{spent}] of {money_text(line.budget)}")
    st.progress(min(share, 1.0), text=f"{share:.0%} of the budget")
    forecast = money_text(line.forecast) if line.forecast is not None else None
    if line.over:
        st.markdown(f":red[**Over budget** by {money_text(line.spent - line.budget)}]")
    elif line.forecast_over:
        st.markdown(f":orange[Forecast **{forecast}** by the period's end: over budget]")
    elif forecast is None:
        st.markdown("Forecast: too early in the period to tell")
    else:
        st.markdown(f"Forecast {forecast} by the period's end")
    if len(lines) > 1:
        over = sum(1 for b in lines if b.over or b.forecast_over)
        st.caption(f"Next groups ({over} of the {len(lines)} shown over or heading over):")
        tables.show_frame(
            pl.DataFrame(
                {
                    "Group": [", ".join(b.group.values()) for b in lines[1:]],
                    "Spent": [float(b.spent) for b in lines[1:]],
                    "Forecast": [_f(b.forecast) for b in lines[1:]],
                },
                schema_overrides={"Forecast": pl.Float64},
            ),
            column_config={
                "Spent": tables.money_column("Spent"),
                "Forecast": tables.money_column("Forecast"),
            },
            key=f"budget_{line.rule_id}",
        )


def _trend(ctx: Context) -> None:
    assert ctx.url is not None
    sel = ctx.selection
    rows = data.daily_rows(ctx.url, sel.since, sel.until, sel.filters)
    left, right = st.columns(2)
    left.markdown("**Spend per day** (USD, UTC days)")
    left.plotly_chart(charts.daily_spend(rows), width="stretch", key="overview_spend")
    right.markdown("**Cost per 1,000 requests per day** (USD, UTC days)")
    right.plotly_chart(charts.daily_cost_per_1k(rows), width="stretch", key="overview_per_1k")


@st.fragment
def _movers(ctx: Context) -> None:
    assert ctx.url is not None
    sel = ctx.selection
    st.subheader("Top movers, week over week")
    week, end, _ = _movers_days(sel)
    st.caption(
        f"Spend {week:%Y-%m-%d} to {end - timedelta(days=1):%Y-%m-%d} against the 7 days "
        f"before (UTC days), with the filters applied."
    )
    dim = st.segmented_control(
        "Group by",
        ["endpoint", "model", "user", "team"],
        default="endpoint",
        format_func=tables.title,
        key="movers_dim",
    )
    dim = dim or _movers_dim()
    movers = loaders.top_movers(ctx.url, dim, *_movers_days(sel), sel.filters, MOVERS)
    if not movers:
        st.info("Nothing changed between the two weeks (or there is no data for them).")
        return
    st.plotly_chart(
        charts_spend.movers_bars(movers, f"Change in spend by {dim} (USD)"),
        width="stretch",
        key="movers_chart",
    )
    frame = pl.DataFrame(
        {
            tables.title(dim): [m.group for m in movers],
            "Spend before (USD)": [nanos_to_usd(m.cost_before_nanousd) for m in movers],
            "Spend now (USD)": [nanos_to_usd(m.cost_now_nanousd) for m in movers],
            "Change (USD)": [m.change_usd for m in movers],
            "Change (%)": [
                None if m.change_ratio is None else float(m.change_ratio) * 100 for m in movers
            ],
            "Cost / 1k before": [_f(m.per_1k_before) for m in movers],
            "Cost / 1k now": [_f(m.per_1k_now) for m in movers],
        },
        schema_overrides={
            tables.title(dim): pl.String,
            "Spend before (USD)": tables.MONEY,
            "Spend now (USD)": tables.MONEY,
            "Change (USD)": tables.MONEY,
        },
    )
    tables.show_frame(
        frame,
        key="movers",
        column_config={
            "Spend before (USD)": tables.money_column("Spend before (USD)"),
            "Spend now (USD)": tables.money_column("Spend now (USD)"),
            "Change (USD)": tables.money_column("Change (USD)"),
            "Change (%)": st.column_config.NumberColumn("Change (%)", format="%+.1f%%"),
            "Cost / 1k before": tables.money_column("Cost / 1k before", precise=True),
            "Cost / 1k now": tables.money_column("Cost / 1k now", precise=True),
        },
    )


def _freshness(ctx: Context) -> None:
    assert ctx.url is not None
    st.subheader("Data freshness")
    found = loaders.freshness(ctx.url)
    now = loaders.now()
    stale = [f.source for f in found if f.latest is None or now - f.latest > STALE_AFTER]
    frame = pl.DataFrame(
        {
            "Source": [f.source for f in found],
            "Latest data": [
                local_time_text(f.latest, ctx.timezone) if f.latest else "—" for f in found
            ],
            "What": [f.detail for f in found],
            "Age (hours)": [
                None if f.latest is None else round((now - f.latest).total_seconds() / 3600, 1)
                for f in found
            ],
            "Last good run": [
                local_time_text(f.last_ok_run, ctx.timezone) if f.last_ok_run else "—"
                for f in found
            ],
            "Last run status": [f.last_status or "—" for f in found],
        },
        schema_overrides={"Age (hours)": pl.Float64},
    )
    tables.show_frame(frame, key="freshness")
    if stale:
        st.caption(
            f"Older than {STALE_AFTER.total_seconds() / 3600:.0f} hours: {', '.join(stale)}. "
            "Bills arrive daily; traces should be minutes old while `spendguard worker` runs "
            "(see the Collectors page)."
        )


def _f(value: object) -> float | None:
    return None if value is None else float(value)  # type: ignore[arg-type]


if __name__ == "__main__":  # Streamlit runs a page as __main__; importing it draws nothing
    main()
