"""The demo's self-hosted GPU pool: what AWS would bill for the GPUs serving `llama-3.1-70b`,
written in the real outside formats and loaded through the real collectors.

- A FOCUS 1.2 export in the Data Exports layout (`<out>/billing/exports/demo-focus/data/
  BILLING_PERIOD=YYYY-MM/demo-focus-00001.csv.gz`, with its manifest): one line per hour for
  the pool's instance, running day and night, tagged `gpu-pool: llama-70b`, plus a tagged
  credit. Like a real export it lags: its last `EXPORT_LAG_HOURS` are not in it yet.
- Cost Explorer's answer for the same spend, daily, the last day `Estimated`, served at the
  wire to the `aws_ce` collector's boto3 client (a botocore `before-send` handler).

The pool (`DEMO_GPU_POOL`) takes each day from the FOCUS export where it has the day, else from
Cost Explorer, and its capacity makes the quiet night hours mostly idle.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3
from botocore.awsrequest import AWSResponse
from botocore.config import Config
from sqlalchemy import Engine

from app.gpu.allocate import refresh
from app.settings import AwsCeCollectorConfig, FocusCollectorConfig, GpuPoolConfig, Settings
from collectors.aws_ce import AwsCeCollector
from collectors.focus import FocusCollector

INSTANCE = "g6e.12xlarge"
RESOURCE = "i-0d3e4f5a6b7c8d9e0"
HOURLY = Decimal("4.6948")  # effective rate of the instance under a Savings Plan, USD
CREDIT = Decimal("-12.50")  # a tagged credit on the first full day
EXPORT = "demo-focus"
EXPORT_LAG_HOURS = 30
DEMO_GPU_POOL: dict[str, Any] = {
    "name": "llama-70b",
    "match": {"tag": {"gpu-pool": "llama-70b"}},
    "models": ["llama-3.1-70b"],
    "allocate_by": "gpu_seconds",
    # At full load the pool serves about 4 minutes of llama calls an hour (the demo's scale).
    "capacity_per_hour": 240,
}
FOCUS_HEADER = [
    "BilledCost", "EffectiveCost", "ListCost", "ContractedCost", "BillingCurrency",
    "ChargeCategory", "ChargeClass", "ChargeDescription", "ChargePeriodStart", "ChargePeriodEnd",
    "BillingPeriodStart", "BillingPeriodEnd", "ProviderName", "PublisherName", "ServiceName",
    "ServiceCategory", "BillingAccountId", "SubAccountId", "ResourceId", "ResourceType", "SkuId",
    "RegionId", "ConsumedQuantity", "ConsumedUnit", "Tags", "x_UsageType",
]  # fmt: skip
TAGS = json.dumps({"gpu-pool": "llama-70b", "team": "ml-platform"})


def load_demo_gpu(
    engine: Engine, settings: Settings, *, start: datetime, end: datetime, out_dir: Path
) -> str:
    """Write the export, answer Cost Explorer, load both through their collectors and allocate;
    returns a line for the demo's summary."""
    # Like a real export it lags; here by whole days (a pool takes a day from one source).
    lagged = (end - timedelta(hours=EXPORT_LAG_HOURS)).date()
    export_end = datetime(lagged.year, lagged.month, lagged.day, tzinfo=UTC)
    root = out_dir / "billing"
    root.mkdir(parents=True, exist_ok=True)  # a 1-day demo lags entirely: an empty export
    write_export(root, start, export_end)
    focus = settings.model_copy(
        update={
            "collectors": settings.collectors.model_copy(
                update={"focus": FocusCollectorConfig(enabled=True, path=root)}
            )
        }
    )
    since = datetime(start.year, start.month, start.day, tzinfo=UTC)
    read = FocusCollector(clock=lambda: end).run(engine, focus, since=since)
    ce = settings.model_copy(
        update={
            "collectors": settings.collectors.model_copy(
                update={"aws_ce": AwsCeCollectorConfig(enabled=True)}
            )
        }
    )
    client = cost_explorer(start, end)
    asked = AwsCeCollector(client=client, clock=lambda: end - timedelta(seconds=1))
    answered = asked.run(engine, ce, since=since)
    if not (read.ok and answered.ok):
        raise RuntimeError(f"demo GPU bills failed to load (a bug): {read.error or answered.error}")
    pooled = with_demo_pool(settings)
    result = refresh(engine, pooled, start.date(), end.date() + timedelta(days=1))
    return (
        f"GPU pool llama-70b: {usd(result.cost_nanousd)} = {usd(result.allocated_nanousd)} "
        f"allocated to {result.calls} calls + {usd(result.idle_nanousd)} idle (FOCUS export "
        f"and Cost Explorer, {answered.details['api_calls']} CE call)"
    )


def usd(nanos: int) -> str:
    return f"${Decimal(nanos).scaleb(-9):.2f}"


def with_demo_pool(settings: Settings) -> Settings:
    """The settings plus the demo pool, unless a configured pool already serves its model."""
    served = {m for pool in settings.gpu_pools for m in pool.models}
    if set(DEMO_GPU_POOL["models"]) & served:
        return settings
    pools = [*settings.gpu_pools, GpuPoolConfig.model_validate(DEMO_GPU_POOL)]
    return settings.model_copy(update={"gpu_pools": pools})


