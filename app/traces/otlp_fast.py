"""OTLP JSON decoded by msgspec into typed structs: the fast path for well-formed documents.

msgspec parses straight into the few fields we read (unknown fields are skipped without
building Python objects), in C. It is only a shortcut: a document it cannot type exactly (a
field of an unexpected JSON type, `resource_spans` in snake case, ids in base64, a float time,
a bad span, a malformed attribute, text that is not UTF-8 or has `\\u` escapes, …) is read by
`otlp_json` as before, whole, so every rejection and message stays that module's own. A
property test (tests/test_fast_path.py) checks both give the same batch.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec
import orjson
from msgspec import UNSET, Struct, UnsetType

from app.errors import InputError
from app.traces.otlp_json import LAST_NS, any_value
from app.traces.spans import AttrValue


class AnyValue(Struct, rename="camel", gc=False):
    string_value: str | UnsetType = UNSET
    int_value: int | str | UnsetType = UNSET
    double_value: float | UnsetType = UNSET
    bool_value: bool | UnsetType = UNSET
    # Rare on the spans we price: decoded by `otlp_json.any_value`, from the raw JSON.
    array_value: msgspec.Raw | UnsetType = UNSET
    kvlist_value: msgspec.Raw | UnsetType = UNSET
    bytes_value: msgspec.Raw | UnsetType = UNSET


class KeyValue(Struct, gc=False):
    key: str
    value: AnyValue | None = None


class FastSpan(Struct, rename="camel", gc=False):
    trace_id: str | None = None
    span_id: str | None = None
    parent_span_id: str | None = None
    name: str = ""
    kind: int = 0
    start_time_unix_nano: int | str = 0
    end_time_unix_nano: int | str | UnsetType = UNSET
    attributes: list[KeyValue] | None = None


class ScopeSpans(Struct, gc=False):
    spans: list[FastSpan] | None = None


class Resource(Struct, gc=False):
    attributes: list[KeyValue] | None = None


class ResourceSpans(Struct, rename="camel", gc=False):
    resource: Resource | None = None
    scope_spans: list[ScopeSpans] | None = None
    instrumentation_library_spans: list[ScopeSpans] | None = None


class TracesData(Struct, rename="camel", gc=False):
    resource_spans: list[ResourceSpans]


_DECODER = msgspec.json.Decoder(TracesData)


class FastDocument:
    """A document msgspec typed: its `resourceSpans`, and the raw text, to read it the
    `otlp_json` way if the builder finds a span it is not sure of."""

    __slots__ = ("data", "resource_spans", "spans")

    def __init__(self, data: bytes, resource_spans: list[ResourceSpans], spans: int) -> None:
        self.data = data
        self.resource_spans = resource_spans
        self.spans = spans


def decode_fast(data: bytes | str) -> FastDocument | None:
    """The typed document, or None when it must be read the `otlp_json` way."""
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogatepass")
    # msgspec does not check the UTF-8 of skipped fields, and may differ from orjson on
    # escaped surrogates: such text goes the old way, which rejects or reads it as it did.
    if b"\\" in data and b"\\u" in data:  # one byte is found by memchr: 90x faster
        return None
    if not data.isascii():
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            return None
    try:
        doc = _DECODER.decode(data)
    except (msgspec.DecodeError, RecursionError):
        return None
    n = 0
    for rs in doc.resource_spans:
        for ss in scopes_of(rs):
            if ss.spans:
                n += len(ss.spans)
    return FastDocument(data, doc.resource_spans, n)


def scopes_of(rs: ResourceSpans) -> list[ScopeSpans]:
    """`scopeSpans`, else the pre-1.0 `instrumentationLibrarySpans` (as `otlp_json.walk`)."""
    scopes = rs.scope_spans
    if scopes is None:
        scopes = rs.instrumentation_library_spans or []
    return scopes


# Span ids as the row paths take them inline (lowercase hex, not all zeros); anything else
# goes to the decoder's own helpers.
HEX32 = re.compile(r"[0-9a-f]{32}").fullmatch
HEX16 = re.compile(r"[0-9a-f]{16}").fullmatch
ZERO32, ZERO16 = "0" * 32, "0" * 16


class Unsure(Exception):
    """A field the fast path does not read exactly as `otlp_json`: read the document that way."""


def attributes(items: list[KeyValue] | None) -> dict[str, AttrValue]:
    """`otlp_json._attributes` of typed key-values; `Unsure` for anything but the plain cases."""
    out: dict[str, AttrValue] = {}
    if not items:
        return out
    for kv in items:
        v = kv.value
        if v is None:
            out[kv.key] = None
            continue
        s = v.string_value
        if s is not UNSET:  # a string wins whatever else is set, as in `otlp_json`
            out[kv.key] = s
            continue
        n = v.int_value
        if (
            n is not UNSET
            and v.double_value is UNSET
            and v.bool_value is UNSET
            and v.array_value is UNSET
            and v.kvlist_value is UNSET
            and v.bytes_value is UNSET
        ):
            if type(n) is int:
                out[kv.key] = n
                continue
            try:
                out[kv.key] = int(n)
            except ValueError:
                raise Unsure from None
            continue
        out[kv.key] = _other(v)
    return out


def _other(v: AnyValue) -> AttrValue:
    """A value that is neither a string nor only an int: exactly one field set, read as
    `otlp_json` reads it."""
    found: list[tuple[str, Any]] = [
        (name, value)
        for name, value in (
            ("intValue", v.int_value),
            ("doubleValue", v.double_value),
            ("boolValue", v.bool_value),
            ("arrayValue", v.array_value),
            ("kvlistValue", v.kvlist_value),
            ("bytesValue", v.bytes_value),
        )
        if value is not UNSET
    ]
    if not found:
        return None  # `{}` or only unknown fields
    if len(found) > 1:
        raise Unsure
    name, value = found[0]
    if name == "doubleValue":
        return float(value)
    if name == "boolValue":
        return bool(value)
    # arrayValue, kvlistValue, bytesValue: the old decoder on the raw JSON of the value.
    raw = orjson.loads(bytes(value))
    try:
        return any_value({name: raw}, "")
    except InputError:
        raise Unsure from None


def span_rows(document: FastDocument) -> list[tuple[Any, ...]]:
    """`_fold`'s arguments (but the batch) for each span of a typed document, checked as
    `_row` checks them; `Unsure` for anything it would not take."""
    rows: list[tuple[Any, ...]] = []
    append = rows.append
    for rs in document.resource_spans:
        res = rs.resource
        resource = attributes(res.attributes) if res is not None else {}
        for ss in scopes_of(rs):
            for sp in ss.spans or ():
                trace_id = sp.trace_id
                if type(trace_id) is not str or HEX32(trace_id) is None or trace_id == ZERO32:
                    raise Unsure
                span_id = sp.span_id
                if type(span_id) is not str or HEX16(span_id) is None or span_id == ZERO16:
                    raise Unsure
                parent = sp.parent_span_id or None
                if parent is not None and (HEX16(parent) is None or parent == ZERO16):
                    raise Unsure
                start = sp.start_time_unix_nano
                end = sp.end_time_unix_nano
                try:
                    if type(start) is str:
                        start = int(start)
                    if end is UNSET:
                        end = start
                    elif type(end) is str:
                        end = int(end)
                except ValueError:
                    raise Unsure from None
                if start <= 0 or start > LAST_NS:  # type: ignore[operator]
                    raise Unsure
                attrs = attributes(sp.attributes)
                append((trace_id, span_id, parent, start, end, sp.kind, sp.name, attrs, resource))
    return rows
