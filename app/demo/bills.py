"""The demo's provider bills: what OpenAI and Anthropic would invoice for the demo's traffic,
served by an in-process fake of their Admin APIs and loaded through the real collectors.

Per provider, model and UTC day: the traced cost of the demo's stored calls plus 2–6 % never
traced (seeded), split into token lines as each provider writes them (dated model names, OpenAI
amounts as JSON numbers in dollars, Anthropic's as decimal strings in cents), plus a daily
web-search line. `FakeBillingApi` serves a `Ledger` a few buckets a page; as an
`httpx.MockTransport` it runs the collectors' own fetching, paging and storing. The demo reads
the whole window (`--since` its first day); then the day two before the last is restated upward
(late usage) and a worker-style run re-reads its trailing days and replaces that day.
"""

from __future__ import annotations

import base64
import json
import random
import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
from pydantic import SecretStr
from sqlalchemy import Engine, func, select

from app.demo.catalog import MODELS
from app.settings import AnthropicCollectorConfig, OpenAICollectorConfig, Settings
from app.warehouse.tables import LlmCall
from app.warehouse.tables_billing import BilledCost
from app.warehouse.types import as_date
from collectors.anthropic import AnthropicCollector
from collectors.billing import BillingCollector
from collectors.billing_common import midnight
from collectors.openai import OpenAICollector

DAY = timedelta(days=1)
UNTRACED = (0.02, 0.06)  # share of each day's spend that no trace shows
RESTATED_BY = Decimal("1.04")  # the restated day grows by this much (usage reported late)
DEMO_KEY = "demo-admin-key"
# Relative price of each token kind, to split a model's day into lines.
OPENAI_LINES = (("input", 1.0), ("cached input", 0.5), ("output", 4.0))
ANTHROPIC_LINES = (
    ("uncached_input_tokens", "Input Tokens", 1.0),
    ("cache_read_input_tokens", "Cache Read", 0.1),
    ("cache_creation.ephemeral_5m_input_tokens", "Cache Write", 1.25),
    ("output_tokens", "Output Tokens", 5.0),
)


