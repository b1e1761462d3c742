"""The `aws_ce` collector against moto's Cost Explorer in server mode (queued answers), and a
throttling Cost Explorer at the wire."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, select

from app.warehouse.tables import CollectorRun
from app.warehouse.tables_gpu import GpuCost
from collectors.aws_ce import AwsCeCollector
from collectors.http import RetryPolicy
from tests.gpu_fakes import (
    NOW,
    ThrottlingCostExplorer,
    ce_answer,
    ce_sample,
    ce_settings,
    moto_endpoint_fixture,  # noqa: F401  (fixture `moto_endpoint`)
    moto_fixture,  # noqa: F401  (fixture `moto`)
    queue_ce,
)
from tests.servers import serve


def collector(now: datetime = NOW, sleeps: list[float] | None = None) -> AwsCeCollector:
    waits = sleeps if sleeps is not None else []
    return AwsCeCollector(clock=lambda: now, sleep=waits.append, policy=RetryPolicy(attempts=4))


def stored(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(GpuCost.__table__).order_by(GpuCost.period_start, GpuCost.instance_type)
        )
        return [dict(r._mapping) for r in rows]


def checkpoint(engine: Engine) -> dict[str, Any]:
    from app.warehouse.checkpoints import read_checkpoint
    from app.warehouse.engine import session_scope

    with session_scope(engine) as session:
        return dict(json.loads(read_checkpoint(session, "aws_ce", "cost-explorer") or "{}"))


def test_the_sample_answer_is_stored_exactly_with_its_estimated_flag(
    engine: Engine, moto: str
) -> None:
    queue_ce(moto, ce_sample())
    run = collector().run(engine, ce_settings(moto, lookback_days=1, initial_days=2))
    assert run.ok, run.errors
    rows = stored(engine)
    assert [
        (r["instance_type"], r["amount_nano"], r["usage_milli"], r["estimated"]) for r in rows
    ] == [
        ("g6e.12xlarge", 250_387_200_000, 24_000, False),
        ("p5.48xlarge", 2_356_082_600_000, 24_000, False),
        ("p5.48xlarge", 1_178_041_300_000, 12_000, True),
    ]
    assert {r["currency"] for r in rows} == {"USD"} and {r["tags"] for r in rows} == {None}
    assert rows[2]["period_start"] == datetime(2025, 11, 20, tzinfo=UTC)
    assert checkpoint(engine) == {"through": "2025-11-21", "estimated_from": "2025-11-20"}
    with engine.connect() as conn:
        assert conn.execute(select(CollectorRun.api_calls)).scalar_one() == 1


def test_pages_follow_next_page_token_and_every_call_is_counted(engine: Engine, moto: str) -> None:
    first = ce_answer(
        ("2025-11-20", False, [("p5.48xlarge", "llama-70b", "100.5", "1")]), token="t2"
    )
    second = ce_answer(("2025-11-21", True, [("g6e.xlarge", "", "9.25", "2")]))
    queue_ce(moto, first, second)
    run = collector().run(engine, ce_settings(moto, initial_days=1))
    assert run.ok and run.details["api_calls"] == 2
    rows = stored(engine)
    assert [(r["tags"], r["amount_nano"]) for r in rows] == [
        ('{"gpu-pool":"llama-70b"}', 100_500_000_000),
        (None, 9_250_000_000),  # `gpu-pool$`: the line has no tag
    ]


def test_an_estimated_day_is_read_again_until_final(engine: Engine, moto: str) -> None:
    settings = ce_settings(moto, lookback_days=0, initial_days=1)
    queue_ce(moto, ce_answer(("2025-11-20", True, [("p5.48xlarge", "llama-70b", "10", "1")])))
    assert collector().run(engine, settings).ok
    assert checkpoint(engine)["estimated_from"] == "2025-11-20"

    # Three days later the day is final and restated; lookback 0 alone would not reach it.
    later = NOW + timedelta(days=3)
    final = ce_answer(
        ("2025-11-20", False, [("p5.48xlarge", "llama-70b", "12.5", "1")]),
        ("2025-11-24", True, []),
    )
    queue_ce(moto, final)
    again = collector(later).run(engine, settings)
    assert again.ok and again.details["days_replaced"] == 1
    assert [(r["amount_nano"], r["estimated"]) for r in stored(engine)] == [(12_500_000_000, False)]
    assert checkpoint(engine) == {"through": "2025-11-24", "estimated_from": "2025-11-24"}
    # A re-run that gets the same answer changes nothing.
    queue_ce(moto, final)
    assert collector(later).run(engine, settings).rows_loaded == 0


@pytest.mark.parametrize("code", ["ThrottlingException", "LimitExceededException"])
def test_throttling_is_retried_with_backoff(
    engine: Engine, code: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.gpu_fakes import aws_environment

    aws_environment(monkeypatch)
    fake = ThrottlingCostExplorer(ce_sample(), throttle=2, code=code)
    sleeps: list[float] = []
    with serve(fake.app()) as url:
        run = collector(sleeps=sleeps).run(engine, ce_settings(url, initial_days=2))
    assert run.ok, run.errors
    assert len(fake.bodies) == 3 and run.details["api_calls"] == 3
    assert len(sleeps) == 2 and 0.5 <= sleeps[0] <= 1.0 and 1.0 <= sleeps[1] <= 2.0
    assert len(stored(engine)) == 3
    # The query is narrow: GPU families only, grouped by instance type and the pool tag.
    body = fake.bodies[0]
    assert body["Filter"]["Dimensions"]["Key"] == "INSTANCE_TYPE_FAMILY"
    assert "p5" in body["Filter"]["Dimensions"]["Values"]
    assert body["GroupBy"] == [
        {"Type": "DIMENSION", "Key": "INSTANCE_TYPE"},
        {"Type": "TAG", "Key": "gpu-pool"},
    ]
    with engine.connect() as conn:
        assert conn.execute(select(CollectorRun.api_calls)).scalar_one() == 3
    # `spendguard collect --status` shows them.
    from app.cli.collect import _record, recent_runs

    assert _record(recent_runs(engine, ["aws_ce"], 1)[0])["api_calls"] == 3


def test_throttling_that_lasts_fails_the_run_and_stores_nothing(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.gpu_fakes import aws_environment

    aws_environment(monkeypatch)
    fake = ThrottlingCostExplorer(ce_sample(), throttle=99)
    with serve(fake.app()) as url:
        run = collector().run(engine, ce_settings(url))
    assert not run.ok and "still throttled" in (run.error or "")
    assert len(fake.bodies) == 4 and stored(engine) == [] and checkpoint(engine) == {}
    with engine.connect() as conn:
        assert tuple(conn.execute(select(CollectorRun.status, CollectorRun.api_calls)).one()) == (
            "failed",
            None,
        )


def test_access_denied_names_the_permission(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.gpu_fakes import aws_environment

    aws_environment(monkeypatch)
    fake = ThrottlingCostExplorer(ce_sample(), throttle=1, code="AccessDeniedException")
    with serve(fake.app()) as url:
        run = collector().run(engine, ce_settings(url))
    assert not run.ok and "ce:GetCostAndUsage" in (run.error or "")
    assert len(fake.bodies) == 1
