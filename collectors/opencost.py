"""`opencost`: GPU cost and GPU-hours per namespace (or label, …) from OpenCost.

`GET {base_url}/allocation?window=<start>,<end>&aggregate=<aggregate>&step=<step>
&accumulate=false&includeIdle=true`, one UTC day per request: the answer's `data` is one map per
step (`name → allocation`). Each allocation with GPU cost or GPU-hours becomes a line: its window,
its name (the namespace, or the label's value) as `namespace`, `gpuCost + gpuCostAdjustment`
(exact: JSON numbers are read as decimals), `gpuHours` and `gpuEfficiency`. OpenCost's `__idle__`
allocation (capacity nobody requested) is kept as a line of its own, never spread. Null GPU
fields (OpenCost writes NaN as null) mean "no GPU": such allocations are skipped, counted.

Days: from `lookback_days` before the last day read (OpenCost's figures settle as Prometheus
catches up) through today, or `--since D`, or the last `initial_days` the first time; each day
replaces what was stored for it. Retries, backoff and error messages: `collectors.http`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
from sqlalchemy.orm import Session

from app.settings import OpenCostCollectorConfig, Settings
from collectors.base import Chunk, Collector, CollectorError, Loaded, RunContext
from collectors.billing_common import midnight, to_nanos
from collectors.gpu_common import GpuLine, decimal_of, milli, replace_slices
from collectors.http import ApiClient, RetryPolicy, SettingNames

log = logging.getLogger("spendguard.collectors")

DAY = timedelta(days=1)
IDLE = "__idle__"


def utcnow() -> datetime:
    """The collector's clock (tests replace it)."""
    return datetime.now(UTC)


@dataclass(slots=True)
class DayRows:
    day: date
    lines: list[GpuLine] = field(default_factory=list)
    api_calls: int = 0
    rejected: int = 0
    no_gpu: int = 0


class OpenCostCollector(Collector[OpenCostCollectorConfig, str, DayRows]):
    name = "opencost"
    description = "OpenCost allocation API: GPU cost and GPU-hours per namespace, idle apart"

    def __init__(
        self,
        *,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] | None = None,
        clock: Callable[[], datetime] | None = None,
        policy: RetryPolicy | None = None,
    ) -> None:
        self._transport, self._sleep, self._clock, self._policy = transport, sleep, clock, policy

    def config(self, settings: Settings) -> OpenCostCollectorConfig:
        return settings.collectors.opencost

    def sources(self, config: OpenCostCollectorConfig) -> Sequence[tuple[str, str]]:
        return [(f"{config.base_url.rstrip('/')}|{config.aggregate}", config.base_url)]

    def now(self) -> datetime:
        return (self._clock or utcnow)().astimezone(UTC)

    def fetch(
        self, run: RunContext[OpenCostCollectorConfig], source: str, checkpoint: str | None
    ) -> Generator[Chunk[DayRows], None, None]:
        config = run.config
        today = self.now().date()
        first = _start(checkpoint, run.since, config, today)
        names = SettingNames(
            "collectors.opencost.base_url",
            "collectors.opencost.base_url",
            " (OpenCost takes no key: point it at a URL this worker may read, e.g. the "
            "in-cluster service or a proxy that adds the credentials)",
            credential="this request",
        )
        client = ApiClient(
            config.base_url,
            {},
            names,
            name="opencost",
            transport=self._transport,
            policy=self._policy,
            sleep=self._sleep or time.sleep,
            now=self.now,
        )
        with client:
            day = first
            while day <= today:
                before = client.calls
                window = (
                    f"{midnight(day):%Y-%m-%dT%H:%M:%SZ},{midnight(day + DAY):%Y-%m-%dT%H:%M:%SZ}"
                )
                params: list[tuple[str, str | int]] = [
                    ("window", window),
                    ("aggregate", config.aggregate),
                    ("step", config.step),
                    ("accumulate", "false"),
                    ("includeIdle", "true" if config.include_idle else "false"),
                ]
                answer = client.get_json("allocation", params)
                rows = read_day(answer, day, config)
                rows.api_calls = client.calls - before
                yield Chunk(
                    rows,
                    json.dumps({"through": day.isoformat()}),
                    (midnight(day), midnight(day + DAY)),
                )
                day += DAY

    def load(
        self, session: Session, run: RunContext[OpenCostCollectorConfig], rows: DayRows
    ) -> Loaded:
        source_key = f"{run.config.base_url.rstrip('/')}|{run.config.aggregate}"[:256]
        written, replaced = replace_slices(
            session, self.name, source_key, {rows.day.isoformat(): rows.lines}, self.now()
        )
        details = {"api_calls": rows.api_calls, "days_replaced": replaced}
        if rows.no_gpu:
            details["allocations_without_gpu"] = rows.no_gpu
        return Loaded(rows=written, rejected=rows.rejected, details=details)


