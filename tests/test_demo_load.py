"""`spendguard demo` end to end: generated OTLP files loaded through the real ingestion."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine

from app.demo import RUNAWAY_USER
from app.demo.load import load_demo
from app.reports.unit_costs import unit_costs
from app.settings import Settings
from tests.test_cli import spendguard

END = datetime(2025, 11, 21, 14, tzinfo=UTC)


def test_demo_loads_and_every_view_adds_up(engine: Engine, tmp_path: Path) -> None:
    summary = load_demo(engine, Settings(), days=3, seed=11, out_dir=tmp_path / "d", end=END)
    assert "0 unpriced" in summary
    totals = {}
    for dim in ("endpoint", "model", "user", "team", "provider"):
        rows = unit_costs(engine, [dim])
        totals[dim] = sum(r.cost_nanousd for r in rows)
        assert all(r.unpriced_calls == 0 for r in rows)
    assert len(set(totals.values())) == 1 and totals["endpoint"] > 0
    users = unit_costs(engine, ["user"])
    assert users[0].group["user"] == RUNAWAY_USER  # the agent loop dominates the last days
    teams = {r.group["team"] for r in unit_costs(engine, ["team"])}
    assert "(none)" not in teams and len(teams) >= 5  # user→team map fills the gaps
    assert len(unit_costs(engine, ["endpoint"])) >= 6
    providers = {r.group["provider"] for r in unit_costs(engine, ["provider"])}
    assert providers == {"openai", "anthropic", "vllm"}

    again = load_demo(
        engine, Settings(), days=3, seed=11, out_dir=tmp_path / "d", end=END, if_empty=True
    )
    assert "demo data not loaded" in again


def test_demo_command(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'w.db'}"
    out = spendguard(
        "demo",
        "--days",
        "1",
        "--seed",
        "3",
        "--out",
        str(tmp_path / "files"),
        url=url,
        cwd=tmp_path,
    ).stdout
    assert "LLM calls" in out and "runaway agent" in out
    assert list((tmp_path / "files").glob("traces-*.jsonl"))
    skipped = spendguard("demo", "--if-empty", url=url, cwd=tmp_path).stdout
    assert "demo data not loaded" in skipped
