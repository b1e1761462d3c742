"""The conformance suite every registered collector passes (like singer-sdk's tap tests).

Each collector gives one or more scenario factories in `SCENARIOS`: settings pointing at a
fake of its source with some data, a way to add more data, the table its rows land in and a
check of one row. The tests below are written once and run for every scenario; a collector
registered without a scenario fails `test_every_registered_collector_has_a_scenario`.

Checked: a run returns rows; the rows are valid and their keys present; the run is recorded;
the checkpoint is written in the load's transaction — a failing load stores neither rows nor
checkpoint, and the next run loads everything exactly once; a re-run adds nothing.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from sqlalchemy import Engine, func, inspect, select

from app.settings import Settings
from app.warehouse.checkpoints import read_checkpoints
from app.warehouse.engine import session_scope
from app.warehouse.tables import Base, CollectorRun, LlmCall
from app.warehouse.tables_billing import BilledCost
from app.warehouse.tables_gpu import GpuCost
from collectors import registry
from tests.billing_server import (
    NOW,
    BillingServer,
    anthropic_ledger,
    days_before,
    openai_ledger,
    settings_for,
)
from tests.gpu_fakes import (
    FakeOpenCost,
    ce_answer,
    ce_sample,
    ce_settings,
    csv_gz,
    data_key,
    focus_frame,
    focus_settings,
    moto_endpoint_fixture,  # noqa: F401  (fixture `moto_endpoint`, for the AWS scenarios)
    moto_fixture,  # noqa: F401  (fixture `moto`)
    opencost_day,
    queue_ce,
)
from tests.test_collect_traces import folder_settings, lines
from tests.test_collect_traces_s3 import (
    put,
    s3,  # noqa: F401  (a fixture: the S3 fake, for traces_s3)
    s3_endpoint,  # noqa: F401  (a fixture the one above needs)
    s3_settings,
)


@dataclass
class Scenario:
    settings: Settings
    add_data: Callable[[], None]  # make new data appear at the source
    table: type[Base]  # where the collector's rows land
    problems: Callable[[dict[str, Any]], list[str]]  # what is wrong with one row


# ── scenarios, per collector ───────────────────────────────────────────────────────────────────

HEX32, HEX16 = re.compile(r"[0-9a-f]{32}"), re.compile(r"[0-9a-f]{16}")


def llm_call_problems(row: dict[str, Any]) -> list[str]:
    problems = []
    if not HEX32.fullmatch(row["trace_id"]) or not HEX16.fullmatch(row["span_id"]):
        problems.append("ids are not lowercase hex")
    if row["started_at"] is None or row["started_at"].utcoffset() is None:
        problems.append("started_at is not an aware UTC time")
    if not row["model"] or not row["provider"]:
        problems.append("no model or provider")
    tokens = ("input_tokens", "output_tokens", "cache_read_tokens", "reasoning_tokens")
    if any(row[t] < 0 for t in tokens) or row["input_tokens"] + row["output_tokens"] == 0:
        problems.append("token counts are negative or all zero")
    return problems


def traces_folder(tmp_path: Path, _request: pytest.FixtureRequest) -> Scenario:
    folder = tmp_path / "otelcol"
    folder.mkdir()
    active = folder / "traces.jsonl"
    active.write_bytes(lines(1, 2, 3))

    def add_data() -> None:
        with active.open("ab") as f:
            f.write(lines(4, 5))

    return Scenario(folder_settings(folder), add_data, LlmCall, llm_call_problems)


def traces_s3(_tmp_path: Path, request: pytest.FixtureRequest) -> Scenario:
    client = request.getfixturevalue("s3")
    put(client, "2025-11-20T10:00", 1)
    put(client, "2025-11-20T10:01", 2, ".json.gz")

    def add_data() -> None:
        put(client, "2025-11-20T10:00", 3)  # late, inside the lag window
        put(client, "2025-11-20T10:02", 4)

    return Scenario(s3_settings(client), add_data, LlmCall, llm_call_problems)


def billed_cost_problems(row: dict[str, Any]) -> list[str]:
    problems = []
    if row["provider"] not in ("openai", "anthropic") or not row["line_item"]:
        problems.append("no provider or line item")
    if not re.fullmatch(r"[A-Z]{3}", row["currency"]) or not isinstance(row["amount_nano"], int):
        problems.append("currency is not an upper-case code or the amount not integer nanos")
    if row["fetched_at"] is None or row["fetched_at"].utcoffset() is None:
        problems.append("fetched_at is not an aware UTC time")
    return problems


def _bills(provider: str, request: pytest.FixtureRequest) -> Scenario:
    """A local fake of the provider's Admin API with 3 days of bills; new data is the next day,
    seen once the collectors' clock has moved on to it."""
    ledgers = {"openai": openai_ledger, "anthropic": anthropic_ledger}
    ledger = ledgers[provider](days_before(NOW.date(), 3))
    server = BillingServer(ledger, page_size=2)
    request.addfinalizer(server.close)
    clock = {"now": NOW}
    monkeypatch = request.getfixturevalue("monkeypatch")
    monkeypatch.setattr("collectors.billing.utcnow", lambda: clock["now"])

    def add_data() -> None:
        clock["now"] += timedelta(days=1)
        fresh = ledgers[provider]([clock["now"].date()])
        ledger.costs.update(fresh.costs)
        ledger.usage.update(fresh.usage)

    settings = settings_for(provider, server.base_url, initial_days=5)
    return Scenario(settings, add_data, BilledCost, billed_cost_problems)


