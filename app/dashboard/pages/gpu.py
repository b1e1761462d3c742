"""Page "GPU cost": each self-hosted GPU pool's bill — allocated to calls, idle — and who used it.

Figures come from the stored allocation (`app.gpu.report`, refreshed by the worker after each
collector run and by `spendguard gpu allocate`): per pool, its bill over the sidebar's days, what
went to the calls of its models and what stayed idle; then the allocated cost by endpoint, model,
user and team (from the daily GPU rollups, the days waiting for a rebuild from the base tables:
`app.gpu.report.allocation_query`). The sidebar's endpoint/model/user/team filters narrow those
"allocated by" tables; a pool's bill and its idle hours belong to no request, so they are
whole-pool figures (the page says so when a filter is set). Names from traces are shown as table
cells, never as markdown.
"""

from __future__ import annotations

from datetime import date

import plotly.graph_objects as go
import polars as pl
import streamlit as st

from app.dashboard import gpu_data, tables
from app.dashboard.filters import Selection
from app.dashboard.formatting import local_time_text, money_text
from app.dashboard.shell import page
from app.gpu.report import AllocationRow, PoolRow
from app.money import nanos_to_usd

TOP = 25
BREAKDOWNS = ("endpoint", "model", "user", "team")

NOT_CONFIGURED = (
    "No GPU pool is configured and no GPU cost is stored. Self-hosted models are paid in "
    "GPU-hours: add a `gpu_pools` entry to spendguard.yaml (which cost lines are the pool's, "
    "which models it serves) and enable a GPU collector (`collectors.aws_ce`, `focus` or "
    "`opencost`); `spendguard demo` shows one."
)
NO_COST = (
    "GPU pools are configured, but no GPU cost has been allocated yet: run the GPU collectors "
    "(`spendguard collect aws_ce focus opencost`) or `spendguard gpu allocate`."
)
NO_MATCH = (
    "No GPU cost in these days. GPU cost is stored from {first:%Y-%m-%d} to {last:%Y-%m-%d} "
    "(UTC days): pick days in that range in the sidebar."
)
NO_ALLOCATION = "No GPU cost was allocated to calls of these pools with these filters."


def main() -> None:
    # A GPU bill comes without requests (a pool idle all day is exactly what to see), so this
    # page does not wait for the warehouse's first request like the cost pages do.
    ctx = page("GPU cost", needs_requests=False)
    if ctx is None:
        return
    assert ctx.url is not None
    assert ctx.settings is not None
    url, sel = ctx.url, ctx.selection
    bounds = gpu_data.hour_bounds(url)
    if bounds is None:
        gpu_data.hour_bounds.clear(url)  # allocated a moment from now: shown on reload
        st.info(NO_COST if ctx.settings.gpu_pools else NOT_CONFIGURED)
        return
    allocated_at = gpu_data.last_allocation(url)
    st.caption(
        f"{sel.since:%Y-%m-%d} to {sel.last_day:%Y-%m-%d} (UTC days)"
        + (
            f" · allocated {local_time_text(allocated_at, ctx.timezone)}"
            if allocated_at is not None
            else ""
        )
    )
    pools = gpu_data.pool_rows(url, sel.since, sel.until)
    if not pools:
        st.info(NO_MATCH.format(first=bounds[0], last=bounds[1]))
        return
    _headline(pools)
    if sel.filters:
        named = ", ".join(tables.title(d).lower() for d, _ in sel.filters)
        st.caption(
            f'The sidebar\'s {named} filter applies to the "Allocated by" tables below. The '
            "pools' cost, idle and the daily split are whole pools: idle GPU time belongs to no "
            "request, user or team."
        )
    st.markdown("**GPU cost per day**: allocated to calls, idle, in no pool (USD, UTC days)")
    st.plotly_chart(_daily_chart(url, sel.since, sel.until), width="stretch", key="gpu_daily")
    st.markdown("**Per pool**")
    tables.show_frame(_pool_frame(pools), key="gpu_pools", column_config=_POOL_COLUMNS)
    if not ctx.settings.gpu_pools:
        st.warning(
            "No `gpu_pools` in the configuration: these figures are as last allocated; the "
            "worker will not re-allocate them until a pool is configured.",
            icon="⚠️",
        )
    _allocations(url, sel, pools)


def _headline(pools: list[PoolRow]) -> None:
    pooled = [p for p in pools if p.pool != "(unassigned)"]
    cost = sum(p.cost_nanousd for p in pooled)
    allocated = sum(p.allocated_nanousd for p in pooled)
    idle = sum(p.idle_nanousd for p in pooled)
    unassigned = sum(p.cost_nanousd for p in pools if p.pool == "(unassigned)")
    cols = st.columns(4)
    cols[0].metric("GPU cost (USD)", money_text(nanos_to_usd(cost)), help="Bills of the pools.")
    cols[1].metric(
        "Allocated to calls",
        money_text(nanos_to_usd(allocated)),
        help="Shared among the calls of each pool's models, hour by hour.",
    )
    cols[2].metric(
        "Idle",
        money_text(nanos_to_usd(idle)),
        help="Pool hours without calls, and unused capacity where configured.",
    )
    cols[3].metric(
        "In no pool",
        money_text(nanos_to_usd(unassigned)),
        help="GPU cost lines no gpu_pools entry matches.",
    )


