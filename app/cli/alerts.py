"""Alerting commands: `rules check`, `rules backtest`, `alerts run`, `alerts outbox`, `audit`."""

from __future__ import annotations

import json
from datetime import UTC, datetime, time, timedelta
from typing import TYPE_CHECKING, Annotated

import typer

from app.cli.root import app, choose, ctx_of, open_warehouse, parse_day
from app.errors import ConfigError

if TYPE_CHECKING:
    pass

rules_app = typer.Typer(help="Alert rules: validate them, replay them over history.")
alerts_app = typer.Typer(help="Alert evaluation and delivery.")
app.add_typer(rules_app, name="rules", no_args_is_help=True)
app.add_typer(alerts_app, name="alerts", no_args_is_help=True)

FormatOption = Annotated[str, typer.Option("--format", help="table or json.")]


def _check_format(fmt: str, allowed: tuple[str, ...] = ("table", "json")) -> None:
    choose(fmt, allowed, "--format")


def _midnight(value: str | None, name: str) -> datetime | None:
    day = parse_day(value, name)
    return None if day is None else datetime.combine(day, time.min, tzinfo=UTC)


@rules_app.command("check")
def rules_check(ctx: typer.Context) -> None:
    """Validate the rules and notifiers of the configuration; list what each rule does."""
    from alerts.notifiers import notifier_problems
    from alerts.rules import compile_rules

    try:
        settings = ctx_of(ctx).settings()
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    rules = compile_rules(settings, [r.id for r in settings.rules])
    for rule in rules:
        state = "on " if rule.config.enabled else "off"
        typer.echo(f"{state} {rule.id}: {rule.describe()}")
    problems = notifier_problems(settings)
    for problem in problems:
        typer.echo(f"error: {problem}", err=True)
    if problems:
        raise typer.Exit(1)
    enabled = sum(r.config.enabled for r in rules)
    typer.echo(
        f"{len(rules)} rule(s) valid ({enabled} enabled), {len(settings.notifiers)} notifier(s)."
    )


@rules_app.command("backtest")
def rules_backtest(
    ctx: typer.Context,
    since: Annotated[
        str | None, typer.Option(help="Replay from this UTC day (default: 7 days before --until).")
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="Replay up to this UTC day, exclusive (default: now).")
    ] = None,
    rule: Annotated[
        list[str] | None, typer.Option("--rule", help="Only this rule id (repeatable).")
    ] = None,
    step: Annotated[
        str | None, typer.Option(help="Judge every … (default 1h; less for odd windows).")
    ] = None,
    fmt: FormatOption = "table",
) -> None:
    """Replay the rules over stored history: what would have fired, when, with values."""
    from alerts.backtest import backtest
    from alerts.report import TRANSITION_COLUMNS, transition_record
    from app.durations import parse_duration
    from app.reports.render import render_records

    _check_format(fmt)
    settings = ctx_of(ctx).settings()
    unknown = sorted(set(rule or ()) - {r.id for r in settings.rules})
    if unknown:
        raise typer.BadParameter(f"no rule {', '.join(unknown)} in the config", param_hint="--rule")
    end = _midnight(until, "--until") or datetime.now(UTC)
    start = _midnight(since, "--since") or end - timedelta(days=7)
    try:
        every = parse_duration(step) if step else None
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--step") from None
    with open_warehouse(ctx) as (settings, engine):
        events = backtest(engine, settings, start, end, step=every, rule_ids=rule or None)
    records = [transition_record(t, exact=fmt == "json") for t in events]
    typer.echo(render_records(records, TRANSITION_COLUMNS, fmt), nl=fmt == "json")
    fired = sum(t.kind == "firing" for t in events)
    typer.echo(
        f"{fired} firing(s), {len(events)} event(s) from {start:%Y-%m-%d %H:%M} to "
        f"{end:%Y-%m-%d %H:%M} UTC (nothing was sent)",
        err=True,
    )


@alerts_app.command("run")
def alerts_run(ctx: typer.Context) -> None:
    """Evaluate the rules once, now, and deliver due notifications (as the worker does)."""
    from alerts.conditions import format_value
    from alerts.engine import run_cycle
    from alerts.report import group_text

    with open_warehouse(ctx) as (settings, engine):
        cycle = run_cycle(engine, settings)
    for t in cycle.transitions:
        v = t.judgement.verdict
        typer.echo(
            f"{t.rule_id} [{group_text(t.group)}] {t.kind} ({t.delivery}): "
            f"{t.metric} {format_value(t.metric, v.compared)} vs "
            f"{format_value(t.metric, v.threshold)} — {v.method}"
        )
    for d in cycle.deliveries:
        code = f" HTTP {d.outcome.http_status}" if d.outcome.http_status else ""
        typer.echo(f"{d.message_id} → {d.notifier}: {d.status}{code} (attempt {d.attempt})")
    typer.echo(
        f"{len(settings.rules)} rule(s) evaluated: {len(cycle.transitions)} transition(s), "
        f"{len(cycle.deliveries)} delivery attempt(s)."
    )


@alerts_app.command("outbox")
def alerts_outbox(
    ctx: typer.Context,
    status: Annotated[
        str | None,
        typer.Option(help="Only pending, delivered, failed, expired, gone or cancelled items."),
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="The latest N items.")] = 50,
    fmt: FormatOption = "table",
) -> None:
    """Notification delivery state: the latest outbox items and disabled endpoints."""
    from alerts.notifiers.base import target_hash
    from alerts.report import OUTBOX_COLUMNS, disabled_endpoints, outbox_records
    from app.reports.render import render_records

    _check_format(fmt)
    with open_warehouse(ctx) as (settings, engine):
        records = outbox_records(engine, status, limit)
        current = {n: target_hash(c) for n, c in settings.notifiers.items()}
        disabled = disabled_endpoints(engine, current)
    typer.echo(render_records(records, OUTBOX_COLUMNS, fmt), nl=fmt == "json")
    for entry in disabled:
        typer.echo(
            f"notice: notifier {entry.notifier!r} is disabled since "
            f"{entry.disabled_at:%Y-%m-%d %H:%M} UTC: {entry.reason}",
            err=True,
        )


@app.command("audit")
def audit_log(
    ctx: typer.Context,
    since: Annotated[str | None, typer.Option(help="Entries from this UTC day on.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most the latest N entries.")] = 1000,
    fmt: FormatOption = "table",
) -> None:
    """The audit log: rule changes, firings, resolutions, notification attempts and outcomes."""
    from alerts.audit import read
    from alerts.report import printable
    from app.reports.render import render_records

    _check_format(fmt)
    with open_warehouse(ctx) as (_, engine):
        entries = read(engine, _midnight(since, "--since"), limit)
    columns = ["at", "kind", "rule", "group", "notifier", "message_id", "detail"]
    records = [
        {
            "at": e.at.isoformat(timespec="seconds").replace("+00:00", "Z"),
            "kind": e.kind,
            "rule": e.rule_id,
            "group": json.loads(e.group) if fmt == "json" and e.group else printable(e.group or ""),
            "notifier": e.notifier,
            "message_id": e.message_id,
            "detail": e.detail if fmt == "json" else printable(json.dumps(e.detail)),
        }
        for e in entries
    ]
    typer.echo(render_records(records, columns, fmt), nl=fmt == "json")
