"""The `spendguard` command line (also `python -m app`). Commands per ARCHITECTURE "CLI".

The root app, its command groups and the shared context live here; each command module in this
package registers its commands on them (a new command is a new module plus one import in
`app/cli/__init__.py`). Every command reads the configuration and migrates the warehouse first;
errors spendguard raises on purpose are printed to stderr as one clear message, non-zero exit.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Annotated

import typer
from sqlalchemy import Engine

from app.errors import SpendguardError
from app.settings import Settings, load_settings
from app.warehouse.engine import make_engine

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
        from app.warehouse.migrate import upgrade  # alembic: only when a command migrates

        upgrade(engine)
        return settings, engine


@app.callback()
def _root(ctx: typer.Context, config: ConfigOption = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    ctx.obj = Context(config)


def ctx_of(ctx: typer.Context) -> Context:
    assert isinstance(ctx.obj, Context)
    return ctx.obj


def choose(value: str, allowed: Sequence[str], option: str) -> None:
    """Refuse an option value outside `allowed` with a usage error naming the choices."""
    if value not in allowed:
        raise typer.BadParameter(
            f"{value!r}: choose one of {', '.join(allowed)}", param_hint=option
        )


@contextmanager
def open_warehouse(ctx: typer.Context) -> Iterator[tuple[Settings, Engine]]:
    """Settings and a migrated warehouse whose connections close when the command ends."""
    settings, engine = ctx_of(ctx).warehouse()
    try:
        yield settings, engine
    finally:
        engine.dispose()


def parse_day(value: str | None, name: str) -> date | None:
    """A `YYYY-MM-DD` option value, or a usage error naming the option."""
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is not a date; use YYYY-MM-DD", param_hint=name
        ) from None


def main() -> None:
    try:
        app()
    except SpendguardError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
