"""`spendguard demo`: write the demo traces, load them through the real ingestion, then bill
them (`app.demo.bills`) and load the bills through the openai and anthropic collectors, and bill
the self-hosted model's GPU pool (`app.demo.gpu`: a FOCUS export and a Cost Explorer answer,
through the focus and aws_ce collectors) and allocate it to the calls."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from sqlalchemy import Engine, func, select

from app.demo.bills import load_demo_bills
from app.demo.catalog import DEMO_PRICE_OVERRIDES, DEMO_USER_TEAMS
from app.demo.gpu import load_demo_gpu
from app.demo.run import generate_demo
from app.ingest import ingest_paths
from app.rollups.refresh import refresh as refresh_rollups
from app.settings import AttributionConfig, PriceOverride, PricingConfig, Settings
from app.warehouse.tables import Request


def demo_settings(settings: Settings) -> Settings:
    """The configured settings plus what the demo data needs: a price for its self-hosted model
    (unless the config already prices it) and the team of users whose spans name none."""
    overrides = list(settings.pricing.overrides)
    configured = {(o.provider, o.model) for o in overrides}
    for raw in DEMO_PRICE_OVERRIDES:
        if (raw["provider"], raw["model"]) not in configured:
            overrides.append(PriceOverride(**raw))
    user_teams = {**DEMO_USER_TEAMS, **settings.attribution.user_teams}
    return settings.model_copy(
        update={
            "pricing": PricingConfig(overrides=overrides, true_up=settings.pricing.true_up),
            "attribution": AttributionConfig(
                user_attributes=settings.attribution.user_attributes,
                team_attributes=settings.attribution.team_attributes,
                user_teams=user_teams,
            ),
        }
    )


def load_demo(
    engine: Engine,
    settings: Settings,
    *,
    days: int,
    seed: int,
    out_dir: Path,
    if_empty: bool = False,
    progress: bool = False,
    end: datetime | None = None,
) -> str:
    """Generate and ingest the demo; returns a one-paragraph summary for the terminal."""
    if if_empty:
        with engine.connect() as conn:
            stored = conn.execute(select(func.count()).select_from(Request)).scalar_one()
        if stored:
            return f"warehouse already holds {stored} requests: demo data not loaded"
    summary = generate_demo(out_dir, days=days, seed=seed, end=end)
    result = ingest_paths(engine, demo_settings(settings), list(summary.files), progress=progress)
    if not result.ok:
        problems = "; ".join(f"{p}: {why}" for p, why in result.failed.items())
        raise RuntimeError(f"demo files failed to load (a bug in the demo): {problems}")
    # The providers' bills for that traffic, through the openai and anthropic collectors.
    bills = load_demo_bills(
        engine, settings, start=summary.start, end=summary.end, seed=seed, progress=progress
    )
    gpu = load_demo_gpu(engine, settings, start=summary.start, end=summary.end, out_dir=out_dir)
    refresh_rollups(engine)
    return (
        f"demo: {summary.requests} requests ({summary.requests_without_llm} without an LLM call),"
        f" {summary.llm_calls} LLM calls, {summary.users} users in {summary.teams} teams, "
        f"{summary.start:%Y-%m-%d %H:%M} to {summary.end:%Y-%m-%d %H:%M} UTC, written to "
        f"{out_dir}/ and loaded ({result.calls_new} new calls, {result.unpriced_calls} "
        f"unpriced; runaway agent: {summary.runaway_user}); {bills}; {gpu}"
    )
