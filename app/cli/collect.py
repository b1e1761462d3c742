"""`spendguard collect [NAME…] [--since DATE]`: run collectors once, now; `--status`: their runs."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from app.cli.root import app, choose, ctx_of, parse_day
from app.warehouse.locks import named_lock
from app.warehouse.tables import CollectorRun

if TYPE_CHECKING:
    from collectors.base import RunOutcome

STATUS_COLUMNS = [
    "collector",
    "run",
    "status",
    "started_at",
    "finished_at",
    "rows",
    "rejected",
    "api_calls",
    "window_start",
    "window_end",
    "error",
]


@app.command()
def collect(
    ctx: typer.Context,
    names: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="NAME",
            help="Collectors to run (default: every one enabled in the config).",
        ),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(help="Read again from this UTC day (YYYY-MM-DD), not from the checkpoint."),
    ] = None,
    status: Annotated[
        bool, typer.Option("--status", help="Show the recent runs of each collector instead.")
    ] = False,
    fmt: Annotated[str, typer.Option("--format", help="With --status: table, csv or json.")] = (
        "table"
    ),
    limit: Annotated[int, typer.Option(min=1, help="With --status: runs per collector.")] = 5,
) -> None:
    """Run collectors once, now (exit 1 if any run failed), or show their recent runs."""
    from app.reports.render import FORMATS, render_records
    from collectors import registry  # every collector's client library: only when asked

    choose(fmt, FORMATS, "--format")
    day = parse_day(since, "--since")
    unknown = [n for n in names or [] if n not in registry.names()]
    if unknown and not status:
        raise typer.BadParameter(
            f"no collector named {', '.join(unknown)}; available: {', '.join(registry.names())}",
            param_hint="NAME",
        )
    settings, engine = ctx_of(ctx).warehouse()
    try:
        if status:
            records = [_record(r) for r in recent_runs(engine, names or None, limit)]
            typer.echo(render_records(records, STATUS_COLUMNS, fmt), nl=False)
            return
        chosen = [registry.get(n) for n in names] if names else registry.enabled(settings)
        if not chosen:
            typer.echo("no collector is enabled in the config (collectors.<name>.enabled)")
            return
        start = datetime(day.year, day.month, day.day, tzinfo=UTC) if day else None
        failed = False
        for collector in chosen:
            if not collector.has_sources(settings):
                typer.echo(f"{collector.name}: nothing to do, no sources configured")
                continue
            with named_lock(engine, f"collector:{collector.name}") as held:
                if not held:
                    # The worker (or another `collect`) is running it: don't race its checkpoint.
                    typer.echo(f"{collector.name}: already running elsewhere; skipped", err=True)
                    failed = True
                    continue
                outcome = collector.run(engine, settings, since=start, progress=True)
            typer.echo(summary(outcome))
            for error in outcome.errors:
                typer.echo(f"error: {collector.name}: {error}", err=True)
            failed = failed or not outcome.ok
        # New calls or bills: their GPU pools' hours are allocated again.
        from app.cli.gpu import bring_up_to_date
        from app.rollups.refresh import refresh as refresh_rollups

        bring_up_to_date(engine, settings)
        refresh_rollups(engine)  # and the days they touched are added up again
    finally:
        engine.dispose()
    if failed:
        typer.echo(
            "what was loaded is kept; fix the sources above and run again (it resumes from "
            "the checkpoints; nothing is counted twice)",
            err=True,
        )
        raise typer.Exit(1)


def summary(outcome: RunOutcome) -> str:
    """One line per run: `traces: ok, 2 source(s), 1200 rows (…), 0 rejected, data from …`."""
    details = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in sorted(outcome.details.items()))
    window = ""
    if outcome.window_start is not None:
        window = f", data from {_iso(outcome.window_start)} to {_iso(outcome.window_end)}"
    return (
        f"{outcome.collector}: {outcome.status}, {outcome.sources} source(s), "
        f"{outcome.rows_loaded} rows{f' ({details})' if details else ''}, "
        f"{outcome.rows_rejected} rejected{window} (run {outcome.run_id})"
    )


def recent_runs(engine: Engine, names: Sequence[str] | None, limit: int) -> list[CollectorRun]:
    """The last `limit` runs of each collector (or of the named ones), newest first."""
    ranked = select(
        CollectorRun.id,
        func.row_number()
        .over(
            partition_by=CollectorRun.collector,
            order_by=(CollectorRun.started_at.desc(), CollectorRun.id.desc()),
        )
        .label("rank"),
    )
    if names:
        ranked = ranked.where(CollectorRun.collector.in_(names))
    sub = ranked.subquery()
    query = (
        select(CollectorRun)
        .join(sub, sub.c.id == CollectorRun.id)
        .where(sub.c.rank <= limit)
        .order_by(CollectorRun.collector, CollectorRun.started_at.desc(), CollectorRun.id.desc())
    )
    with Session(engine) as session:
        return list(session.scalars(query))


def _record(run: CollectorRun) -> dict[str, Any]:
    return {
        "collector": run.collector,
        "run": run.id,
        "status": run.status,
        "started_at": _iso(run.started_at),
        "finished_at": _iso(run.finished_at),
        "rows": run.rows_loaded,
        "rejected": run.rows_rejected,
        "api_calls": run.api_calls,  # paid API requests (Cost Explorer), where counted
        "window_start": _iso(run.window_start),
        "window_end": _iso(run.window_end),
        "error": run.error,
    }


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat().replace("+00:00", "Z")
