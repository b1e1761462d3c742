"""`spendguard demo` bills its traffic and loads the bills through the openai and anthropic
collectors (an in-process fake of the Admin APIs): consistent with the traces, plus untraced
spend, web search and one restated day."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from app.demo.bills import demo_ledgers
from app.demo.load import load_demo
from app.settings import Settings
from app.warehouse.tables import CollectorRun, LlmCall
from app.warehouse.tables_billing import BilledCost, BilledUsage

END = datetime(2025, 11, 21, 14, tzinfo=UTC)


@pytest.mark.slow
def test_the_demo_bills_its_traffic_through_the_collectors(
    sqlite_engine: Engine, tmp_path: Path
) -> None:
    engine = sqlite_engine  # the collectors' storing runs on PostgreSQL in their own tests
    summary = load_demo(engine, Settings(), days=3, seed=11, out_dir=tmp_path / "d", end=END)
    assert "bills: openai $" in summary and "1 restated day replaced" in summary

    with engine.connect() as conn:
        runs = conn.execute(
            select(CollectorRun.collector, CollectorRun.status).where(
                CollectorRun.collector.in_(("openai", "anthropic"))
            )
        ).all()
        traced = conn.execute(
            select(LlmCall.provider, LlmCall.model, LlmCall.started_at, LlmCall.cost_nanousd)
        ).all()
        billed = conn.execute(
            select(BilledCost.provider, BilledCost.model, BilledCost.day, BilledCost.amount_nano)
        ).all()
        web = conn.execute(
            select(BilledCost.provider, func.count())
            .where(BilledCost.cost_type == "web_search")
            .group_by(BilledCost.provider)
        ).all()
        usage = conn.execute(select(func.count()).select_from(BilledUsage)).scalar_one()
    assert sorted(runs) == [("anthropic", "ok")] * 2 + [("openai", "ok")] * 2

    estimated: dict[tuple[str, date], int] = defaultdict(int)
    models: dict[str, set[str]] = defaultdict(set)
    for provider, model, at, cost in traced:
        if provider in ("openai", "anthropic"):
            estimated[(provider, at.astimezone(UTC).date())] += cost or 0
            models[provider].add(model)
    invoiced: dict[tuple[str, date], int] = defaultdict(int)
    for provider, model, day, amount in billed:
        if model is not None:  # token lines; web search has no trace counterpart
            invoiced[(provider, day)] += amount
            assert model in models[provider], f"{model} billed but never traced"
    assert set(invoiced) == set(estimated)  # every day with traffic is billed, and only those
    restated = ("openai", END.date() - timedelta(days=2))
    for key, cost in estimated.items():
        ratio = invoiced[key] / cost
        high = 1.06 * 1.04 if key == restated else 1.06
        assert 1.02 <= ratio <= high + 1e-6, (key, ratio)  # a few percent untraced
    assert dict(web) == {"openai": 4, "anthropic": 4} and usage > 0

    # The restated day: served lower at first, then revised upward (what the summary counted).
    openai = demo_ledgers(engine, END - timedelta(days=3), END, 11)[0]
    assert list(openai.preliminary) == [restated[1]]
    before = [r["amount"]["value"] for r in openai.cost_results(restated[1])]
    openai.restate()
    after = [r["amount"]["value"] for r in openai.cost_results(restated[1])]
    assert all(a > b for a, b in zip(after, before, strict=True))
