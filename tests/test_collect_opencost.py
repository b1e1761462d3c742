"""The `opencost` collector against a local OpenCost `/allocation` server."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, select

from app.settings import Settings
from app.warehouse.tables_gpu import GpuCost
from collectors.http import RetryPolicy
from collectors.opencost import OpenCostCollector
from tests.gpu_fakes import FakeOpenCost, opencost_day

NOW = datetime(2025, 11, 21, 6, tzinfo=UTC)


def settings(url: str, **options: Any) -> Settings:
    section = {"enabled": True, "base_url": url, "initial_days": 1, **options}
    return Settings(collectors={"opencost": section})  # type: ignore[arg-type]


def collect(engine: Engine, url: str, **options: Any) -> Any:
    collector = OpenCostCollector(clock=lambda: NOW, sleep=lambda _s: None, policy=RetryPolicy(2))
    return collector.run(engine, settings(url, **options))


def lines(engine: Engine) -> list[tuple[Any, ...]]:
    query = select(
        GpuCost.slice_key,
        GpuCost.namespace,
        GpuCost.charge_category,
        GpuCost.amount_nano,
        GpuCost.usage_milli,
        GpuCost.efficiency_permille,
    ).order_by(GpuCost.slice_key, GpuCost.namespace)
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(query)]


def test_gpu_cost_per_namespace_and_idle_apart(engine: Engine) -> None:
    fake = FakeOpenCost({"2025-11-20": opencost_day("2025-11-20")})
    with fake.serve() as url:
        outcome = collect(engine, url)
        assert outcome.ok, outcome.errors
        assert outcome.details["api_calls"] == 2  # 2025-11-20 and today, one request each
        assert lines(engine) == [
            ("2025-11-20", "__idle__", "idle", 392_800_000_000, None, None),
            ("2025-11-20", "inference-llama", "usage", 1_571_200_000_000, 192_000, 410),
        ]
        assert collect(engine, url).rows_loaded == 0  # the same answer again: nothing new
    query = fake.queries[0]
    assert query["aggregate"] == "namespace" and query["step"] == "1h"
    assert query["window"] == "2025-11-20T00:00:00Z,2025-11-21T00:00:00Z"
    assert query["includeIdle"] == "true" and query["accumulate"] == "false"


def test_null_gpu_fields_are_no_gpu_and_a_restated_day_replaces(engine: Engine) -> None:
    day = opencost_day("2025-11-20")
    day[0]["cpu-only"] = {
        **day[0]["inference-llama"],
        "name": "cpu-only",
        "gpuCost": None,
        "gpuHours": None,
        "gpuCount": None,
        "gpuEfficiency": None,
    }
    fake = FakeOpenCost({"2025-11-20": day})
    with fake.serve() as url:
        first = collect(engine, url)
        assert first.ok and first.details["allocations_without_gpu"] == 1
        assert [r[1] for r in lines(engine)] == ["__idle__", "inference-llama"]
        fake.days["2025-11-20"] = opencost_day("2025-11-20", scale=2)
        again = collect(engine, url)
        assert again.ok and again.details["days_replaced"] == 1
        assert [r[3] for r in lines(engine)] == [785_600_000_000, 3_142_400_000_000]


def test_an_answer_that_is_not_opencost_fails_the_run(engine: Engine) -> None:
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from tests.servers import serve

    async def wrong(_request: Any) -> JSONResponse:
        return JSONResponse({"hello": "world"})

    with serve(Starlette(routes=[Route("/allocation", wrong)])) as url:
        outcome = collect(engine, url)
    assert not outcome.ok and "collectors.opencost.base_url" in (outcome.error or "")
    assert lines(engine) == []


def test_a_refused_request_says_opencost_takes_no_key(engine: Engine) -> None:
    """OpenCost has no key: a 401 from a proxy in front of it names the URL, not an admin key."""
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from tests.servers import serve

    async def refused(_request: Any) -> JSONResponse:
        return JSONResponse({"error": "login required"}, status_code=401)

    with serve(Starlette(routes=[Route("/allocation", refused)])) as url:
        outcome = collect(engine, url)
    assert not outcome.ok
    error = outcome.error or ""
    assert "401, the API refused this request" in error
    assert "admin key" not in error
    assert "collectors.opencost.base_url (OpenCost takes no key" in error
    assert lines(engine) == []
