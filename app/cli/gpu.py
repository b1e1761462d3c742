"""Self-hosted GPU cost: `report gpu` and `gpu allocate`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer
from sqlalchemy import Engine

from app.cli.root import app, choose, ctx_of, parse_day, report_app
from app.settings import Settings

DEFAULT_DAYS = 31
gpu_app = typer.Typer(help="Self-hosted GPU cost allocation.", no_args_is_help=True)
app.add_typer(gpu_app, name="gpu")


def usd(nanos: int) -> str:
    from app.money import format_usd, nanos_to_usd

    return format_usd(nanos_to_usd(nanos))


def bring_up_to_date(engine: Engine, settings: Settings) -> None:
    """Allocate the hours whose calls or bills changed since the last allocation (cheap when
    nothing did); a note on stderr says when it did something."""
    from app.gpu.allocate import refresh_stale

    if not settings.gpu_pools:
        return
    result = refresh_stale(engine, settings)
    if result is not None and not result.busy and result.days:
        typer.echo(f"note: GPU allocation refreshed for {result.days} day(s)", err=True)


@gpu_app.command("allocate")
def gpu_allocate(
    ctx: typer.Context,
    since: Annotated[
        str | None,
        typer.Option(help=f"First UTC day (YYYY-MM-DD); default: {DEFAULT_DAYS} days ago."),
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="Last UTC day, exclusive (default: through today).")
    ] = None,
) -> None:
    """Recompute the GPU allocation of these days: each pool's hourly bill shared among the
    calls of its models, the rest idle (re-running changes nothing)."""
    from app.gpu.allocate import refresh

    today = datetime.now(UTC).date()
    first = parse_day(since, "--since") or today - timedelta(days=DEFAULT_DAYS)
    last = parse_day(until, "--until") or today + timedelta(days=1)
    settings, engine = ctx_of(ctx).warehouse()
    try:
        result = refresh(engine, settings, first, last)
    finally:
        engine.dispose()
    if result.busy:
        typer.echo("error: another GPU allocation is running; try again", err=True)
        raise typer.Exit(1)
    typer.echo(
        f"{result.days} day(s), {result.pool_hours} pool-hour(s) with a bill: "
        f"${usd(result.cost_nanousd)} = ${usd(result.allocated_nanousd)} allocated to "
        f"{result.calls} call(s) + ${usd(result.idle_nanousd)} idle"
    )
    if result.rebuilt_days:
        typer.echo(
            f"rollups of {len(result.rebuilt_days)} day(s) rebuilt with the new shares "
            "and written with them"
        )
    if not settings.gpu_pools:
        typer.echo(
            "note: no gpu_pools in the config: every GPU cost line is (unassigned)", err=True
        )
    if result.not_usd_lines:
        typer.echo(
            f"warning: {result.not_usd_lines} GPU cost line(s) not in USD were left out", err=True
        )


@report_app.command("gpu")
def report_gpu(
    ctx: typer.Context,
    since: Annotated[
        str | None,
        typer.Option(help=f"First UTC day (YYYY-MM-DD); default: {DEFAULT_DAYS} days ago."),
    ] = None,
    until: Annotated[str | None, typer.Option(help="Last UTC day, exclusive (YYYY-MM-DD).")] = None,
    by: Annotated[
        str | None,
        typer.Option(
            "--by",
            help="Instead of the pools: allocated GPU cost by a comma list of endpoint, user, "
            "team, model, pool.",
        ),
    ] = None,
    pool: Annotated[list[str] | None, typer.Option(help="With --by: only these pools.")] = None,
    fmt: Annotated[str, typer.Option("--format", help="table, csv or json.")] = "table",
) -> None:
    """GPU cost per pool (hours, cost, credits, allocated, idle, utilisation), or its
    allocation by endpoint, user, team or model."""
    from app.gpu.report import (
        BREAKDOWNS,
        RECORD_COLUMNS,
        allocation_rows,
        pool_record,
        pool_rows,
    )
    from app.money import format_usd
    from app.reports.render import FORMATS, render_records

    choose(fmt, FORMATS, "--format")
    today = datetime.now(UTC).date()
    first = parse_day(since, "--since") or today - timedelta(days=DEFAULT_DAYS)
    last = parse_day(until, "--until")
    dims: list[str] = []
    if by is not None:
        dims = list(dict.fromkeys(d.strip() for d in by.split(",") if d.strip()))
        unknown = [d for d in dims if d not in BREAKDOWNS]
        if unknown or not dims:
            raise typer.BadParameter(
                f"unknown dimension(s) {', '.join(unknown) or '(empty)'}; choose a comma list "
                f"of {', '.join(BREAKDOWNS)}",
                param_hint="--by",
            )
    settings, engine = ctx_of(ctx).warehouse()
    try:
        bring_up_to_date(engine, settings)
        if dims:
            rows = allocation_rows(engine, dims, first, last, pool or [])
            records = [
                {
                    **r.group,
                    "requests": r.requests,
                    "calls": r.calls,
                    "gpu_cost_usd": format_usd(r.gpu_cost_usd),
                }
                for r in rows
            ]
            columns = [*dims, "requests", "calls", "gpu_cost_usd"]
            typer.echo(render_records(records, columns, fmt), nl=False)
            return
        pools = pool_rows(engine, first, last)
    finally:
        engine.dispose()
    if not pools and fmt == "table":
        if not settings.gpu_pools:
            typer.echo(
                "No GPU cost yet, and no gpu_pools configured: add a pool to spendguard.yaml "
                "(see spendguard.example.yaml) and enable a GPU collector (aws_ce, focus or "
                "opencost)."
            )
        else:
            typer.echo("No GPU cost in this range: run the GPU collectors (spendguard collect).")
        return
    typer.echo(render_records([pool_record(r) for r in pools], RECORD_COLUMNS, fmt), nl=False)
    if fmt == "table":
        total = sum(r.cost_nanousd for r in pools)
        allocated = sum(r.allocated_nanousd for r in pools)
        idle = sum(r.idle_nanousd for r in pools)
        typer.echo(
            f"total ${usd(total)}: ${usd(allocated)} allocated + ${usd(idle)} idle", nl=False
        )
        unassigned = total - allocated - idle
        typer.echo(f" + ${usd(unassigned)} in no pool" if unassigned else "")
