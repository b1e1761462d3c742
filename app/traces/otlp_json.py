"""Decode OTLP JSON (`TracesData` / `ExportTraceServiceRequest`, and JSON Lines of them).

The JSON encoding rules we rely on (opentelemetry-proto): lowerCamelCase keys, ids as hex
strings, 64-bit integers as decimal strings (numbers accepted too), unknown fields ignored,
and the pre-1.0 `instrumentationLibrarySpans` accepted where `scopeSpans` is missing.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
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
    out = Decoded()
    spans = out.spans

    def add(raw: Any, resource: dict[str, AttrValue], at: Callable[[], str]) -> None:
        path = at()
        spans.append(span_of(raw, resource, path))

    walk(resource_spans_of(doc, where), add, out.rejected)
    return out


def resource_spans_of(doc: Any, where: str) -> list[Any]:
    """The `resourceSpans` list of a parsed document; `InputError` if it is not OTLP traces."""
    if not isinstance(doc, dict):
        raise InputError(
            f"{where}: expected a JSON object with resourceSpans, got {type(doc).__name__}"
        )
    resource_spans = doc.get("resourceSpans", doc.get("resource_spans"))
    if resource_spans is None:
        raise InputError(f"{where}: no 'resourceSpans' key; is this an OTLP traces document?")
    if not isinstance(resource_spans, list):
        raise InputError(f"{where}: 'resourceSpans' must be a list")
    return resource_spans


SpanSink = Callable[[Any, dict[str, AttrValue], Callable[[], str]], None]


def walk(resource_spans: list[Any], sink: SpanSink, rejected: list[Rejected]) -> None:
    """Call `sink(raw span, resource attributes, path)` for each span of a `resourceSpans`
    list, in order; `path()` names the span (built only when asked: it is needed only for
    messages). A bad resource is rejected with its spans; `InputError` from `sink` rejects
    the span alone, with its path and whatever ids it has."""
    for ri, rs in enumerate(resource_spans):
        if not isinstance(rs, dict):
            rejected.append(Rejected(f"resourceSpans[{ri}]", "not an object"))
            continue
        try:
            res = rs.get("resource") or {}
            if not isinstance(res, dict):
                raise InputError("resource: must be an object")
            resource = _attributes(res.get("attributes"), "resource")
        except InputError as exc:
            rejected.append(Rejected(f"resourceSpans[{ri}].resource", str(exc)))
            continue
        scopes = rs.get("scopeSpans")
        if scopes is None:
            scopes = rs.get("instrumentationLibrarySpans") or []
        for si, ss in enumerate(scopes if isinstance(scopes, list) else []):
            spans = ss.get("spans") if isinstance(ss, dict) else None
            for pi, raw in enumerate(spans if isinstance(spans, list) else []):

                def at(ri: int = ri, si: int = si, pi: int = pi) -> str:
                    return f"resourceSpans[{ri}].scopeSpans[{si}].spans[{pi}]"

                try:
                    sink(raw, resource, at)
                except InputError as exc:
                    path = at()
                    ids = raw if isinstance(raw, dict) else {}
                    rejected.append(
                        Rejected(
                            path,
                            str(exc).removeprefix(f"{path}: "),
                            _maybe_id(ids.get("traceId"), 32),
                            _maybe_id(ids.get("spanId"), 16),
                        )
                    )


def count_spans(resource_spans: list[Any]) -> int:
    """How many span entries a `resourceSpans` list holds (good or bad), cheaply."""
    n = 0
    for rs in resource_spans:
        scopes = rs.get("scopeSpans") if isinstance(rs, dict) else None
        if scopes is None and isinstance(rs, dict):
            scopes = rs.get("instrumentationLibrarySpans")
        for ss in scopes if isinstance(scopes, list) else []:
            spans = ss.get("spans") if isinstance(ss, dict) else None
            n += len(spans) if isinstance(spans, list) else 0
    return n


def decode_json(data: bytes | str, where: str) -> Decoded:
    """Parse and decode one OTLP JSON document; raises `InputError` if it is not one."""
    return decode_document(parse_json(data, where), where)


def decode_json_deferred(data: bytes | str, where: str) -> Decoded:
    """Parse one OTLP JSON document and check it is one (`InputError` if not, as
    `decode_json`), but leave its spans undecoded: `Decoded.documents` holds its
    `resourceSpans` (or, when msgspec could type it, an `otlp_fast.FastDocument`), for
    `BatchBuilder` to read straight into rows (no `Span` objects)."""
    from app.traces.otlp_fast import decode_fast  # imports this module

    fast = decode_fast(data)
    if fast is not None:
        return Decoded(documents=[fast], pending=fast.spans)
    resource_spans = resource_spans_of(parse_json(data, where), where)
    return Decoded(documents=[resource_spans], pending=count_spans(resource_spans))


def parse_json(data: bytes | str, where: str) -> Any:
    """orjson.loads, with `InputError` saying where and why the text is not JSON."""
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
    return doc


def _maybe_id(value: Any, length: int) -> str | None:
    """An id good enough to name a rejected span in the quarantine, else None."""
    if isinstance(value, str) and len(value) == length:
        text = value.lower()
        if all(c in "0123456789abcdef" for c in text):
            return text
    return None


def span_of(raw: Any, resource: dict[str, AttrValue], at: str) -> Span:
    """One span; `InputError` (its message starting with `at`) if it cannot be read."""
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
    if start > LAST_NS:
        raise InputError(f"{at}: startTimeUnixNano {start} is after the year 9999")
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


# 9999-12-31T23:59:59.999999999Z: the last instant a datetime can hold.
LAST_NS = 253_402_300_799_999_999_999

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
            # The common cases first: most attributes are strings, then decimal-string ints
            # (what `_any_value` makes of them, without the calls).
            if type(value) is dict:
                text = value.get("stringValue")
                if type(text) is str:
                    out[key] = text
                    continue
                number = value.get("intValue") if text is None else None
                if type(number) is str and "stringValue" not in value:
                    try:
                        out[key] = int(number)
                        continue
                    except ValueError:
                        pass
            out[key] = any_value(value, at)
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
