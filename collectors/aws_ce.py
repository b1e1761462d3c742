"""`aws_ce`: the cost of GPU and accelerator instances from AWS Cost Explorer.

One `GetCostAndUsage` query per run, narrow because every page costs $0.01: the instance
families of `instance_families` only (`INSTANCE_TYPE_FAMILY`), grouped by `INSTANCE_TYPE` and
the cost allocation tag `tag_key` (whose value names the GPU pool; an untagged line comes back
as `gpu-pool$` and is stored without the tag), metrics `metric` and `UsageQuantity` (hours),
`DAILY` or `HOURLY`. Pages follow `NextPageToken` (boto3 has no paginator for this call).

Days: from `lookback_days` before the last day read — or from the first day Cost Explorer still
called `Estimated`, whichever is earlier, so an estimated day is re-read until it is final —
through today; `--since D` from day D; the first run the last `initial_days`. Each day in the
answer replaces what was stored for it (`collectors.gpu_common.replace_slices`); a day the
answer does not mention is left alone.

Throttling (`ThrottlingException`, `LimitExceededException`, …) is retried here with
exponential backoff and jitter (botocore's own retries are off, so every request is counted);
the run record's `api_calls` says how many requests the run sent.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError
from sqlalchemy.orm import Session

from app.settings import AwsCeCollectorConfig, Settings
from collectors import aws
from collectors.base import Chunk, Collector, CollectorError, Loaded, RunContext
from collectors.billing_common import midnight, to_nanos
from collectors.gpu_common import GpuLine, decimal_of, milli, replace_slices, tags_text
from collectors.http import RetryPolicy
from collectors.pagination import TokenPaginator, pages

log = logging.getLogger("spendguard.collectors")

SOURCE_KEY = "cost-explorer"
THROTTLED = frozenset(
    {"ThrottlingException", "LimitExceededException", "RequestLimitExceeded", "Throttling"}
)
HOURLY_DAYS = 14  # Cost Explorer keeps hourly data for the last 14 days only
DAY = timedelta(days=1)


def utcnow() -> datetime:
    """The collector's clock (tests replace it)."""
    return datetime.now(UTC)


@dataclass(slots=True)
class CeRows:
    """A window of days read; each day in `days` replaces what was stored for it."""

    days: dict[str, list[GpuLine]] = field(default_factory=dict)
    estimated_days: int = 0
    api_calls: int = 0
    rejected: int = 0


