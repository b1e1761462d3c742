"""Token usage on a span, read from whichever attribute family the instrumentation used.

Each family is data: the attribute names for model, provider and token counts, in order of
preference, and whether its input count already includes cached tokens. A span is an LLM call
when a family's input or output attribute is present; the first such family wins, whole (its
counts are never mixed with another family's). `Usage.input_tokens` always INCLUDES cache reads
and cache writes, and `output_tokens` includes reasoning (the OpenTelemetry GenAI convention),
whatever the family said.

The built-in families and what their input count means (read in the instrumentations' source):

- `otel-genai`: `gen_ai.usage.input_tokens` and the pre-1.27 `gen_ai.usage.prompt_tokens`
  include cache reads and writes (semantic conventions). Also read by this family:
  OpenLLMetry's mid-era names (`gen_ai.usage.cache_read_input_tokens`, `…cache_creation_input_
  tokens`, `…reasoning_tokens`): its Anthropic instrumentation sums `input_tokens +
  cache_read_input_tokens + cache_creation_input_tokens` before setting the input attribute
  (traceloop/openllmetry, packages/opentelemetry-instrumentation-anthropic/…/__init__.py,
  `_set_token_usage`), so it includes them too. LiteLLM's `otel` callback uses the same names
  (litellm/integrations/opentelemetry.py, `set_attributes`): its input is the OpenAI-shaped
  `usage.prompt_tokens`, which LiteLLM's Anthropic adapter builds as `input_tokens +
  cache_read + cache_creation` (litellm/llms/anthropic/chat/transformation.py,
  `calculate_usage`; older versions added cache_read only); it sets no cache attribute, so
  cached tokens are priced as plain input (an overestimate we cannot avoid). Its provider
  strings (`bedrock`, `vertex_ai`, `azure`, …) are normalized below.
- `openinference`: `llm.token_count.prompt` includes cache read and write (Arize-ai/
  openinference, openinference-instrumentation-anthropic `_get_llm_token_counts`: `input_tokens
  + cache_creation_input_tokens + cache_read_input_tokens`).
- `openllmetry`: the old `llm.usage.prompt_tokens`; it predates Anthropic prompt caching and
  carries no cache attribute.
- `langfuse`: Langfuse SDK v3 puts usage in one JSON attribute, `langfuse.observation.
  usage_details`. Its own keys are additive buckets: `input` EXCLUDES every `input_*` key and
  `output` every `output_*` key (langfuse-python, langfuse/langchain/CallbackHandler.py
  `_parse_usage_model` subtracts each detail from `input`; Langfuse's server does the same to
  OpenAI-shaped usage, langfuse/langfuse packages/shared/src/server/ingestion/types.ts
  `OpenAICompletionUsageSchema`). Langfuse's OpenAI integration passes OpenAI's own usage object
  (`prompt_tokens`, inclusive, with `prompt_tokens_details.cached_tokens`), and hand-written
  Anthropic usage keeps Anthropic's exclusive `input_tokens` beside `cache_read_input_tokens`:
  each shape is read with its own meaning.

Decisions on ambiguous spans:
- A family that says its input includes the cache but reports fewer input tokens than cache
  reads plus writes cannot mean it (e.g. Anthropic's own `input_tokens` copied into
  `gen_ai.usage.input_tokens`, or Bedrock Converse's `inputTokens`): that count is read as
  excluding the cache. Likewise reasoning tokens above the output count are added to it.
- A span with only a total (`llm.usage.total_tokens`, `gen_ai.usage.total_tokens`,
  `llm.token_count.total`) is not an LLM call: every instrumentation we know sets the total
  beside the split on call spans, so a bare total is an aggregate (agent, chain), and input and
  output cannot be priced without the split.
- Configured families (`attribution.families`) are tried first, each optionally only where
  `match` attributes have given values; then `otel-genai`, `openinference`, `openllmetry`,
  `langfuse`. A span carrying both OpenTelemetry and OpenInference counts (a bridge that adds
  one to the other) is read by `otel-genai` alone; both mean the same, so either is right.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from app.settings.models import UsageFamilyConfig
from app.traces.spans import AttrValue, Span
from app.traces.usage_counts import MAX_TOKENS_PER_CALL, json_counts, token_count


@dataclass(frozen=True, slots=True)
class UsageFamily:
    name: str
    input: tuple[str, ...] = ()
    output: tuple[str, ...] = ()
    request_model: tuple[str, ...] = ()
    response_model: tuple[str, ...] = ()
    provider: tuple[str, ...] = ()
    cache_read: tuple[str, ...] = ()
    cache_write: tuple[str, ...] = ()
    reasoning: tuple[str, ...] = ()
    operation: tuple[str, ...] = ()
    # True when the family's input count already includes cache reads and writes.
    input_includes_cache: bool = True
    # The provider of every call of the family, for families that carry no provider attribute.
    provider_value: str | None = None
    # Attributes holding a Langfuse `usage_details` JSON object (instead of input/output).
    usage_json: tuple[str, ...] = ()
    # The family applies only to spans whose attribute (or resource attribute) has the value.
    match: tuple[tuple[str, str], ...] = ()
    # Precomputed: the attributes whose presence makes a span this family's.
    detect: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "detect", (*self.input, *self.output, *self.usage_json))


GENAI = UsageFamily(
    name="otel-genai",
    input=("gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens"),
    output=("gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens"),
    request_model=("gen_ai.request.model", "llm.request.model"),
    response_model=("gen_ai.response.model", "llm.response.model"),
    provider=("gen_ai.provider.name", "gen_ai.system", "llm.vendor"),
    cache_read=(
        "gen_ai.usage.cache_read.input_tokens",
        "gen_ai.usage.cache_read_input_tokens",  # OpenLLMetry mid-era, Strands Agents
    ),
    cache_write=(
        "gen_ai.usage.cache_creation.input_tokens",
        "gen_ai.usage.cache_creation_input_tokens",  # OpenLLMetry mid-era
        "gen_ai.usage.cache_write_input_tokens",  # Strands Agents (Bedrock Converse)
    ),
    reasoning=(
        "gen_ai.usage.reasoning.output_tokens",
        "gen_ai.usage.reasoning_tokens",
        "llm.usage.reasoning_tokens",
    ),
    operation=("gen_ai.operation.name", "llm.request.type"),
)

OPENINFERENCE = UsageFamily(
    name="openinference",
    input=("llm.token_count.prompt",),
    output=("llm.token_count.completion",),
    request_model=("llm.model_name", "embedding.model_name"),
    provider=("llm.provider", "llm.system"),
    cache_read=("llm.token_count.prompt_details.cache_read",),
    cache_write=("llm.token_count.prompt_details.cache_write",),
    reasoning=("llm.token_count.completion_details.reasoning",),
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

LANGFUSE = UsageFamily(
    name="langfuse",
    usage_json=("langfuse.observation.usage_details",),
    request_model=("langfuse.observation.model.name",),
    operation=("langfuse.observation.type",),
)

BUILTIN_FAMILIES: tuple[UsageFamily, ...] = (GENAI, OPENINFERENCE, OPENLLMETRY, LANGFUSE)


def family_from_config(cfg: UsageFamilyConfig) -> UsageFamily:
    return UsageFamily(
        name=cfg.name,
        input=tuple(cfg.input_tokens),
        output=tuple(cfg.output_tokens),
        request_model=tuple(cfg.model),
        response_model=tuple(cfg.response_model),
        provider=tuple(cfg.provider),
        cache_read=tuple(cfg.cache_read_tokens),
        cache_write=tuple(cfg.cache_write_tokens),
        reasoning=tuple(cfg.reasoning_tokens),
        operation=tuple(cfg.operation),
        input_includes_cache=cfg.input_includes_cache,
        provider_value=cfg.provider_value,
        match=tuple(cfg.match.items()),
    )


def families_from_config(configs: Sequence[UsageFamilyConfig]) -> tuple[UsageFamily, ...]:
    """The configured families, tried before the built-in ones."""
    return (*(family_from_config(c) for c in configs), *BUILTIN_FAMILIES)


@dataclass(slots=True)  # not frozen: one is built per LLM span, and frozen ones build slower
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
    return usage_of(span.attributes, span.resource, families)


def usage_of(
    attrs: dict[str, AttrValue],
    resource: dict[str, AttrValue],
    families: tuple[UsageFamily, ...] = BUILTIN_FAMILIES,
) -> Usage | None:
    """`extract_usage` of a span's attributes and its resource's (no `Span` needed)."""
    for family in families:
        for key in family.detect:
            if key in attrs:
                if family.match and not _matches(attrs, resource, family.match):
                    break
                return _read(attrs, family)
    return None


def _matches(
    attrs: dict[str, AttrValue],
    resource: dict[str, AttrValue],
    match: tuple[tuple[str, str], ...],
) -> bool:
    for key, expected in match:
        value = attrs[key] if key in attrs else resource.get(key)
        if value is None or str(value) != expected:
            return False
    return True


def _read(attrs: dict[str, AttrValue], fam: UsageFamily) -> Usage | None:
    if fam.usage_json:
        counts = json_counts(attrs, fam.usage_json)
        if counts is None:
            return None
        raw_input, output, cache_read, cache_write, reasoning, includes = counts
    else:
        raw_input = _first_int(attrs, fam.input)
        output = _first_int(attrs, fam.output)
        cache_read = _first_int(attrs, fam.cache_read)
        cache_write = _first_int(attrs, fam.cache_write)
        reasoning = _first_int(attrs, fam.reasoning)
        includes = fam.input_includes_cache
    cached = cache_read + cache_write
    # A count below its own detail counts cannot include them (see the module docstring).
    input_tokens = raw_input if includes and raw_input >= cached else raw_input + cached
    output_tokens = output if output >= reasoning else output + reasoning
    raw_provider = fam.provider_value or _first_str(attrs, fam.provider)
    request_model = _first_str(attrs, fam.request_model)
    response_model = _first_str(attrs, fam.response_model)
    return Usage(
        family=fam.name,
        provider=normalize_provider(raw_provider),
        model=request_model or response_model,
        response_model=response_model,
        pricing_model=_pricing_model(request_model, response_model, raw_provider),
        operation=_first_str(attrs, fam.operation),
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cache_read_tokens=cache_read,
        cache_write_tokens=cache_write,
        reasoning_tokens=reasoning,
    )


_PRICING_MODELS: dict[tuple[str | None, str | None, str | None], str | None] = {}


def _pricing_model(request: str | None, response: str | None, provider: str | None) -> str | None:
    """`pricing_model` of the names without the provider's prefix, remembered: a workload
    has few distinct (model, response model, provider) triples and this runs per span."""
    key = (request, response, provider)
    try:
        return _PRICING_MODELS[key]
    except KeyError:
        if len(_PRICING_MODELS) >= 10_000:
            _PRICING_MODELS.clear()
        found = _PRICING_MODELS[key] = pricing_model(
            _unprefixed(request, provider), _unprefixed(response, provider)
        )
        return found


def _unprefixed(model: str | None, provider: str | None) -> str | None:
    """`anthropic/claude-…` → `claude-…` when the prefix is the span's own provider (LiteLLM's
    `provider/model` names); `meta-llama/…` on OpenRouter keeps its prefix."""
    if model and provider:
        cut = len(provider)
        if len(model) > cut and model[cut] == "/" and model.startswith(provider):
            return model[cut + 1 :]
    return model


_SNAPSHOT_SUFFIX = re.compile(r"^-(\d{4}-?\d{2}-?\d{2}|\d{4}|\d{3}|v\d+(:\d+)?|latest|preview)$")
_LATEST = "-latest"


def pricing_model(request_model: str | None, response_model: str | None) -> str | None:
    """The model name to price: the response model when it is a dated snapshot of the
    requested one (`gpt-4o-mini` → `gpt-4o-mini-2024-07-18`, `claude-3-5-sonnet-latest` →
    `claude-3-5-sonnet-20241022`), else the requested model."""
    if request_model and response_model:
        if response_model == request_model:
            return request_model
        base = request_model
        if base.endswith(_LATEST):
            base = base[: -len(_LATEST)]
        suffix = response_model[len(base) :]
        if response_model.startswith(base) and _SNAPSHOT_SUFFIX.match(suffix):
            return response_model
        return request_model
    return request_model or response_model


# Older `gen_ai.system` values, OpenLLMetry's and OpenInference's vendor names and LiteLLM's
# provider strings → the OpenTelemetry `gen_ai.provider.name` value (what pricing maps).
_PROVIDER_ALIASES = {
    "vertex_ai": "gcp.vertex_ai",
    "vertex_ai_beta": "gcp.vertex_ai",
    "vertexai": "gcp.vertex_ai",
    "gemini": "gcp.gemini",
    "az.ai.inference": "azure.ai.inference",
    "azure_ai": "azure.ai.inference",
    "az.ai.openai": "azure.ai.openai",
    "azure_openai": "azure.ai.openai",
    "azure": "azure.ai.openai",
    "xai": "x_ai",
    "mistralai": "mistral_ai",
    "mistral": "mistral_ai",
    "bedrock": "aws.bedrock",
    "aws": "aws.bedrock",
    "together_ai": "together",
    "fireworks_ai": "fireworks",
    "cohere_chat": "cohere",
    "text-completion-openai": "openai",
    "watsonx": "ibm.watsonx.ai",
}


def normalize_provider(value: str | None) -> str | None:
    if not value:
        return None
    name = value.strip().lower()
    return _PROVIDER_ALIASES.get(name, name)


def _first(attrs: dict[str, AttrValue], keys: tuple[str, ...]) -> AttrValue:
    for key in keys:
        value = attrs.get(key)
        if value is not None:
            return value
    return None


def _first_str(attrs: dict[str, AttrValue], keys: tuple[str, ...]) -> str | None:
    for key in keys:
        value = attrs.get(key)
        if value is not None and value != "":
            return str(value)
    return None


def _first_int(attrs: dict[str, AttrValue], keys: tuple[str, ...]) -> int:
    for key in keys:
        value = attrs.get(key)
        if value is not None:
            if type(value) is int and 0 <= value <= MAX_TOKENS_PER_CALL:
                return value  # what token_count returns for it, without the call
            return token_count(value, keys[0])
    return 0
