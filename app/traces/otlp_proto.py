"""Decode OTLP protobuf (`ExportTraceServiceRequest` / `TracesData`, and streams of them).

The two messages share one wire layout (field 1, `resource_spans`), so one parser reads both:
an OTLP/HTTP body, an awss3exporter `otlp_proto` object (`.binpb`), or one frame of the Collector
file exporter's `format: proto` output. The result is the same `Span`s, by the same rules, as
`otlp_json` gives for the JSON encoding of the same spans: ids as lowercase hex, an empty parent
meaning a root span, a missing or zero start rejected, an end before the start clamped to it.

Speed: building a Python object for every `KeyValue` and `AnyValue` costs more than everything
else together, and most attributes repeat from span to span (model, provider, route, team). So
the message is parsed against a lean copy of the OTLP schema (`_lean_schema`) that keeps only the
fields we read, with `attributes` declared as `repeated bytes` (a `KeyValue` is length-delimited,
so the wire format is the same): each attribute arrives as its encoded bytes, decoded once with
the real `KeyValue` class and then looked up in a cache. Events, links and status are skipped
unread. A malformed attribute rejects its span alone, as in the JSON decoder.

The Collector file exporter's `format: proto` output is a stream of messages, each preceded by
its length as a 4-byte big-endian unsigned integer (`binary.BigEndian.PutUint32` in its
`exportMessageAsBuffer`); `iter_length_prefixed` splits such a stream.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Any

# protobuf ships no type information: its messages type as Any at this boundary.
from google.protobuf import (  # type: ignore[import-untyped,unused-ignore]
    descriptor_pb2,
    descriptor_pool,
    message_factory,
)
from google.protobuf.message import DecodeError  # type: ignore[import-untyped,unused-ignore]
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, TracesData
from opentelemetry.proto.trace.v1.trace_pb2 import Span as SpanMessage

from app.errors import InputError
from app.traces.decoded import Decoded, Rejected
from app.traces.spans import AttrValue, Span

_LENGTH = struct.Struct(">I")
_ZERO_TRACE = bytes(16)
_ZERO_SPAN = bytes(8)

# Decoded attributes by their encoded bytes. Only short ones with immutable values are kept, and
# the cache is emptied when full, so it stays small whatever the input.
_CACHE_LIMIT = 50_000
_CACHEABLE_BYTES = 256
_cache: dict[bytes, tuple[str, AttrValue]] = {}


def decode_protobuf(data: bytes, where: str) -> Decoded:
    """Parse and decode one OTLP protobuf message; raises `InputError` if it is not one.

    A bad span (missing or malformed ids, no start time, a malformed attribute) is rejected
    alone, with its path in the JSON names of the fields, and the rest of the message is kept.
    """
    try:
        message = _LeanTracesData.FromString(data)
    except DecodeError as exc:
        raise InputError(f"{where}: not an OTLP protobuf message: {exc}") from None
    return _decode(message)


def iter_length_prefixed(data: bytes, offset: int = 0) -> Iterator[tuple[int, bytes]]:
    """The messages of a length-prefixed stream, from byte `offset`, as (end offset, message).

    Each message is preceded by its length as a 4-byte big-endian unsigned integer. A last
    message cut short (a file still being written) ends the iteration quietly: the end offset
    of the last message yielded is where the next read should begin.
    """
    size = len(data)
    unpack = _LENGTH.unpack_from
    while offset + 4 <= size:
        (length,) = unpack(data, offset)
        end = offset + 4 + length
        if end > size:
            return
        yield end, data[offset + 4 : end]
        offset = end


def _decode(message: Any) -> Decoded:
    out = Decoded()
    append = out.spans.append
    attributes = _attributes
    zero_trace = _ZERO_TRACE
    zero_span = _ZERO_SPAN
    for ri, rs in enumerate(message.resource_spans):
        resource = attributes(rs.resource.attributes)
        if resource is None:
            reason = _attribute_problem(rs.resource.attributes)
            out.rejected.append(Rejected(f"resourceSpans[{ri}].resource", reason))
            continue
        for si, ss in enumerate(rs.scope_spans):
            for pi, raw in enumerate(ss.spans):
                trace_id = raw.trace_id
                span_id = raw.span_id
                parent = raw.parent_span_id
                start = raw.start_time_unix_nano
                attrs = attributes(raw.attributes)
                # The happy path in one test; anything odd gets its reason from _reject.
                if (
                    attrs is None
                    or len(trace_id) != 16
                    or len(span_id) != 8
                    or trace_id == zero_trace
                    or span_id == zero_span
                    or (parent and (len(parent) != 8 or parent == zero_span))
                    or not start
                ):
                    out.rejected.append(_reject(raw, ri, si, pi))
                    continue
                end = raw.end_time_unix_nano
                append(
                    Span(
                        trace_id=trace_id.hex(),
                        span_id=span_id.hex(),
                        parent_span_id=parent.hex() if parent else None,
                        name=raw.name,
                        kind=raw.kind,
                        start_ns=start,
                        # An end before the start (clock skew between hosts): zero duration.
                        end_ns=end if end >= start else start,
                        attributes=attrs,
                        resource=resource,
                    )
                )
    return out


def _attributes(encoded: Any) -> dict[str, AttrValue] | None:
    """The attributes from their encoded `KeyValue`s; None if one is malformed."""
    # Look every attribute up in the cache in one C-level pass; decode only the misses.
    pairs: list[Any] = list(map(_cache.get, encoded))
    if None in pairs:
        for i, pair in enumerate(pairs):
            if pair is None:
                pair = _key_value(encoded[i])
                if pair is None:
                    return None
                pairs[i] = pair
    return dict(pairs)


def _key_value(item: bytes) -> tuple[str, AttrValue] | None:
    try:
        kv = KeyValue.FromString(item)
    except DecodeError:
        return None
    value = kv.value
    which = value.WhichOneof("value")
    if which == "string_value":
        pair: tuple[str, AttrValue] = (kv.key, value.string_value)
    elif which == "int_value":
        pair = (kv.key, value.int_value)
    else:
        pair = (kv.key, _any_value(value, which))
        if type(pair[1]) in (list, dict):
            return pair  # mutable: each span gets its own
    if len(item) <= _CACHEABLE_BYTES:
        if len(_cache) >= _CACHE_LIMIT:
            _cache.clear()
        _cache[item] = pair
    return pair


def _any_value(value: Any, which: str | None) -> AttrValue:
    """An OTLP `AnyValue` as a plain Python value; None when no value is set."""
    if which == "string_value":
        return str(value.string_value)
    if which == "int_value":
        return int(value.int_value)
    if which == "double_value":
        return float(value.double_value)
    if which == "bool_value":
        return bool(value.bool_value)
    if which == "array_value":
        return [_any_value(v, v.WhichOneof("value")) for v in value.array_value.values]
    if which == "kvlist_value":
        return {
            kv.key: _any_value(kv.value, kv.value.WhichOneof("value"))
            for kv in value.kvlist_value.values
        }
    if which == "bytes_value":
        return bytes(value.bytes_value)
    return None  # unset, or a value kind of another signal (profiles' string_value_strindex)


def _reject(raw: Any, ri: int, si: int, pi: int) -> Rejected:
    at = f"resourceSpans[{ri}].scopeSpans[{si}].spans[{pi}]"
    reason = (
        _id_problem(raw.trace_id, 16, "traceId")
        or _id_problem(raw.span_id, 8, "spanId")
        or (_id_problem(raw.parent_span_id, 8, "parentSpanId") if raw.parent_span_id else None)
        or (None if raw.start_time_unix_nano else "startTimeUnixNano is missing or zero")
        or _attribute_problem(raw.attributes)
    )
    return Rejected(at, reason, _maybe_id(raw.trace_id, 16), _maybe_id(raw.span_id, 8))


def _id_problem(value: bytes, length: int, name: str) -> str | None:
    if not value:
        return f"{name} is missing"
    if len(value) != length:
        return f"{name} is {len(value)} bytes, not {length}"
    if not any(value):
        return f"{name} is all zeros (invalid)"
    return None


def _attribute_problem(encoded: Any) -> str:
    for i, item in enumerate(encoded):
        if _key_value(item) is None:
            return f"attributes[{i}] is not a valid KeyValue"
    return "malformed"  # not reached: only called when an attribute failed


def _maybe_id(value: bytes, length: int) -> str | None:
    """An id good enough to name a rejected span in the quarantine, else None."""
    return value.hex() if len(value) == length else None


def _lean_schema() -> Any:
    """`TracesData` with only the fields we read, and `attributes` left encoded.

    Field numbers and types are copied from the real OTLP descriptors, so they cannot drift;
    only `attributes` (repeated `KeyValue` → repeated bytes) and `kind` (enum → int32, the same
    varint) change type. Everything else is an unknown field to it, skipped unread.
    """
    proto = descriptor_pb2.FieldDescriptorProto
    package = "spendguard.otlp_lean"
    file = descriptor_pb2.FileDescriptorProto(
        name="spendguard/otlp_lean.proto", package=package, syntax="proto3"
    )
    kept: dict[Any, tuple[str, ...]] = {
        TracesData: ("resource_spans",),
        ResourceSpans: ("resource", "scope_spans"),
        ScopeSpans: ("spans",),
        Resource: ("attributes",),
        SpanMessage: (
            "trace_id",
            "span_id",
            "parent_span_id",
            "name",
            "kind",
            "start_time_unix_nano",
            "end_time_unix_nano",
            "attributes",
        ),
    }
    repeated = {"resource_spans", "scope_spans", "spans", "attributes"}
    for cls, names in kept.items():
        message = file.message_type.add(name=cls.DESCRIPTOR.name)
        for name in names:
            real = cls.DESCRIPTOR.fields_by_name[name]
            field = message.field.add(
                name=name,
                number=real.number,
                type=real.type,
                label=proto.LABEL_REPEATED if name in repeated else proto.LABEL_OPTIONAL,
            )
            if name == "attributes":
                field.type = proto.TYPE_BYTES
            elif name == "kind":
                field.type = proto.TYPE_INT32
            elif real.message_type is not None:
                field.type_name = f".{package}.{real.message_type.name}"
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{package}.TracesData"))


_LeanTracesData = _lean_schema()
