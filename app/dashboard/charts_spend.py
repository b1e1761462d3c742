"""Plotly figures for the Overview, Unit costs heatmap and Spend pages (display only: money
becomes float here, never earlier). Category labels are escaped (`chart_label`); every figure
has a title and its axes say their unit. Colours: red means over budget or more expensive,
green cheaper; the rest uses the theme's palette, so light and dark themes both work.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

import plotly.graph_objects as go

from app.dashboard.formatting import chart_label
from app.dashboard.queries_spend import BilledGap, DaySpend, Mover
from app.reports.unit_costs import UnitCostRow

RED = "#d62728"
GREEN = "#2ca02c"
GREY = "#9e9e9e"
_MARGIN = {"l": 10, "r": 10, "t": 50, "b": 10}


def _title(text: str) -> dict[str, object]:
    return {"text": text, "x": 0, "xanchor": "left", "font": {"size": 15}}


def spend_stack(rows: Sequence[DaySpend], title: str) -> go.Figure:
    """Stacked bars of spend per UTC day and group."""
    groups = list(dict.fromkeys(r.group for r in rows))
    fig = go.Figure()
    for group in groups:
        mine = [r for r in rows if r.group == group]
        fig.add_trace(
            go.Bar(
                name=chart_label(group),
                x=[r.day.isoformat() for r in mine],
                y=[float(r.cost_usd) for r in mine],
                marker_color=GREY if group == "(other)" else None,
                hovertemplate=f"{chart_label(group)}<br>%{{x}}<br>$%{{y:,.2f}}<extra></extra>",
            )
        )
    fig.update_layout(
        title=_title(title),
        barmode="stack",
        height=360,
        margin=_MARGIN,
        legend={"orientation": "h", "y": -0.28},
        xaxis={"type": "date", "title": "UTC day"},
        yaxis={"title": "Spend (USD)", "tickprefix": "$", "rangemode": "tozero"},
    )
    return fig


def heatmap(rows: Sequence[UnitCostRow], row_dim: str, col_dim: str, title: str) -> go.Figure:
    """Cost per 1,000 requests for each (row, column) pair; blank where the pair never met."""
    row_keys = list(dict.fromkeys(r.group[row_dim] for r in rows))
    col_keys = list(dict.fromkeys(r.group[col_dim] for r in rows))
    cell = {(r.group[row_dim], r.group[col_dim]): r for r in rows}
    z: list[list[float | None]] = []
    text: list[list[str]] = []
    for rk in row_keys:
        line: list[float | None] = []
        labels: list[str] = []
        for ck in col_keys:
            found = cell.get((rk, ck))
            per_1k = found.cost_per_1k_requests if found else None
            line.append(None if per_1k is None else float(per_1k))
            labels.append("" if per_1k is None else f"${per_1k:,.2f}")
        z.append(line)
        text.append(labels)
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=[chart_label(c) for c in col_keys],
            y=[chart_label(r) for r in row_keys],
            text=text,
            texttemplate="%{text}",
            colorscale="YlOrRd",
            colorbar={"title": {"text": "USD / 1k req"}, "tickprefix": "$"},
            hovertemplate="%{y} × %{x}<br>$%{z:,.4f} per 1k requests<extra></extra>",
            hoverongaps=False,
        )
    )
    fig.update_layout(
        title=_title(title),
        height=max(300, 34 * len(row_keys) + 140),
        margin=_MARGIN,
        xaxis={"type": "category", "title": col_dim.title(), "automargin": True},
        yaxis={
            "type": "category",
            "title": row_dim.title(),
            "autorange": "reversed",
            "automargin": True,
        },
    )
    return fig


def movers_bars(movers: Sequence[Mover], title: str) -> go.Figure:
    """Change in spend per group, rises red and falls green."""
    labels = [chart_label(m.group) for m in movers]
    values = [float(m.change_usd) for m in movers]
    fig = go.Figure(
        go.Bar(
            x=values,
            y=labels,
            orientation="h",
            marker_color=[RED if v > 0 else GREEN for v in values],
            customdata=[
                [float(nano(m.cost_before_nanousd)), float(nano(m.cost_now_nanousd))]
                for m in movers
            ],
            hovertemplate=(
                "%{y}<br>%{x:+$,.2f}<br>before $%{customdata[0]:,.2f} → now "
                "$%{customdata[1]:,.2f}<extra></extra>"
            ),
        )
    )
    fig.update_layout(
        title=_title(title),
        height=max(260, 28 * len(movers) + 110),
        margin=_MARGIN,
        xaxis={"title": "Change in spend (USD)", "tickprefix": "$", "zeroline": True},
        yaxis={"type": "category", "autorange": "reversed", "automargin": True},
    )
    return fig


def billed_vs_estimated(gaps: Sequence[BilledGap], title: str) -> go.Figure:
    """Estimated (traces) and billed (invoices) per UTC day, all providers together."""
    days = sorted({g.day for g in gaps})
    est = {d: sum(g.estimated_nanousd for g in gaps if g.day == d) for d in days}
    billed: dict[str, float | None] = {}
    for d in days:
        amounts = [g.billed_nanousd for g in gaps if g.day == d]
        known = [a for a in amounts if a is not None]
        billed[d.isoformat()] = float(nano(sum(known))) if known else None
    fig = go.Figure()
    fig.add_trace(
        go.Bar(
            name="Estimated (traces)",
            x=[d.isoformat() for d in days],
            y=[float(nano(est[d])) for d in days],
            hovertemplate="%{x}<br>estimated $%{y:,.2f}<extra></extra>",
        )
    )
    fig.add_trace(
        go.Bar(
            name="Billed (invoices)",
            x=list(billed),
            y=list(billed.values()),
            hovertemplate="%{x}<br>billed $%{y:,.2f}<extra></extra>",
        )
    )
    fig.update_layout(
        title=_title(title),
        barmode="group",
        height=340,
        margin=_MARGIN,
        legend={"orientation": "h", "y": -0.28},
        xaxis={"type": "date", "title": "UTC day"},
        yaxis={"title": "USD", "tickprefix": "$", "rangemode": "tozero"},
    )
    return fig


def nano(value: int) -> Decimal:
    return Decimal(value).scaleb(-9)
