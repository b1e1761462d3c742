"""Text for the dashboard: money from `Decimal` (rounded here, for display only) and counts.

Chart labels go through `chart_label`: Plotly reads a few HTML tags in text (`<b>`, `<a href>`,
`<br>`), and endpoints, users and models are user-supplied, so they are escaped to show as typed.
"""

from __future__ import annotations

import html
from datetime import datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


def money_text(amount: Decimal | None) -> str:
    """`$1,234.57` from a dollar amount; below a dollar four decimals, so cents' parts show."""
    if amount is None:
        return "—"
    places = 2 if abs(amount) >= 1 else 4
    rounded = amount.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN)
    sign = "-" if rounded < 0 else ""
    return f"{sign}${abs(rounded):,f}"


def count_text(count: int) -> str:
    return f"{count:,}"


def chart_label(value: str) -> str:
    return html.escape(value, quote=False)


def local_time_text(moment: datetime, timezone: str) -> str:
    """`2025-11-21 10:00 CET` in the configured zone (UTC when the zone is unknown)."""
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        zone = ZoneInfo("UTC")
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z")


def ago_text(moment: datetime, now: datetime) -> str:
    """`3 min ago`, `5 h ago`, `2 days ago`; `just now` under a minute (and for a moment a
    clock skew puts slightly ahead of `now`)."""
    age = now - moment
    if age < timedelta(minutes=1):
        return "just now"
    if age < timedelta(hours=1):
        return f"{int(age.total_seconds() // 60)} min ago"
    if age < timedelta(hours=48):
        return f"{int(age.total_seconds() // 3600)} h ago"
    return f"{age.days} days ago"
