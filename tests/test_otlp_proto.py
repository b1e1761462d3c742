"""Decoding OTLP protobuf: the same spans as the JSON encoding (messages built with the real
opentelemetry-proto classes in `tests.otlp_messages`, which also writes the committed fixtures).
The files that carry it (length-prefixed streams, compression): tests/test_otlp_files.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.common.v1.common_pb2 import (
    AnyValue,
    ArrayValue,
    KeyValue,
    KeyValueList,
)
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, TracesData
from opentelemetry.proto.trace.v1.trace_pb2 import Span as SpanMessage
from sqlalchemy import Engine

from app.errors import InputError
from app.ingest import ingest_paths
from app.reports.unit_costs import unit_costs
from app.settings import Settings
from app.traces.files import read_documents
from app.traces.otlp_json import decode_document
from app.traces.otlp_proto import decode_protobuf
from app.warehouse.engine import make_engine
from app.warehouse.migrate import upgrade
from tests.otlp_messages import (
    COUNTING,
    PROTO,
    SPAN,
    TRACE,
    json_spans,
    one_span,
    to_request,
)

# --- the decoder -----------------------------------------------------------------------------


def test_same_spans_as_the_json_encoding() -> None:
    expected = json_spans()
    decoded = decode_protobuf(to_request(json.loads(COUNTING.read_text())).SerializeToString(), "t")
    assert not decoded.rejected
    assert len(decoded.spans) == len(expected) == 10
    for got, want in zip(decoded.spans, expected, strict=True):
        assert got == want


def test_committed_fixtures_hold_the_counting_spans() -> None:
    expected = json_spans()
    assert decode_protobuf((PROTO / "counting.binpb").read_bytes(), "binpb").spans == expected
    docs = list(read_documents(PROTO / "counting.pb"))
    assert [s for d in docs for s in d.decoded.spans] == expected
    assert docs[-1].end_offset == (PROTO / "counting.pb").stat().st_size


def test_traces_data_and_export_request_are_one_layout() -> None:
    request = to_request(json.loads(COUNTING.read_text()))
    as_traces_data = TracesData(resource_spans=request.resource_spans).SerializeToString()
    assert as_traces_data == request.SerializeToString()


def test_every_attribute_value_kind() -> None:
    def kv(key: str, **value: Any) -> KeyValue:
        return KeyValue(key=key, value=AnyValue(**value))

    data = one_span(
        attributes=[
            kv("s", string_value="x"),
            kv("empty_string", string_value=""),
            kv("i", int_value=42),
            kv("neg", int_value=-(2**63)),
            kv("big", int_value=2**63 - 1),
            kv("zero", int_value=0),
            kv("d", double_value=1.5),
            kv("b", bool_value=True),
            kv("f", bool_value=False),
            kv("bytes", bytes_value=b"\x00hi"),
            kv(
                "a",
                array_value=ArrayValue(
                    values=[AnyValue(string_value="x"), AnyValue(int_value=1), AnyValue()]
                ),
            ),
            kv(
                "kv",
                kvlist_value=KeyValueList(
                    values=[
                        kv("k", int_value=1),
                        kv("nested", array_value=ArrayValue(values=[AnyValue(bool_value=True)])),
                    ]
                ),
            ),
            KeyValue(key="unset"),
            kv("strindex", string_value_strindex=3),  # a profiles-only kind: no value here
        ]
    )
    span = decode_protobuf(data, "t").spans[0]
    assert span.attributes == {
        "s": "x",
        "empty_string": "",
        "i": 42,
        "neg": -(2**63),
        "big": 2**63 - 1,
        "zero": 0,
        "d": 1.5,
        "b": True,
        "f": False,
        "bytes": b"\x00hi",
        "a": ["x", 1, None],
        "kv": {"k": 1, "nested": [True]},
        "unset": None,
        "strindex": None,
    }
    assert [type(span.attributes[k]) for k in ("i", "d", "b", "bytes")] == [int, float, bool, bytes]
    # Decoding again (attributes now cached) gives equal, unshared mutable values.
    again = decode_protobuf(data, "t").spans[0]
    assert again.attributes == span.attributes
    assert again.attributes["a"] is not span.attributes["a"]


def test_attribute_values_agree_with_the_json_decoder() -> None:
    values = [
        {"stringValue": "x"},
        {"intValue": "-7"},
        {"doubleValue": 2.25},
        {"boolValue": False},
        {"bytesValue": "aGk="},
        {"arrayValue": {"values": [{"intValue": "1"}, {"stringValue": "y"}]}},
        {"kvlistValue": {"values": [{"key": "k", "value": {"doubleValue": 0.5}}]}},
        {},
    ]
    raw = {
        "traceId": TRACE,
        "spanId": SPAN,
        "startTimeUnixNano": "1763712000000000000",
        "attributes": [{"key": f"k{i}", "value": v} for i, v in enumerate(values)],
    }
    doc = {"resourceSpans": [{"scopeSpans": [{"spans": [raw]}]}]}
    (from_json,) = decode_document(doc, "j").spans
    (from_proto,) = decode_protobuf(to_request(doc).SerializeToString(), "p").spans
    assert from_proto == from_json


def test_root_span_end_before_start_and_resource() -> None:
    resource = Resource(attributes=[KeyValue(key="service.name", value=AnyValue(string_value="a"))])
    span = SpanMessage(
        trace_id=bytes.fromhex(TRACE),
        span_id=bytes.fromhex(SPAN),
        parent_span_id=b"",
        start_time_unix_nano=2000,
        end_time_unix_nano=1000,  # clock skew: kept, with zero duration
        kind=7,  # an enum value this proto version does not know stays an int
    )
    message = TracesData(
        resource_spans=[ResourceSpans(resource=resource, scope_spans=[ScopeSpans(spans=[span])])]
    )
    (s,) = decode_protobuf(message.SerializeToString(), "t").spans
    assert s.parent_span_id is None
    assert (s.start_ns, s.end_ns, s.kind) == (2000, 2000, 7)
    assert s.resource == {"service.name": "a"}
    assert s.name == ""


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"trace_id": b""}, "traceId is missing"),
        ({"trace_id": b"\x01" * 15}, "traceId is 15 bytes, not 16"),
        ({"trace_id": bytes(16)}, "traceId is all zeros"),
        ({"span_id": b""}, "spanId is missing"),
        ({"span_id": b"\x01" * 9}, "spanId is 9 bytes, not 8"),
        ({"span_id": bytes(8)}, "spanId is all zeros"),
        ({"parent_span_id": b"\x01" * 16}, "parentSpanId is 16 bytes, not 8"),
        ({"parent_span_id": bytes(8)}, "parentSpanId is all zeros"),
        ({"start_time_unix_nano": 0}, "startTimeUnixNano is missing or zero"),
    ],
)
def test_bad_span_is_rejected_alone(fields: dict[str, Any], reason: str) -> None:
    decoded = decode_protobuf(one_span(**fields), "t")
    assert [s.span_id for s in decoded.spans] == ["aaaaaaaaaaaaaaaa"]
    (rejected,) = decoded.rejected
    assert rejected.location == "resourceSpans[0].scopeSpans[0].spans[0]"
    assert reason in rejected.reason
    if "trace_id" not in fields:
        assert rejected.trace_id == TRACE  # named in the quarantine when its ids are readable
    if "span_id" not in fields:
        assert rejected.span_id == SPAN


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field (payloads here are under 128 bytes)."""
    assert len(payload) < 128
    return bytes([number << 3 | 2, len(payload)]) + payload


