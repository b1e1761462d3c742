"""Usage read off span shapes beyond the fixtures: spans that two families could read, bare
totals, counts that contradict each other, Langfuse's usage details, bad counts; provider names
normalised to OTel's, and the model a call is priced as."""

from __future__ import annotations

import json

import pytest

from app.errors import InputError
from app.pricing import Pricer
from app.settings import AttributionConfig
from app.traces.batch import BatchBuilder
from app.traces.usage import (
    extract_usage,
    normalize_provider,
    pricing_model,
)
from tests.test_usage_families import AT, CONFIGURED, bare_span

# ── ambiguous spans ────────────────────────────────────────────────────────────────────────────


def test_a_span_with_openinference_and_genai_attributes_is_read_by_one_family() -> None:
    both = {
        "openinference.span.kind": "LLM",
        "llm.provider": "anthropic",
        "llm.model_name": "claude-3-5-haiku-20241022",
        "llm.token_count.prompt": 1500,
        "llm.token_count.prompt_details.cache_read": 200,
        "llm.token_count.prompt_details.cache_write": 800,
        "llm.token_count.completion": 80,
        "gen_ai.provider.name": "anthropic",
        "gen_ai.request.model": "claude-3-5-haiku-20241022",
        "gen_ai.usage.input_tokens": 1500,
        "gen_ai.usage.cache_read.input_tokens": 200,
        "gen_ai.usage.cache_creation.input_tokens": 800,
        "gen_ai.usage.output_tokens": 80,
    }
    usage = extract_usage(bare_span(**both))
    assert usage is not None
    assert (usage.family, usage.input_tokens, usage.cache_read_tokens) == ("otel-genai", 1500, 200)
    only_oi = extract_usage(bare_span(**{k: v for k, v in both.items() if k.startswith("llm.")}))
    assert only_oi is not None and only_oi.family == "openinference"
    pricer = Pricer([])
    assert pricer.price(usage, AT).cost_nanousd == pricer.price(only_oi, AT).cost_nanousd


@pytest.mark.parametrize(
    "attrs",
    [
        {"llm.usage.total_tokens": 1500, "llm.request.model": "gpt-4o"},
        {"gen_ai.usage.total_tokens": 1500, "gen_ai.request.model": "gpt-4o"},
        {"llm.token_count.total": 1500, "llm.model_name": "gpt-4o"},
        {"langfuse.observation.usage_details": '{"total": 1500}'},
        {"langfuse.observation.usage_details": "{}"},
    ],
)
def test_a_bare_total_is_not_a_call(attrs: dict[str, object]) -> None:
    assert extract_usage(bare_span(**attrs)) is None


def test_an_input_below_its_cache_counts_is_read_as_excluding_them() -> None:
    # Anthropic's own input_tokens put in the OTel attribute: 2 uncached + 24,883 read.
    usage = extract_usage(
        bare_span(
            **{
                "gen_ai.provider.name": "anthropic",
                "gen_ai.request.model": "claude-sonnet-4-5",
                "gen_ai.usage.input_tokens": 2,
                "gen_ai.usage.cache_read.input_tokens": 24_883,
                "gen_ai.usage.output_tokens": 12,
            }
        )
    )
    assert usage is not None
    assert (usage.input_tokens, usage.cache_read_tokens) == (24_885, 24_883)


def test_reasoning_above_the_output_count_is_added_to_it() -> None:
    usage = extract_usage(
        bare_span(
            **{
                "gen_ai.request.model": "gemini-2.5-flash",
                "gen_ai.usage.input_tokens": 100,
                "gen_ai.usage.output_tokens": 50,
                "gen_ai.usage.reasoning.output_tokens": 200,
            }
        )
    )
    assert usage is not None
    assert (usage.output_tokens, usage.reasoning_tokens) == (250, 200)


@pytest.mark.parametrize(
    ("details", "expected"),
    [
        # OpenAI Responses: input inclusive, details beside it.
        (
            {
                "input_tokens": 1000,
                "output_tokens": 300,
                "total_tokens": 1300,
                "input_tokens_details": {"cached_tokens": 600},
                "output_tokens_details": {"reasoning_tokens": 200},
            },
            (1000, 300, 600, 0, 200),
        ),
        # LangChain usage_metadata: input inclusive.
        (
            {
                "input_tokens": 1000,
                "output_tokens": 300,
                "total_tokens": 1300,
                "input_token_details": {"cache_read": 600, "cache_creation": 100},
                "output_token_details": {"reasoning": 200},
            },
            (1000, 300, 600, 100, 200),
        ),
        # Anthropic's own usage: input exclusive.
        (
            {
                "input_tokens": 1000,
                "output_tokens": 300,
                "cache_read_input_tokens": 600,
                "cache_creation_input_tokens": 100,
            },
            (1700, 300, 600, 100, 0),
        ),
        # Langfuse buckets from its OpenAI mapping.
        (
            {
                "input": 400,
                "input_cached_tokens": 600,
                "output": 100,
                "output_reasoning_tokens": 200,
            },
            (1000, 300, 600, 0, 200),
        ),
        # Langfuse buckets from Vertex AI modalities (cached subtracted from input).
        (
            {"input": 0, "input_modality_TEXT": 400, "cached_modality_TEXT": 600, "output": 300},
            (1000, 300, 600, 0, 0),
        ),
        # Embeddings through Langfuse's OpenAI integration.
        ({"input": 5000}, (5000, 0, 0, 0, 0)),
    ],
)
def test_langfuse_usage_details_shapes(
    details: dict[str, object], expected: tuple[int, int, int, int, int]
) -> None:
    usage = extract_usage(
        bare_span(
            **{
                "langfuse.observation.model.name": "gpt-4o",
                "langfuse.observation.usage_details": json.dumps(details),
            }
        )
    )
    assert usage is not None
    assert (
        usage.input_tokens,
        usage.output_tokens,
        usage.cache_read_tokens,
        usage.cache_write_tokens,
        usage.reasoning_tokens,
    ) == expected