@dataclass(slots=True)
class Ledger:
    """A provider's bill as API results, per UTC day; `restated` replaces some days' costs
    once `restate()` is called (before, the preliminary figures are served)."""

    provider: str
    costs: dict[date, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    usage: dict[date, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    preliminary: dict[date, list[dict[str, Any]]] = field(default_factory=dict)

    def restate(self) -> None:
        self.preliminary.clear()

    def cost_results(self, day: date) -> list[dict[str, Any]]:
        return self.preliminary.get(day, self.costs.get(day, []))

    def usage_results(self, day: date) -> list[dict[str, Any]]:
        return self.usage.get(day, [])


class FakeBillingApi:
    """OpenAI's or Anthropic's cost and usage endpoints, answered from a `Ledger`."""

    def __init__(self, ledger: Ledger, *, page_size: int = 3, key: str = DEMO_KEY) -> None:
        self.ledger, self.page_size, self.key = ledger, page_size, key
        self.requests = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        openai = self.ledger.provider == "openai"
        sent = request.headers.get("authorization" if openai else "x-api-key", "")
        if sent.removeprefix("Bearer ") != self.key:
            return _json(401, {"error": {"type": "authentication_error", "message": "bad key"}})
        path, q = request.url.path, request.url.params
        if path.endswith(("/organization/costs", "/v1/organizations/cost_report")):
            results = self.ledger.cost_results
        elif path.endswith(("/organization/usage/completions", "/usage_report/messages")):
            results = self.ledger.usage_results
        else:
            return _json(404, {"error": {"message": f"no such route {path}"}})
        if q.get("bucket_width", "1d") != "1d":
            return _json(400, {"error": {"message": "this fake serves daily buckets only"}})
        if openai:
            lo = datetime.fromtimestamp(int(q["start_time"]), UTC)
            hi = datetime.fromtimestamp(int(q["end_time"]), UTC)
        else:
            lo = datetime.fromisoformat(q["starting_at"])
            hi = datetime.fromisoformat(q["ending_at"])
        days = [lo.date() + DAY * i for i in range((hi.date() - lo.date()).days)]
        offset = int(base64.b64decode(q["page"][5:])) if q.get("page") else 0
        size = min(self.page_size, int(q.get("limit", self.page_size)))
        data = [_bucket(openai, d, results(d)) for d in days[offset : offset + size]]
        more = offset + size < len(days)
        token = "page_" + base64.b64encode(str(offset + size).encode()).decode()
        page = {"data": data, "has_more": more, "next_page": token if more else None}
        return _json(200, {"object": "page", **page} if openai else page)


def demo_ledgers(engine: Engine, start: datetime, end: datetime, seed: int) -> list[Ledger]:
    """The bills of the demo's OpenAI and Anthropic calls stored in [start, end)."""
    rng = random.Random(seed * 7919 + 1)  # noqa: S311 - synthetic data
    totals: dict[tuple[str, str, date], list[int]] = defaultdict(lambda: [0] * 6)
    # Summed by the database per (provider, model, UTC day): the warehouse stores naive UTC,
    # so `date()` is the UTC day on both backends (and a benchmark's millions of calls never
    # come through Python one by one).
    utc_day = func.date(LlmCall.started_at)
    query = (
        select(
            LlmCall.provider,
            LlmCall.model,
            utc_day,
            func.count(),
            func.sum(func.coalesce(LlmCall.cost_nanousd, 0)),
            func.sum(LlmCall.input_tokens),
            func.sum(LlmCall.cache_read_tokens),
            func.sum(LlmCall.cache_write_tokens),
            func.sum(LlmCall.output_tokens),
        )
        .where(
            LlmCall.provider.in_(("openai", "anthropic")),
            LlmCall.started_at >= start,
            LlmCall.started_at < end,
        )
        .group_by(LlmCall.provider, LlmCall.model, utc_day)
    )
    with engine.connect() as conn:
        for provider, model, at, *counts in conn.execute(query):
            sums = totals[(provider, model, as_date(at))]
            for i, value in enumerate(counts):
                sums[i] += int(value or 0)
    ledgers = {p: Ledger(p) for p in ("openai", "anthropic")}
    days = sorted({day for _, _, day in totals})
    uplift = {(p, d): 1 + rng.uniform(*UNTRACED) for p in ledgers for d in days}
    for (provider, model, day), (calls, cost, inp, read, write, out) in sorted(totals.items()):
        scale = uplift[(provider, day)]
        tokens = [round(t * scale) for t in (inp - read - write, read, write, out)]
        snapshot = (MODELS[model].snapshot if model in MODELS else None) or model
        add = _openai_lines if provider == "openai" else _anthropic_lines
        add(ledgers[provider], day, snapshot, round(cost * scale), tokens, round(calls * scale))
    for day in days:
        searches = rng.randint(20, 120)
        # $25 and $10 per 1,000 searches; Anthropic bills them organization-wide.
        web = _openai_cost("web search tool calls", searches * 25_000_000)
        ledgers["openai"].costs[day].append(web)
        web = {**_anthropic_cost("Web Search", str(searches), None), "workspace_id": None}
        ledgers["anthropic"].costs[day].append({**web, "cost_type": "web_search"})
    if days:  # two days before the last: inside every run's 3-day re-read
        restated = days[max(0, len(days) - 3)]
        book = ledgers["openai"]
        book.preliminary[restated] = book.costs[restated]
        book.costs[restated] = [
            {**r, "amount": {**r["amount"], "value": _restated(r["amount"]["value"])}}
            for r in book.costs[restated]
        ]
    return list(ledgers.values())


def load_demo_bills(
    engine: Engine, settings: Settings, *, start: datetime, end: datetime, seed: int, progress: bool
) -> str:
    """Bill the demo's traffic, load it through the collectors, restate a day and re-read it;
    returns a line for the demo's summary."""
    parts: list[str] = []
    replaced = 0
    for ledger in demo_ledgers(engine, start, end, seed):
        api = FakeBillingApi(ledger)
        collector, config = _collector(ledger.provider, api, end)
        demo = settings.model_copy(
            update={"collectors": settings.collectors.model_copy(update={ledger.provider: config})}
        )
        first = collector.run(engine, demo, since=midnight(start.date()), progress=progress)
        ledger.restate()
        again = collector.run(engine, demo)  # as the worker would: the trailing days again
        if not (first.ok and again.ok):
            raise RuntimeError(f"demo bills failed to load (a bug): {first.error or again.error}")
        replaced += again.details["days_replaced"]
        with engine.connect() as conn:
            billed = conn.execute(
                select(func.coalesce(func.sum(BilledCost.amount_nano), 0)).where(
                    BilledCost.provider == ledger.provider, BilledCost.currency == "USD"
                )
            ).scalar_one()
        parts.append(f"{ledger.provider} ${Decimal(billed).scaleb(-9):.2f} ({api.requests} calls)")
    return f"bills: {', '.join(parts)} through the collectors; {replaced} restated day replaced"


def _collector(
    provider: str, api: FakeBillingApi, end: datetime
) -> tuple[BillingCollector[Any], OpenAICollectorConfig | AnthropicCollectorConfig]:
    """The provider's collector on the fake, its clock at the demo's end, and its config."""
    transport, key = httpx.MockTransport(api), SecretStr(DEMO_KEY)
    clock = lambda: end - timedelta(seconds=1)  # noqa: E731
    if provider == "openai":
        url = "https://openai.demo.invalid/v1"
        config = OpenAICollectorConfig(enabled=True, admin_key=key, base_url=url)
        return OpenAICollector(transport=transport, clock=clock), config
    url = "https://anthropic.demo.invalid"
    other = AnthropicCollectorConfig(enabled=True, admin_key=key, base_url=url)
    return AnthropicCollector(transport=transport, clock=clock), other


def _split(total: int, weights: list[float]) -> list[int]:
    """`total` in parts proportional to `weights`, summing to it exactly."""
    whole = sum(weights) or 1.0
    parts = [int(total * w / whole) for w in weights]
    parts[max(range(len(parts)), key=lambda i: weights[i])] += total - sum(parts)
    return parts


def _openai_lines(book: Ledger, day: date, model: str, cost: int, t: list[int], n: int) -> None:
    uncached, read, _, out = t
    counts = [uncached, read, out]
    amounts = _split(cost, [c * w for c, (_, w) in zip(counts, OPENAI_LINES, strict=True)])
    for (kind, _), count, amount in zip(OPENAI_LINES, counts, amounts, strict=True):
        if count:
            book.costs[day].append(_openai_cost(f"{model}, {kind}", amount))
    if out:  # embeddings have their own usage endpoint; completions only here
        book.usage[day].append(
            {
                "object": "organization.usage.completions.result",
                **{"input_tokens": uncached + read, "input_cached_tokens": read},
                **{"output_tokens": out, "num_model_requests": n, "model": model},
                **{"project_id": "proj_demo", "user_id": None, "api_key_id": "key_demo"},
                **{"batch": False, "service_tier": "default"},
            }
        )


def _anthropic_lines(book: Ledger, day: date, model: str, cost: int, t: list[int], n: int) -> None:
    amounts = _split(cost, [c * w for c, (_, _, w) in zip(t, ANTHROPIC_LINES, strict=True)])
    name = _display_name(model)
    for (token_type, label, _), count, amount in zip(ANTHROPIC_LINES, t, amounts, strict=True):
        if count:
            cents = f"{Decimal(amount).scaleb(-7):f}"  # nano-dollars as cents, exact
            result = _anthropic_cost(f"{name} Usage - {label}", cents, model)
            book.costs[day].append({**result, "token_type": token_type.split(".")[-1]})
    uncached, read, write, out = t
    book.usage[day].append(
        {
            **{"uncached_input_tokens": uncached, "cache_read_input_tokens": read},
            "cache_creation": {"ephemeral_5m_input_tokens": write, "ephemeral_1h_input_tokens": 0},
            **{"output_tokens": out, "server_tool_use": {"web_search_requests": 0}},
            **{"api_key_id": "apikey_01demo", "workspace_id": "wrkspc_01demo", "model": model},
            **{"service_tier": "standard", "context_window": "0-200k"},
        }
    )


def _openai_cost(line_item: str, nanos: int) -> dict[str, Any]:
    return {
        "object": "organization.costs.result",
        "amount": {"value": Decimal(nanos).scaleb(-9), "currency": "usd"},
        **{"line_item": line_item, "project_id": "proj_demo", "api_key_id": None},
    }


def _restated(value: Decimal) -> Decimal:
    return (value * RESTATED_BY).quantize(Decimal("1e-9"))


def _anthropic_cost(description: str, cents: str, model: str | None) -> dict[str, Any]:
    return {
        **{"currency": "USD", "amount": cents, "workspace_id": "wrkspc_01demo"},
        **{"description": description, "cost_type": "tokens", "model": model},
        **{"service_tier": "standard", "context_window": "0-200k", "token_type": None},
    }


def _display_name(model: str) -> str:
    """`claude-sonnet-4-5-20250929` → `Claude Sonnet 4.5`, as the cost report describes it."""
    words = re.sub(r"-\d{8}$", "", model).split("-")
    names = [w.capitalize() for w in words if not w.isdigit()]
    return " ".join([*names, ".".join(w for w in words if w.isdigit())]).strip()


def _bucket(openai: bool, day: date, results: list[dict[str, Any]]) -> dict[str, Any]:
    lo, hi = midnight(day), midnight(day + DAY)
    if openai:
        span = {"start_time": int(lo.timestamp()), "end_time": int(hi.timestamp())}
        return {"object": "bucket", **span, "results": results}
    iso = "%Y-%m-%dT%H:%M:%SZ"
    return {"starting_at": lo.strftime(iso), "ending_at": hi.strftime(iso), "results": results}


def _json(status: int, body: Any) -> httpx.Response:
    """A JSON answer with `Decimal` amounts written as exact JSON numbers."""
    marks: list[str] = []

    def mark(value: Any) -> str:
        if not isinstance(value, Decimal):
            raise TypeError(type(value).__name__)
        marks.append(f"{value:f}")
        return f"@decimal{len(marks) - 1}@"

    text = json.dumps(body, default=mark)
    text = re.sub(r'"@decimal(\d+)@"', lambda m: marks[int(m[1])], text)
    return httpx.Response(status, content=text, headers={"content-type": "application/json"})
