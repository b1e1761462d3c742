"""Price an LLM call: its tokens × the provider's price at the call's time.

Prices come from the `genai-prices` catalog, or from `pricing.overrides` in config (self-hosted
and fine-tuned models; an override wins over the catalog). A call whose model has no price is
returned unpriced (`cost_nanousd is None`): kept and counted, never silently priced as zero.

Speed: asking the catalog once per call costs ~300 µs, far too slow for a million spans. So the
catalog is asked once per (provider, model, price period) for the price of one token of each
kind, and a call is then priced as an exact integer sum in femto-dollars (10⁻¹⁵ USD). The price
period is the catalog's own: the `ModelPrice` object that `get_prices(timestamp)` resolves to
(start dates, time-of-day prices). Calls past the first tier threshold of a tiered price (e.g.
more than 200k input tokens), and prices that femto-dollars cannot hold exactly, take the
catalog's own calculation. Results are identical to the catalog's to the nano-dollar; tests
check that on every model of the demo catalog.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from fnmatch import fnmatchcase
from typing import Any, NamedTuple

import genai_prices
from genai_prices.types import TieredPrices

from app.errors import ConfigError
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

FEMTO_PER_USD = 10**15
FEMTO_PER_NANO = 10**6


class Price(NamedTuple):  # one per priced call: a tuple builds far faster than a frozen dataclass
    cost_nanousd: int | None
    source: str
    priced_model: str | None
    provider: str | None  # the provider the price belongs to (inferred when spans omit it)


@dataclass(frozen=True, slots=True)
class UnitPrices:
    """Femto-dollars per call and per token of each kind, valid below `max_input` tokens."""

    base: int
    input: int
    cache_read: int
    cache_write: int
    output: int
    max_input: int | None  # first tier threshold: at or above it, ask the catalog

    def cost_nanos(self, u: Usage) -> int:
        uncached = u.input_tokens - u.cache_read_tokens - u.cache_write_tokens
        femto = (
            self.base
            + uncached * self.input
            + u.cache_read_tokens * self.cache_read
            + u.cache_write_tokens * self.cache_write
            + u.output_tokens * self.output
        )
        return round_half_even(femto, FEMTO_PER_NANO)


def round_half_even(value: int, unit: int) -> int:
    """value / unit rounded half to even, in integers (value ≥ 0)."""
    q, r = divmod(value, unit)
    if r * 2 > unit or (r * 2 == unit and q % 2 == 1):
        q += 1
    return q


def _femto(amount: Decimal) -> int | None:
    scaled = amount * FEMTO_PER_USD
    return int(scaled) if scaled == scaled.to_integral_value() else None


class Pricer:
    def __init__(self, overrides: list[PriceOverride]) -> None:
        self._overrides = overrides
        self._override_units = [_override_units(o) for o in overrides]
        self._models: dict[tuple[str, str | None], tuple[Any, Any] | None] = {}
        self._units: dict[tuple[int, int], UnitPrices | None] = {}
        self._resolved: dict[
            tuple[str | None, str, str | None], Price | UnitPrices | tuple[Any, Any, str]
        ] = {}
        self._known_providers = frozenset(
            p.id for p in genai_prices.data_snapshot.get_snapshot().providers
        )

    def price(self, usage: Usage, at: datetime) -> Price:
        model = usage.pricing_model or usage.model
        if model is None:
            return Price(None, SOURCE_UNPRICED, None, usage.provider)
        key = (usage.provider, model, usage.model)
        try:
            found = self._resolved[key]
        except KeyError:
            if len(self._resolved) >= 10_000:
                self._resolved.clear()
            found = self._resolved[key] = self._resolve(usage.provider, model, usage.model)
        if isinstance(found, Price):  # unpriced, whatever the call
            return found
        if isinstance(found, UnitPrices):  # an override
            return Price(found.cost_nanos(usage), SOURCE_OVERRIDE, model, usage.provider)
        provider, info, provider_name = found
        units = self._units_for(provider, info, at)
        if units is not None and (units.max_input is None or usage.input_tokens < units.max_input):
            nanos = units.cost_nanos(usage)
        else:
            calc = info.calc_price(_catalog_usage(usage), provider, genai_request_timestamp=at)
            nanos = usd_to_nanos(calc.total_price)
        return Price(nanos, SOURCE_CATALOG, model, provider_name)

    def _resolve(
        self, provider_name: str | None, model: str, requested: str | None
    ) -> Price | UnitPrices | tuple[Any, Any, str]:
        """What prices calls of (provider, model, requested model), whatever their tokens and
        time: an override's unit prices, the catalog's (provider, model info, provider name
        stored), or an unpriced `Price`. Remembered per triple: a workload has few of them."""
        for override, units in zip(self._overrides, self._override_units, strict=True):
            if _matches(override, provider_name, model, requested):
                return units
        unpriced = Price(None, SOURCE_UNPRICED, None, provider_name)
        provider_id = _CATALOG_PROVIDERS.get(provider_name) if provider_name else None
        if provider_name and provider_id is None:
            if provider_name not in self._known_providers:
                # A provider the catalog does not know (e.g. self-hosted vLLM): never guess a
                # price from another provider's model of the same name.
                return unpriced
            provider_id = provider_name
        found = self._lookup(model, provider_id)
        if found is None:
            return unpriced
        provider, info = found
        return provider, info, provider_name or _otel_provider_name(provider.id)

    def _lookup(self, model: str, provider_id: str | None) -> tuple[Any, Any] | None:
        key = (model, provider_id)
        if key not in self._models:
            snapshot = genai_prices.data_snapshot.get_snapshot()
            try:
                self._models[key] = snapshot.find_provider_model(model, None, provider_id, None)
            except LookupError:
                self._models[key] = None
        return self._models[key]

    def _units_for(self, provider: Any, info: Any, at: datetime) -> UnitPrices | None:
        model_price = info.get_prices(at)  # the price period: one object per period
        key = (id(info), id(model_price))
        if key not in self._units:
            self._units[key] = _catalog_units(provider, info, model_price, at)
        return self._units[key]


def _catalog_usage(u: Usage) -> genai_prices.Usage:
    return genai_prices.Usage(
        input_tokens=u.input_tokens,
        cache_read_tokens=u.cache_read_tokens,
        cache_write_tokens=u.cache_write_tokens,
        output_tokens=u.output_tokens,
    )


def _catalog_units(provider: Any, info: Any, model_price: Any, at: datetime) -> UnitPrices | None:
    """One token of each kind priced by the catalog itself; None if not exact in femto-USD."""

    def total(**counts: int) -> Decimal:
        calc = info.calc_price(genai_prices.Usage(**counts), provider, genai_request_timestamp=at)
        return Decimal(calc.total_price)

    base = total()
    probes = [
        base,
        total(input_tokens=1) - base,
        total(input_tokens=1, cache_read_tokens=1) - base,
        total(input_tokens=1, cache_write_tokens=1) - base,
        total(output_tokens=1) - base,
    ]
    femtos = [_femto(p) for p in probes]
    if any(f is None or f < 0 for f in femtos):
        return None
    starts = [
        tier.start
        for value in vars(model_price).values()
        if isinstance(value, TieredPrices)
        for tier in value.tiers
    ]
    b, i, r, w, o = (int(f or 0) for f in femtos)
    return UnitPrices(b, i, r, w, o, max_input=min(starts) if starts else None)


def _override_units(o: PriceOverride) -> UnitPrices:
    def per_token(per_mtok: str | None, default: str) -> int:
        femto = _femto(Decimal(per_mtok if per_mtok is not None else default) / 1_000_000)
        if femto is None:  # more than 9 decimals per million tokens: refuse rather than round
            raise ConfigError(
                f"pricing.overrides: the price for {o.model!r} has more than 9 decimal places "
                "per million tokens; round it to 9"
            )
        return femto

    return UnitPrices(
        base=0,
        input=per_token(o.input_per_mtok, "0"),
        cache_read=per_token(o.cache_read_per_mtok, o.input_per_mtok),
        cache_write=per_token(o.cache_write_per_mtok, o.input_per_mtok),
        output=per_token(o.output_per_mtok, "0"),
        max_input=None,
    )


def _matches(o: PriceOverride, provider: str | None, model: str, requested: str | None) -> bool:
    if o.provider is not None and provider is not None and o.provider.lower() != provider:
        return False
    return fnmatchcase(model, o.model) or (
        requested is not None and fnmatchcase(requested, o.model)
    )


def _otel_provider_name(catalog_id: str) -> str:
    for otel, cat in _CATALOG_PROVIDERS.items():
        if cat == catalog_id:
            return otel
    return catalog_id
