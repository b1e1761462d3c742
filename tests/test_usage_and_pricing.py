"""Reading token usage from span attributes, and pricing it exactly."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import genai_prices
import pytest

from app.errors import InputError
from app.money import nanos_to_usd
from app.pricing import SOURCE_CATALOG, SOURCE_OVERRIDE, SOURCE_UNPRICED, Pricer
from app.settings import PriceOverride
from app.traces.spans import Span
from app.traces.usage import extract_usage, pricing_model

AT = datetime(2025, 11, 20, 12, tzinfo=UTC)


def _span(**attrs: object) -> Span:
    return Span("a" * 32, "b" * 16, None, "chat", 3, 1, 2, attributes=dict(attrs))  # type: ignore[arg-type]


def test_current_semconv_with_cache_reads() -> None:
    u = extract_usage(
        _span(
            **{
                "gen_ai.provider.name": "openai",
                "gen_ai.request.model": "gpt-4o-mini",
                "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
                "gen_ai.usage.input_tokens": 1850,
                "gen_ai.usage.cache_read.input_tokens": 1024,
                "gen_ai.usage.output_tokens": 212,
                "gen_ai.usage.reasoning.output_tokens": 12,
            }
        )
    )
    assert u is not None
    assert (u.family, u.provider, u.model, u.pricing_model) == (
        "otel-genai",
        "openai",
        "gpt-4o-mini",
        "gpt-4o-mini-2024-07-18",
    )
    assert (u.input_tokens, u.cache_read_tokens, u.output_tokens, u.reasoning_tokens) == (
        1850,
        1024,
        212,
        12,
    )


def test_deprecated_names_and_gen_ai_system() -> None:
    u = extract_usage(
        _span(
            **{
                "gen_ai.system": "openai",
                "gen_ai.request.model": "gpt-4o",
                "gen_ai.usage.prompt_tokens": 900,
                "gen_ai.usage.completion_tokens": 150,
            }
        )
    )
    assert u is not None
    assert (u.provider, u.input_tokens, u.output_tokens) == ("openai", 900, 150)


def test_openinference_prompt_includes_cache() -> None:
    u = extract_usage(
        _span(
            **{
                "llm.system": "anthropic",
                "llm.model_name": "claude-3-5-haiku-20241022",
                "llm.token_count.prompt": 1200,
                "llm.token_count.prompt_details.cache_read": 200,
                "llm.token_count.completion": 80,
            }
        )
    )
    assert u is not None
    assert (u.family, u.input_tokens, u.cache_read_tokens) == ("openinference", 1200, 200)


def test_span_without_usage_is_not_a_call() -> None:
    assert extract_usage(_span(**{"http.route": "/x", "gen_ai.request.model": "gpt-4o"})) is None


def test_non_integer_token_count_is_refused_loudly() -> None:
    with pytest.raises(InputError, match="token count 'lots'"):
        extract_usage(_span(**{"gen_ai.usage.input_tokens": "lots"}))


@pytest.mark.parametrize(
    ("request_model", "response_model", "expected"),
    [
        ("gpt-4o-mini", "gpt-4o-mini-2024-07-18", "gpt-4o-mini-2024-07-18"),
        ("claude-sonnet-4-5", "claude-sonnet-4-5-20250929", "claude-sonnet-4-5-20250929"),
        ("gpt-4o", "gpt-4o-mini-2024-07-18", "gpt-4o"),  # not a snapshot of what was asked
        ("gpt-4o", None, "gpt-4o"),
        (None, "gpt-4o-2024-08-06", "gpt-4o-2024-08-06"),
    ],
)
def test_pricing_model_prefers_dated_snapshot(
    request_model: str | None, response_model: str | None, expected: str
) -> None:
    assert pricing_model(request_model, response_model) == expected


def test_catalog_price_matches_genai_prices_exactly() -> None:
    attrs = {
        "gen_ai.provider.name": "anthropic",
        "gen_ai.request.model": "claude-sonnet-4-5",
        "gen_ai.usage.input_tokens": 3400,
        "gen_ai.usage.cache_creation.input_tokens": 2000,
        "gen_ai.usage.cache_read.input_tokens": 1000,
        "gen_ai.usage.output_tokens": 640,
    }
    u = extract_usage(_span(**attrs))
    assert u is not None
    price = Pricer([]).price(u, AT)
    expected = genai_prices.calc_price(
        genai_prices.Usage(
            input_tokens=3400, cache_write_tokens=2000, cache_read_tokens=1000, output_tokens=640
        ),
        "claude-sonnet-4-5",
        provider_id="anthropic",
        genai_request_timestamp=AT,
    ).total_price
    assert price.source == SOURCE_CATALOG
    assert price.cost_nanousd is not None
    assert nanos_to_usd(price.cost_nanousd) == expected
    # By hand: 400 uncached × $3 + 1000 read × $0.30 + 2000 written × $3.75 + 640 × $15, per M.
    assert expected == Decimal("0.0012") + Decimal("0.0003") + Decimal("0.0075") + Decimal("0.0096")


def test_embeddings_are_priced_on_input_only() -> None:
    u = extract_usage(
        _span(
            **{
                "gen_ai.operation.name": "embeddings",
                "gen_ai.provider.name": "openai",
                "gen_ai.request.model": "text-embedding-3-small",
                "gen_ai.usage.input_tokens": 5000,
            }
        )
    )
    assert u is not None
    price = Pricer([]).price(u, AT)
    assert price.cost_nanousd is not None
    assert nanos_to_usd(price.cost_nanousd) == Decimal("0.0001")  # 5000 × $0.02/M


@pytest.mark.parametrize(
    ("provider", "model"),
    [("openai", "gpt-99-imaginary"), ("vllm", "llama-3.1-70b"), ("vllm", "gpt-4o")],
)
def test_unknown_model_or_provider_is_unpriced_not_zero(provider: str, model: str) -> None:
    u = extract_usage(
        _span(
            **{
                "gen_ai.provider.name": provider,
                "gen_ai.request.model": model,
                "gen_ai.usage.input_tokens": 10,
                "gen_ai.usage.output_tokens": 1,
            }
        )
    )
    assert u is not None
    price = Pricer([]).price(u, AT)
    assert (price.cost_nanousd, price.source) == (None, SOURCE_UNPRICED)


def test_override_glob_wins_over_catalog_with_cache_prices() -> None:
    pricer = Pricer(
        [
            PriceOverride(
                provider="openai",
                model="ft:gpt-4o-mini:acme:*",
                input_per_mtok="0.30",
                output_per_mtok="1.20",
                cache_read_per_mtok="0.15",
            )
        ]
    )
    u = extract_usage(
        _span(
            **{
                "gen_ai.provider.name": "openai",
                "gen_ai.request.model": "ft:gpt-4o-mini:acme:support:abc123",
                "gen_ai.usage.input_tokens": 1000,
                "gen_ai.usage.cache_read.input_tokens": 400,
                "gen_ai.usage.output_tokens": 100,
            }
        )
    )
    assert u is not None
    price = pricer.price(u, AT)
    assert price.source == SOURCE_OVERRIDE
    assert price.cost_nanousd is not None
    # 600 × 0.30 + 400 × 0.15 + 100 × 1.20 = 360 per M tokens → $0.00036
    assert nanos_to_usd(price.cost_nanousd) == Decimal("0.00036")


def test_call_without_provider_gets_the_catalogs() -> None:
    u = extract_usage(
        _span(
            **{
                "gen_ai.request.model": "gpt-4o",
                "gen_ai.usage.input_tokens": 1000,
                "gen_ai.usage.output_tokens": 100,
            }
        )
    )
    assert u is not None
    price = Pricer([]).price(u, AT)
    assert (price.provider, price.source) == ("openai", SOURCE_CATALOG)