def openai_api(_tmp_path: Path, request: pytest.FixtureRequest) -> Scenario:
    return _bills("openai", request)


def anthropic_api(_tmp_path: Path, request: pytest.FixtureRequest) -> Scenario:
    return _bills("anthropic", request)


def gpu_cost_problems(row: dict[str, Any]) -> list[str]:
    problems = []
    if row["source"] not in ("aws_ce", "focus", "opencost") or not row["slice_key"]:
        problems.append("no source or slice")
    if not re.fullmatch(r"[A-Z]{3}", row["currency"]) or not isinstance(row["amount_nano"], int):
        problems.append("currency is not an upper-case code or the amount not integer nanos")
    start, end = row["period_start"], row["period_end"]
    if start.utcoffset() is None or end.utcoffset() is None or end <= start:
        problems.append("the charge period is not an aware UTC interval")
    return problems


def aws_ce_api(_tmp_path: Path, request: pytest.FixtureRequest) -> Scenario:
    """moto's Cost Explorer; new data is the next day, asked for once the clock moved on."""
    endpoint = request.getfixturevalue("moto")
    clock = {"now": NOW}
    request.getfixturevalue("monkeypatch").setattr("collectors.aws_ce.utcnow", lambda: clock["now"])
    queue_ce(endpoint, ce_sample())

    def add_data() -> None:
        clock["now"] += timedelta(days=1)
        day = clock["now"].date().isoformat()
        queue_ce(endpoint, ce_answer((day, True, [("p5.48xlarge", "llama-70b", "50.5", "1")])))

    settings = ce_settings(endpoint, initial_days=2, lookback_days=1)
    return Scenario(settings, add_data, GpuCost, gpu_cost_problems)


def focus_s3(_tmp_path: Path, request: pytest.FixtureRequest) -> Scenario:
    """A FOCUS export on moto's S3; new data is the next billing period."""
    endpoint = request.getfixturevalue("moto")
    client = boto3.client("s3", region_name="us-east-1", endpoint_url=endpoint)
    client.create_bucket(Bucket="acme-billing")
    body = csv_gz(focus_frame())
    client.put_object(Bucket="acme-billing", Key=data_key("2025-11", "f-00001.csv.gz"), Body=body)

    def add_data() -> None:
        text = focus_frame().write_csv().replace("2025-11-20T", "2025-12-02T")
        key = data_key("2025-12", "f-00001.csv.gz")
        client.put_object(Bucket="acme-billing", Key=key, Body=csv_gz(focus_frame(text)))

    settings = focus_settings("acme-billing", endpoint, initial_months=36)
    return Scenario(settings, add_data, GpuCost, gpu_cost_problems)


def opencost_api(_tmp_path: Path, request: pytest.FixtureRequest) -> Scenario:
    """A local OpenCost; new data is the next day's allocations."""
    clock = {"now": NOW}
    request.getfixturevalue("monkeypatch").setattr(
        "collectors.opencost.utcnow", lambda: clock["now"]
    )
    yesterday = (NOW - timedelta(days=1)).date().isoformat()
    fake = FakeOpenCost({yesterday: opencost_day(yesterday)})
    server = fake.serve()
    url = server.__enter__()
    request.addfinalizer(lambda: server.__exit__(None, None, None))

    def add_data() -> None:
        clock["now"] += timedelta(days=1)
        day = (clock["now"] - timedelta(days=1)).date().isoformat()
        fake.days[day] = opencost_day(day)

    section = {"enabled": True, "base_url": url, "initial_days": 1, "lookback_days": 1}
    settings = Settings(collectors={"opencost": section})  # type: ignore[arg-type]
    return Scenario(settings, add_data, GpuCost, gpu_cost_problems)


