"""The cached per-token prices give exactly what the catalog gives, call by call."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import genai_prices
import pytest

from app.money import usd_to_nanos
from app.pricing import Pricer, round_half_even
from app.traces.usage import Usage

MODELS = [
    ("openai", "gpt-4o-mini"),
    ("openai", "gpt-4o-mini-2024-07-18"),
    ("openai", "gpt-4o"),
    ("openai", "gpt-4.1"),
    ("openai", "o4-mini"),
    ("openai", "text-embedding-3-small"),
    ("anthropic", "claude-sonnet-4-5"),  # tiered above 200k input tokens
    ("anthropic", "claude-haiku-4-5"),
    ("anthropic", "claude-opus-4-1"),
    ("anthropic", "claude-3-5-haiku-20241022"),
    ("deepseek", "deepseek-chat"),  # off-peak prices by time of day
    ("gcp.vertex_ai", "gemini-2.5-pro"),  # tiered
]


def _usage(provider: str, model: str, rng: random.Random) -> Usage:
    inp = rng.choice([0, 1, 7, 999, 4321, 150_000, 199_999, 200_000, 250_000, 1_000_000])
    read = rng.randint(0, inp // 2) if inp else 0
    write = rng.randint(0, (inp - read) // 3) if inp - read > 0 else 0
    return _u(provider, model, inp, rng.randint(0, 20_000), read, write)


def _u(provider: str, model: str, inp: int, out: int, read: int = 0, write: int = 0) -> Usage:
    return Usage(
        family="t",
        provider=provider,
        model=model,
        response_model=None,
        pricing_model=model,
        operation=None,
        input_tokens=inp,
        output_tokens=out,
        cache_read_tokens=read,
        cache_write_tokens=write,
        reasoning_tokens=0,
    )


@pytest.mark.parametrize(("provider", "model"), MODELS)
def test_cached_units_equal_the_catalog(provider: str, model: str) -> None:
    rng = random.Random(model)
    pricer = Pricer([])
    provider_id = {"gcp.vertex_ai": "google"}.get(provider, provider)
    for hour in (0, 3, 9, 17, 23):
        at = datetime(2025, 11, 20, hour, 45, tzinfo=UTC)
        for _ in range(40):
            u = _usage(provider, model, rng)
            got = pricer.price(u, at)
            expected = genai_prices.calc_price(
                genai_prices.Usage(
                    input_tokens=u.input_tokens,
                    cache_read_tokens=u.cache_read_tokens,
                    cache_write_tokens=u.cache_write_tokens,
                    output_tokens=u.output_tokens,
                ),
                model,
                provider_id=provider_id,
                genai_request_timestamp=at,
            ).total_price
            assert got.cost_nanousd == usd_to_nanos(expected), (u, at)


def test_prices_follow_the_calls_time() -> None:
    # gpt-4o's price changed over time in the catalog (historical prices apply).
    pricer = Pricer([])
    u = _u("openai", "gpt-4o", 1_000_000, 0)
    for at in (datetime(2024, 6, 1, tzinfo=UTC), datetime(2025, 11, 20, tzinfo=UTC)):
        expected = genai_prices.calc_price(
            genai_prices.Usage(input_tokens=1_000_000),
            "gpt-4o",
            provider_id="openai",
            genai_request_timestamp=at,
        ).total_price
        assert pricer.price(u, at).cost_nanousd == usd_to_nanos(expected)


@pytest.mark.parametrize(
    ("value", "unit", "expected"),
    [(0, 10, 0), (14, 10, 1), (15, 10, 2), (25, 10, 2), (26, 10, 3), (35, 10, 4), (5, 10, 0)],
)
def test_round_half_even(value: int, unit: int, expected: int) -> None:
    assert round_half_even(value, unit) == expected