@pytest.mark.parametrize(
    ("attrs", "message"),
    [
        ({"langfuse.observation.usage_details": "{not json"}, "is not JSON"),
        ({"langfuse.observation.usage_details": "[1, 2]"}, "is not a JSON object"),
        ({"langfuse.observation.usage_details": '{"input": 1.5}'}, "1.5 in .*input is not an"),
        ({"langfuse.observation.usage_details": '{"input": -3}'}, "negative token count -3"),
        (
            {"langfuse.observation.usage_details": '{"prompt_tokens": "many"}'},
            "'many' in .*prompt_tokens",
        ),
        ({"llm.tokens_prompt": "lots", "llm.model": "gpt-4o-mini"}, "'lots' in llm.tokens_prompt"),
        ({"llm.token_count.prompt": -1}, "negative token count -1"),
    ],
)
def test_bad_counts_quarantine_the_span(attrs: dict[str, object], message: str) -> None:
    with pytest.raises(InputError, match=message):
        extract_usage(bare_span(**attrs), CONFIGURED)
    batch = BatchBuilder(AttributionConfig(), Pricer([]), CONFIGURED).build([bare_span(**attrs)])
    assert not batch.calls
    assert [r.span_id for r in batch.rejected] == ["d" * 16]


# ── provider and model names ───────────────────────────────────────────────────────────────────


@pytest.mark.parametrize(
    ("raw", "otel"),
    [
        ("bedrock", "aws.bedrock"),  # LiteLLM
        ("vertex_ai", "gcp.vertex_ai"),  # LiteLLM, old gen_ai.system
        ("azure", "azure.ai.openai"),  # LiteLLM, OpenInference
        ("azure_ai", "azure.ai.inference"),  # LiteLLM
        ("mistral", "mistral_ai"),  # LiteLLM
        ("together_ai", "together"),  # LiteLLM
        ("Anthropic", "anthropic"),  # OpenLLMetry
        ("aws", "aws.bedrock"),  # OpenInference
        ("mistralai", "mistral_ai"),  # OpenInference
        ("openai", "openai"),
        ("vllm", "vllm"),  # unknown: kept (and left unpriced)
        ("", None),
    ],
)
def test_provider_names_are_normalized_to_otel_names(raw: str, otel: str | None) -> None:
    assert normalize_provider(raw) == otel


@pytest.mark.parametrize(
    ("request_model", "response_model", "expected"),
    [
        ("claude-3-5-sonnet-latest", "claude-3-5-sonnet-20241022", "claude-3-5-sonnet-20241022"),
        ("gemini-1.5-flash", "gemini-1.5-flash-002", "gemini-1.5-flash-002"),
        (
            "anthropic.claude-3-5-sonnet-20241022-v2:0",
            "anthropic.claude-3-5-sonnet-20241022-v2:0",
            "anthropic.claude-3-5-sonnet-20241022-v2:0",
        ),
        ("my-azure-deployment", "gpt-4o-2024-08-06", "my-azure-deployment"),
    ],
)
def test_pricing_model_snapshot_rules(
    request_model: str, response_model: str, expected: str
) -> None:
    assert pricing_model(request_model, response_model) == expected


def test_a_litellm_provider_prefix_is_dropped_for_pricing_only() -> None:
    usage = extract_usage(
        bare_span(
            **{
                "gen_ai.system": "anthropic",
                "gen_ai.request.model": "anthropic/claude-3-5-haiku-20241022",
                "gen_ai.usage.input_tokens": 1000,
                "gen_ai.usage.output_tokens": 100,
            }
        )
    )
    assert usage is not None
    assert usage.model == "anthropic/claude-3-5-haiku-20241022"
    assert usage.pricing_model == "claude-3-5-haiku-20241022"
    openrouter = extract_usage(
        bare_span(
            **{
                "gen_ai.system": "openrouter",
                "gen_ai.request.model": "meta-llama/llama-3.1-70b-instruct",
                "gen_ai.usage.input_tokens": 1,
            }
        )
    )
    assert openrouter is not None
    assert openrouter.pricing_model == "meta-llama/llama-3.1-70b-instruct"
