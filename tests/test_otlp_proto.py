"""Decoding OTLP protobuf: the same spans as the JSON encoding, and the files that carry it.

Messages are built with the real opentelemetry-proto classes (`to_request` turns an OTLP JSON
document into the `ExportTraceServiceRequest` holding the same spans). The committed fixtures
under tests/fixtures/otlp/proto/ are written by that same helper from counting.json:

    .venv/bin/python -m tests.test_otlp_proto   # rewrites counting.binpb and counting.pb

`counting.binpb` is one `ExportTraceServiceRequest` (awss3exporter `otlp_proto`); `counting.pb` is
the Collector file exporter's `format: proto` stream: one `TracesData` per resourceSpans entry,
each preceded by its length (4 bytes, big-endian).
"""

from __future__ import annotations

import base64
import gzip
import json
import struct
from pathlib import Path
from typing import Any

import pytest
import zstandard
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import (
    AnyValue,
    ArrayValue,
    InstrumentationScope,
    KeyValue,
    KeyValueList,
)
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Status, TracesData
from opentelemetry.proto.trace.v1.trace_pb2 import Span as SpanMessage
from sqlalchemy import Engine

from app.errors import InputError
from app.ingest import ingest_paths
from app.reports.unit_costs import unit_costs
from app.settings import Settings
from app.traces.files import SUFFIXES, discover, read_documents
from app.traces.otlp_json import decode_document
from app.traces.otlp_proto import decode_protobuf, iter_length_prefixed
from app.warehouse.engine import make_engine
from app.warehouse.migrate import upgrade
from tests.conftest import FIXTURES

COUNTING = FIXTURES / "otlp" / "counting.json"
PROTO = FIXTURES / "otlp" / "proto"
TRACE = "5b8efff798038103d269b633813fc60c"
SPAN = "eee19b7ec3c1b174"


# --- building messages with the real classes -----------------------------------------------


def any_value(value: dict[str, Any]) -> AnyValue:
    """An OTLP JSON AnyValue as the protobuf message."""
    if "stringValue" in value:
        return AnyValue(string_value=value["stringValue"])
    if "intValue" in value:
        return AnyValue(int_value=int(value["intValue"]))
    if "doubleValue" in value:
        return AnyValue(double_value=float(value["doubleValue"]))
    if "boolValue" in value:
        return AnyValue(bool_value=value["boolValue"])
    if "arrayValue" in value:
        values = [any_value(v) for v in value["arrayValue"].get("values", [])]
        return AnyValue(array_value=ArrayValue(values=values))
    if "kvlistValue" in value:
        return AnyValue(kvlist_value=KeyValueList(values=attributes(value["kvlistValue"])))
    if "bytesValue" in value:
        return AnyValue(bytes_value=base64.b64decode(value["bytesValue"]))
    return AnyValue()


def attributes(node: dict[str, Any]) -> list[KeyValue]:
    return [
        KeyValue(key=kv["key"], value=any_value(kv.get("value", {})))
        for kv in node.get("values", node.get("attributes", []))
    ]


def span_message(raw: dict[str, Any]) -> SpanMessage:
    return SpanMessage(
        trace_id=bytes.fromhex(raw["traceId"]),
        span_id=bytes.fromhex(raw["spanId"]),
        parent_span_id=bytes.fromhex(raw.get("parentSpanId", "")),
        name=raw.get("name", ""),
        kind=raw.get("kind", 0),
        start_time_unix_nano=int(raw.get("startTimeUnixNano", 0)),
        end_time_unix_nano=int(raw.get("endTimeUnixNano", 0)),
        attributes=attributes(raw),
        status=Status(code=raw.get("status", {}).get("code", 0)),
    )


def resource_spans(rs: dict[str, Any]) -> ResourceSpans:
    return ResourceSpans(
        resource=Resource(attributes=attributes(rs.get("resource", {}))),
        scope_spans=[
            ScopeSpans(
                scope=InstrumentationScope(**ss.get("scope", {})),
                spans=[span_message(s) for s in ss.get("spans", [])],
            )
            for ss in rs.get("scopeSpans", [])
        ],
    )


def to_request(doc: dict[str, Any]) -> ExportTraceServiceRequest:
    """The `ExportTraceServiceRequest` holding the spans of an OTLP JSON document."""
    return ExportTraceServiceRequest(
        resource_spans=[resource_spans(rs) for rs in doc["resourceSpans"]]
    )


