"""The OTLP/HTTP receiver under test: a real uvicorn server on a free localhost port in a
background thread, serving the app on the warehouse under test (fixtures `base_url`, `token`,
`client`), and export requests built by hand (protobuf with the real opentelemetry-proto
classes, and OTLP JSON). Test modules import the fixtures to use them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans
from opentelemetry.proto.trace.v1.trace_pb2 import Span as PbSpan
from sqlalchemy import Engine, func, select

from app.api import create_app
from app.auth.tokens import create_token
from app.settings import ApiConfig, DatabaseConfig, Settings
from app.warehouse.tables import LlmCall, QuarantinedRecord
from app.warehouse.tables import Request as RequestRow
from tests.servers import serve

LIMIT = 256 * 1024  # api.max_body_bytes for these tests
PROTOBUF = {"Content-Type": "application/x-protobuf"}
JSON = {"Content-Type": "application/json"}
NOW_NS = 1_763_640_000_000_000_000  # 2025-11-20T12:00:00Z


# ── a real server ──────────────────────────────────────────────────────────────────────────────


def settings_for(engine: Engine, **api: Any) -> Settings:
    url = engine.url.render_as_string(hide_password=False)
    return Settings(
        database=DatabaseConfig(url=url),
        api=ApiConfig(**{"max_body_bytes": LIMIT, **api}),
    )


@pytest.fixture(name="base_url")
def base_url_fixture(engine: Engine) -> Iterator[str]:
    with serve(create_app(engine, settings_for(engine))) as url:
        yield url


@pytest.fixture(name="token")
def token_fixture(engine: Engine) -> str:
    return create_token(engine, "ingest", "test sender")[1]


@pytest.fixture(name="client")
def client_fixture(base_url: str, token: str) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=30
    ) as c:
        yield c


def stored(engine: Engine) -> tuple[int, int, int]:
    """(requests, LLM calls, quarantined records) in the warehouse."""
    with engine.connect() as conn:
        return (
            conn.execute(select(func.count()).select_from(RequestRow)).scalar_one(),
            conn.execute(select(func.count()).select_from(LlmCall)).scalar_one(),
            conn.execute(select(func.count()).select_from(QuarantinedRecord)).scalar_one(),
        )


# ── protobuf and JSON by hand ──────────────────────────────────────────────────────────────────


def _pb_attr(key: str, value: str | int) -> KeyValue:
    any_value = (
        AnyValue(string_value=value) if isinstance(value, str) else AnyValue(int_value=value)
    )
    return KeyValue(key=key, value=any_value)


def pb_request(input_tokens: list[int], trace: str = "ab" * 16) -> ExportTraceServiceRequest:
    """One trace: a server root and one LLM call per entry of `input_tokens`."""
    root = PbSpan(
        trace_id=bytes.fromhex(trace),
        span_id=bytes.fromhex("10" * 8),
        name="POST /search",
        kind=PbSpan.SPAN_KIND_SERVER,
        start_time_unix_nano=NOW_NS,
        end_time_unix_nano=NOW_NS + 10**9,
        attributes=[_pb_attr("http.route", "/search")],
    )
    calls = [
        PbSpan(
            trace_id=bytes.fromhex(trace),
            span_id=bytes.fromhex(f"{i + 0x20:02x}" * 8),
            parent_span_id=root.span_id,
            name="chat",
            kind=PbSpan.SPAN_KIND_CLIENT,
            start_time_unix_nano=NOW_NS + 1000,
            end_time_unix_nano=NOW_NS + 2000,
            attributes=[
                _pb_attr("gen_ai.provider.name", "openai"),
                _pb_attr("gen_ai.request.model", "gpt-4o-mini"),
                _pb_attr("gen_ai.usage.input_tokens", tokens),
                _pb_attr("gen_ai.usage.output_tokens", 10),
            ],
        )
        for i, tokens in enumerate(input_tokens)
    ]
    return ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=[root, *calls])])]
    )


def json_request(input_tokens: int = 500, trace: str = "cd" * 16) -> dict[str, Any]:
    def attr(key: str, value: str | int) -> dict[str, Any]:
        kind = "stringValue" if isinstance(value, str) else "intValue"
        return {"key": key, "value": {kind: str(value) if kind == "intValue" else value}}

    return {
        "resourceSpans": [
            {
                "resource": {"attributes": [attr("service.name", "docs-api")]},
                "scopeSpans": [
                    {
                        "scope": {"name": "hand"},
                        "spans": [
                            {
                                "traceId": trace,
                                "spanId": "a1" * 8,
                                "name": "GET /docs",
                                "kind": 2,
                                "startTimeUnixNano": str(NOW_NS),
                                "endTimeUnixNano": str(NOW_NS + 10**9),
                                "attributes": [attr("http.route", "/docs")],
                            },
                            {
                                "traceId": trace,
                                "spanId": "a2" * 8,
                                "parentSpanId": "a1" * 8,
                                "name": "chat",
                                "kind": 3,
                                "startTimeUnixNano": str(NOW_NS + 1000),
                                "endTimeUnixNano": str(NOW_NS + 2000),
                                "attributes": [
                                    attr("gen_ai.provider.name", "openai"),
                                    attr("gen_ai.request.model", "gpt-4o-mini"),
                                    attr("gen_ai.usage.input_tokens", input_tokens),
                                    attr("gen_ai.usage.output_tokens", 20),
                                ],
                            },
                        ],
                    }
                ],
            }
        ]
    }
