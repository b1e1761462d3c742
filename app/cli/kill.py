"""Kill switch commands: `kill list`, `kill add`, `kill release`, `kill approve`.

Changes are written to the warehouse with their audit entry (who: `--by`, default the login
name) and the gateway events; every running API replica enforces them within about a second,
and the API or the worker delivers the events to the configured gateways.
"""

from __future__ import annotations

import getpass
import os
from datetime import UTC, datetime
from typing import Annotated

import typer

from app.cli.root import app, choose, open_warehouse

kill_app = typer.Typer(
    help="Kill switches: block an endpoint, model, user or team at the gateways."
)
app.add_typer(kill_app, name="kill", no_args_is_help=True)

COLUMNS = ["id", "state", "endpoint", "model", "user", "team", "expires_at", "created_by", "reason"]
ByOption = Annotated[
    str | None,
    typer.Option("--by", help="Who is doing this, for the audit log (default: your login)."),
]


def _operator(by: str | None) -> str:
    if by:
        return by
    try:
        name = os.environ.get("SPENDGUARD_OPERATOR") or getpass.getuser()
    except (KeyError, OSError):
        name = "unknown"
    return f"{name} (cli)"


@kill_app.command("list")
def kill_list(
    ctx: typer.Context,
    fmt: Annotated[str, typer.Option("--format", help="table, csv or json.")] = "table",
    show_all: Annotated[
        bool, typer.Option("--all", help="Released and expired switches too (latest 1,000).")
    ] = False,
) -> None:
    """List open kill switches (active and pending approval), newest first."""
    from app.killswitch.model import OPEN_STATES
    from app.killswitch.store import list_switches
    from app.reports.render import FORMATS, render_records

    choose(fmt, FORMATS, "--format")
    now = datetime.now(UTC)
    with open_warehouse(ctx) as (_, engine):
        switches = list_switches(engine, now, None if show_all else list(OPEN_STATES))
    records = [s.to_json(now) for s in switches]
    if not records and fmt == "table":
        typer.echo("No kill switches." if show_all else "No open kill switches.")
        return
    if fmt != "json":  # every field in JSON; the table and CSV show the main ones
        records = [{c: r[c] for c in COLUMNS} for r in records]
    typer.echo(render_records(records, COLUMNS, fmt), nl=fmt == "json")


@kill_app.command("add")
def kill_add(
    ctx: typer.Context,
    reason: Annotated[str, typer.Option(help="Why (shown to callers in the 403). Required.")],
    endpoint: Annotated[str | None, typer.Option(help="Endpoint or glob, e.g. /v1/chat*.")] = None,
    model: Annotated[str | None, typer.Option(help="Model or glob, e.g. gpt-4*.")] = None,
    user: Annotated[str | None, typer.Option(help="User id or glob.")] = None,
    team: Annotated[str | None, typer.Option(help="Team or glob.")] = None,
    ttl: Annotated[
        str | None, typer.Option(help="Lifts by itself after this (2h, 1d); default: never.")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Record and announce it, never block.")
    ] = False,
    by: ByOption = None,
) -> None:
    """Add a kill switch; prints its id alone on the last line."""
    from app.durations import parse_duration
    from app.killswitch.model import OPERATOR, Scope
    from app.killswitch.store import SwitchError, add_now

    now = datetime.now(UTC)
    try:
        expires_at = now + parse_duration(ttl) if ttl else None
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--ttl") from None
    scope = Scope(endpoint or None, model or None, user or None, team or None)
    try:
        with open_warehouse(ctx) as (settings, engine):
            switch = add_now(
                engine, settings, scope, reason, now=now, by=_operator(by), origin=OPERATOR,
                expires_at=expires_at, dry_run=dry_run,
            )  # fmt: skip
    except SwitchError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    until = switch.expires_at.isoformat(timespec="seconds") if switch.expires_at else "released"
    mode = " (dry run: recorded, never enforced)" if switch.dry_run else ""
    typer.echo(f"kill switch {switch.id} blocks {scope.describe()} until {until}{mode}.")
    typer.echo(str(switch.id))


def _move(ctx: typer.Context, switch_id: int, by: str | None, verb: str) -> None:
    from app.killswitch import store

    move = store.release if verb == "release" else store.approve
    try:
        with open_warehouse(ctx) as (settings, engine):
            switch = move(engine, settings, switch_id, _operator(by), datetime.now(UTC))
    except store.SwitchError as exc:
        typer.echo(f"error: {exc} (see `spendguard kill list --all`)", err=True)
        raise typer.Exit(1) from None
    typer.echo(
        f"kill switch {switch.id} ({switch.scope.describe()}) is {switch.state}; the API "
        "replicas follow within about a second."
    )


@kill_app.command("release")
def kill_release(
    ctx: typer.Context,
    switch_id: Annotated[int, typer.Argument(metavar="ID", help="The switch's id (kill list).")],
    by: ByOption = None,
) -> None:
    """Release a kill switch: traffic in its scope goes through again."""
    _move(ctx, switch_id, by, "release")


@kill_app.command("approve")
def kill_approve(
    ctx: typer.Context,
    switch_id: Annotated[int, typer.Argument(metavar="ID", help="The switch's id (kill list).")],
    by: ByOption = None,
) -> None:
    """Approve a switch a rule in `kill_mode: approve` proposed: it starts blocking."""
    _move(ctx, switch_id, by, "approve")
