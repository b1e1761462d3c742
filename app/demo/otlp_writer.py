"""Write demo requests as OTLP JSON, the way an OpenTelemetry Collector's file exporter does.

One `.jsonl` file per UTC day (`traces-YYYY-MM-DD.jsonl`, by the request's start), one
`TracesData` object per line. Like a Collector's batch processor, spans are written in the order
they END, at most `MAX_SPANS_PER_LINE` per line: an LLM call's span comes before its request's
root span, and a long request (an agent run) can be split over several lines. Within a line, spans
are grouped by service (`resourceSpans`) and instrumentation scope (`scopeSpans`).

No prompt or completion text is ever written: only routes, users, teams, models and token counts.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from app.demo.calls import LlmCall
from app.demo.traffic import DemoRequest

MAX_SPANS_PER_LINE = 256

Json = dict[str, Any]

_HTTP_SCOPE = ("opentelemetry.instrumentation.fastapi", "0.48b0")
_LLM_SCOPES = {
    "openai": ("opentelemetry.instrumentation.openai_v2", "2.1b0"),
    "vllm": ("opentelemetry.instrumentation.openai_v2", "2.1b0"),  # OpenAI-compatible server
    "anthropic": ("opentelemetry.instrumentation.anthropic", "0.40.0"),
}
_SERVER_ADDRESS = {
    "openai": "api.openai.com",
    "anthropic": "api.anthropic.com",
    "vllm": "llama-70b.inference.svc",
}
SERVICE_VERSION = "2.14.0"

# (end time, sequence, service, scope, span): sequence keeps ties in generation order.
_Entry = tuple[int, int, str, tuple[str, str], Json]


def write_day(path: Path, requests: Iterable[DemoRequest]) -> int:
    """Write one day's requests to `path` as JSON Lines; returns the number of spans written."""
    entries: list[_Entry] = []
    for request in requests:
        service = request.endpoint.service
        for call in request.calls:
            scope = _LLM_SCOPES[call.model.provider]
            entries.append((call.end_ns, len(entries), service, scope, _call_span(request, call)))
        entries.append((request.end_ns, len(entries), service, _HTTP_SCOPE, _root_span(request)))
    entries.sort(key=lambda e: (e[0], e[1]))
    with path.open("w", encoding="utf-8", newline="\n") as out:
        for i in range(0, len(entries), MAX_SPANS_PER_LINE):
            doc = _traces_data(entries[i : i + MAX_SPANS_PER_LINE])
            out.write(json.dumps(doc, separators=(",", ":")))
            out.write("\n")
    return len(entries)


def _traces_data(entries: list[_Entry]) -> Json:
    # Group by service, then scope, in order of first appearance (dicts keep insertion order).
    by_service: dict[str, dict[tuple[str, str], list[Json]]] = {}
    for _, _, service, scope, span in entries:
        by_service.setdefault(service, {}).setdefault(scope, []).append(span)
    return {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [
                        _str("service.name", service),
                        _str("service.version", SERVICE_VERSION),
                        _str("deployment.environment.name", "prod"),
                        _str("telemetry.sdk.language", "python"),
                    ]
                },
                "scopeSpans": [
                    {"scope": {"name": name, "version": version}, "spans": spans}
                    for (name, version), spans in scopes.items()
                ],
            }
            for service, scopes in by_service.items()
        ]
    }


def _root_span(r: DemoRequest) -> Json:
    e = r.endpoint
    attributes = [
        _str("http.request.method", e.method),
        _str("http.route", e.route),
        _str("url.path", e.route),
        _int("http.response.status_code", r.status),
        _str("enduser.id", r.user.id),
    ]
    if r.user.sends_team:
        attributes.append(_str("team.id", r.user.team))
    return {
        "traceId": r.trace_id,
        "spanId": r.span_id,
        "name": f"{e.method} {e.route}",
        "kind": 2,
        "startTimeUnixNano": str(r.start_ns),
        "endTimeUnixNano": str(r.end_ns),
        "attributes": attributes,
        # HTTP semantic conventions: a server span is an error for 5xx only.
        "status": {"code": 2} if r.status >= 500 else {},
    }


def _call_span(r: DemoRequest, c: LlmCall) -> Json:
    m = c.model
    attributes = [
        _str("gen_ai.operation.name", m.operation),
        _str("gen_ai.provider.name", m.provider),
        _str("gen_ai.request.model", m.name),
        _str("server.address", _SERVER_ADDRESS[m.provider]),
    ]
    if c.error is not None:
        attributes.append(_str("error.type", c.error))
    else:
        if c.response_model is not None:
            attributes.append(_str("gen_ai.response.model", c.response_model))
        attributes.append(_int("gen_ai.usage.input_tokens", c.input_tokens))
        if m.operation != "embeddings":
            attributes.append(_int("gen_ai.usage.output_tokens", c.output_tokens))
        if c.cache_read_tokens:
            attributes.append(_int("gen_ai.usage.cache_read.input_tokens", c.cache_read_tokens))
        if c.cache_write_tokens:
            attributes.append(
                _int("gen_ai.usage.cache_creation.input_tokens", c.cache_write_tokens)
            )
        if c.reasoning_tokens:
            attributes.append(_int("gen_ai.usage.reasoning.output_tokens", c.reasoning_tokens))
    return {
        "traceId": r.trace_id,
        "spanId": c.span_id,
        "parentSpanId": r.span_id,
        "name": f"{m.operation} {m.name}",
        "kind": 3,
        "startTimeUnixNano": str(c.start_ns),
        "endTimeUnixNano": str(c.end_ns),
        "attributes": attributes,
        "status": {"code": 2, "message": c.error} if c.error is not None else {},
    }


def _str(key: str, value: str) -> Json:
    return {"key": key, "value": {"stringValue": value}}


def _int(key: str, value: int) -> Json:
    # OTLP JSON encodes int64 as a decimal string.
    return {"key": key, "value": {"intValue": str(value)}}
