"""Fakes at the wire for the cloud GPU collectors: AWS (moto in server mode, for Cost Explorer
and S3), a throttling Cost Explorer, a local OpenCost, and the Data Exports layout on S3.

Samples are copies of ../shared/samples under tests/fixtures/gpu.
"""

from __future__ import annotations

import copy
import gzip
import io
import json
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import polars as pl
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.settings import Settings
from tests.servers import aws_environment, moto_server, serve

GPU_FIXTURES = Path(__file__).parent / "fixtures" / "gpu"
CE_SAMPLE = GPU_FIXTURES / "ce_gpu_daily.json"
FOCUS_SAMPLE = GPU_FIXTURES / "focus_1_2_sample.csv"
OPENCOST_SAMPLE = GPU_FIXTURES / "allocation_namespace.json"
NOW = datetime(2025, 11, 21, 12, 30, tzinfo=UTC)  # the sample's last day is "today"


@pytest.fixture(scope="module", name="moto_endpoint")
def moto_endpoint_fixture() -> Iterator[str]:
    """moto (Cost Explorer, S3) as an HTTP server on localhost for the whole module."""
    with moto_server() as url:
        yield url


@pytest.fixture(name="moto")
def moto_fixture(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A reset moto (empty Cost Explorer queue, no buckets) and the AWS environment."""
    aws_environment(monkeypatch)
    httpx.post(f"{moto_endpoint}/moto-api/reset").raise_for_status()
    return moto_endpoint


def queue_ce(endpoint: str, *results: dict[str, Any]) -> None:
    """Queue `GetCostAndUsage` answers: each new request (by its body) takes the next one."""
    response = httpx.post(
        f"{endpoint}/moto-api/static/ce/cost-and-usage-results", json={"results": list(results)}
    )
    assert response.status_code == 201, response.text


def ce_sample() -> dict[str, Any]:
    return dict(json.loads(CE_SAMPLE.read_text()))


def ce_answer(
    *days: tuple[str, bool, list[tuple[str, str, str, str]]], token: str | None = None
) -> dict[str, Any]:
    """An answer: per day (YYYY-MM-DD, estimated, [(instance type, tag value, USD, hours)])."""
    results = []
    for day, estimated, groups in days:
        end = date.fromordinal(date.fromisoformat(day).toordinal() + 1).isoformat()
        results.append(
            {
                "TimePeriod": {"Start": day, "End": end},
                "Total": {},
                "Estimated": estimated,
                "Groups": [
                    {
                        "Keys": [itype, f"gpu-pool${tag}"],
                        "Metrics": {
                            "UnblendedCost": {"Amount": usd, "Unit": "USD"},
                            "UsageQuantity": {"Amount": hours, "Unit": "Hrs"},
                        },
                    }
                    for itype, tag, usd, hours in groups
                ],
            }
        )
    answer: dict[str, Any] = {"ResultsByTime": results, "DimensionValueAttributes": []}
    if token:
        answer["NextPageToken"] = token
    return answer


def ce_settings(endpoint: str, **options: Any) -> Settings:
    section = {"enabled": True, "endpoint_url": endpoint, **options}
    return Settings(collectors={"aws_ce": section})  # type: ignore[arg-type]


class ThrottlingCostExplorer:
    """Cost Explorer at the wire (JSON 1.1) that throttles the first `throttle` requests with
    `code`, then answers `answer`; it records every request body."""

    def __init__(self, answer: dict[str, Any], throttle: int, code: str = "ThrottlingException"):
        self.answer, self.throttle, self.code = answer, throttle, code
        self.bodies: list[dict[str, Any]] = []

    async def handle(self, request: Request) -> Response:
        self.bodies.append(json.loads(await request.body()))
        headers = {"content-type": "application/x-amz-json-1.1"}
        if len(self.bodies) <= self.throttle:
            body = {"__type": self.code, "message": "Rate exceeded"}
            return Response(json.dumps(body), status_code=400, headers=headers)
        return Response(json.dumps(self.answer), status_code=200, headers=headers)

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/", self.handle, methods=["POST"])])


# ── Data Exports on S3 ─────────────────────────────────────────────────────────────────────────

EXPORT_PREFIX = "exports/focus"
EXPORT = "acme-focus"


def focus_frame(text: str | None = None) -> pl.DataFrame:
    """The FOCUS sample (or `text`, CSV) with every column as text."""
    source = text.encode() if text is not None else FOCUS_SAMPLE.read_bytes()
    return pl.read_csv(source, infer_schema=False)


def csv_gz(frame: pl.DataFrame) -> bytes:
    out = io.BytesIO()
    frame.write_csv(out)
    return gzip.compress(out.getvalue())


def parquet(frame: pl.DataFrame) -> bytes:
    out = io.BytesIO()
    frame.write_parquet(out)
    return out.getvalue()


def data_key(period: str, name: str, export: str = EXPORT, prefix: str = EXPORT_PREFIX) -> str:
    return f"{prefix}/{export}/data/BILLING_PERIOD={period}/{name}"


def manifest_key(period: str, export: str = EXPORT, prefix: str = EXPORT_PREFIX) -> str:
    return f"{prefix}/{export}/metadata/BILLING_PERIOD={period}/{export}-Manifest.json"


def manifest(bucket: str, keys: list[str]) -> bytes:
    return json.dumps(
        {"executionId": "exec-1", "dataFiles": [f"s3://{bucket}/{k}" for k in keys]}
    ).encode()


def focus_settings(bucket: str, endpoint: str, **options: Any) -> Settings:
    section = {
        "enabled": True,
        "bucket": bucket,
        "prefix": f"{EXPORT_PREFIX}/",
        "endpoint_url": endpoint,
        **options,
    }
    return Settings(collectors={"focus": section})  # type: ignore[arg-type]


# ── OpenCost ───────────────────────────────────────────────────────────────────────────────────


class FakeOpenCost:
    """OpenCost's `/allocation`, answering each day's window from `days` (day → the `data`
    list), recording the query strings."""

    def __init__(self, days: dict[str, list[dict[str, Any]]]):
        self.days = days
        self.queries: list[dict[str, str]] = []

    async def allocation(self, request: Request) -> Response:
        self.queries.append(dict(request.query_params))
        start = request.query_params["window"].split(",")[0][:10]
        body = {"code": 200, "status": "success", "data": self.days.get(start, [])}
        return Response(
            json.dumps(body, default=lambda d: float(d) if isinstance(d, Decimal) else d),
            headers={"content-type": "application/json"},
        )

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/allocation", self.allocation)])

    def serve(self) -> Any:
        return serve(self.app())


def opencost_day(day: str, scale: int = 1) -> list[dict[str, Any]]:
    """The sample's one-day answer moved to `day` (costs × `scale`)."""
    data = json.loads(OPENCOST_SAMPLE.read_text(), parse_float=Decimal)["data"]
    moved = copy.deepcopy(data)
    for step in moved:
        for allocation in step.values():
            for where in (allocation, allocation["window"]):
                where["start"] = where["start"].replace("2025-11-20", day)
                where["end"] = where["end"].replace("2025-11-21", _next(day))
            if allocation.get("gpuCost") is not None:
                allocation["gpuCost"] = allocation["gpuCost"] * scale
    return list(moved)


def _next(day: str) -> str:
    return date.fromordinal(date.fromisoformat(day).toordinal() + 1).isoformat()
