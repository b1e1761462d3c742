"""Page "Spend explorer": spend by provider, model, endpoint or team per day; what the traces
estimated against what the providers billed, with the gap explained; a link to GPU costs.

Estimated vs billed is `spendguard report reconcile` summed per provider and day: model rows
(calls that *started* that UTC day against the bill's token lines for the model) plus billed
lines with no trace counterpart, so the gaps add up to billed − estimated.
"""

from __future__ import annotations

from datetime import UTC
from decimal import Decimal

import polars as pl
import streamlit as st

from app.dashboard import charts_spend, data, loaders, queries_spend, tables
from app.dashboard.ahead import ahead
from app.dashboard.formatting import money_text
from app.dashboard.shell import NO_MATCH, Context, page
from app.money import nanos_to_usd

DIMS = ["provider", "model", "endpoint", "team"]
TOP = 8


def main() -> None:
    ctx = page("Spend explorer")
    if ctx is None:
        return
    assert ctx.url is not None
    sel = ctx.selection
    # The page's queries at once (`app.dashboard.ahead`), in the order it draws them.
    args, split = (sel.since, sel.until, sel.filters), _split()
    ahead(
        loaders.spend_by_day.later(ctx.url, split, *args, TOP),
        data.unit_cost_rows.later(ctx.url, (split,), *args),
        loaders.reconcile_rows.later(ctx.url, sel.since, sel.until),
    )
    st.caption(f"{sel.since:%Y-%m-%d} to {sel.last_day:%Y-%m-%d} (UTC days)")
    _over_time(ctx)
    _billed(ctx)
    _gpu()


@st.fragment
def _over_time(ctx: Context) -> None:
    assert ctx.url is not None
    sel = ctx.selection
    st.subheader("Spend over time")
    dim = st.segmented_control(
        "Split by", DIMS, default="provider", format_func=tables.title, key="spend_dim"
    )
    dim = dim or _split()
    rows = loaders.spend_by_day(ctx.url, dim, sel.since, sel.until, sel.filters, TOP)
    if not rows:
        st.info(NO_MATCH)
        return
    title = f"Spend per day by {dim} (USD; the top {TOP}, the rest as (other))"
    st.plotly_chart(charts_spend.spend_stack(rows, title), width="stretch", key="spend_stack")
    groups = data.unit_cost_rows(ctx.url, (dim,), sel.since, sel.until, sel.filters)
    tables.show(groups, [dim], key=f"spend_{dim}")


def _split() -> str:
    """The "Split by" choice as it stands (none: by provider)."""
    return str(st.session_state.get("spend_dim") or "provider")


def _billed(ctx: Context) -> None:
    assert ctx.url is not None
    sel = ctx.selection
    st.subheader("Estimated vs billed")
    gaps = loaders.estimated_vs_billed(ctx.url, sel.since, sel.until)
    if not gaps:
        st.info(
            "No provider bill covers these days. Enable the billing collectors "
            "(`collectors.openai` / `collectors.anthropic` with an admin key, see the README) "
            "and run `spendguard collect openai anthropic`; `spendguard demo` loads demo bills."
        )
        return
    total = queries_spend.billed_summary(gaps, loaders.now().astimezone(UTC).date())
    compared = total.compared_estimated_nanousd
    cols = st.columns(3)
    cols[0].metric("Estimated (traces)", money_text(nanos_to_usd(total.estimated_nanousd)))
    cols[1].metric("Billed (invoices)", money_text(nanos_to_usd(total.billed_nanousd)))
    cols[2].metric(
        "Gap (billed − estimated)",
        money_text(nanos_to_usd(total.gap_nanousd)),
        delta=f"{total.gap_nanousd / compared:+.1%} of the estimate" if compared else None,
        delta_color="inverse",
        help="On the days that are over (UTC) and have a bill. Days without a bill yet, and "
        "today, whose bill is partial, are left out of the gap.",
    )
    st.plotly_chart(
        charts_spend.billed_vs_estimated(gaps, "Estimated and billed per UTC day (USD)"),
        width="stretch",
        key="billed_chart",
    )
    notes = [
        "The gap is what the invoices charge beyond the traced estimate: untraced traffic "
        "(calls that sent no spans), line items traces never see (web search, fine-tuning, "
        "storage), and price differences. The detail below lists each model and line item.",
    ]
    if total.unbilled_days:
        notes.append(
            f"{total.unbilled_days} day(s) have no bill yet (providers bill a day or more late)."
        )
    if total.partial_days:
        notes.append(
            "Today's bill is partial (it grows through the day): it counts in Billed, not in "
            "the gap."
        )
    if any(g.other_currency_lines for g in gaps):
        notes.append("Some bill lines are not in USD: they are listed, never summed into USD.")
    st.caption(" ".join(notes))
    frame = _detail(ctx)
    with st.expander("Detail per provider, model, line item and day"):
        tables.show_frame(
            frame,
            key="reconcile",
            column_config={
                "Estimated (USD)": tables.money_column("Estimated (USD)"),
                "Billed (USD)": tables.money_column("Billed (USD)"),
                "Difference (USD)": tables.money_column("Difference (USD)"),
            },
        )


def _detail(ctx: Context) -> pl.DataFrame:
    assert ctx.url is not None
    rows = loaders.reconcile_rows(ctx.url, ctx.selection.since, ctx.selection.until)

    def usd(value: int | None) -> Decimal | None:
        return None if value is None else nanos_to_usd(value)

    return pl.DataFrame(
        {
            "Day": [r.day.isoformat() for r in rows],
            "Provider": [r.provider for r in rows],
            "Model": [r.model for r in rows],
            "Line item": [r.line_item for r in rows],
            "Estimated (USD)": [usd(r.estimated_nanousd) for r in rows],
            "Billed (USD)": [usd(r.billed_nanousd) for r in rows],
            "Difference (USD)": [
                None
                if r.billed_nanousd is None or r.estimated_nanousd is None
                else usd(r.billed_nanousd - r.estimated_nanousd)
                for r in rows
            ],
        },
        schema_overrides={
            "Model": pl.String,
            "Line item": pl.String,
            "Estimated (USD)": tables.MONEY,
            "Billed (USD)": tables.MONEY,
            "Difference (USD)": tables.MONEY,
        },
    )


def _gpu() -> None:
    # Self-hosted GPU cost, allocated to requests and idle, has a page of its own.
    st.subheader("GPU costs")
    st.page_link(
        "app/dashboard/pages/gpu.py", label="GPU cost: allocated and idle", icon=":material/memory:"
    )


if __name__ == "__main__":  # Streamlit runs a page as __main__; importing it draws nothing
    main()
