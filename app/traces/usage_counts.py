"""Token counts as instrumentations write them: one number (checked), or a usage JSON object.

`token_count` refuses what cannot be a real call's count (negative, above
`MAX_TOKENS_PER_CALL`, not an integer) so the span is quarantined, not mispriced. `json_counts`
reads Langfuse's `usage_details` JSON in each shape it is known to hold (see `app.traces.usage`).
"""

from __future__ import annotations

from typing import Any

import orjson

from app.errors import InputError
from app.traces.spans import AttrValue

MAX_TOKENS_PER_CALL = 10_000_000  # above this a count is a bug upstream, not a real call


def token_count(value: object, where: str) -> int:
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
            raise InputError(f"negative token count {number} in {where}")
        if number > MAX_TOKENS_PER_CALL:
            raise InputError(
                f"absurd token count {number} in {where} (more than "
                f"{MAX_TOKENS_PER_CALL:,} for one call)"
            )
        return number
    raise InputError(f"token count {value!r} in {where} is not an integer")


# ── Langfuse `usage_details` ─────────────────────────────────────────────────────────────────

# Langfuse's additive bucket keys (its `input` excludes them): from its LangChain handler
# (`input_cache_read`, `input_cache_creation`, `output_reasoning`), its server's OpenAI mapping
# (`input_cached_tokens`, `output_reasoning_tokens`) and Anthropic's own names.
_LF_READ = frozenset(
    {
        "input_cached_tokens",
        "input_cache_read",
        "input_cache_read_tokens",
        "cache_read_input_tokens",
    }
)
_LF_WRITE = frozenset(
    {
        "input_cache_creation",
        "input_cache_creation_tokens",
        "input_cache_write",
        "cache_creation_input_tokens",
    }
)
_LF_REASONING = ("output_reasoning_tokens", "output_reasoning")

Counts = tuple[int, int, int, int, int, bool]  # input, output, read, write, reasoning, inclusive


def json_counts(attrs: dict[str, AttrValue], keys: tuple[str, ...]) -> Counts | None:
    """Counts from a `usage_details` JSON object, each known shape read with its own meaning;
    None when it holds no input or output count (e.g. only a total)."""
    where = next(k for k in keys if k in attrs)
    raw = attrs[where]
    try:
        details = orjson.loads(raw) if isinstance(raw, str | bytes) else raw
    except orjson.JSONDecodeError as exc:
        raise InputError(f"{where} is not JSON: {exc}") from None
    if not isinstance(details, dict):
        raise InputError(f"{where} is not a JSON object: {raw!r:.80}")

    def n(key: str, source: dict[str, Any] = details) -> int:
        value = source.get(key)
        return 0 if value is None else token_count(value, f"{where}.{key}")

    def sub(*names: str) -> dict[str, Any]:
        for name in names:
            value = details.get(name)
            if isinstance(value, dict):
                return value
        return {}

    if "prompt_tokens" in details or "completion_tokens" in details:
        # OpenAI Chat Completions usage (Langfuse's OpenAI integration): prompt is inclusive.
        p, c = sub("prompt_tokens_details"), sub("completion_tokens_details")
        read = n("cached_tokens", p) or n("cache_read_input_tokens")
        write = n("cache_creation_tokens", p) or n("cache_creation_input_tokens")
        return (
            n("prompt_tokens"),
            n("completion_tokens"),
            read,
            write,
            n("reasoning_tokens", c),
            True,
        )
    if "input_tokens" in details or "output_tokens" in details:
        # OpenAI Responses / LangChain usage_metadata (inclusive, with *_details) or
        # Anthropic's own usage (exclusive, with cache_*_input_tokens beside it).
        i = sub("input_tokens_details", "input_token_details")
        o = sub("output_tokens_details", "output_token_details")
        read = n("cached_tokens", i) or n("cache_read", i) or n("cache_read_input_tokens")
        write = n("cache_creation", i) or n("cache_creation_input_tokens")
        reasoning = n("reasoning_tokens", o) or n("reasoning", o)
        anthropic = "cache_read_input_tokens" in details or "cache_creation_input_tokens" in details
        inclusive = bool(i) or not anthropic
        return n("input_tokens"), n("output_tokens"), read, write, reasoning, inclusive
    # Langfuse's own additive buckets.
    uncached = read = write = output = 0
    seen = False
    for key, value in details.items():
        if key in _LF_READ or key.startswith("cached_modality_"):
            read += token_count(value, f"{where}.{key}")
        elif key in _LF_WRITE:
            write += token_count(value, f"{where}.{key}")
        elif key == "input" or key.startswith("input_"):
            uncached += token_count(value, f"{where}.{key}")
        elif key == "output" or key.startswith("output_"):
            output += token_count(value, f"{where}.{key}")
        else:
            continue  # total, unit, …
        seen = True
    if not seen:
        return None
    reasoning = next((n(k) for k in _LF_REASONING if k in details), 0)
    return uncached, output, read, write, reasoning, False
