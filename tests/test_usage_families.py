"""Every token usage family of formats.md §1, read with its own cache semantics and priced.

One fixture per family under tests/fixtures/otlp/families/ (OTLP JSON as the Collector's file
exporter writes it). Expected costs are computed by hand from genai-prices' published per-million
prices, written out in `PRICES` (a test checks them against the catalog).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import genai_prices
import pytest
from sqlalchemy import Engine

from app.ingest import ingest_paths
from app.money import nanos_to_usd
from app.pricing import SOURCE_CATALOG, Pricer
from app.reports.unit_costs import unit_costs
from app.settings import AttributionConfig, Settings, load_settings
from app.settings.models import DEFAULT_USER_ATTRIBUTES
from app.traces.otlp_json import decode_json
from app.traces.spans import Span
from app.traces.usage import (
    Usage,
    UsageFamily,
    extract_usage,
    families_from_config,
)
from tests.conftest import FIXTURES

FAMILIES = FIXTURES / "otlp" / "families"
AT = datetime(2025, 11, 20, 10, tzinfo=UTC)  # when the fixtures' calls were made

# formats.md §1's home-grown family, and Anthropic's own usage copied as is (input EXCLUDES the
# cache), each declared in attribution.families.
HOMEGROWN: dict[str, Any] = {
    "name": "acme-llm",
    "model": ["llm.model"],
    "input_tokens": ["llm.tokens_prompt"],
    "output_tokens": ["llm.tokens_output"],
    "provider_value": "openai",
}
ANTHROPIC_NATIVE: dict[str, Any] = {
    "name": "acme-anthropic",
    "model": ["acme.anthropic.model"],
    "input_tokens": ["acme.anthropic.usage.input_tokens"],
    "output_tokens": ["acme.anthropic.usage.output_tokens"],
    "cache_read_tokens": ["acme.anthropic.usage.cache_read_input_tokens"],
    "cache_write_tokens": ["acme.anthropic.usage.cache_creation_input_tokens"],
    "input_includes_cache": False,
    "provider_value": "anthropic",
}
CONFIGURED = families_from_config(
    AttributionConfig.model_validate({"families": [HOMEGROWN, ANTHROPIC_NATIVE]}).families
)


@dataclass(frozen=True)
class MTokPrices:
    """USD per million tokens; None where the catalog has no such price (input's applies)."""

    input: str
    cache_read: str | None
    cache_write: str | None
    output: str | None


# genai-prices' published prices for the models the fixtures call (2025-11-20).
PRICES = {
    ("anthropic", "claude-sonnet-4-5"): MTokPrices("3", "0.3", "3.75", "15"),
    ("anthropic", "claude-3-5-haiku-20241022"): MTokPrices("0.8", "0.08", "1", "4"),
    ("openai", "o4-mini"): MTokPrices("1.1", "0.275", None, "4.4"),
    ("openai", "gpt-4o-2024-08-06"): MTokPrices("2.5", "1.25", None, "10"),
    ("openai", "gpt-4o-mini"): MTokPrices("0.15", "0.075", None, "0.6"),
    ("openai", "gpt-3.5-turbo-0125"): MTokPrices("0.5", None, None, "1.5"),
    ("openai", "text-embedding-3-small"): MTokPrices("0.02", None, None, None),
    ("aws", "anthropic.claude-3-5-sonnet-20241022-v2:0"): MTokPrices("3", "0.3", "3.75", "15"),
    ("google", "gemini-2.0-flash"): MTokPrices("0.1", "0.025", None, "0.4"),
}


@dataclass(frozen=True)
class Call:
    fixture: str
    span_id: str
    family: str
    provider: str | None
    model: str
    pricing_model: str
    input: int  # including cache reads and writes
    cache_read: int
    cache_write: int
    output: int  # including reasoning
    reasoning: int
    prices: tuple[str, str]  # key of PRICES
    usd: Decimal  # worked out by hand below each line

    def by_hand(self) -> Decimal:
        p = PRICES[self.prices]
        uncached = self.input - self.cache_read - self.cache_write
        per_m = (
            uncached * Decimal(p.input)
            + self.cache_read * Decimal(p.cache_read or p.input)
            + self.cache_write * Decimal(p.cache_write or p.input)
            + self.output * Decimal(p.output or "0")
        )
        return per_m / 1_000_000


# fmt: off
CALLS = [
    Call("otel_genai.json", "a100000000000002", "otel-genai", "anthropic", "claude-sonnet-4-5",
         "claude-sonnet-4-5-20250929", 3400, 1000, 2000, 640, 0,
         ("anthropic", "claude-sonnet-4-5"), Decimal("0.0186")),
    # 400 × $3 + 1000 × $0.30 + 2000 × $3.75 + 640 × $15 = $18,600 per M
    Call("otel_genai.json", "a100000000000003", "otel-genai", "openai", "o4-mini",
         "o4-mini-2025-04-16", 2000, 1500, 0, 900, 600,
         ("openai", "o4-mini"), Decimal("0.0049225")),
    # 500 × $1.10 + 1500 × $0.275 + 900 × $4.40 (reasoning is output) = $4,922.50 per M
    Call("otel_genai_deprecated.json", "a200000000000002", "otel-genai", "openai", "gpt-4o",
         "gpt-4o-2024-08-06", 900, 0, 0, 150, 0,
         ("openai", "gpt-4o-2024-08-06"), Decimal("0.00375")),
    # 900 × $2.50 + 150 × $10 = $3,750 per M
    Call("openllmetry_old.json", "a300000000000002", "openllmetry", "openai", "gpt-3.5-turbo",
         "gpt-3.5-turbo-0125", 1200, 0, 0, 300, 0,
         ("openai", "gpt-3.5-turbo-0125"), Decimal("0.00105")),
    # 1200 × $0.50 + 300 × $1.50 = $1,050 per M
    Call("openllmetry_midera.json", "a400000000000002", "otel-genai", "anthropic",
         "claude-3-5-haiku-20241022", "claude-3-5-haiku-20241022", 5000, 4000, 800, 250, 0,
         ("anthropic", "claude-3-5-haiku-20241022"), Decimal("0.00228")),
    # 200 × $0.80 + 4000 × $0.08 + 800 × $1 + 250 × $4 = $2,280 per M
    Call("openinference.json", "a500000000000002", "openinference", "anthropic",
         "claude-3-5-haiku-20241022", "claude-3-5-haiku-20241022", 1500, 200, 800, 80, 0,
         ("anthropic", "claude-3-5-haiku-20241022"), Decimal("0.001536")),
    # 500 × $0.80 + 200 × $0.08 + 800 × $1 + 80 × $4 = $1,536 per M
    Call("litellm.json", "a600000000000002", "otel-genai", "aws.bedrock",
         "anthropic.claude-3-5-sonnet-20241022-v2:0", "anthropic.claude-3-5-sonnet-20241022-v2:0",
         2000, 0, 0, 200, 0,
         ("aws", "anthropic.claude-3-5-sonnet-20241022-v2:0"), Decimal("0.009")),
    # 2000 × $3 + 200 × $15 = $9,000 per M (LiteLLM reports no cache split)
    Call("litellm.json", "a600000000000003", "otel-genai", "gcp.vertex_ai", "gemini-2.0-flash",
         "gemini-2.0-flash", 10000, 0, 0, 500, 0,
         ("google", "gemini-2.0-flash"), Decimal("0.0012")),
    # 10000 × $0.10 + 500 × $0.40 = $1,200 per M
    Call("langfuse.json", "a700000000000002", "langfuse", None, "gpt-4o-mini-2024-07-18",
         "gpt-4o-mini-2024-07-18", 2000, 1536, 0, 300, 0,
         ("openai", "gpt-4o-mini"), Decimal("0.0003648")),
    # OpenAI usage, prompt inclusive: 464 × $0.15 + 1536 × $0.075 + 300 × $0.60 = $364.80 per M
    Call("langfuse.json", "a700000000000003", "langfuse", None, "claude-3-5-haiku-20241022",
         "claude-3-5-haiku-20241022", 5050, 4000, 1000, 100, 0,
         ("anthropic", "claude-3-5-haiku-20241022"), Decimal("0.00176")),
    # Langfuse buckets, input exclusive: 50 × $0.80 + 4000 × $0.08 + 1000 × $1 + 100 × $4
    Call("langfuse.json", "a700000000000004", "langfuse", None, "o4-mini", "o4-mini",
         1000, 700, 0, 100, 60, ("openai", "o4-mini"), Decimal("0.0009625")),
    # LangChain buckets: (300 + 700 read) in, (40 + 60 reasoning) out:
    # 300 × $1.10 + 700 × $0.275 + 100 × $4.40 = $962.50 per M
    Call("embeddings.json", "a800000000000002", "otel-genai", "openai", "text-embedding-3-small",
         "text-embedding-3-small", 5000, 0, 0, 0, 0,
         ("openai", "text-embedding-3-small"), Decimal("0.0001")),
    # 5000 × $0.02 = $100 per M
    Call("homegrown.json", "a900000000000002", "acme-llm", "openai", "gpt-4o-mini",
         "gpt-4o-mini", 4000, 0, 0, 500, 0, ("openai", "gpt-4o-mini"), Decimal("0.0009")),
    # 4000 × $0.15 + 500 × $0.60 = $900 per M
    Call("anthropic_native.json", "b100000000000002", "acme-anthropic", "anthropic",
         "claude-sonnet-4-5", "claude-sonnet-4-5", 3400, 1000, 2000, 640, 0,
         ("anthropic", "claude-sonnet-4-5"), Decimal("0.0186")),
    # Anthropic's input_tokens (400) + cache: the same call as the first, the same cost
]
# fmt: on


def fixture_spans(name: str) -> dict[str, Span]:
    decoded = decode_json((FAMILIES / name).read_bytes(), name)
    assert not decoded.rejected
    return {s.span_id: s for s in decoded.spans}


def bare_span(**attrs: object) -> Span:
    return Span("c" * 32, "d" * 16, None, "call", 3, 1, 2, attributes=dict(attrs))  # type: ignore[arg-type]


def test_hand_prices_are_the_catalogs() -> None:
    snapshot = genai_prices.data_snapshot.get_snapshot()

    def base(value: Any) -> Decimal | None:
        price: Decimal | None = getattr(value, "base", value)  # tiered prices: the first tier's
        return price

    def dec(value: str | None) -> Decimal | None:
        return None if value is None else Decimal(value)

    for (provider, model), hand in PRICES.items():
        _, info = snapshot.find_provider_model(model, None, provider, None)
        p = info.get_prices(AT)
        catalog = (base(p.input_mtok), base(p.cache_read_mtok), base(p.cache_write_mtok))
        assert (*catalog, base(p.output_mtok)) == (
            dec(hand.input),
            dec(hand.cache_read),
            dec(hand.cache_write),
            dec(hand.output),
        ), model


def test_every_fixture_is_exercised() -> None:
    assert {c.fixture for c in CALLS} == {p.name for p in FAMILIES.glob("*.json")}


@pytest.mark.parametrize("call", CALLS, ids=lambda c: f"{c.fixture}:{c.span_id[-1]}")
def test_family_is_read_with_its_cache_semantics_and_priced(call: Call) -> None:
    span = fixture_spans(call.fixture)[call.span_id]
    usage = extract_usage(span, CONFIGURED)
    assert usage == Usage(
        family=call.family,
        provider=call.provider,
        model=call.model,
        response_model=usage.response_model if usage else None,
        pricing_model=call.pricing_model,
        operation=usage.operation if usage else None,
        input_tokens=call.input,
        output_tokens=call.output,
        cache_read_tokens=call.cache_read,
        cache_write_tokens=call.cache_write,
        reasoning_tokens=call.reasoning,
    )
    price = Pricer([]).price(usage, span.started_at)
    assert price.source == SOURCE_CATALOG
    assert price.cost_nanousd is not None
    assert call.usd == call.by_hand()
    assert nanos_to_usd(price.cost_nanousd) == call.usd


def test_only_llm_spans_are_calls() -> None:
    for path in FAMILIES.glob("*.json"):
        spans = fixture_spans(path.name)
        calls = {s.span_id for s in spans.values() if extract_usage(s, CONFIGURED)}
        assert calls == {c.span_id for c in CALLS if c.fixture == path.name}


def test_home_grown_families_need_configuring() -> None:
    assert extract_usage(fixture_spans("homegrown.json")["a900000000000002"]) is None
    native = fixture_spans("anthropic_native.json")["b100000000000002"]
    assert extract_usage(native) is None


def test_anthropic_cache_rule_input_excluding_cache_costs_what_the_otel_span_costs() -> None:
    otel = extract_usage(fixture_spans("otel_genai.json")["a100000000000002"])
    native = extract_usage(fixture_spans("anthropic_native.json")["b100000000000002"], CONFIGURED)
    assert otel is not None and native is not None
    assert native.input_tokens == otel.input_tokens == 3400
    pricer = Pricer([])
    assert pricer.price(native, AT).cost_nanousd == pricer.price(otel, AT).cost_nanousd
    # Even a family that wrongly claimed its input includes the cache is read right here:
    # 400 input tokens cannot include 1000 + 2000 cached ones.
    wrong = UsageFamily(**{**_family_fields(CONFIGURED[1]), "input_includes_cache": True})
    misread = extract_usage(fixture_spans("anthropic_native.json")["b100000000000002"], (wrong,))
    assert misread is not None
    assert misread.input_tokens == 3400


def _family_fields(family: UsageFamily) -> dict[str, Any]:
    return {
        name: getattr(family, name)
        for name in family.__dataclass_fields__
        if family.__dataclass_fields__[name].init
    }


# ── end to end: files → warehouse → unit costs (SQLite and PostgreSQL) ─────────────────────────


def _settings() -> Settings:
    return Settings(
        attribution={
            "user_attributes": [
                *DEFAULT_USER_ATTRIBUTES,
                "traceloop.association.properties.user_id",
            ],
            "families": [HOMEGROWN, ANTHROPIC_NATIVE],
        }
    )


def test_every_family_end_to_end(engine: Engine) -> None:
    paths = sorted(FAMILIES.glob("*.json"))
    result = ingest_paths(engine, _settings(), paths)
    assert result.ok
    assert (result.calls_new, result.unpriced_calls, result.quarantined) == (len(CALLS), 0, 0)

    endpoints = {r.group["endpoint"]: r for r in unit_costs(engine, ["endpoint"])}
    assert len(endpoints) == len(paths)
    for path in paths:
        calls = [c for c in CALLS if c.fixture == path.name]
        (root,) = (s for s in fixture_spans(path.name).values() if s.parent_span_id is None)
        row = endpoints[str(root.attributes["http.route"])]
        assert (row.requests, row.llm_calls, row.unpriced_calls) == (1, len(calls), 0)
        assert row.cost_usd == sum(c.usd for c in calls), path.name
        assert row.input_tokens == sum(c.input for c in calls)

    models = {r.group["model"]: r for r in unit_costs(engine, ["model"])}
    assert models["claude-sonnet-4-5"].cost_usd == Decimal("0.0186") * 2
    assert models["claude-sonnet-4-5"].requests == 2

    users = {r.group["user"]: r.cost_usd for r in unit_costs(engine, ["user"])}
    assert users["u-lite"] == Decimal("0.009") + Decimal("0.0012")  # llm.user (LiteLLM)
    assert users["u-old"] == Decimal("0.00105")  # llm.user (OpenLLMetry)
    assert users["u-mid"] == Decimal("0.00228")  # traceloop.association.properties.user_id
    assert users["u-oi"] == Decimal("0.001536")  # user.id (OpenInference)
    assert users["u-lf"] == Decimal("0.0003648") + Decimal("0.00176") + Decimal("0.0009625")

    providers = {r.group["provider"]: r.cost_usd for r in unit_costs(engine, ["provider"])}
    assert providers["aws.bedrock"] == Decimal("0.009")
    assert providers["gcp.vertex_ai"] == Decimal("0.0012")


def test_a_family_from_the_config_file_end_to_end(engine: Engine, tmp_path: Path) -> None:
    config = tmp_path / "spendguard.yaml"
    config.write_text(
        "attribution:\n"
        "  families:\n"
        "    - name: acme-llm\n"
        "      model: [llm.model]\n"
        "      input_tokens: [llm.tokens_prompt]\n"
        "      output_tokens: [llm.tokens_output]\n"
        "      provider_value: openai\n"
    )
    settings = load_settings(config, environ={})
    result = ingest_paths(engine, settings, [FAMILIES / "homegrown.json"])
    assert (result.calls_new, result.unpriced_calls) == (1, 0)
    (row,) = unit_costs(engine, ["model", "provider"])
    assert row.group == {"model": "gpt-4o-mini", "provider": "openai"}
    assert row.cost_usd == Decimal("0.0009")
    assert (row.input_tokens, row.output_tokens) == (4000, 500)
