"""The row path (deferred JSON read straight into rows) builds exactly the batch of the Span path.

`BatchBuilder.add_json` skips `Span` objects for speed; everything it is unsure of goes the
Span way. Property test: any mix of good, odd and bad spans, in any order and split across
documents, gives the same requests, calls, rejections and span count both ways.
"""

from __future__ import annotations

import base64
from collections import Counter
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.pricing import Pricer
from app.settings import AttributionConfig, PriceOverride
from app.settings.models import UsageFamilyConfig
from app.traces.batch import Batch, BatchBuilder
from app.traces.otlp_json import decode_json, decode_json_deferred
from app.traces.spans import Span
from app.traces.trace_lists import utc_from_ns
from app.traces.usage import families_from_config

CFG = AttributionConfig(
    user_teams={"u-1": "search", "u-2": "ads"},
    families=[
        UsageFamilyConfig(
            name="homegrown",
            model=["llm.model"],
            input_tokens=["llm.tokens_prompt"],
            output_tokens=["llm.tokens_output"],
            match={"service.name": "legacy"},
        )
    ],
)
PRICER = Pricer([PriceOverride(model="my-llama-*", input_per_mtok="1", output_per_mtok="2")])
FAMILIES = families_from_config(CFG.families)

TRACES = ["a" * 32, "b" * 32, "0123456789ABCDEF0123456789abcdef", "0" * 32, "xyz"]
TRACES.append(base64.b64encode(bytes.fromhex("c" * 32)).decode())
SPANS = [f"{i:016x}" for i in range(1, 7)] + ["0" * 16, "bad", "ABCDEF0123456789"]


def _value(v: Any) -> dict[str, Any]:
    if isinstance(v, bool):
        return {"boolValue": v}
    if isinstance(v, int):
        return {"intValue": v}
    if isinstance(v, float):
        return {"doubleValue": v}
    if isinstance(v, dict):
        return v  # raw, possibly malformed AnyValue
    return {"stringValue": v}


ATTRS = st.sampled_from(
    [
        ("http.route", "/v1/chat"),
        ("url.path", "/p"),
        ("http.route", ""),
        ("enduser.id", "u-1"),
        ("enduser.id", "u-2"),
        ("user.id", ""),
        ("llm.user", 7),
        ("team.id", "core"),
        ("app.team", True),
        ("gen_ai.request.model", "gpt-4o-mini"),
        ("gen_ai.response.model", "gpt-4o-mini-2024-07-18"),
        ("gen_ai.request.model", "my-llama-3"),
        ("gen_ai.provider.name", "openai"),
        ("gen_ai.usage.input_tokens", 120),
        ("gen_ai.usage.input_tokens", "55"),
        ("gen_ai.usage.input_tokens", -3),
        ("gen_ai.usage.output_tokens", 40),
        ("gen_ai.usage.cache_read.input_tokens", 20),
        ("llm.token_count.prompt", 9),
        ("llm.model", "homegrown-1"),
        ("llm.tokens_prompt", 10),
        ("llm.tokens_output", "x"),
        ("db.system", "postgresql"),
        ("weird", {"intValue": "nope"}),
        ("weird", {"arrayValue": {"values": [{"stringValue": "a"}]}}),
    ]
)