def write_export(root: Path, start: datetime, end: datetime) -> list[Path]:
    """The FOCUS export of the pool's hours in [start, end), one file per billing period."""
    periods: dict[str, list[list[str]]] = {}
    hour = start.replace(minute=0, second=0, microsecond=0)
    while hour < end:
        periods.setdefault(f"{hour:%Y-%m}", []).append(_usage(hour))
        hour += timedelta(hours=1)
    first_day = (start + timedelta(days=1)).date()
    credit_at = datetime(first_day.year, first_day.month, first_day.day, tzinfo=UTC)
    if credit_at + timedelta(days=1) <= end:
        periods.setdefault(f"{credit_at:%Y-%m}", []).append(_credit(credit_at))
    written = []
    for period, rows in sorted(periods.items()):
        base = root / "exports" / EXPORT
        data = base / "data" / f"BILLING_PERIOD={period}" / f"{EXPORT}-00001.csv.gz"
        data.parent.mkdir(parents=True, exist_ok=True)
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(FOCUS_HEADER)
        writer.writerows(rows)
        data.write_bytes(gzip.compress(text.getvalue().encode(), mtime=0))
        meta = base / "metadata" / f"BILLING_PERIOD={period}" / f"{EXPORT}-Manifest.json"
        meta.parent.mkdir(parents=True, exist_ok=True)
        files = [f"s3://demo-billing/exports/{EXPORT}/data/BILLING_PERIOD={period}/{data.name}"]
        meta.write_text(json.dumps({"executionId": "demo", "dataFiles": files}))
        written.append(data)
    return written


def _billing_period(hour: datetime) -> tuple[str, str]:
    first = hour.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    after = first.replace(year=first.year + first.month // 12, month=first.month % 12 + 1)
    return _iso(first), _iso(after)


def _usage(hour: datetime) -> list[str]:
    begin, stop = _billing_period(hour)
    rate = f"{HOURLY:f}"
    return [
        rate, rate, "10.4328", rate, "USD", "Usage", "",
        f"Savings Plan rate, Linux {INSTANCE} Instance Hour",
        _iso(hour), _iso(hour + timedelta(hours=1)), begin, stop, "AWS", "AWS",
        "Amazon Elastic Compute Cloud", "Compute", "123456789012", "210987654321", RESOURCE,
        "Instance", "WXYZ1234ABCD5678", "us-east-1", "1", "Hrs", TAGS, f"BoxUsage:{INSTANCE}",
    ]  # fmt: skip


def _credit(day: datetime) -> list[str]:
    begin, stop = _billing_period(day)
    amount = f"{CREDIT:f}"
    return [
        amount, amount, "0", amount, "USD", "Credit", "", "Service credit for the llama-70b pool",
        _iso(day), _iso(day + timedelta(days=1)), begin, stop, "AWS", "AWS",
        "Amazon Elastic Compute Cloud", "Compute", "123456789012", "210987654321", "", "", "",
        "", "", "", TAGS, "",
    ]  # fmt: skip


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ── Cost Explorer at the wire ──────────────────────────────────────────────────────────────────


class _Body:
    def __init__(self, content: bytes) -> None:
        self.content = content

    def stream(self, **_kwargs: Any) -> Any:
        yield self.content


def cost_explorer(start: datetime, end: datetime) -> Any:
    """A real boto3 Cost Explorer client whose requests are answered in-process with the
    pool's daily cost (the day still running: `Estimated`), as AWS would answer them."""
    client = boto3.session.Session(
        aws_access_key_id="demo",
        aws_secret_access_key="demo",  # noqa: S106 - nothing leaves the process
        region_name="us-east-1",
    ).client(
        "ce",
        endpoint_url="https://ce.demo.invalid",
        config=Config(retries={"mode": "standard", "total_max_attempts": 1}),
    )

    def answer(request: Any, **_kwargs: Any) -> AWSResponse:
        asked = json.loads(request.body)
        first = date.fromisoformat(asked["TimePeriod"]["Start"][:10])
        until = date.fromisoformat(asked["TimePeriod"]["End"][:10])
        results = []
        day = first
        while day < until:
            lo = max(start, datetime(day.year, day.month, day.day, tzinfo=UTC))
            hi = min(end, datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1))
            hours = max(0, int((hi - lo).total_seconds() // 3600))
            groups = []
            if hours:
                groups.append(
                    {
                        "Keys": [INSTANCE, "gpu-pool$llama-70b"],
                        "Metrics": {
                            "UnblendedCost": {"Amount": f"{HOURLY * hours:f}", "Unit": "USD"},
                            "UsageQuantity": {"Amount": str(hours), "Unit": "Hrs"},
                        },
                    }
                )
            results.append(
                {
                    "TimePeriod": {
                        "Start": day.isoformat(),
                        "End": (day + timedelta(1)).isoformat(),
                    },
                    "Total": {},
                    "Groups": groups,
                    "Estimated": hi >= end,
                }
            )
            day += timedelta(days=1)
        body = json.dumps({"ResultsByTime": results, "DimensionValueAttributes": []}).encode()
        headers = {"content-type": "application/x-amz-json-1.1"}
        return AWSResponse(request.url, 200, headers, _Body(body))

    client.meta.events.register("before-send.ce.GetCostAndUsage", answer)
    return client
