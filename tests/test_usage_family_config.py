"""Usage families declared in `attribution.families`: how the config is checked, and how a
declared family takes its spans (before the built-in ones, and only those its `match`
describes). The built-in families, and declared ones end to end, are in
tests/test_usage_families.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from app.errors import ConfigError
from app.settings import AttributionConfig, load_settings
from app.settings.models import BUILTIN_FAMILY_NAMES
from app.traces.spans import Span
from app.traces.usage import BUILTIN_FAMILIES, extract_usage, families_from_config
from tests.test_usage_families import HOMEGROWN, bare_span, fixture_spans


def test_built_in_family_names_are_reserved_in_the_config() -> None:
    assert {f.name for f in BUILTIN_FAMILIES} == BUILTIN_FAMILY_NAMES


@pytest.mark.parametrize(
    ("families", "message"),
    [
        ([{"name": "x", "model": ["llm.model"]}], "at least one 'input_tokens' or 'output_tokens'"),
        ([HOMEGROWN, HOMEGROWN], "'acme-llm' is used twice"),
        ([{**HOMEGROWN, "name": "otel-genai"}], "'otel-genai' is a built-in family's"),
        ([{**HOMEGROWN, "name": "x" * 33}], "at most 32 characters"),
        ([{**HOMEGROWN, "input": ["typo"]}], "Extra inputs are not permitted"),
    ],
)
def test_bad_families_are_refused(families: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        AttributionConfig.model_validate({"families": families})


def test_bad_family_in_the_config_file_names_the_key_path(tmp_path: Path) -> None:
    config = tmp_path / "spendguard.yaml"
    config.write_text("attribution:\n  families:\n    - name: x\n      model: [llm.model]\n")
    with pytest.raises(ConfigError, match=r"attribution\.families"):
        load_settings(config, environ={})


def test_configured_families_come_before_the_built_in_ones() -> None:
    mine = {"name": "mine", "input_tokens": ["gen_ai.usage.input_tokens"], "output_tokens": []}
    families = families_from_config(AttributionConfig.model_validate({"families": [mine]}).families)
    assert [f.name for f in families] == ["mine", *(f.name for f in BUILTIN_FAMILIES)]
    usage = extract_usage(bare_span(**{"gen_ai.usage.input_tokens": 10}), families)
    assert usage is not None and usage.family == "mine"


def test_match_limits_a_family_to_the_spans_it_describes() -> None:
    # Strands Agents copies Bedrock Converse's inputTokens (cache excluded) into the OTel name.
    strands = {
        "name": "strands",
        "match": {"gen_ai.system": "strands-agents"},
        "input_tokens": ["gen_ai.usage.input_tokens"],
        "output_tokens": ["gen_ai.usage.output_tokens"],
        "model": ["gen_ai.request.model"],
        "cache_read_tokens": ["gen_ai.usage.cache_read_input_tokens"],
        "input_includes_cache": False,
        "provider_value": "aws.bedrock",
    }
    families = families_from_config(
        AttributionConfig.model_validate({"families": [strands]}).families
    )
    attrs = {
        "gen_ai.request.model": "anthropic.claude-3-5-sonnet-20241022-v2:0",
        "gen_ai.usage.input_tokens": 400,
        "gen_ai.usage.cache_read_input_tokens": 300,
        "gen_ai.usage.output_tokens": 10,
    }
    theirs = extract_usage(bare_span(**attrs, **{"gen_ai.system": "strands-agents"}), families)
    assert theirs is not None
    assert (theirs.family, theirs.provider, theirs.input_tokens) == ("strands", "aws.bedrock", 700)
    other = extract_usage(bare_span(**attrs, **{"gen_ai.system": "openai"}), families)
    assert other is not None
    assert (other.family, other.input_tokens) == ("otel-genai", 400)
    # `match` also looks at resource attributes, e.g. one service's home-grown instrumentation.
    by_service = families_from_config(
        AttributionConfig.model_validate(
            {"families": [{**HOMEGROWN, "match": {"service.name": "billing-bot"}}]}
        ).families
    )
    homegrown = fixture_spans("homegrown.json")["a900000000000002"]
    assert extract_usage(homegrown, by_service) is not None
    elsewhere = Span(**{**_span_fields(homegrown), "resource": {"service.name": "other"}})
    assert extract_usage(elsewhere, by_service) is None


def _span_fields(span: Span) -> dict[str, Any]:
    return {name: getattr(span, name) for name in span.__dataclass_fields__}
