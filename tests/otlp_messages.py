"""OTLP protobuf messages built with the real opentelemetry-proto classes, for the tests.

`to_request` turns an OTLP JSON document into the `ExportTraceServiceRequest` holding the same
spans. The committed fixtures under tests/fixtures/otlp/proto/ are written from counting.json by
this module:

    .venv/bin/python -m tests.otlp_messages   # rewrites counting.binpb and counting.pb

`counting.binpb` is one `ExportTraceServiceRequest` (awss3exporter `otlp_proto`); `counting.pb` is
the Collector file exporter's `format: proto` stream: one `TracesData` per resourceSpans entry,
each preceded by its length (4 bytes, big-endian).
"""

from __future__ import annotations

import base64
import json
import struct
from typing import Any

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

from app.traces.otlp_json import decode_document
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


if __name__ == "__main__":
    write_fixtures()
