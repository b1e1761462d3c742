"""The `spendguard` command line (also `python -m app`). Commands per ARCHITECTURE "CLI".

Every command reads the configuration and migrates the warehouse first; errors spendguard
raises on purpose are printed to stderr as one clear message with a non-zero exit.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Annotated

import typer
from sqlalchemy import Engine

from app.errors import SpendguardError
from app.settings import Settings, load_settings
from app.warehouse.engine import make_engine
from app.warehouse.migrate import upgrade

app = typer.Typer(
    name="spendguard",
    help="Cost governance for AI workloads: cost per 1,000 requests, alerts and kill switches.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Warehouse schema.", no_args_is_help=True)
ingest_app = typer.Typer(help="Load source files.", no_args_is_help=True)
report_app = typer.Typer(help="Reports over the warehouse.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(ingest_app, name="ingest")
app.add_typer(report_app, name="report")

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="spendguard.yaml to read (default: $SPENDGUARD_CONFIG "
        "or ./spendguard.yaml; none at all means defaults).",
    ),
]


@dataclass
class Context:
    config: Path | None

    def settings(self) -> Settings:
        return load_settings(self.config)

    def warehouse(self) -> tuple[Settings, Engine]:
        """Settings and a migrated warehouse engine."""
        settings = self.settings()
        engine = make_engine(settings.database.url)
        upgrade(engine)
        return settings, engine


@app.callback()
def _root(ctx: typer.Context, config: ConfigOption = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    ctx.obj = Context(config)


def _ctx(ctx: typer.Context) -> Context:
    assert isinstance(ctx.obj, Context)
    return ctx.obj


@db_app.command("upgrade")
def db_upgrade(ctx: typer.Context) -> None:
    """Apply the warehouse migrations (every other command also does this first)."""
    _settings, engine = _ctx(ctx).warehouse()
    url = engine.url.render_as_string(hide_password=True)
    typer.echo(f"warehouse at {url} is up to date")


@ingest_app.command("traces")
def ingest_traces(
    ctx: typer.Context,
    paths: Annotated[
        list[Path], typer.Argument(help="OTLP files or folders (.json, .jsonl, optionally .gz).")
    ],
) -> None:
    """Load OTLP trace files; re-loading the same spans changes nothing."""
    from app.ingest import ingest_paths

    settings, engine = _ctx(ctx).warehouse()
    result = ingest_paths(engine, settings, paths, progress=True)
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
    for path, why in result.failed.items():
        typer.echo(f"error: {path} was not loaded: {why}", err=True)
    if result.failed:
        typer.echo(
            "fix or remove the files above and run the command again (loaded files are "
            "not counted twice)",
            err=True,
        )
        raise typer.Exit(1)


def _parse_day(value: str | None, name: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is not a date; use YYYY-MM-DD", param_hint=name
        ) from None


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
    from app.reports.render import FORMATS, render_unit_costs
    from app.reports.unit_costs import Scope, parse_dimensions, unit_costs

    try:
        dims = parse_dimensions(by)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--by") from None
    if fmt not in FORMATS:
        raise typer.BadParameter(
            f"{fmt!r}: choose one of {', '.join(FORMATS)}", param_hint="--format"
        )
    scope = Scope(
        since=_parse_day(since, "--since"),
        until=_parse_day(until, "--until"),
        filters={
            "endpoint": endpoint or [],
            "model": model or [],
            "user": user or [],
            "team": team or [],
            "provider": provider or [],
        },
    )
    _, engine = _ctx(ctx).warehouse()
    typer.echo(render_unit_costs(unit_costs(engine, dims, scope), dims, fmt), nl=False)


@app.command()
def demo(
    ctx: typer.Context,
    days: Annotated[int, typer.Option(min=1, max=366, help="Days of traffic.")] = 30,
    seed: Annotated[int, typer.Option(help="Random seed: same seed, same data.")] = 7,
    out: Annotated[Path, typer.Option(help="Where the OTLP files are written.")] = Path(
        "demo-data"
    ),
    if_empty: Annotated[
        bool,
        typer.Option("--if-empty", help="Do nothing when the warehouse already holds requests."),
    ] = False,
) -> None:
    """Generate realistic demo traffic as OTLP files and load it through the real ingestion."""
    from app.demo.load import load_demo

    settings, engine = _ctx(ctx).warehouse()
    summary = load_demo(
        engine, settings, days=days, seed=seed, out_dir=out, if_empty=if_empty, progress=True
    )
    typer.echo(summary)


@app.command()
def api(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option(help="Bind address (default: api.host).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default: api.port).")] = None,
) -> None:
    """Run the HTTP API."""
    import uvicorn

    from app.api import create_app

    settings, engine = _ctx(ctx).warehouse()
    uvicorn.run(
        create_app(engine),
        host=host or settings.api.host,
        port=port or settings.api.port,
        log_level="info",
    )


@app.command()
def worker(ctx: typer.Context) -> None:
    """Run the scheduled collectors."""
    from app.worker import run_worker

    settings, _ = _ctx(ctx).warehouse()
    run_worker(settings)


@app.command()
def dashboard(
    ctx: typer.Context,
    port: Annotated[int | None, typer.Option(help="Port (default: dashboard.port).")] = None,
) -> None:
    """Run the Streamlit dashboard."""
    import os

    settings, _ = _ctx(ctx).warehouse()
    argv = _dashboard_argv(port or settings.dashboard.port)
    sys.stdout.flush()
    sys.stderr.flush()
    # Become the Streamlit server: signals sent to this process reach it, no orphan is left.
    os.execv(argv[0], argv)  # noqa: S606 - argv is ours: this Python, streamlit, our entry


def _dashboard_argv(port: int) -> list[str]:
    entry = Path(__file__).resolve().parent.parent / "streamlit_app.py"
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(entry),
        "--server.port",
        str(port),
        "--server.headless",
        "true",
        "--browser.gatherUsageStats",
        "false",
    ]


@app.command()
def up(ctx: typer.Context) -> None:
    """Run api, worker and dashboard together; Ctrl-C stops them all."""
    from app.supervisor import run_together

    _settings, _ = _ctx(ctx).warehouse()
    config = _ctx(ctx).config
    base = [sys.executable, "-m", "app", *(["--config", str(config)] if config else [])]
    code = run_together(
        {
            "api": [*base, "api"],
            "worker": [*base, "worker"],
            "dashboard": [*base, "dashboard"],
        }
    )
    raise typer.Exit(code)


def main() -> None:
    try:
        app()
    except SpendguardError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
