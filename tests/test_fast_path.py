"""The msgspec path (`otlp_fast`) builds exactly the batch of the `Span` path, and the decoder
still only ever raises our own `InputError`.

`decode_json_deferred` types a document with msgspec when it can; anything it is not sure of
is read the `otlp_json` way, whole. Property tests: generated documents with odd shapes
(intValue as string or number, huge ints, missing fields, `instrumentationLibrarySpans`,
non-UTF-8 text, escapes, duplicate keys, arrays and kvlists, base64 ids) give the same span
count, requests, calls and rejections both ways.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.errors import InputError
from app.traces.batch import Batch, BatchBuilder
from app.traces.decoded import Decoded
from app.traces.otlp_fast import FastDocument
from app.traces.otlp_json import decode_json, decode_json_deferred
from tests.test_decoder_fuzz import HUGE_INTS, JSON_VALUES, ODD_STRINGS, mutated_documents
from tests.test_row_path import ATTRS, CFG, FAMILIES, PRICER, SPANS, TRACES, _value, documents

PROPERTY = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _slow(data: bytes) -> Batch | str:
    try:
        decoded = decode_json(data, "doc")
    except InputError as exc:
        return str(exc)
    return BatchBuilder(CFG, PRICER, FAMILIES).build_decoded(decoded)


def _fast(data: bytes) -> Batch | str:
    try:
        decoded = decode_json_deferred(data, "doc")
    except InputError as exc:
        return str(exc)
    return BatchBuilder(CFG, PRICER, FAMILIES).build_decoded(decoded)


def _same(data: bytes) -> None:
    a, b = _slow(data), _fast(data)
    if isinstance(a, str) or isinstance(b, str):
        assert a == b
        return
    assert a.spans == b.spans
    assert a.requests == b.requests
    assert a.calls == b.calls
    assert Counter(a.rejected) == Counter(b.rejected)


ODD_VALUES = st.sampled_from(
    [
        {"intValue": "42"},
        {"intValue": 42},
        {"intValue": str(2**70)},
        {"intValue": 2**70},
        {"intValue": "4.5"},
        {"intValue": 4.0},
        {"intValue": True},
        {"intValue": None},
        {"doubleValue": 1.5},
        {"doubleValue": 3},
        {"doubleValue": "NaN"},
        {"doubleValue": 10**30},
        {"boolValue": True},
        {"boolValue": 1},
        {"stringValue": None},
        {"stringValue": 5},
        {"stringValue": "a", "intValue": "7"},
        {"intValue": "7", "doubleValue": 2.5},
        {"arrayValue": {"values": [{"stringValue": "stop"}, {"intValue": "3"}]}},
        {"arrayValue": None},
        {"kvlistValue": {"values": [{"key": "k", "value": {"boolValue": False}}]}},
        {"bytesValue": "aGVsbG8="},
        {"bytesValue": "not base64!"},
        {"unknownValue": 1},
        {},
        None,
        "text",
    ]
)


@st.composite
def odd_documents(draw: st.DrawFn) -> bytes:
    """Row-path documents, with odd values put in, as JSON text (sometimes edited as text)."""
    docs = draw(documents())
    doc: Any = docs[0]
    for rs in doc["resourceSpans"]:
        for ss in rs.get("scopeSpans") or rs.get("instrumentationLibrarySpans") or []:
            for span in ss["spans"]:
                if not isinstance(span, dict):
                    continue
                if draw(st.integers(0, 3)) == 0 and isinstance(span.get("attributes"), list):
                    key = draw(st.sampled_from(["gen_ai.usage.input_tokens", "x", "enduser.id"]))
                    span["attributes"].append({"key": key, "value": draw(ODD_VALUES)})
                if draw(st.integers(0, 8)) == 0:
                    field = draw(st.sampled_from(["traceId", "spanId", "name", "kind"]))
                    span.pop(field, None) if draw(st.booleans()) else span.update(
                        {field: draw(st.one_of(HUGE_INTS, ODD_STRINGS, st.none()))}
                    )
                if draw(st.integers(0, 8)) == 0:
                    span["startTimeUnixNano"] = draw(HUGE_INTS)
    if draw(st.integers(0, 10)) == 0:
        doc = {"resource_spans": doc["resourceSpans"]}
    text = json.dumps(doc, ensure_ascii=draw(st.booleans())).encode("utf-8", "surrogatepass")
    edit = draw(st.integers(0, 12))
    if edit == 0:  # not UTF-8, in a field nobody reads
        text = text[:-1] + b',"junk":"\xff\xfe"}'
    elif edit == 1:  # a duplicate key: the last one counts
        text = text[:-1] + b',"resourceSpans":[]}'
    elif edit == 2:
        text = text[:-1] + b',"resourceSpans":null}'
    elif edit == 3:
        text = text.replace(b'"name": "POST"', b'"name": "P\\u00d6ST"')
    return text


def _text(value: Any) -> bytes:
    return json.dumps(value, allow_nan=True).encode("utf-8", "surrogatepass")


@PROPERTY
@given(odd_documents())
def test_fast_path_builds_the_span_paths_batch(data: bytes) -> None:
    _same(data)


@st.composite
def plain_documents(draw: st.DrawFn) -> bytes:
    """Documents msgspec types (right JSON types everywhere), so the fast path itself runs:
    good and bad ids, times as strings or numbers, every kind of attribute value, bad token
    counts (quarantined through `add`), spans of one trace across resources."""
    odd = draw(st.integers(0, 2)) == 0  # else every span is one the fast path takes
    traces = TRACES if odd else TRACES[:2]
    span_ids = SPANS if odd else SPANS[:6]
    attrs = ATTRS if odd else ATTRS.filter(lambda kv: kv != ("weird", {"intValue": "nope"}))
    resource_spans = []
    for _ in range(draw(st.integers(1, 3))):
        spans = []
        for _ in range(draw(st.integers(0, 10))):
            start = draw(st.sampled_from([1_763_600_000_123_456_789, 1_763_600_000_000_000_001]))
            start += draw(st.integers(0, 3)) * 1_000_000
            times = [str(start), start, "0", "x"] if odd else [str(start), start]
            span: dict[str, Any] = {
                "traceId": draw(st.sampled_from(traces)),
                "spanId": draw(st.sampled_from(span_ids)),
                "startTimeUnixNano": draw(st.sampled_from(times)),
                "kind": draw(st.sampled_from([1, 2, 3])),
                "attributes": [
                    {"key": k, "value": _value(v)} for k, v in draw(st.lists(attrs, max_size=6))
                ],
            }
            if draw(st.booleans()):
                parents = ["", *SPANS[:6], "0" * 16] if odd else ["", *SPANS[:6]]
                span["parentSpanId"] = draw(st.sampled_from(parents))
            end = draw(st.sampled_from([None, start + 900_000_000, start - 5]))
            if end is not None:
                span["endTimeUnixNano"] = str(end) if draw(st.booleans()) else end
            if draw(st.booleans()):
                span["name"] = draw(st.sampled_from(["POST", "", "chat"]))
            if odd and draw(st.integers(0, 6)) == 0:
                span["attributes"].append({"key": "y", "value": draw(ODD_VALUES)})
            spans.append(span)
        resource = draw(st.sampled_from(["shop", "legacy", None]))
        rs: dict[str, Any] = {
            draw(st.sampled_from(["scopeSpans", "instrumentationLibrarySpans"])): [
                {"scope": {"name": "x"}, "spans": spans}
            ]
        }
        if resource:
            rs["resource"] = {
                "attributes": [{"key": "service.name", "value": {"stringValue": resource}}]
            }
        resource_spans.append(rs)
    return json.dumps({"resourceSpans": resource_spans}).encode()


@PROPERTY
@given(plain_documents())
def test_fast_path_on_plain_documents(data: bytes) -> None:
    _same(data)


@PROPERTY
@given(mutated_documents())
def test_fast_path_on_mutated_documents(doc: Any) -> None:
    _same(json.dumps(doc, allow_nan=True).encode())


@PROPERTY
@given(st.one_of(st.binary(max_size=500), JSON_VALUES.map(_text)))
def test_fast_path_only_raises_input_error(data: bytes) -> None:
    try:
        decoded = decode_json_deferred(data, "fuzz")
    except InputError:
        return
    assert isinstance(decoded, Decoded)
    BatchBuilder(CFG, PRICER, FAMILIES).build_decoded(decoded)


@PROPERTY
@given(JSON_VALUES)
def test_fast_path_only_raises_input_error_on_odd_resource_spans(value: Any) -> None:
    test_fast_path_only_raises_input_error.hypothesis.inner_test(  # type: ignore[attr-defined]
        _text({"resourceSpans": value})
    )


def test_plain_documents_take_the_fast_path_and_odd_ones_do_not() -> None:
    span = {
        "traceId": "a" * 32,
        "spanId": "1" * 16,
        "kind": 3,
        "startTimeUnixNano": "1763600000000000000",
        "attributes": [
            {"key": "gen_ai.request.model", "value": {"stringValue": "gpt-4o-mini"}},
            {"key": "gen_ai.usage.input_tokens", "value": {"intValue": "100"}},
            {"key": "gen_ai.usage.output_tokens", "value": {"intValue": 10}},
            {"key": "gen_ai.response.finish_reasons", "value": {"arrayValue": {"values": []}}},
        ],
    }
    plain = orjson.dumps({"resourceSpans": [{"instrumentationLibrarySpans": [{"spans": [span]}]}]})
    (document,) = decode_json_deferred(plain, "doc").documents
    assert isinstance(document, FastDocument)
    _same(plain)
    not_utf8 = plain[:-1] + b',"x":"\xff"}'
    with pytest.raises(InputError, match="not UTF-8"):  # orjson's verdict, as before
        decode_json_deferred(not_utf8, "doc")
    for odd in (plain.replace(b"aaaa", b"AAAA"), not_utf8, b'{"a":1}', b'{"resourceSpans":3}'):
        _same(odd)