def test_malformed_attribute_rejects_its_span_alone() -> None:
    good = SpanMessage(
        trace_id=bytes.fromhex(TRACE), span_id=bytes.fromhex(SPAN), start_time_unix_nano=1
    ).SerializeToString()
    bad = good + _field(9, b"\x0a\x05ab")  # attributes[0]: a key that claims 5 bytes, has 2
    data = _field(1, _field(2, _field(2, bad) + _field(2, good)))
    decoded = decode_protobuf(data, "t")
    assert len(decoded.spans) == 1
    (rejected,) = decoded.rejected
    assert rejected.reason == "attributes[0] is not a valid KeyValue"
    assert (rejected.trace_id, rejected.span_id) == (TRACE, SPAN)


def test_malformed_resource_attribute_rejects_its_resource_spans() -> None:
    span = SpanMessage(
        trace_id=bytes.fromhex(TRACE), span_id=bytes.fromhex(SPAN), start_time_unix_nano=1
    ).SerializeToString()
    bad = _field(1, _field(1, b"\xff")) + _field(2, _field(2, span))
    good = _field(2, _field(2, span))
    decoded = decode_protobuf(_field(1, bad) + _field(1, good), "t")
    assert len(decoded.spans) == 1
    (rejected,) = decoded.rejected
    assert rejected.location == "resourceSpans[0].resource"


@pytest.mark.parametrize(
    "data",
    [
        b"\xff\xff\xff\xff",
        b'{"resourceSpans": []}',
        _field(1, _field(2, _field(2, _field(5, b"\xff\xfe")))),  # a span name not UTF-8
        _field(1, b"\x0a\x7f"),  # a field longer than its message
    ],
)
def test_undecodable_body_raises(data: bytes) -> None:
    with pytest.raises(InputError, match=r"^body: not an OTLP protobuf message: "):
        decode_protobuf(data, "body")


def test_empty_and_unknown_fields() -> None:
    assert len(decode_protobuf(b"", "t")) == 0
    span = SpanMessage(
        trace_id=bytes.fromhex(TRACE), span_id=bytes.fromhex(SPAN), start_time_unix_nano=5
    )
    span.events.add(name="gen_ai.choice", time_unix_nano=6)
    span.links.add(trace_id=bytes(16))  # not read, so not checked
    data = TracesData(
        resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=[span])], schema_url="x")]
    ).SerializeToString()
    unknown = b"\xa8\x1f\x01"  # field 501, a varint: a newer producer's field, ignored
    assert [s.span_id for s in decode_protobuf(data + unknown, "t").spans] == [SPAN]


# --- end to end ------------------------------------------------------------------------------


def test_ingest_protobuf_gives_the_same_unit_costs_as_json(engine: Engine, tmp_path: Path) -> None:
    dims = ["endpoint", "model"]
    reference = make_engine(f"sqlite:///{tmp_path / 'from_json.db'}")
    upgrade(reference)
    try:
        from_json = ingest_paths(reference, Settings(), [COUNTING])
        expected = unit_costs(reference, dims)
    finally:
        reference.dispose()
    from_proto = ingest_paths(engine, Settings(), [PROTO / "counting.binpb"])
    assert from_proto.ok and from_proto.quarantined == 0
    assert (from_proto.spans, from_proto.calls_new) == (from_json.spans, from_json.calls_new)
    assert unit_costs(engine, dims) == expected
    assert expected  # not trivially equal
    # The stream form of the same spans adds nothing: every span is already stored.
    again = ingest_paths(engine, Settings(), [PROTO / "counting.pb"])
    assert (again.calls_new, again.requests_new) == (0, 0)
    assert unit_costs(engine, dims) == expected