def length_prefixed(*messages: bytes) -> bytes:
    return b"".join(struct.pack(">I", len(m)) + m for m in messages)


def counting_stream() -> bytes:
    """counting.json as the file exporter writes it: one TracesData per resourceSpans entry."""
    request = to_request(json.loads(COUNTING.read_text()))
    return length_prefixed(
        *(TracesData(resource_spans=[rs]).SerializeToString() for rs in request.resource_spans)
    )


def write_fixtures() -> None:
    PROTO.mkdir(parents=True, exist_ok=True)
    request = to_request(json.loads(COUNTING.read_text()))
    (PROTO / "counting.binpb").write_bytes(request.SerializeToString())
    (PROTO / "counting.pb").write_bytes(counting_stream())


def one_span(**fields: Any) -> bytes:
    span = SpanMessage(
        trace_id=bytes.fromhex(TRACE),
        span_id=bytes.fromhex(SPAN),
        name="POST /v1/chat",
        kind=2,
        start_time_unix_nano=1763712000000000000,
        end_time_unix_nano=1763712002400000000,
    )
    for name, value in fields.items():
        if name == "attributes":
            span.attributes.extend(value)
        else:
            setattr(span, name, value)
    good = SpanMessage(
        trace_id=bytes.fromhex(TRACE),
        span_id=bytes.fromhex("aaaaaaaaaaaaaaaa"),
        start_time_unix_nano=1763712000000000000,
    )
    return TracesData(
        resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=[span, good])])]
    ).SerializeToString()


def json_spans() -> list[Any]:
    return decode_document(json.loads(COUNTING.read_text()), "counting.json").spans


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


# --- length-prefixed streams -----------------------------------------------------------------


def test_iter_length_prefixed() -> None:
    stream = length_prefixed(b"a", b"", b"bcd")
    assert list(iter_length_prefixed(stream)) == [(5, b"a"), (9, b""), (16, b"bcd")]
    assert list(iter_length_prefixed(stream, 5)) == [(9, b""), (16, b"bcd")]
    # A message cut short stops the iteration: the writer is still on it.
    assert list(iter_length_prefixed(stream[:-1])) == [(5, b"a"), (9, b"")]
    assert list(iter_length_prefixed(stream[:11])) == [(5, b"a"), (9, b"")]
    assert list(iter_length_prefixed(b"\xff\xff\xff\xff")) == []


def test_length_prefixed_file(tmp_path: Path) -> None:
    path = tmp_path / "traces.pb"
    stream = counting_stream()
    path.write_bytes(stream)
    docs = list(read_documents(path))
    assert [s for d in docs for s in d.decoded.spans] == json_spans()
    offsets = [0] + [d.end_offset for d in docs[:-1]]
    assert [d.location for d in docs] == [f"message at byte {o}" for o in offsets]
    # Read again from a checkpoint: the same documents, the same locations.
    again = list(read_documents(path, start=docs[0].end_offset))
    assert [d.location for d in again] == [d.location for d in docs[1:]]


def test_growing_length_prefixed_file(tmp_path: Path) -> None:
    path = tmp_path / "live.pb"
    first, second = (TracesData.FromString(m) for _, m in iter_length_prefixed(counting_stream()))
    whole = length_prefixed(first.SerializeToString(), second.SerializeToString())
    cut = len(whole) - 10
    path.write_bytes(whole[:cut])
    docs = list(read_documents(path, complete=False))
    assert len(docs) == 1  # the second message is still being written
    path.write_bytes(whole)
    rest = list(read_documents(path, start=docs[0].end_offset, complete=False))
    assert [d.location for d in rest] == [f"message at byte {docs[0].end_offset}"]
    assert rest[0].end_offset == len(whole)
    assert len(rest[0].decoded.spans) == len(second.resource_spans[0].scope_spans[0].spans)


def test_truncated_tail_of_a_complete_file_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "done.pb"
    stream = counting_stream()
    path.write_bytes(stream[:-10])
    docs = list(read_documents(path))
    last = docs[-1]
    assert not last.decoded.spans and last.end_offset == len(stream) - 10
    assert "message cut short" in last.decoded.rejected[0].reason
    assert last.decoded.rejected[0].location == last.location
    path.write_bytes(stream + b"\x00\x00")  # a length prefix cut short
    assert "cut short" in list(read_documents(path))[-1].decoded.rejected[0].reason


