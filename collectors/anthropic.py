"""`anthropic`: the organization's bill from the Anthropic Admin API (an admin key,
`sk-ant-admin…`; headers `x-api-key` and `anthropic-version: 2023-06-01`).

- `GET /v1/organizations/cost_report`: daily buckets grouped by `workspace_id` and
  `description`; `amount` is a DECIMAL STRING IN CENTS (`"123.45"` = $1.2345), stored exactly
  as nano-units of `currency`. Each line carries `cost_type` (tokens, web_search, …), `model`
  and `token_type` when it has them. The API cannot filter this report by workspace, so
  `workspace_ids` is applied here (lines of the default workspace have none and are left out).
- `GET /v1/organizations/usage_report/messages`: buckets of `usage_bucket_width` grouped by
  model, workspace and API key: uncached input, cache reads, cache writes (5 min and 1 h) and
  output tokens; no request count.

Both are read page after page (`next_page`); results that do not fit are counted as rejected,
unknown fields ignored. How runs, windows and restatements work: `collectors.billing`.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from app.settings import AnthropicCollectorConfig, Settings
from collectors.base import CollectorError
from collectors.billing import BillingCollector, buckets, parse_result
from collectors.billing_common import CostLine, UsageLine, WindowRead, midnight, to_nanos
from collectors.http import ApiClient

COSTS = "v1/organizations/cost_report"
USAGE = "v1/organizations/usage_report/messages"
API_VERSION = "2023-06-01"
# The APIs' page maxima, in buckets.
LIMITS = {COSTS: 31, "1d": 31, "1h": 168}


class _Loose(BaseModel):
    model_config = ConfigDict(extra="ignore")  # new fields appear; they must not stop a run


class CostResult(_Loose):
    amount: Decimal  # cents, as a decimal string (a JSON number is read exactly too)
    currency: str = "USD"
    workspace_id: str | None = None
    description: str | None = None
    cost_type: str | None = None
    model: str | None = None
    token_type: str | None = None


class CacheCreation(_Loose):
    ephemeral_5m_input_tokens: int = Field(default=0, ge=0)
    ephemeral_1h_input_tokens: int = Field(default=0, ge=0)


class UsageResult(_Loose):
    uncached_input_tokens: int = Field(default=0, ge=0)
    cache_read_input_tokens: int = Field(default=0, ge=0)
    cache_creation: CacheCreation = CacheCreation()
    output_tokens: int = Field(default=0, ge=0)
    model: str | None = None
    workspace_id: str | None = None
    api_key_id: str | None = None


class Bucket(_Loose):
    starting_at: datetime
    ending_at: datetime
    results: list[Any] = Field(default_factory=list)


class AnthropicCollector(BillingCollector[AnthropicCollectorConfig]):
    name = "anthropic"
    provider = "anthropic"
    description = "Anthropic organization cost report and Messages usage (Admin API)"
    key_hint = (
        ' (e.g. "${ANTHROPIC_ADMIN_KEY}"): an Admin API key, sk-ant-admin…, that an '
        "organization admin creates at console.anthropic.com → Settings → Admin keys"
    )

    def config(self, settings: Settings) -> AnthropicCollectorConfig:
        return settings.collectors.anthropic

    def headers(self, key: str) -> dict[str, str]:
        return {"x-api-key": key, "anthropic-version": API_VERSION}

    def read_window(
        self, client: ApiClient, config: AnthropicCollectorConfig, first: date, end: date
    ) -> WindowRead:
        read = WindowRead()
        days = (end - first).days
        span: list[tuple[str, str | int]] = [
            ("starting_at", _rfc3339(midnight(first))),
            ("ending_at", _rfc3339(midnight(end))),
        ]
        workspaces = set(config.workspace_ids)
        costs = [*span, ("bucket_width", "1d"), ("limit", min(days, LIMITS[COSTS]))]
        costs += [("group_by[]", "workspace_id"), ("group_by[]", "description")]
        for raw in buckets(client, COSTS, costs):
            start, results = _bucket(raw, COSTS)
            for result in results:
                cost = parse_result(CostResult, result, read, COSTS)
                if cost is None or (workspaces and cost.workspace_id not in workspaces):
                    continue
                line = _cost_line(start.date(), cost)
                if line is None:
                    read.rejected += 1
                else:
                    read.costs.append(line)

        width = config.usage_bucket_width
        per_day = 24 if width == "1h" else 1
        usage = [*span, ("bucket_width", width), ("limit", min(days * per_day, LIMITS[width]))]
        usage += [("group_by[]", g) for g in ("model", "workspace_id", "api_key_id")]
        usage += [("workspace_ids[]", w) for w in config.workspace_ids]
        for raw in buckets(client, USAGE, usage):
            start, results = _bucket(raw, USAGE)
            for result in results:
                counts = parse_result(UsageResult, result, read, USAGE)
                if counts is not None:
                    read.usage.append(_usage_line(start, width, counts))
        return read


def _cost_line(day: date, r: CostResult) -> CostLine | None:
    try:
        nanos = to_nanos(r.amount, scale=2)  # cents
    except ValueError:
        return None
    return CostLine(
        day=day,
        line_item=(r.description or "").strip() or "(none)",
        model_raw=r.model,
        cost_type=r.cost_type,
        token_type=r.token_type,
        project=r.workspace_id,
        amount_nano=nanos,
        currency=r.currency.strip().upper() or "USD",
    )


def _usage_line(start: datetime, width: str, r: UsageResult) -> UsageLine:
    cache = r.cache_creation
    written = cache.ephemeral_5m_input_tokens + cache.ephemeral_1h_input_tokens
    return UsageLine(
        bucket_start=start,
        bucket_width=width,
        model_raw=r.model,
        project=r.workspace_id,
        api_key_id=r.api_key_id,
        # Stored as traces count it: input includes cache reads and writes.
        input_tokens=r.uncached_input_tokens + r.cache_read_input_tokens + written,
        cache_read_tokens=r.cache_read_input_tokens,
        cache_write_tokens=written,
        output_tokens=r.output_tokens,
        requests=None,
    )


def _bucket(raw: dict[str, Any], path: str) -> tuple[datetime, list[Any]]:
    try:
        bucket = Bucket.model_validate(raw)
    except ValueError as exc:
        raise CollectorError(f"anthropic GET /{path}: a bucket without its times: {exc}") from None
    start = bucket.starting_at
    start = start.replace(tzinfo=UTC) if start.tzinfo is None else start.astimezone(UTC)
    return start, bucket.results


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
