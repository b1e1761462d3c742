"""Token usage on a span, read from whichever attribute family the instrumentation used.

Each family is data: the attribute names for model, provider and token counts, in order of
preference, and whether its input count already includes cached tokens. A span is an LLM call
when any family's token attribute is present. `input_tokens` in `Usage` always INCLUDES cache
reads and cache writes (the OpenTelemetry GenAI convention), whatever the family said.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from app.errors import InputError
from app.traces.spans import AttrValue, Span


@dataclass(frozen=True, slots=True)
class UsageFamily:
    name: str
    input: tuple[str, ...]
    output: tuple[str, ...]
    request_model: tuple[str, ...] = ()
    response_model: tuple[str, ...] = ()
    provider: tuple[str, ...] = ()
    cache_read: tuple[str, ...] = ()
    cache_write: tuple[str, ...] = ()
    reasoning: tuple[str, ...] = ()
    operation: tuple[str, ...] = ()
    # True when the family's input count already includes cache reads and writes.
    input_includes_cache: bool = True

    def present(self, span: Span) -> bool:
        return any(k in span.attributes for k in (*self.input, *self.output))


GENAI = UsageFamily(
    name="otel-genai",
    input=("gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens"),
    output=("gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens"),
    request_model=("gen_ai.request.model", "llm.request.model"),
    response_model=("gen_ai.response.model", "llm.response.model"),
    provider=("gen_ai.provider.name", "gen_ai.system", "llm.vendor"),
    cache_read=("gen_ai.usage.cache_read.input_tokens", "gen_ai.usage.cache_read_input_tokens"),
    cache_write=(
        "gen_ai.usage.cache_creation.input_tokens",
        "gen_ai.usage.cache_creation_input_tokens",
    ),
    reasoning=("gen_ai.usage.reasoning.output_tokens", "gen_ai.usage.reasoning_tokens"),
    operation=("gen_ai.operation.name",),
)

OPENLLMETRY = UsageFamily(
    name="openllmetry",
    input=("llm.usage.prompt_tokens",),
    output=("llm.usage.completion_tokens",),
    request_model=("llm.request.model",),
    response_model=("llm.response.model",),
    provider=("llm.vendor", "gen_ai.system"),
    operation=("llm.request.type",),
)

OPENINFERENCE = UsageFamily(
    name="openinference",
    input=("llm.token_count.prompt",),
    output=("llm.token_count.completion",),
    request_model=("llm.model_name",),
    provider=("llm.provider", "llm.system"),
    cache_read=("llm.token_count.prompt_details.cache_read",),
    cache_write=("llm.token_count.prompt_details.cache_write",),
    reasoning=("llm.token_count.completion_details.reasoning",),
)

BUILTIN_FAMILIES: tuple[UsageFamily, ...] = (GENAI, OPENLLMETRY, OPENINFERENCE)


@dataclass(frozen=True, slots=True)
class Usage:
    family: str
    provider: str | None
    model: str | None  # what people asked for: groups the model view
    response_model: str | None
    pricing_model: str | None  # the dated snapshot actually served, when it is one
    operation: str | None
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    reasoning_tokens: int


def extract_usage(span: Span, families: tuple[UsageFamily, ...] = BUILTIN_FAMILIES) -> Usage | None:
    """The span's token usage, or None when the span is not an LLM call."""
    for family in families:
        if family.present(span):
            return _read(span, family)
    return None


def _read(span: Span, fam: UsageFamily) -> Usage:
    cache_read = _first_int(span, fam.cache_read)
    cache_write = _first_int(span, fam.cache_write)
    raw_input = _first_int(span, fam.input)
    input_tokens = raw_input if fam.input_includes_cache else raw_input + cache_read + cache_write
    request_model = _first_str(span, fam.request_model)
    response_model = _first_str(span, fam.response_model)
    return Usage(
        family=fam.name,
        provider=normalize_provider(_first_str(span, fam.provider)),
        model=request_model or response_model,
        response_model=response_model,
        pricing_model=pricing_model(request_model, response_model),
        operation=_first_str(span, fam.operation),
        input_tokens=max(input_tokens, cache_read + cache_write),
        output_tokens=_first_int(span, fam.output),
        cache_read_tokens=cache_read,
        cache_write_tokens=cache_write,
        reasoning_tokens=_first_int(span, fam.reasoning),
    )


_SNAPSHOT_SUFFIX = re.compile(r"^-(\d{4}-?\d{2}-?\d{2}|\d{4}|v\d+(:\d+)?|latest|preview)$")


def pricing_model(request_model: str | None, response_model: str | None) -> str | None:
    """The model name to price: the response model when it is a dated snapshot of the
    requested one (`gpt-4o-mini` → `gpt-4o-mini-2024-07-18`), else the requested model."""
    if request_model and response_model:
        if response_model == request_model:
            return request_model
        suffix = response_model[len(request_model) :]
        if response_model.startswith(request_model) and _SNAPSHOT_SUFFIX.match(suffix):
            return response_model
        return request_model
    return request_model or response_model


# Older `gen_ai.system` values and OTel names → one canonical provider name each.
_PROVIDER_ALIASES = {
    "vertex_ai": "gcp.vertex_ai",
    "gemini": "gcp.gemini",
    "az.ai.inference": "azure.ai.inference",
    "az.ai.openai": "azure.ai.openai",
    "azure_openai": "azure.ai.openai",
    "xai": "x_ai",
    "mistralai": "mistral_ai",
    "bedrock": "aws.bedrock",
}


def normalize_provider(value: str | None) -> str | None:
    if not value:
        return None
    name = value.strip().lower()
    return _PROVIDER_ALIASES.get(name, name)


def _first(span: Span, keys: tuple[str, ...]) -> AttrValue:
    for key in keys:
        value = span.attributes.get(key)
        if value is not None:
            return value
    return None


def _first_str(span: Span, keys: tuple[str, ...]) -> str | None:
    value = _first(span, keys)
    return str(value) if value not in (None, "") else None


MAX_TOKENS_PER_CALL = 10_000_000  # above this a count is a bug upstream, not a real call


def _first_int(span: Span, keys: tuple[str, ...]) -> int:
    value = _first(span, keys)
    if value is None:
        return 0
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str):
        try:
            number = int(value)
        except ValueError:
            number = None
    if number is not None:
        if number < 0:
            raise InputError(f"negative token count {number} in {keys[0]}")
        if number > MAX_TOKENS_PER_CALL:
            raise InputError(
                f"absurd token count {number} in {keys[0]} (more than "
                f"{MAX_TOKENS_PER_CALL:,} for one call)"
            )
        return number
    raise InputError(f"token count {value!r} in {keys[0]} is not an integer")
