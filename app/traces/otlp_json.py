"""Decode OTLP JSON (`TracesData` / `ExportTraceServiceRequest`, and JSON Lines of them).

The JSON encoding rules we rely on (opentelemetry-proto): lowerCamelCase keys, ids as hex
strings, 64-bit integers as decimal strings (numbers accepted too), unknown fields ignored,
and the pre-1.0 `instrumentationLibrarySpans` accepted where `scopeSpans` is missing.
"""

from __future__ import annotations

import base64
import re
from typing import Any

import orjson

from app.errors import InputError
from app.traces.decoded import Decoded, Rejected
from app.traces.spans import AttrValue, Span


def decode_document(doc: Any, where: str) -> Decoded:
    """The spans of one parsed `TracesData` JSON object, and the spans it had to reject.

    A document that is not OTLP traces at all raises `InputError`; a bad span (missing ids,
    bad timestamps) is rejected alone, with its path, and the rest of the document is kept.
    `where` names the document in messages.
    """
    if not isinstance(doc, dict):
        raise InputError(
            f"{where}: expected a JSON object with resourceSpans, got {type(doc).__name__}"
        )
    resource_spans = doc.get("resourceSpans", doc.get("resource_spans"))
    if resource_spans is None:
        raise InputError(f"{where}: no 'resourceSpans' key; is this an OTLP traces document?")
    if not isinstance(resource_spans, list):
        raise InputError(f"{where}: 'resourceSpans' must be a list")
    out = Decoded()
    for ri, rs in enumerate(resource_spans):
        if not isinstance(rs, dict):
            out.rejected.append(Rejected(f"resourceSpans[{ri}]", "not an object"))
            continue
        try:
            res = rs.get("resource") or {}
            if not isinstance(res, dict):
                raise InputError("resource: must be an object")
            resource = _attributes(res.get("attributes"), "resource")
        except InputError as exc:
            out.rejected.append(Rejected(f"resourceSpans[{ri}].resource", str(exc)))
            continue
        scopes = rs.get("scopeSpans")
        if scopes is None:
            scopes = rs.get("instrumentationLibrarySpans") or []
        for si, ss in enumerate(scopes if isinstance(scopes, list) else []):
            spans = ss.get("spans") if isinstance(ss, dict) else None
            for pi, raw in enumerate(spans if isinstance(spans, list) else []):
                at = f"resourceSpans[{ri}].scopeSpans[{si}].spans[{pi}]"
                try:
                    out.spans.append(_span(raw, resource, at))
                except InputError as exc:
                    ids = raw if isinstance(raw, dict) else {}
                    out.rejected.append(
                        Rejected(
                            at,
                            str(exc).removeprefix(f"{at}: "),
                            _maybe_id(ids.get("traceId"), 32),
                            _maybe_id(ids.get("spanId"), 16),
                        )
                    )
    return out