def _pool_frame(pools: list[PoolRow]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "Pool": [p.pool for p in pools],
            "Sources": [p.sources for p in pools],
            "Hours": [p.hours for p in pools],
            "Busy hours": [p.busy_hours for p in pools],
            "Calls": [p.calls for p in pools],
            "Cost (USD)": [p.usd("cost_nanousd") for p in pools],
            "Credits (USD)": [p.usd("credits_nanousd") for p in pools],
            "Allocated (USD)": [p.usd("allocated_nanousd") for p in pools],
            "Idle (USD)": [p.usd("idle_nanousd") for p in pools],
            "Utilisation": [None if p.utilisation is None else float(p.utilisation) for p in pools],
        },
        schema_overrides={
            "Utilisation": pl.Float64,  # a ratio, not money
            **dict.fromkeys(
                ("Cost (USD)", "Credits (USD)", "Allocated (USD)", "Idle (USD)"), tables.MONEY
            ),
        },
    )


_POOL_COLUMNS = {
    "Hours": tables.count_column("Hours", "Pool-hours with a bill in these days."),
    "Busy hours": tables.count_column("Busy hours", "Hours with at least one call."),
    "Calls": tables.count_column("Calls"),
    "Cost (USD)": tables.money_column("Cost (USD)", "The pool's bill, credits included."),
    "Credits (USD)": tables.money_column("Credits (USD)"),
    "Allocated (USD)": tables.money_column("Allocated (USD)", "Shared among the calls."),
    "Idle (USD)": tables.money_column("Idle (USD)"),
    "Utilisation": st.column_config.NumberColumn(
        "Utilisation",
        format="percent",
        help="Used / capacity, where the pool configures `capacity_per_hour`.",
    ),
}


def _daily_chart(url: str, since: date, until: date) -> go.Figure:
    days = gpu_data.daily_split(url, since, until)
    x = [d.day.isoformat() for d in days]
    fig = go.Figure()
    for name, values in (
        ("Allocated", [d.allocated_nanousd for d in days]),
        ("Idle", [d.idle_nanousd for d in days]),
        ("In no pool", [d.unassigned_nanousd for d in days]),
    ):
        fig.add_bar(name=name, x=x, y=[float(nanos_to_usd(v)) for v in values])
    fig.update_layout(barmode="stack", height=320, margin={"l": 10, "r": 10, "t": 10, "b": 10})
    fig.update_yaxes(tickprefix="$")
    return fig


def _allocations(url: str, sel: Selection, pools: list[PoolRow]) -> None:
    st.subheader("Allocated by endpoint, model, user and team")
    names = tuple(p.pool for p in pools if p.pool != "(unassigned)")
    chosen = tuple(st.multiselect("Pools", names, default=list(names), key="gpu_pool_filter"))
    args = (sel.since, sel.until, chosen)
    if sel.filters:
        matched = gpu_data.allocation_rows(url, (), *args, None, sel.filters)
        total = matched[0].gpu_cost_nanousd if matched else 0
        st.metric(
            "Allocated to the filtered requests",
            money_text(nanos_to_usd(total)),
            help="GPU cost of these pools allocated to calls that match the sidebar's filters.",
        )
    tabs = st.tabs([f"By {tables.title(d).lower()}" for d in BREAKDOWNS])
    for tab, dim in zip(tabs, BREAKDOWNS, strict=True):
        with tab:
            rows = gpu_data.allocation_rows(url, (dim,), *args, TOP, sel.filters)
            st.caption(f"Allocated GPU cost by {dim} (the top {TOP}), in the calls' UTC hours.")
            if not rows:
                st.info(NO_ALLOCATION)
                continue
            tables.show_frame(
                _allocation_frame(rows, dim),
                key=f"gpu_{dim}",
                column_config={
                    "Requests": tables.count_column("Requests"),
                    "Calls": tables.count_column("Calls"),
                    "GPU cost (USD)": tables.money_column("GPU cost (USD)", precise=True),
                },
            )


def _allocation_frame(rows: list[AllocationRow], dim: str) -> pl.DataFrame:
    return pl.DataFrame(
        {
            tables.title(dim): [r.group[dim] for r in rows],
            "Requests": [r.requests for r in rows],
            "Calls": [r.calls for r in rows],
            "GPU cost (USD)": [r.gpu_cost_usd for r in rows],
        },
        schema_overrides={tables.title(dim): pl.String, "GPU cost (USD)": tables.MONEY},
    )


if __name__ == "__main__":  # Streamlit runs a page as __main__; importing it draws nothing
    main()
