"""Provider bills against traces: `report reconcile` and `trueup`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import typer

from app.cli.root import app, choose, ctx_of, parse_day, report_app

TRUE_UP_DEFAULT_DAYS = 31


@report_app.command("reconcile")
def report_reconcile(
    ctx: typer.Context,
    since: Annotated[str, typer.Option(help="First UTC day, inclusive (YYYY-MM-DD).")],
    until: Annotated[str | None, typer.Option(help="Last UTC day, exclusive (YYYY-MM-DD).")] = None,
    fmt: Annotated[str, typer.Option("--format", help="table, csv or json.")] = "table",
) -> None:
    """Estimated (traces) against billed (provider invoices) per provider, model and day."""
    from app.money import format_usd, nanos_to_usd
    from app.reports.reconcile import COLUMNS, reconcile, reconcile_records
    from app.reports.render import FORMATS, float_free_round, render_records

    choose(fmt, FORMATS, "--format")
    first, last = parse_day(since, "--since"), parse_day(until, "--until")
    assert first is not None  # a required option
    _, engine = ctx_of(ctx).warehouse()
    try:
        result = reconcile(engine, first, last)
    finally:
        engine.dispose()
    records = reconcile_records(result.rows)
    if fmt == "table":
        records = [_rounded(r, float_free_round) for r in records]
    typer.echo(render_records(records, COLUMNS, fmt), nl=False)
    if fmt == "table" and result.rows:
        estimated, billed = result.estimated_nanousd, result.billed_nanousd
        typer.echo(
            f"total of the rows with a USD bill: estimated ${format_usd(nanos_to_usd(estimated))}"
            f", billed ${format_usd(nanos_to_usd(billed))}, difference "
            f"${format_usd(nanos_to_usd(billed - estimated))}"
        )
        if result.unbilled_nanousd:
            unbilled = format_usd(nanos_to_usd(result.unbilled_nanousd))
            typer.echo(f"estimated with no USD bill (yet): ${unbilled}")
        today = datetime.now(UTC).date()
        running = sorted(
            {r.day for r in result.rows if r.day >= today and r.billed_nanousd is not None}
        )
        if running:
            typer.echo(
                f"note: {', '.join(map(str, running))} not over yet: its bill is partial "
                "(it grows through the day), so its difference is not final"
            )
    if result.not_usd:
        typer.echo(
            f"warning: {len(result.not_usd)} billed line(s) not in USD are listed apart and "
            "not summed into USD",
            err=True,
        )
    if result.unpriced_calls:
        typer.echo(
            f"note: {result.unpriced_calls} unpriced call(s) are in no estimate "
            "(spendguard report unpriced)",
            err=True,
        )


@app.command()
def trueup(
    ctx: typer.Context,
    since: Annotated[
        str | None,
        typer.Option(help=f"First UTC day (YYYY-MM-DD); default: {TRUE_UP_DEFAULT_DAYS} days ago."),
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="Last UTC day, exclusive (default: through today).")
    ] = None,
) -> None:
    """Recompute the true-up factors (billed / estimated per provider, model and day)."""
    from app.money import format_usd, nanos_to_usd
    from app.trueup import billed_providers, refresh_true_up

    today = datetime.now(UTC).date()
    first = parse_day(since, "--since") or today - timedelta(days=TRUE_UP_DEFAULT_DAYS)
    last = parse_day(until, "--until")
    settings, engine = ctx_of(ctx).warehouse()
    busy = False
    try:
        providers = billed_providers(engine, first, last)
        if not providers:
            typer.echo(f"no provider bill since {first}: run the billing collectors first")
        for provider in providers:
            result = refresh_true_up(engine, provider, first, last)
            if result.busy:
                typer.echo(f"error: {provider}: another true-up is running", err=True)
                busy = True
                continue
            typer.echo(
                f"{provider}: {result.model_days} model-day(s) trued up, estimated "
                f"${format_usd(nanos_to_usd(result.estimated_nanousd))} → billed "
                f"${format_usd(nanos_to_usd(result.billed_nanousd))}; "
                f"{len(result.skipped)} left as estimated; "
                f"{len(result.changed_days)} day(s) changed"
                + (
                    f", {len(result.rebuilt_days)} day(s) of rollups rebuilt with them"
                    if result.rebuilt_days
                    else ""
                )
            )
    finally:
        engine.dispose()
    if not settings.pricing.true_up:
        typer.echo("note: pricing.true_up is false: reports show estimates, not these factors")
    if busy:
        raise typer.Exit(1)


def _rounded(record: dict[str, Any], round_: Any) -> dict[str, Any]:
    """Display rounding for the terminal table (4 decimals); JSON and CSV stay exact."""
    money = ("estimated_usd", "billed_usd", "difference_usd")
    return {k: round_(v) if k in money and v is not None else v for k, v in record.items()}
