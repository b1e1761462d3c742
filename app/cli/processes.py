"""The long-running processes: `api`, `worker`, `dashboard` and `up` (all three together)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from app.cli.root import app, ctx_of
from app.settings import Settings


@app.command()
def api(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option(help="Bind address (default: api.host).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default: api.port).")] = None,
) -> None:
    """Run the HTTP API."""
    import uvicorn

    from app.api import create_app
    from app.api.logs import LOG_CONFIG

    settings, engine = ctx_of(ctx).warehouse()
    uvicorn.run(
        create_app(engine, settings),
        host=host or settings.api.host,
        port=port or settings.api.port,
        log_config=LOG_CONFIG,  # JSON lines, access log included, no headers
    )


@app.command()
def worker(ctx: typer.Context) -> None:
    """Run the scheduled collectors (and the alert rules, once they land)."""
    from app.worker import run_worker

    settings, engine = ctx_of(ctx).warehouse()
    run_worker(settings, engine)


@app.command()
def dashboard(
    ctx: typer.Context,
    port: Annotated[int | None, typer.Option(help="Port (default: dashboard.port).")] = None,
) -> None:
    """Run the Streamlit dashboard."""
    import os

    settings, _ = ctx_of(ctx).warehouse()
    argv = _dashboard_argv(port or settings.dashboard.port, dashboard_address(settings))
    sys.stdout.flush()
    sys.stderr.flush()
    # Become the Streamlit server: signals sent to this process reach it, no orphan is left.
    os.execv(argv[0], argv)  # noqa: S606 - argv is ours: this Python, streamlit, our entry


def dashboard_address(settings: Settings) -> str:
    """With `auth: none` nobody signs in, so the dashboard serves this machine only."""
    return "127.0.0.1" if settings.dashboard.auth == "none" else settings.dashboard.host


def _dashboard_argv(port: int, address: str = "127.0.0.1") -> list[str]:
    entry = Path(__file__).resolve().parents[2] / "streamlit_app.py"
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(entry),
        "--server.port",
        str(port),
        "--server.address",
        address,
        "--server.headless",
        "true",
        "--client.toolbarMode",
        "viewer",  # a product, not a notebook: no Deploy button or developer menu
        "--browser.gatherUsageStats",
        "false",
        # A served product does not reload on source edits: no watching of its whole tree.
        "--server.fileWatcherType",
        "none",
    ]


@app.command()
def up(ctx: typer.Context) -> None:
    """Run api, worker and dashboard together; Ctrl-C stops them all."""
    from app.supervisor import run_together

    _settings, _ = ctx_of(ctx).warehouse()
    config = ctx_of(ctx).config
    base = [sys.executable, "-m", "app", *(["--config", str(config)] if config else [])]
    code = run_together(
        {
            "api": [*base, "api"],
            "worker": [*base, "worker"],
            "dashboard": [*base, "dashboard"],
        }
    )
    raise typer.Exit(code)