def _start(
    checkpoint: str | None, since: datetime | None, config: OpenCostCollectorConfig, today: date
) -> date:
    if since is not None:
        return min(since.astimezone(UTC).date(), today)
    if checkpoint:
        try:
            through = date.fromisoformat(json.loads(checkpoint)["through"])
            return min(through - timedelta(days=config.lookback_days), today)
        except (ValueError, KeyError, TypeError):
            log.warning("opencost: unreadable checkpoint %r: reading as on a first run", checkpoint)
    return today - timedelta(days=config.initial_days)


def read_day(answer: Any, day: date, config: OpenCostCollectorConfig) -> DayRows:
    """The allocations of one day's answer as lines (only those inside the day)."""
    if not isinstance(answer, dict) or not isinstance(answer.get("data"), list):
        raise CollectorError(
            "opencost GET /allocation: the answer has no `data` list; check "
            "collectors.opencost.base_url points at the OpenCost API (port 9003)"
        )
    if answer.get("code", 200) != 200:
        raise CollectorError(f"opencost GET /allocation: {answer.get('message') or answer}")
    rows = DayRows(day)
    for step in answer["data"]:
        if not isinstance(step, dict):
            rows.rejected += 1
            continue
        for name, allocation in step.items():
            line = _line(str(name), allocation, day, rows)
            if line is not None:
                rows.lines.append(line)
    return rows


def _line(name: str, a: Any, day: date, rows: DayRows) -> GpuLine | None:
    if not isinstance(a, dict):
        rows.rejected += 1
        return None
    window: dict[str, Any] = a["window"] if isinstance(a.get("window"), dict) else {}
    start = _time(a.get("start") or window.get("start"))
    end = _time(a.get("end") or window.get("end"))
    if start is None or end is None or end < start:
        rows.rejected += 1
        log.warning("opencost: allocation %r without a readable window: rejected", name)
        return None
    if start.date() != day:
        return None  # OpenCost answered beyond the day asked for: that day's own run has it
    cost = decimal_of(a.get("gpuCost"))
    adjustment = decimal_of(a.get("gpuCostAdjustment")) or Decimal(0)
    hours = decimal_of(a.get("gpuHours"))
    if cost is None and hours is None:
        rows.no_gpu += 1
        return None
    amount = (cost or Decimal(0)) + adjustment
    if amount == 0 and not hours:
        rows.no_gpu += 1
        return None
    efficiency = decimal_of(a.get("gpuEfficiency"))
    properties: dict[str, Any] = a["properties"] if isinstance(a.get("properties"), dict) else {}
    cluster = properties.get("cluster")
    return GpuLine(
        slice_key=day.isoformat(),
        period_start=start,
        period_end=end,
        charge_category="idle" if name == IDLE else "usage",
        instance_type=None,
        resource_id=(str(cluster)[:512] if cluster else None),
        namespace=name[:256],
        tags=None,
        description=None,
        usage_milli=milli(hours),
        usage_unit="GPU-hours" if hours is not None else None,
        amount_nano=to_nanos(amount),
        currency="USD",
        efficiency_permille=None if efficiency is None else milli(efficiency),
    )


def _time(raw: Any) -> datetime | None:
    if not isinstance(raw, str) or not raw.strip():
        return None
    try:
        when = datetime.fromisoformat(raw.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).astimezone(UTC)