class AwsCeCollector(Collector[AwsCeCollectorConfig, str, CeRows]):
    name = "aws_ce"
    description = "AWS Cost Explorer: cost of GPU/accelerator instances by type and pool tag"

    def __init__(
        self,
        *,
        client: Any | None = None,
        sleep: Callable[[float], None] | None = None,
        clock: Callable[[], datetime] | None = None,
        policy: RetryPolicy | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._client, self._sleep, self._clock = client, sleep or time.sleep, clock
        self._policy = policy or RetryPolicy(attempts=6, base_delay=1.0, max_delay=30.0)
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not security

    def config(self, settings: Settings) -> AwsCeCollectorConfig:
        return settings.collectors.aws_ce

    def sources(self, config: AwsCeCollectorConfig) -> Sequence[tuple[str, str]]:
        return [(SOURCE_KEY, SOURCE_KEY)]

    def now(self) -> datetime:
        return (self._clock or utcnow)().astimezone(UTC)

    def fetch(
        self, run: RunContext[AwsCeCollectorConfig], source: str, checkpoint: str | None
    ) -> Generator[Chunk[CeRows], None, None]:
        config = run.config
        today = self.now().date()
        first = start_day(checkpoint, run.since, config, today)
        end = today + DAY
        client = self._client or aws.client("ce", config.region, config.endpoint_url, retries=False)
        rows = CeRows()
        where = f"Cost Explorer GetCostAndUsage {first} to {today}"
        request = query(config, first, end)

        def fetch_page(token: str | None) -> dict[str, Any]:
            return self._call(
                client, {**request, **({"NextPageToken": token} if token else {})}, rows
            )

        # A day still estimated before this run stays so until an answer says otherwise.
        before = _state(checkpoint).get("estimated_from")
        estimated_from = date.fromisoformat(before) if before else None
        for page in pages(fetch_page, TokenPaginator(where)):
            for result in page.get("ResultsByTime", []):
                day, lines = read_result(result, config, rows)
                if day is None or not first <= day < end:
                    continue
                if day.isoformat() not in rows.days and estimated_from == day:
                    estimated_from = None  # answered again: estimated only if it still says so
                rows.days.setdefault(day.isoformat(), []).extend(lines)
                if result.get("Estimated"):
                    rows.estimated_days += 1
                    estimated_from = min(day, estimated_from or day)
        state = {
            "through": today.isoformat(),
            "estimated_from": estimated_from.isoformat() if estimated_from else None,
        }
        yield Chunk(rows, json.dumps(state), (midnight(first), midnight(end)))

    def _call(self, client: Any, request: dict[str, Any], rows: CeRows) -> dict[str, Any]:
        """One request, retried with backoff while Cost Explorer throttles; each attempt counts."""
        for attempt in range(self._policy.attempts):
            rows.api_calls += 1
            try:
                answer: dict[str, Any] = client.get_cost_and_usage(**request)
                return answer
            except ClientError as exc:
                code = aws.error_code(exc)
                if code not in THROTTLED:
                    raise explain(exc) from None
                if attempt + 1 == self._policy.attempts:
                    raise CollectorError(
                        f"Cost Explorer: still throttled ({code}) after {self._policy.attempts} "
                        "attempts; the next run retries from the checkpoint"
                    ) from None
                wait = self._policy.backoff(attempt, self._rng)
                log.info("aws_ce: %s, retrying in %.1f s", code, wait)
                self._sleep(wait)
            except (BotoCoreError, NoCredentialsError) as exc:
                raise explain(exc) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def load(self, session: Session, run: RunContext[AwsCeCollectorConfig], rows: CeRows) -> Loaded:
        written, replaced = replace_slices(session, self.name, SOURCE_KEY, rows.days, self.now())
        details = {"api_calls": rows.api_calls, "days_replaced": replaced}
        if rows.estimated_days:
            details["estimated_days"] = rows.estimated_days
        return Loaded(rows=written, rejected=rows.rejected, details=details)


def start_day(
    checkpoint: str | None, since: datetime | None, config: AwsCeCollectorConfig, today: date
) -> date:
    """`--since`, else the earlier of `lookback_days` before the last day read and the first
    day still estimated, else `initial_days` ago; hourly data reaches back 14 days only."""
    first = today - timedelta(days=config.initial_days)
    if since is not None:
        first = since.astimezone(UTC).date()
    elif state := _state(checkpoint):
        through = date.fromisoformat(state["through"])
        first = through - timedelta(days=config.lookback_days)
        if state.get("estimated_from"):
            first = min(first, date.fromisoformat(state["estimated_from"]))
    if config.granularity == "HOURLY":
        first = max(first, today - timedelta(days=HOURLY_DAYS - 1))
    return min(first, today)


def _state(checkpoint: str | None) -> dict[str, Any]:
    """The checkpoint `{"through": day, "estimated_from": day | null}`, or {} if none/unreadable."""
    if not checkpoint:
        return {}
    try:
        state = json.loads(checkpoint)
        date.fromisoformat(state["through"])
        if state.get("estimated_from"):
            date.fromisoformat(state["estimated_from"])
    except (ValueError, KeyError, TypeError):
        log.warning("aws_ce: unreadable checkpoint %r: reading as on a first run", checkpoint)
        return {}
    return dict(state)


def query(config: AwsCeCollectorConfig, first: date, end: date) -> dict[str, Any]:
    """The request: narrow (GPU families only), grouped by instance type and the pool tag."""
    hourly = config.granularity == "HOURLY"

    def stamp(day: date) -> str:
        return f"{day.isoformat()}T00:00:00Z" if hourly else day.isoformat()

    return {
        "TimePeriod": {"Start": stamp(first), "End": stamp(end)},
        "Granularity": config.granularity,
        "Metrics": [config.metric, "UsageQuantity"],
        "GroupBy": [
            {"Type": "DIMENSION", "Key": "INSTANCE_TYPE"},
            {"Type": "TAG", "Key": config.tag_key},
        ],
        "Filter": {
            "Dimensions": {"Key": "INSTANCE_TYPE_FAMILY", "Values": config.instance_families}
        },
    }


def read_result(
    result: dict[str, Any], config: AwsCeCollectorConfig, rows: CeRows
) -> tuple[date | None, list[GpuLine]]:
    """One `ResultsByTime` entry as its UTC day and its lines (groups that cost nothing and
    used nothing are left out; a group that cannot be read is counted as rejected)."""
    try:
        start = _when(result["TimePeriod"]["Start"])
        end = _when(result["TimePeriod"]["End"])
    except (KeyError, TypeError, ValueError):
        rows.rejected += 1
        log.warning("aws_ce: a result without a readable TimePeriod: skipped")
        return None, []
    estimated = bool(result.get("Estimated"))
    lines = []
    for group in result.get("Groups") or []:
        line = _line(group, config, start, end, estimated)
        if line is None:
            rows.rejected += 1
        elif line.amount_nano or line.usage_milli:
            lines.append(line)
    return start.date(), lines


def _line(
    group: Any, config: AwsCeCollectorConfig, start: datetime, end: datetime, estimated: bool
) -> GpuLine | None:
    if not isinstance(group, dict):
        return None
    keys = [str(k) for k in group.get("Keys") or []]
    metrics = group.get("Metrics") or {}
    cost = metrics.get(config.metric) or {}
    amount = decimal_of(cost.get("Amount"))
    if amount is None:
        log.warning("aws_ce: a group without a %s amount (%s): skipped", config.metric, keys)
        return None
    instance_type = next((k for k in keys if "$" not in k), None)
    tag = next((k for k in keys if "$" in k), "")
    tag_key, _, value = tag.partition("$")
    usage = metrics.get("UsageQuantity") or {}
    return GpuLine(
        slice_key=start.date().isoformat(),
        period_start=start,
        period_end=end,
        charge_category="usage",
        instance_type=(instance_type or None) and instance_type.lower(),
        resource_id=None,
        namespace=None,
        tags=tags_text({tag_key or config.tag_key: value} if value else {}),
        description=None,
        usage_milli=milli(decimal_of(usage.get("Amount"))),
        usage_unit=usage.get("Unit") or None,
        amount_nano=to_nanos(amount),
        currency=str(cost.get("Unit") or "USD").upper(),
        estimated=estimated,
    )


def _when(text: str) -> datetime:
    """`2025-11-20` or `2025-11-20T10:00:00Z` as an aware UTC datetime."""
    if "T" not in text:
        return midnight(date.fromisoformat(text))
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def explain(exc: Exception) -> CollectorError:
    """A Cost Explorer failure as a message that says what to fix."""
    if isinstance(exc, ClientError):
        code = aws.error_code(exc)
        if code in {"AccessDeniedException", "AccessDenied", "UnrecognizedClientException"}:
            return CollectorError(
                f"Cost Explorer: access denied ({code}); give the AWS credentials of this "
                "process ce:GetCostAndUsage, and enable Cost Explorer in the payer account"
            )
        if code == "DataUnavailableException":
            return CollectorError(
                "Cost Explorer: no data for these days yet (DataUnavailableException); "
                "a new account's data takes up to 24 hours to appear"
            )
        if code == "BillExpirationException":
            return CollectorError(
                "Cost Explorer: these days are older than Cost Explorer keeps; use a later "
                "--since, or collectors.aws_ce.initial_days"
            )
        return CollectorError(f"Cost Explorer: {code}: {exc}; check collectors.aws_ce")
    return aws.explain(exc, "Cost Explorer", "collectors.aws_ce")
