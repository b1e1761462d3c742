"""Unit-cost rows as tables for `st.dataframe`.

Money columns are exact decimals (`MONEY`: polars Decimal(38, 9), the nano-dollar), so the grid
sorts them as numbers and the CSV and Parquet downloads carry the exact amounts, never a float.
Values are shown as plain cells, never as HTML or markdown.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from typing import Any

import polars as pl
import streamlit as st

from app.dashboard.formatting import money_text
from app.reports.unit_costs import UnitCostRow

MONEY = pl.Decimal(38, 9)  # exact to the nano-dollar, as stored
SPEND = "Spend (USD)"
PRICED_COST = "Token cost (USD)"  # tokens × price (a name with "token" reads as a secret to ruff)
GPU_COST = "GPU cost (USD)"
PER_1K = "Cost / 1k requests (USD)"
SPEND_HELP = (
    "Token cost estimated from traces (each call's tokens × its model's price at the call's "
    "time) plus the self-hosted GPU cost allocated to the calls (see GPU cost; none without "
    "`gpu_pools`)."
)

_TITLES = {
    "endpoint": "Endpoint",
    "model": "Model",
    "user": "User",
    "team": "Team",
    "provider": "Provider",
}


def title(dim: str) -> str:
    return _TITLES.get(dim, dim.title())


def unit_cost_frame(rows: Sequence[UnitCostRow], dims: Sequence[str]) -> pl.DataFrame:
    """One row per group: the group's values, counts, tokens, spend (token cost + allocated GPU
    cost, each also on its own) and cost per 1k requests."""
    data: dict[str, list[Any]] = {title(d): [r.group[d] for r in rows] for d in dims}
    data["Requests"] = [r.requests for r in rows]
    data["LLM calls"] = [r.llm_calls for r in rows]
    data["Input tokens"] = [r.input_tokens for r in rows]
    data["Output tokens"] = [r.output_tokens for r in rows]
    data[SPEND] = [r.cost_usd for r in rows]
    data[PRICED_COST] = [r.token_cost_usd for r in rows]
    data[GPU_COST] = [r.gpu_cost_usd for r in rows]
    data[PER_1K] = [r.cost_per_1k_requests for r in rows]
    data["Unpriced calls"] = [r.unpriced_calls for r in rows]
    schema: dict[str, Any] = {title(d): pl.String for d in dims}
    schema |= {SPEND: MONEY, PRICED_COST: MONEY, GPU_COST: MONEY, PER_1K: MONEY}
    return pl.DataFrame(data, schema_overrides=schema)


def column_config() -> dict[str, Any]:
    money = "$%.4f"
    count = "localized"
    return {
        SPEND: st.column_config.NumberColumn(
            SPEND, format=money, help="token cost + allocated GPU cost"
        ),
        PRICED_COST: st.column_config.NumberColumn(
            PRICED_COST, format=money, help="each call's tokens × its model's price"
        ),
        GPU_COST: st.column_config.NumberColumn(
            GPU_COST, format=money, help="the calls' share of self-hosted GPU pools (GPU cost page)"
        ),
        PER_1K: st.column_config.NumberColumn(
            PER_1K, format=money, help="1000 × spend / distinct requests of the group"
        ),
        "Requests": st.column_config.NumberColumn("Requests", format=count),
        "LLM calls": st.column_config.NumberColumn("LLM calls", format=count),
        "Input tokens": st.column_config.NumberColumn("Input tokens", format=count),
        "Output tokens": st.column_config.NumberColumn("Output tokens", format=count),
        "Unpriced calls": st.column_config.NumberColumn(
            "Unpriced calls", format=count, help="calls without a price: counted, not in the spend"
        ),
    }


def spend_split(total: UnitCostRow) -> None:
    """Under a spend figure: its token and GPU parts, when GPU cost is in it."""
    if total.gpu_cost_nanousd:
        st.caption(
            f"Spend = token cost {money_text(total.token_cost_usd)} + allocated GPU cost "
            f"{money_text(total.gpu_cost_usd)} (self-hosted pools, see GPU cost)."
        )


def show(rows: Sequence[UnitCostRow], dims: Sequence[str], *, key: str) -> None:
    show_frame(unit_cost_frame(rows, dims), key=key, column_config=column_config())


def show_frame(
    frame: pl.DataFrame,
    *,
    key: str,
    column_config: dict[str, Any] | None = None,
    height: int | None = None,
) -> None:
    """A table and, under it, its CSV and Parquet downloads (every table has them)."""
    kwargs: dict[str, Any] = {"height": height} if height else {}
    st.dataframe(frame, hide_index=True, column_config=column_config, key=key, **kwargs)
    downloads(frame, key)


def downloads(frame: pl.DataFrame, name: str) -> None:
    stem = re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-") or "table"
    left, right, _ = st.columns([1, 1, 6])
    left.download_button(
        "CSV",
        frame.write_csv().encode(),
        file_name=f"spendguard-{stem}.csv",
        mime="text/csv",
        key=f"{name}_csv",
        icon=":material/download:",
        on_click="ignore",
    )
    buffer = io.BytesIO()
    frame.write_parquet(buffer)
    right.download_button(
        "Parquet",
        buffer.getvalue(),
        file_name=f"spendguard-{stem}.parquet",
        mime="application/vnd.apache.parquet",
        key=f"{name}_parquet",
        icon=":material/download:",
        on_click="ignore",
    )


def money_column(label: str, help: str | None = None, *, precise: bool = False) -> Any:
    """Dollars with cents and thousands separators; `precise`: four decimals, for unit costs
    of a fraction of a cent."""
    return st.column_config.NumberColumn(label, format="$%.4f" if precise else "dollar", help=help)


def count_column(label: str, help: str | None = None) -> Any:
    return st.column_config.NumberColumn(label, format="localized", help=help)