SCENARIOS: dict[str, list[Callable[[Path, pytest.FixtureRequest], Scenario]]] = {
    "traces": [traces_folder, traces_s3],
    "openai": [openai_api],
    "anthropic": [anthropic_api],
    "aws_ce": [aws_ce_api],
    "focus": [focus_s3],
    "opencost": [opencost_api],
}

CASES = [
    pytest.param((name, factory), id=f"{name}-{factory.__name__}")
    for name in registry.names()
    for factory in SCENARIOS.get(name, [])
]


# ── the suite ──────────────────────────────────────────────────────────────────────────────────


@pytest.fixture(params=CASES)
def case(
    request: pytest.FixtureRequest, engine: Engine, tmp_path: Path
) -> tuple[str, Scenario, Engine]:
    name, factory = request.param
    return name, factory(tmp_path, request), engine


def test_every_registered_collector_has_a_scenario() -> None:
    missing = [name for name in registry.names() if not SCENARIOS.get(name)]
    assert not missing, f"add a conformance scenario to SCENARIOS for: {', '.join(missing)}"


def run(name: str, scenario: Scenario, engine: Engine) -> Any:
    return registry.get(name).run(engine, scenario.settings)


def rows(engine: Engine, table: type[Base]) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(select(table.__table__))]


def count(engine: Engine, table: type[Base]) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def stored_checkpoints(engine: Engine, name: str) -> dict[str, str]:
    with session_scope(engine) as session:
        return read_checkpoints(session, name)


def test_a_run_returns_valid_rows_and_is_recorded(case: tuple[str, Scenario, Engine]) -> None:
    name, scenario, engine = case
    outcome = run(name, scenario, engine)
    assert outcome.ok, outcome.errors
    assert outcome.rows_loaded > 0
    stored = rows(engine, scenario.table)
    assert stored, f"{name} reported rows but stored none in {scenario.table.__tablename__}"
    keys = [c.name for c in inspect(scenario.table).primary_key]
    for row in stored:
        assert all(row[k] not in (None, "") for k in keys), f"a key of {row} is missing"
        assert not scenario.problems(row), (row, scenario.problems(row))
    assert len({tuple(r[k] for k in keys) for r in stored}) == len(stored)
    with engine.connect() as conn:
        recorded = conn.execute(
            select(CollectorRun.collector, CollectorRun.status, CollectorRun.rows_loaded)
        ).one()
    assert tuple(recorded) == (name, "ok", outcome.rows_loaded)


def test_a_rerun_adds_nothing(case: tuple[str, Scenario, Engine]) -> None:
    name, scenario, engine = case
    run(name, scenario, engine)
    before = (count(engine, scenario.table), stored_checkpoints(engine, name))
    again = run(name, scenario, engine)
    assert again.ok and again.rows_loaded == 0
    assert (count(engine, scenario.table), stored_checkpoints(engine, name)) == before


def test_the_checkpoint_moves_only_with_a_successful_load(
    case: tuple[str, Scenario, Engine], monkeypatch: pytest.MonkeyPatch
) -> None:
    name, scenario, engine = case
    assert stored_checkpoints(engine, name) == {}
    run(name, scenario, engine)
    first = stored_checkpoints(engine, name)
    assert first, "a successful load wrote no checkpoint"
    stored = count(engine, scenario.table)

    scenario.add_data()
    cls = type(registry.get(name))
    real_load = cls.load

    def failing_load(self: Any, session: Any, *args: Any) -> Any:
        real_load(self, session, *args)  # the rows are written, then the database fails
        raise RuntimeError("the database went away")

    monkeypatch.setattr(cls, "load", failing_load)
    failed = run(name, scenario, engine)
    assert not failed.ok and "the database went away" in (failed.error or "")
    assert count(engine, scenario.table) == stored, "rows of a failed load were kept"
    assert stored_checkpoints(engine, name) == first, "the checkpoint moved without a load"
    with engine.connect() as conn:
        statuses = conn.execute(select(CollectorRun.status).order_by(CollectorRun.id)).scalars()
        assert list(statuses) == ["ok", "failed"]

    monkeypatch.setattr(cls, "load", real_load)
    resumed = run(name, scenario, engine)
    assert resumed.ok and resumed.rows_loaded > 0
    assert count(engine, scenario.table) > stored
    assert stored_checkpoints(engine, name) != first
    assert run(name, scenario, engine).rows_loaded == 0
