"""Render report rows as a terminal table, CSV or JSON (money as exact decimal strings)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from app.money import format_usd
from app.reports.unit_costs import UnitCostRow

FORMATS = ("table", "csv", "json")
METRICS = (
    "requests",
    "llm_calls",
    "input_tokens",
    "output_tokens",
    "token_cost_usd",
    "gpu_cost_usd",
    "cost_usd",
    "cost_per_1k_requests",
    "unpriced_calls",
)


MONEY = ("token_cost_usd", "gpu_cost_usd", "cost_usd", "cost_per_1k_requests")


def unit_cost_record(row: UnitCostRow) -> dict[str, Any]:
    per_1k = row.cost_per_1k_requests
    return {
        **row.group,
        "requests": row.requests,
        "llm_calls": row.llm_calls,
        "input_tokens": row.input_tokens,
        "output_tokens": row.output_tokens,
        "token_cost_usd": format_usd(row.token_cost_usd),
        "gpu_cost_usd": format_usd(row.gpu_cost_usd),
        "cost_usd": format_usd(row.cost_usd),
        "cost_per_1k_requests": format_usd(per_1k) if per_1k is not None else None,
        "unpriced_calls": row.unpriced_calls,
    }


def render_unit_costs(rows: Sequence[UnitCostRow], dims: Sequence[str], fmt: str) -> str:
    return render_records([unit_cost_record(r) for r in rows], [*dims, *METRICS], fmt)


def render_records(records: Sequence[dict[str, Any]], columns: Sequence[str], fmt: str) -> str:
    """Any list of flat records as a table, CSV or JSON (values already JSON-safe)."""
    if fmt == "json":
        return json.dumps(list(records), indent=2)
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=list(columns), lineterminator="\n")
        writer.writeheader()
        writer.writerows(records)
        return out.getvalue()
    return _table(list(records), list(columns))


def _table(records: list[dict[str, Any]], columns: list[str]) -> str:
    table = Table(show_lines=False)
    for col in columns:
        table.add_column(col, justify="left" if col not in METRICS else "right")
    for rec in records:
        cells = []
        for col in columns:
            value = rec[col]
            if col in MONEY and value is not None:
                value = f"${float_free_round(value)}"
            # Text, not a markup string: endpoints and user ids come from traces, and rich
            # would otherwise read "[bold]…" in them as markup.
            cells.append(Text("" if value is None else str(value)))
        table.add_row(*cells)
    if not records:
        return "Nothing in this range.\n"
    console = Console(file=io.StringIO(), width=200, color_system=None)
    console.print(table)
    out = console.file
    assert isinstance(out, io.StringIO)
    return out.getvalue()


def float_free_round(value: str, places: int = 4) -> str:
    """Display rounding of a decimal string (half-even), without going through float."""
    from decimal import ROUND_HALF_EVEN, Decimal

    return f"{Decimal(value).quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN):,f}"
