"""Plotly figures for the dashboard (display only: money becomes float here, never earlier).

Titles are the page's (plain text above each chart), so they never collide with the mode bar.
Category labels are escaped (`chart_label`) and axes holding them are forced to `category`, so
a user id such as `1042` is not read as a number and `<b>` in an endpoint shows as typed.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

import plotly.graph_objects as go

from app.dashboard.formatting import chart_label
from app.dashboard.queries import DailyRow
from app.reports.unit_costs import UnitCostRow

_MARGIN = {"l": 10, "r": 10, "t": 30, "b": 10}


def cost_per_1k_bars(rows: Sequence[UnitCostRow], dim: str) -> go.Figure:
    """Horizontal bars of cost per 1,000 requests per group, the most expensive on top."""
    ranked = sorted(
        (r for r in rows if r.cost_per_1k_requests is not None),
        key=lambda r: (-(r.cost_per_1k_requests or 0), r.group[dim]),
    )
    labels = [chart_label(r.group[dim]) for r in ranked]
    fig = go.Figure(
        go.Bar(
            x=[float(r.cost_per_1k_requests or 0) for r in ranked],
            y=labels,
            orientation="h",
            customdata=[[r.requests, float(r.cost_usd)] for r in ranked],
            hovertemplate=(
                "%{y}<br>$%{x:,.4f} per 1k requests"
                "<br>%{customdata[0]:,} requests, $%{customdata[1]:,.4f} spend<extra></extra>"
            ),
        )
    )
    fig.update_layout(
        height=max(260, 26 * len(ranked) + 90),
        margin=_MARGIN,
        xaxis={"title": "USD per 1,000 requests", "tickprefix": "$"},
        yaxis={"type": "category", "autorange": "reversed", "automargin": True},
    )
    return fig


def daily_spend(rows: Sequence[DailyRow]) -> go.Figure:
    fig = go.Figure(
        go.Bar(
            x=[r.day.isoformat() for r in rows],
            y=[float(r.cost_usd) for r in rows],
            customdata=[[r.requests, r.llm_calls] for r in rows],
            hovertemplate=(
                "%{x}<br>$%{y:,.4f}<br>%{customdata[0]:,} requests, "
                "%{customdata[1]:,} LLM calls<extra></extra>"
            ),
        )
    )
    fig.update_layout(
        height=320,
        margin=_MARGIN,
        xaxis={"type": "date"},
        yaxis={"title": "USD", "tickprefix": "$", "rangemode": "tozero"},
    )
    return fig


def daily_cost_per_1k(rows: Sequence[DailyRow]) -> go.Figure:
    """Cost per 1,000 requests per day; days without requests are gaps, not zeros."""
    fig = go.Figure(
        go.Scatter(
            x=[r.day.isoformat() for r in rows],
            y=[_none_or_float(r.cost_per_1k_requests) for r in rows],
            mode="lines+markers",
            connectgaps=False,
            hovertemplate="%{x}<br>$%{y:,.4f} per 1k requests<extra></extra>",
        )
    )
    fig.update_layout(
        height=320,
        margin=_MARGIN,
        xaxis={"type": "date"},
        yaxis={"title": "USD per 1,000 requests", "tickprefix": "$", "rangemode": "tozero"},
    )
    return fig


def _none_or_float(value: Decimal | None) -> float | None:
    return None if value is None else float(value)
