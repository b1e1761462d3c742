"""`openai`: the organization's bill from the OpenAI Admin API (an admin key, `sk-admin-…`).

- `GET /organization/costs`: daily buckets grouped by `project_id` and `line_item`; each result
  an `organization.costs.result` with `amount {value: NUMBER, currency: "usd"}`. The number is
  decoded exactly (`Decimal`, never float) and stored as nano-units of its currency. A line item
  `"gpt-4o-mini-2024-07-18, input"` gives the model (`model_raw`) and the token type; others
  (`"web search tool calls"`, storage, fine-tuning) a `cost_type` and no model.
- `GET /organization/usage/completions`: buckets of `usage_bucket_width` (1d or 1h) grouped by
  model, project and API key: token counts (`input_tokens` includes cached ones) and requests.

Both are read page after page (`next_page`); results of another `object` type or that do not
fit are counted as rejected, unknown fields ignored. How runs, windows and restatements work:
`collectors.billing`.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from app.settings import OpenAICollectorConfig, Settings
from collectors.base import CollectorError
from collectors.billing import BillingCollector, buckets, parse_result
from collectors.billing_common import CostLine, UsageLine, WindowRead, midnight, to_nanos
from collectors.http import ApiClient

log = logging.getLogger("spendguard.collectors")

COSTS = "organization/costs"
USAGE = "organization/usage/completions"
COST_RESULT = "organization.costs.result"
USAGE_RESULT = "organization.usage.completions.result"
# The APIs' page maxima, in buckets.
LIMITS = {COSTS: 180, "1d": 31, "1h": 168}

# "gpt-4o-mini-2024-07-18, input", "gpt-4o-2024-08-06, cached input", "o3, output | batch"
_MODEL_LINE = re.compile(r"^(?P<model>[A-Za-z0-9][\w.:\-/]*), (?P<kind>.+)$")
_OTHER_LINES = (
    ("web search", "web_search"),
    ("file search", "file_search"),
    ("code interpreter", "code_interpreter"),
    ("container", "code_interpreter"),
    ("storage", "storage"),
    ("training", "fine_tuning"),
    ("fine-tun", "fine_tuning"),
)


class _Loose(BaseModel):
    model_config = ConfigDict(extra="ignore")  # new fields appear; they must not stop a run


class Amount(_Loose):
    value: Decimal
    currency: str = "usd"


class CostResult(_Loose):
    amount: Amount
    line_item: str | None = None
    project_id: str | None = None


class UsageResult(_Loose):
    input_tokens: int = Field(default=0, ge=0)  # includes cached (and cache-write) tokens
    input_cached_tokens: int = Field(default=0, ge=0)
    input_cache_write_tokens: int = Field(default=0, ge=0)
    output_tokens: int = Field(default=0, ge=0)
    num_model_requests: int | None = Field(default=None, ge=0)
    model: str | None = None
    project_id: str | None = None
    api_key_id: str | None = None


class Bucket(_Loose):
    start_time: int
    end_time: int
    results: list[Any] = Field(
        default_factory=list, validation_alias=AliasChoices("results", "result")
    )


class OpenAICollector(BillingCollector[OpenAICollectorConfig]):
    name = "openai"
    provider = "openai"
    description = "OpenAI organization costs and completions usage (Admin API)"
    key_hint = (
        ' (e.g. "${OPENAI_ADMIN_KEY}"): an Admin key, sk-admin-…, that an organization Owner '
        "creates at platform.openai.com → Settings → Organization → Admin keys"
    )

    def config(self, settings: Settings) -> OpenAICollectorConfig:
        return settings.collectors.openai

    def headers(self, key: str) -> dict[str, str]:
        return {"authorization": f"Bearer {key}"}

    def read_window(
        self, client: ApiClient, config: OpenAICollectorConfig, first: date, end: date
    ) -> WindowRead:
        read = WindowRead()
        days = (end - first).days
        common: list[tuple[str, str | int]] = [
            ("start_time", int(midnight(first).timestamp())),
            ("end_time", int(midnight(end).timestamp())),
            *(("project_ids", p) for p in config.project_ids),
        ]
        costs = [*common, ("bucket_width", "1d"), ("limit", min(days, LIMITS[COSTS]))]
        costs += [("group_by", "project_id"), ("group_by", "line_item")]
        for raw in buckets(client, COSTS, costs):
            start, results = _bucket(raw, COSTS)
            for result in results:
                parsed = _object(result, COST_RESULT, read, COSTS)
                cost = None if parsed is None else parse_result(CostResult, parsed, read, COSTS)
                line = None if cost is None else _cost_line(start.date(), cost, read)
                if line is not None:
                    read.costs.append(line)

        width = config.usage_bucket_width
        per_day = 24 if width == "1h" else 1
        usage = [*common, ("bucket_width", width), ("limit", min(days * per_day, LIMITS[width]))]
        usage += [("group_by", g) for g in ("model", "project_id", "api_key_id")]
        for raw in buckets(client, USAGE, usage):
            start, results = _bucket(raw, USAGE)
            for result in results:
                parsed = _object(result, USAGE_RESULT, read, USAGE)
                counts = None if parsed is None else parse_result(UsageResult, parsed, read, USAGE)
                if counts is not None:
                    read.usage.append(_usage_line(start, width, counts))
        return read


def parse_line_item(line_item: str | None) -> tuple[str, str | None, str | None, str | None]:
    """A cost line item as (line_item, model_raw, cost_type, token_type)."""
    if line_item is None or not line_item.strip():
        return "(none)", None, None, None
    text = line_item.strip()
    match = _MODEL_LINE.match(text)
    if match:
        kind = match["kind"].strip().lower()
        cost_type = "fine_tuning" if "training" in kind else "tokens"
        return text, match["model"], cost_type, kind
    lowered = text.lower()
    kind = next((k for needle, k in _OTHER_LINES if needle in lowered), "other")
    return text, None, kind, None


def _cost_line(day: date, result: CostResult, read: WindowRead) -> CostLine | None:
    if result.line_item is None and result.amount.value == 0:
        return None  # what an empty day says: nothing billed
    try:
        nanos = to_nanos(result.amount.value)
    except ValueError:
        read.rejected += 1
        return None
    line_item, model_raw, cost_type, token_type = parse_line_item(result.line_item)
    currency = result.amount.currency.strip().upper() or "USD"
    return CostLine(
        day, line_item, model_raw, cost_type, token_type, result.project_id, nanos, currency
    )


def _usage_line(start: datetime, width: str, r: UsageResult) -> UsageLine:
    return UsageLine(
        bucket_start=start,
        bucket_width=width,
        model_raw=r.model,
        project=r.project_id,
        api_key_id=r.api_key_id,
        input_tokens=r.input_tokens,
        cache_read_tokens=r.input_cached_tokens,
        cache_write_tokens=r.input_cache_write_tokens,
        output_tokens=r.output_tokens,
        requests=r.num_model_requests,
    )


def _bucket(raw: dict[str, Any], path: str) -> tuple[datetime, list[Any]]:
    try:
        bucket = Bucket.model_validate(raw)
    except ValueError as exc:
        raise CollectorError(f"openai GET /{path}: a bucket without its times: {exc}") from None
    return datetime.fromtimestamp(bucket.start_time, UTC), bucket.results


def _object(result: Any, expected: str, read: WindowRead, path: str) -> dict[str, Any] | None:
    """The result if it is of the type this report holds; others are counted as rejected."""
    kind = result.get("object", expected) if isinstance(result, dict) else type(result).__name__
    if kind == expected:
        return dict(result)
    read.rejected += 1
    log.warning("openai GET /%s: a result of type %r, not %r: skipped", path, kind, expected)
    return None
