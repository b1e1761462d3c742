"""Page "GPU cost": each self-hosted GPU pool's bill — allocated to calls, idle — and who used it.

Figures come from the stored allocation (`app.gpu.report`, refreshed by the worker after each
collector run and by `spendguard gpu allocate`): per pool, its bill over the days, what went to
the calls of its models and what stayed idle; then the allocated cost by endpoint, user and
model. Names from traces are shown as table cells, never as markdown.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import plotly.graph_objects as go
import polars as pl
import streamlit as st
from sqlalchemy.exc import SQLAlchemyError

from app.dashboard import data, gpu_data
from app.dashboard.formatting import local_time_text, money_text
from app.errors import SpendguardError
from app.gpu.report import AllocationRow, PoolRow
from app.money import nanos_to_usd

DEFAULT_DAYS = 30
TOP = 25

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
NO_SCHEMA = "The warehouse has no tables yet. Run `spendguard db upgrade`."
NO_MATCH = "No GPU cost in these days. Widen the days."


def main() -> None:
    st.title("GPU cost")
    try:
        settings = data.settings()
        url = settings.database.url
        if not data.has_warehouse(url):
            data.has_warehouse.clear(url)
            st.info(NO_SCHEMA)
            return
        bounds = gpu_data.hour_bounds(url)
    except (SpendguardError, SQLAlchemyError) as exc:
        st.error("spendguard cannot read its configuration or warehouse:")
        st.code(str(exc).splitlines()[0] if isinstance(exc, SQLAlchemyError) else str(exc))
        return
    if bounds is None:
        gpu_data.hour_bounds.clear(url)  # allocated a moment from now: shown on reload
        st.info(NO_COST if settings.gpu_pools else NOT_CONFIGURED)
        return
    last_day = bounds[1].date()
    first_day = max(bounds[0].date(), last_day - timedelta(days=DEFAULT_DAYS - 1))
    picked = st.date_input(
        "Days (UTC)",
        value=(first_day, last_day),
        min_value=bounds[0].date(),
        max_value=last_day,
        key="gpu_days",
    )
    since, last = _range(picked, first_day, last_day)
    until = last + timedelta(days=1)
    allocated_at = gpu_data.last_allocation(url)
    st.caption(
        f"{since:%Y-%m-%d} to {last:%Y-%m-%d} (UTC days)"
        + (
            f" · allocated {local_time_text(allocated_at, settings.dashboard.timezone)}"
            if allocated_at is not None
            else ""
        )
    )
    pools = gpu_data.pool_rows(url, since, until)
    if not pools:
        st.info(NO_MATCH)
        return
    _headline(pools)
    st.markdown("**GPU cost per day**: allocated to calls, idle, in no pool")
    st.plotly_chart(_daily_chart(url, since, until), width="stretch", key="gpu_daily")
    st.markdown("**Per pool**")
    st.dataframe(_pool_frame(pools), hide_index=True, width="stretch", key="gpu_pools")
    if not settings.gpu_pools:
        st.warning(
            "No `gpu_pools` in the configuration: these figures are as last allocated; the "
            "worker will not re-allocate them until a pool is configured.",
            icon="⚠️",
        )
    _allocations(url, since, until, pools)


def _range(picked: Any, first: date, last: date) -> tuple[date, date]:
    if isinstance(picked, tuple | list) and len(picked) == 2:
        return picked[0], picked[1]
    if isinstance(picked, tuple | list) and len(picked) == 1:
        return picked[0], picked[0]
    if isinstance(picked, date):
        return picked, picked
    return first, last


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
            "Cost (USD)": [float(p.usd("cost_nanousd")) for p in pools],  # display only
            "Credits (USD)": [float(p.usd("credits_nanousd")) for p in pools],
            "Allocated (USD)": [float(p.usd("allocated_nanousd")) for p in pools],
            "Idle (USD)": [float(p.usd("idle_nanousd")) for p in pools],
            "Utilisation": [None if p.utilisation is None else float(p.utilisation) for p in pools],
        },
        schema_overrides={"Utilisation": pl.Float64},
    )


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


def _allocations(url: str, since: date, until: date, pools: list[PoolRow]) -> None:
    names = tuple(p.pool for p in pools if p.pool != "(unassigned)")
    chosen = st.multiselect("Pools", names, default=list(names), key="gpu_pool_filter")
    by_endpoint, by_user, by_model = st.tabs(["By endpoint", "By user", "By model"])
    for tab, dim in ((by_endpoint, "endpoint"), (by_user, "user"), (by_model, "model")):
        with tab:
            rows = gpu_data.allocation_rows(url, (dim,), since, until, tuple(chosen), TOP)
            st.caption(f"Allocated GPU cost by {dim} (the top {TOP}).")
            st.dataframe(
                _allocation_frame(rows, dim), hide_index=True, width="stretch", key=f"gpu_{dim}"
            )


def _allocation_frame(rows: list[AllocationRow], dim: str) -> pl.DataFrame:
    return pl.DataFrame(
        {
            dim.title(): [r.group[dim] for r in rows],
            "Requests": [r.requests for r in rows],
            "Calls": [r.calls for r in rows],
            "GPU cost (USD)": [float(r.gpu_cost_usd) for r in rows],  # display only
        },
        schema_overrides={dim.title(): pl.String, "GPU cost (USD)": pl.Float64},
    )


if __name__ == "__main__":  # Streamlit runs a page as __main__; importing it draws nothing
    main()
