"""Pricing commands: `reprice` and `report unpriced`."""

from __future__ import annotations

from typing import Annotated

import typer

from app.cli.root import app, choose, ctx_of, parse_day, report_app
from app.money import format_usd, nanos_to_usd


@app.command()
def reprice(
    ctx: typer.Context,
    since: Annotated[str, typer.Option(help="First UTC day to re-price, inclusive (YYYY-MM-DD).")],
    until: Annotated[str | None, typer.Option(help="Last UTC day, exclusive (YYYY-MM-DD).")] = None,
) -> None:
    """Re-price stored calls with today's catalog and overrides (after a price change)."""
    from sqlalchemy import func, select

    from app.progress import Progress
    from app.reprice import reprice as run_reprice
    from app.warehouse.tables import LlmCall

    first, last = parse_day(since, "--since"), parse_day(until, "--until")
    settings, engine = ctx_of(ctx).warehouse()
    with engine.connect() as conn:
        total = conn.execute(select(func.count()).select_from(LlmCall)).scalar_one()
    with Progress("Re-pricing calls", int(total), unit="calls") as bar:
        result = run_reprice(engine, settings, first, last, progress=bar.advance)
    typer.echo(
        f"{result.calls} calls re-priced, {result.changed} changed "
        f"({result.newly_priced} newly priced, {result.now_unpriced} now unpriced): "
        f"${format_usd(nanos_to_usd(result.cost_before_nanousd))} → "
        f"${format_usd(nanos_to_usd(result.cost_after_nanousd))}"
    )


@report_app.command("unpriced")
def report_unpriced(
    ctx: typer.Context,
    since: Annotated[str | None, typer.Option(help="Calls since this UTC day.")] = None,
    fmt: Annotated[str, typer.Option("--format", help="table, csv or json.")] = "table",
) -> None:
    """Models with calls but no price: add a pricing override for each."""
    from app.reports.render import FORMATS, render_records
    from app.reports.unpriced import unpriced_models

    choose(fmt, FORMATS, "--format")
    _, engine = ctx_of(ctx).warehouse()
    rows = unpriced_models(engine, parse_day(since, "--since"))
    columns = [
        "provider",
        "model",
        "calls",
        "input_tokens",
        "output_tokens",
        "first_seen",
        "last_seen",
    ]
    records = [
        {
            "provider": r.provider,
            "model": r.model,
            "calls": r.calls,
            "input_tokens": r.input_tokens,
            "output_tokens": r.output_tokens,
            "first_seen": r.first_seen.isoformat(),
            "last_seen": r.last_seen.isoformat(),
        }
        for r in rows
    ]
    typer.echo(render_records(records, columns, fmt), nl=False)
    if rows and fmt == "table":
        typer.echo(
            "add pricing.overrides entries for these models in spendguard.yaml "
            "(see spendguard.example.yaml), then run `spendguard reprice --since …`",
            err=True,
        )
