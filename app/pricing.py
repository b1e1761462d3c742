"""Price an LLM call: its tokens × the provider's price at the call's time.

Prices come from the `genai-prices` catalog, or from `pricing.overrides` in config (self-hosted
and fine-tuned models; an override wins over the catalog). A call whose model has no price is
returned unpriced (`cost_nanousd is None`): kept and counted, never silently priced as zero.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from fnmatch import fnmatchcase
from functools import lru_cache

import genai_prices

from app.money import usd_to_nanos
from app.settings import PriceOverride
from app.traces.usage import Usage

# OpenTelemetry `gen_ai.provider.name` values → genai-prices provider ids.
_CATALOG_PROVIDERS = {
    "openai": "openai",
    "anthropic": "anthropic",
    "aws.bedrock": "aws",
    "azure.ai.openai": "azure",
    "azure.ai.inference": "azure",
    "gcp.gen_ai": "google",
    "gcp.vertex_ai": "google",
    "gcp.gemini": "google",
    "google": "google",
    "cohere": "cohere",
    "deepseek": "deepseek",
    "groq": "groq",
    "mistral_ai": "mistral",
    "perplexity": "perplexity",
    "x_ai": "x-ai",
    "openrouter": "openrouter",
    "together": "together",
    "fireworks": "fireworks",
}

SOURCE_CATALOG = "catalog"
SOURCE_OVERRIDE = "override"
SOURCE_UNPRICED = "unpriced"


@dataclass(frozen=True, slots=True)
class Price:
    cost_nanousd: int | None
    source: str
    priced_model: str | None
    provider: str | None  # the provider the price belongs to (inferred when spans omit it)


class Pricer:
    def __init__(self, overrides: list[PriceOverride]) -> None:
        self._overrides = overrides

    def price(self, usage: Usage, at: datetime) -> Price:
        model = usage.pricing_model or usage.model
        if model is None:
            return Price(None, SOURCE_UNPRICED, None, usage.provider)
        override = self._override_for(usage.provider, model, usage.model)
        if override is not None:
            return Price(_override_cost(override, usage), SOURCE_OVERRIDE, model, usage.provider)
        return _catalog_price(usage, model, at)

    def _override_for(
        self, provider: str | None, model: str, requested: str | None
    ) -> PriceOverride | None:
        for o in self._overrides:
            if o.provider is not None and provider is not None and o.provider.lower() != provider:
                continue
            if fnmatchcase(model, o.model) or (requested and fnmatchcase(requested, o.model)):
                return o
        return None


def _override_cost(o: PriceOverride, u: Usage) -> int:
    input_price = Decimal(o.input_per_mtok)
    read_price = Decimal(o.cache_read_per_mtok) if o.cache_read_per_mtok else input_price
    write_price = Decimal(o.cache_write_per_mtok) if o.cache_write_per_mtok else input_price
    uncached = u.input_tokens - u.cache_read_tokens - u.cache_write_tokens
    total = (
        uncached * input_price
        + u.cache_read_tokens * read_price
        + u.cache_write_tokens * write_price
        + u.output_tokens * Decimal(o.output_per_mtok)
    )
    return usd_to_nanos(total / 1_000_000)


def _catalog_price(u: Usage, model: str, at: datetime) -> Price:
    provider_id = _CATALOG_PROVIDERS.get(u.provider) if u.provider else None
    if u.provider and provider_id is None and u.provider not in _catalog_provider_ids():
        # A provider the catalog does not know (e.g. self-hosted vLLM): never guess a price
        # from another provider's model of the same name.
        return Price(None, SOURCE_UNPRICED, None, u.provider)
    try:
        calc = genai_prices.calc_price(
            genai_prices.Usage(
                input_tokens=u.input_tokens,
                cache_read_tokens=u.cache_read_tokens,
                cache_write_tokens=u.cache_write_tokens,
                output_tokens=u.output_tokens,
            ),
            model,
            provider_id=provider_id or u.provider,
            genai_request_timestamp=at,
        )
    except LookupError:
        return Price(None, SOURCE_UNPRICED, None, u.provider)
    provider = u.provider or _otel_provider_name(calc.provider.id)
    return Price(usd_to_nanos(calc.total_price), SOURCE_CATALOG, model, provider)


@lru_cache(maxsize=1)
def _catalog_provider_ids() -> frozenset[str]:
    snapshot = genai_prices.data_snapshot.get_snapshot()
    return frozenset(p.id for p in snapshot.providers)


def _otel_provider_name(catalog_id: str) -> str:
    for otel, cat in _CATALOG_PROVIDERS.items():
        if cat == catalog_id:
            return otel
    return catalog_id