def decode_json(data: bytes | str, where: str) -> Decoded:
    """Parse and decode one OTLP JSON document; raises `InputError` if it is not one."""
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        if isinstance(data, bytes):
            try:
                data.decode("utf-8")
            except UnicodeDecodeError as bad:
                raise InputError(f"{where}: not UTF-8 text at byte {bad.start}") from None
        raise InputError(
            f"{where}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        ) from None
    return decode_document(doc, where)


def _maybe_id(value: Any, length: int) -> str | None:
    """An id good enough to name a rejected span in the quarantine, else None."""
    if isinstance(value, str) and len(value) == length:
        text = value.lower()
        if all(c in "0123456789abcdef" for c in text):
            return text
    return None


def _span(raw: Any, resource: dict[str, AttrValue], at: str) -> Span:
    if not isinstance(raw, dict):
        raise InputError(f"{at}: a span must be an object")
    trace_id = _hex_id(raw.get("traceId"), 32, "traceId", at)
    span_id = _hex_id(raw.get("spanId"), 16, "spanId", at)
    parent = raw.get("parentSpanId") or None
    parent_id = _hex_id(parent, 16, "parentSpanId", at) if parent else None
    start = _int(raw.get("startTimeUnixNano", 0), "startTimeUnixNano", at)
    end = _int(raw.get("endTimeUnixNano", start), "endTimeUnixNano", at)
    if start <= 0:
        raise InputError(f"{at}: startTimeUnixNano is missing or zero")
    if end < start:
        end = start  # clock skew between hosts: keep the span, with zero duration
    kind = raw.get("kind", 0)
    if isinstance(kind, str):  # the enum name, as some JSON encoders write it
        kind = _KIND_NAMES.get(kind.upper().removeprefix("SPAN_KIND_"), 0)
    return Span(
        trace_id=trace_id,
        span_id=span_id,
        parent_span_id=parent_id,
        name=str(raw.get("name", "")),
        kind=_int(kind, "kind", at),
        start_ns=start,
        end_ns=max(start, end),
        attributes=_attributes(raw.get("attributes"), at),
        resource=resource,
    )


_KIND_NAMES = {
    "UNSPECIFIED": 0,
    "INTERNAL": 1,
    "SERVER": 2,
    "CLIENT": 3,
    "PRODUCER": 4,
    "CONSUMER": 5,
}


_HEX = {32: re.compile(r"[0-9a-f]{32}").fullmatch, 16: re.compile(r"[0-9a-f]{16}").fullmatch}
_ZEROS = {32: "0" * 32, 16: "0" * 16}


def _hex_id(value: Any, length: int, name: str, at: str) -> str:
    if type(value) is not str or not value:
        raise InputError(f"{at}: {name} is missing")
    text = value.lower()
    if _HEX[length](text) is None:
        # Some exporters write ids base64-encoded (the protobuf JSON mapping of bytes).
        try:
            decoded = base64.b64decode(value, validate=True)
        except ValueError:
            decoded = b""
        if len(decoded) * 2 != length:
            raise InputError(f"{at}: {name} {value!r} is not {length} hex digits")
        text = decoded.hex()
    if text == _ZEROS[length]:
        raise InputError(f"{at}: {name} is all zeros (invalid)")
    return text


def _int(value: Any, name: str, at: str) -> int:
    if type(value) is int:
        return value
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            pass
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise InputError(f"{at}: {name} must be an integer (or a decimal string), got {value!r}")


def _attributes(raw: Any, at: str) -> dict[str, AttrValue]:
    if not raw:
        return {}
    if type(raw) is not list:
        raise InputError(f"{at}: attributes must be a list of {{key, value}}")
    out: dict[str, AttrValue] = {}
    for item in raw:
        try:
            key = item["key"]
            value = item.get("value")
            if type(key) is not str:
                continue
            # The common case first: most attributes are strings.
            text = value.get("stringValue") if type(value) is dict else None
            out[key] = text if type(text) is str else any_value(value, at)
        except (TypeError, KeyError, AttributeError):
            continue  # not a {key, value} pair: ignored like any unknown field
    return out


def any_value(value: Any, at: str) -> AttrValue:
    """Decode an OTLP `AnyValue` JSON object into a plain Python value."""
    try:
        return _any_value(value, at)
    except (TypeError, ValueError, AttributeError, KeyError, RecursionError) as exc:
        raise InputError(
            f"{at}: attribute value {str(value)[:80]!r} is malformed ({exc})"
        ) from None


def _any_value(value: Any, at: str) -> AttrValue:
    if not isinstance(value, dict) or not value:
        return None
    if "stringValue" in value:
        return str(value["stringValue"])
    if "intValue" in value:
        return _int(value["intValue"], "intValue", at)
    if "doubleValue" in value:
        raw = value["doubleValue"]
        return float(raw) if isinstance(raw, int | float | str) else None
    if "boolValue" in value:
        return bool(value["boolValue"])
    if "arrayValue" in value:
        return [_any_value(v, at) for v in (value["arrayValue"] or {}).get("values") or []]
    if "kvlistValue" in value:
        items = (value["kvlistValue"] or {}).get("values") or []
        return {str(kv["key"]): _any_value(kv.get("value"), at) for kv in items if "key" in kv}
    if "bytesValue" in value:
        return base64.b64decode(value["bytesValue"])
    return None
