"""Warehouse commands: `db upgrade`, `ingest traces`, `report unit-costs`."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer

from app.cli.root import choose, ctx_of, db_app, ingest_app, parse_day, report_app


@db_app.command("upgrade")
def db_upgrade(ctx: typer.Context) -> None:
    """Apply the warehouse migrations (every other command also does this first)."""
    _settings, engine = ctx_of(ctx).warehouse()
    url = engine.url.render_as_string(hide_password=True)
    typer.echo(f"warehouse at {url} is up to date")


@ingest_app.command("traces")
def ingest_traces(
    ctx: typer.Context,
    paths: Annotated[
        list[Path],
        typer.Argument(
            help="OTLP files or folders (.json, .jsonl, .binpb, .pb; each optionally .gz or .zst)."
        ),
    ],
    jobs: Annotated[
        int | None,
        typer.Option(
            "--jobs",
            "-j",
            min=1,
            help="Processes decoding files in parallel (default: one per CPU for inputs of "
            "4 MB or more; 1: decode in the loading process).",
        ),
    ] = None,
) -> None:
    """Load OTLP trace files; re-loading the same spans changes nothing."""
    from app.ingest import ingest_paths
    from app.rollups.refresh import refresh as refresh_rollups

    settings, engine = ctx_of(ctx).warehouse()
    result = ingest_paths(engine, settings, paths, progress=True, jobs=jobs)
    refresh_rollups(engine)  # the days just loaded, added up for the reports and dashboard
    typer.echo(
        f"{result.files} file(s), {result.spans} spans: {result.requests_new} new requests, "
        f"{result.calls_new} new LLM calls ({result.calls_duplicate} already stored), "
        f"{result.unpriced_calls} unpriced"
    )
    if result.unpriced_calls:
        typer.echo(
            "note: unpriced calls have no catalog price; add pricing.overrides for their "
            "models in spendguard.yaml",
            err=True,
        )
    if result.quarantined:
        typer.echo(
            f"warning: {result.quarantined} record(s) could not be loaded and were quarantined "
            "with their reason (everything else was loaded); see `spendguard report quarantine`",
            err=True,
        )
    for path, why in result.failed.items():
        typer.echo(f"error: {path} was not loaded: {why}", err=True)
    if result.failed:
        typer.echo(
            "fix or remove the files above and run the command again (what was loaded is "
            "not counted twice)",
            err=True,
        )
    if result.failed or result.quarantined:
        raise typer.Exit(1)


@report_app.command("unit-costs")
def report_unit_costs(
    ctx: typer.Context,
    by: Annotated[
        str, typer.Option("--by", help="Comma list of endpoint, model, user, team, provider.")
    ],
    since: Annotated[
        str | None, typer.Option(help="First UTC day, inclusive (YYYY-MM-DD).")
    ] = None,
    until: Annotated[str | None, typer.Option(help="Last UTC day, exclusive (YYYY-MM-DD).")] = None,
    fmt: Annotated[str, typer.Option("--format", help="table, csv or json.")] = "table",
    endpoint: Annotated[list[str] | None, typer.Option(help="Only these endpoints.")] = None,
    model: Annotated[list[str] | None, typer.Option(help="Only these models.")] = None,
    user: Annotated[list[str] | None, typer.Option(help="Only these users.")] = None,
    team: Annotated[list[str] | None, typer.Option(help="Only these teams.")] = None,
    provider: Annotated[list[str] | None, typer.Option(help="Only these providers.")] = None,
) -> None:
    """Cost per 1,000 requests by the chosen dimensions."""
    from app.cli.gpu import bring_up_to_date
    from app.reports.render import FORMATS, render_unit_costs
    from app.reports.unit_costs import Scope, parse_dimensions, unit_costs

    try:
        dims = parse_dimensions(by)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--by") from None
    choose(fmt, FORMATS, "--format")
    scope = Scope(
        since=parse_day(since, "--since"),
        until=parse_day(until, "--until"),
        filters={
            "endpoint": endpoint or [],
            "model": model or [],
            "user": user or [],
            "team": team or [],
            "provider": provider or [],
        },
    )
    settings, engine = ctx_of(ctx).warehouse()
    scope = replace(scope, true_up=settings.pricing.true_up)
    bring_up_to_date(engine, settings)  # GPU shares of calls stored since the last allocation
    rows = unit_costs(engine, dims, scope)
    typer.echo(render_unit_costs(rows, dims, fmt), nl=False)
    if any(r.trued_up_calls for r in rows):
        typer.echo(
            "note: pricing.true_up is on: estimated costs are scaled to the provider bills "
            "on the days that are over and have a bill (see `spendguard report reconcile`)",
            err=True,
        )


@report_app.command("quarantine")
def report_quarantine(
    ctx: typer.Context,
    since: Annotated[
        str | None, typer.Option(help="Only records received since this UTC day (YYYY-MM-DD).")
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help="table, csv or json.")] = "table",
    limit: Annotated[int, typer.Option(min=1, help="At most this many, newest first.")] = 1000,
) -> None:
    """Records that could not be loaded (undecodable, missing ids, absurd token counts)."""
    from app.reports.quarantine import quarantined
    from app.reports.render import FORMATS, render_records

    choose(fmt, FORMATS, "--format")
    _, engine = ctx_of(ctx).warehouse()
    rows = quarantined(engine, parse_day(since, "--since"), limit)
    columns = ["received_at", "collector", "source", "location", "reason", "trace_id", "span_id"]
    records = [
        {**{c: getattr(r, c) for c in columns}, "received_at": r.received_at.isoformat()}
        for r in rows
    ]
    typer.echo(render_records(records, columns, fmt), nl=False)
