"""`spendguard demo`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from app.cli.root import app, ctx_of


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

    settings, engine = ctx_of(ctx).warehouse()
    summary = load_demo(
        engine, settings, days=days, seed=seed, out_dir=out, if_empty=if_empty, progress=True
    )
    typer.echo(summary)