def test_bad_message_in_a_stream_is_rejected_and_reading_goes_on(tmp_path: Path) -> None:
    path = tmp_path / "t.pb"
    good = one_span()
    path.write_bytes(length_prefixed(good, b"\xff\xff", good))
    docs = list(read_documents(path))
    assert [len(d.decoded.spans) for d in docs] == [2, 0, 2]
    (bad,) = docs[1].decoded.rejected
    assert bad.location == f"message at byte {4 + len(good)}"
    assert bad.reason.startswith("not an OTLP protobuf message")


def test_pb_file_of_one_bare_message(tmp_path: Path) -> None:
    path = tmp_path / "t.pb"
    path.write_bytes((PROTO / "counting.binpb").read_bytes())
    (doc,) = read_documents(path)
    assert doc.location == "document"
    assert doc.decoded.spans == json_spans()


# --- compression and discovery ---------------------------------------------------------------


def zstd(data: bytes) -> bytes:
    return zstandard.ZstdCompressor().compress(data)


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("t.binpb", lambda: (PROTO / "counting.binpb").read_bytes()),
        ("t.binpb.gz", lambda: gzip.compress((PROTO / "counting.binpb").read_bytes())),
        ("t.binpb.zst", lambda: zstd((PROTO / "counting.binpb").read_bytes())),
        ("t.pb.gz", lambda: gzip.compress(counting_stream())),
        ("t.pb.zst", lambda: zstd(counting_stream())),  # the exporter's native compression
        ("t.json.zst", lambda: zstd(COUNTING.read_bytes())),
        (
            "t.jsonl.zst",  # one zstd frame per write, as in the exporter's rotation mode
            lambda: b"".join(zstd(line + b"\n") for line in _counting_lines()),
        ),
    ],
)
def test_compressed_variants(tmp_path: Path, name: str, content: Any) -> None:
    path = tmp_path / name
    path.write_bytes(content())
    assert discover([tmp_path]) == [path]
    assert [s for d in read_documents(path) for s in d.decoded.spans] == json_spans()


def _counting_lines() -> list[bytes]:
    doc = json.loads(COUNTING.read_text())
    return [json.dumps({"resourceSpans": [rs]}).encode() for rs in doc["resourceSpans"]]


def test_legacy_per_message_zstd(tmp_path: Path) -> None:
    # Without its nativeCompression gate, the exporter compresses each message on its own and
    # length-prefixes the result, for `format: proto` and `format: json` alike.
    frames = [zstd(m) for _, m in iter_length_prefixed(counting_stream())]
    (tmp_path / "t.pb.zst").write_bytes(length_prefixed(*frames))
    (tmp_path / "t.jsonl.zst").write_bytes(length_prefixed(*(zstd(x) for x in _counting_lines())))
    for name in ("t.pb.zst", "t.jsonl.zst"):
        docs = list(read_documents(tmp_path / name))
        assert [s for d in docs for s in d.decoded.spans] == json_spans()
        assert docs[0].location == "message at byte 0"
        assert docs[-1].end_offset == (tmp_path / name).stat().st_size


def test_zstd_json_lines_stream_with_offsets(tmp_path: Path) -> None:
    lines = _counting_lines()
    path = tmp_path / "live.jsonl.zst"
    text = b"".join(line + b"\n" for line in lines)
    path.write_bytes(zstd(text) + zstd(b'{"resourceSpans": ['))  # a last line half-written
    docs = list(read_documents(path, complete=False))
    assert [d.end_offset for d in docs] == [
        sum(len(x) + 1 for x in lines[: i + 1]) for i in range(len(lines))
    ]
    assert list(read_documents(path, start=docs[1].end_offset, complete=False)) == docs[2:]


def test_corrupt_zstd_is_an_error_for_the_file(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl.zst"
    good = zstd(b"x" * 1000)
    path.write_bytes(good[:20] + b"\xff" * 40)
    with pytest.raises(InputError, match="corrupt zstd"):
        list(read_documents(path))


def test_corrupt_gzip_single_document_is_an_error_for_the_file(tmp_path: Path) -> None:
    path = tmp_path / "t.binpb.gz"
    path.write_bytes(b"\x1f\x8b" + b"\x00" * 30)
    with pytest.raises(InputError, match=r"t\.binpb\.gz: "):
        list(read_documents(path))


def test_suffixes_are_discovered() -> None:
    for suffix in (".binpb", ".pb", ".pb.gz", ".binpb.zst", ".json.zst", ".jsonl.zst"):
        assert suffix in SUFFIXES


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


if __name__ == "__main__":
    write_fixtures()