@st.composite
def raw_spans(draw: st.DrawFn) -> Any:
    if draw(st.integers(0, 30)) == 0:
        return draw(st.sampled_from([None, 3, "span", []]))
    span: dict[str, Any] = {
        "traceId": draw(st.sampled_from(TRACES[:3] * 4 + TRACES[3:])),
        "spanId": draw(st.sampled_from(SPANS)),
    }
    parent = draw(st.sampled_from([None, None, "", *SPANS[:4], "0" * 16, 5]))
    if parent is not None:
        span["parentSpanId"] = parent
    start = draw(st.sampled_from([1_763_600_000_123_456_789, 1_763_600_000_123_456_001, 5_000]))
    start += draw(st.integers(0, 3)) * 1_000_000
    span["startTimeUnixNano"] = draw(
        st.sampled_from(
            [str(start), start, float(start // 1000 * 1000), "soon", 0, str(2**70), 2**63 + 5]
        )
    )
    end = draw(st.sampled_from([start + 900_000_000, start - 5, None, "x"]))
    if end is not None:
        span["endTimeUnixNano"] = str(end) if isinstance(end, int) else end
    kind = draw(st.sampled_from([1, 2, 2, 3, 0, "SPAN_KIND_SERVER", "CLIENT", True, None]))
    if kind is not None:
        span["kind"] = kind
    if draw(st.booleans()):
        span["name"] = draw(st.sampled_from(["POST", "", "chat"]))
    pairs = draw(st.lists(ATTRS, max_size=6))
    span["attributes"] = [{"key": k, "value": _value(v)} for k, v in pairs]
    if draw(st.integers(0, 20)) == 0:
        span["attributes"] = draw(st.sampled_from(["oops", [3], [{"key": 1}]]))
    return span


RESOURCES = st.sampled_from(
    [
        {"attributes": [{"key": "service.name", "value": {"stringValue": "shop"}}]},
        {"attributes": [{"key": "service.name", "value": {"stringValue": "legacy"}}]},
        {"attributes": [{"key": "enduser.id", "value": {"stringValue": "u-2"}}]},
        {},
        "not an object",
    ]
)


@st.composite
def documents(draw: st.DrawFn) -> list[dict[str, Any]]:
    docs = []
    for _ in range(draw(st.integers(1, 3))):
        resource_spans = []
        for _ in range(draw(st.integers(1, 2))):
            spans = draw(st.lists(raw_spans(), max_size=12))
            key = draw(st.sampled_from(["scopeSpans", "instrumentationLibrarySpans"]))
            resource_spans.append({"resource": draw(RESOURCES), key: [{"spans": spans}]})
        docs.append({"resourceSpans": resource_spans})
    return docs


def _build(docs: list[dict[str, Any]], deferred: list[bool]) -> Batch:
    # Document by document, as `Intake.batches` adds them: one `Decoded` holding both spans
    # and deferred documents would add all its spans first, so a span sent twice with other
    # counts would keep the other copy (the last one added wins within a batch).
    builder = BatchBuilder(CFG, PRICER, FAMILIES)
    batch = Batch()
    for i, (doc, lazy) in enumerate(zip(docs, deferred, strict=True)):
        decode = decode_json_deferred if lazy else decode_json
        builder.add_decoded(batch, decode(orjson.dumps(doc), f"doc {i}"))
    builder.finish(batch)
    return batch


def _same(a: Batch, b: Batch) -> None:
    assert a.spans == b.spans
    assert a.requests == b.requests
    assert a.calls == b.calls
    assert Counter(a.rejected) == Counter(b.rejected)
    assert not a.traces
    assert not b.traces


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents(), st.data())
def test_row_path_builds_the_span_paths_batch(
    docs: list[dict[str, Any]], data: st.DataObject
) -> None:
    slow = _build(docs, [False] * len(docs))
    mixed = [data.draw(st.booleans()) for _ in docs]
    _same(slow, _build(docs, [True] * len(docs)))
    _same(slow, _build(docs, mixed))


def test_the_bench_shape_takes_the_row_path_and_counts_every_span() -> None:
    root = {
        "traceId": "a" * 32,
        "spanId": "1" * 16,
        "kind": 2,
        "name": "POST",
        "startTimeUnixNano": "1763600000000000000",
        "endTimeUnixNano": "1763600001000000000",
        "attributes": [
            {"key": "http.route", "value": {"stringValue": "/v1/chat"}},
            {"key": "enduser.id", "value": {"stringValue": "u-1"}},
        ],
    }
    call = {
        "traceId": "a" * 32,
        "spanId": "2" * 16,
        "parentSpanId": "1" * 16,
        "kind": 3,
        "startTimeUnixNano": "1763600000100000000",
        "endTimeUnixNano": "1763600000600000000",
        "attributes": [
            {"key": "gen_ai.request.model", "value": {"stringValue": "gpt-4o-mini"}},
            {"key": "gen_ai.usage.input_tokens", "value": {"intValue": "100"}},
            {"key": "gen_ai.usage.output_tokens", "value": {"intValue": "10"}},
        ],
    }
    doc = {"resourceSpans": [{"scopeSpans": [{"spans": [call, root]}]}]}
    decoded = decode_json_deferred(orjson.dumps(doc), "doc")
    assert (len(decoded), decoded.spans) == (2, [])
    builder = BatchBuilder(CFG, PRICER, FAMILIES)
    seen: list[Span] = []
    builder.add = lambda batch, span: seen.append(span)  # type: ignore[method-assign]
    batch = builder.build_decoded(decoded)
    assert not seen  # no span needed the Span path
    assert batch.spans == 2
    (facts,) = batch.requests.values()
    assert (facts.endpoint, facts.user_id, facts.duration_ms) == ("/v1/chat", "u-1", 1000)
    assert facts.started_at == utc_from_ns(1763600000000000000)
    (row,) = batch.calls.values()
    assert (row.model, row.duration_ms, row.input_tokens) == ("gpt-4o-mini", 500, 100)
