"""The OTLP/HTTP receiver (POST /v1/traces), end to end over a real HTTP server.

The server is uvicorn on a free localhost port in a background thread, serving the app on the
warehouse under test (SQLite and PostgreSQL); the main sender is the real OpenTelemetry Python
SDK with its OTLP/HTTP exporter (protobuf, gzip). JSON bodies and the failure cases are sent
with httpx, as a collector or a hand-rolled client would.
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
import zstandard
from google.rpc.status_pb2 import Status
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans
from opentelemetry.proto.trace.v1.trace_pb2 import Span as PbSpan
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExportResult,
)
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from sqlalchemy import Engine, func, select
from starlette.routing import Route
from starlette.testclient import TestClient

from app.api import create_app
from app.auth.tokens import create_token, revoke_token
from app.reports.unit_costs import unit_costs
from app.settings import ApiConfig, DatabaseConfig, Settings
from app.traces.intake import Intake
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


@pytest.fixture
def base_url(engine: Engine) -> Iterator[str]:
    with serve(create_app(engine, settings_for(engine))) as url:
        yield url


@pytest.fixture
def token(engine: Engine) -> str:
    return create_token(engine, "ingest", "test sender")[1]


@pytest.fixture
def client(base_url: str, token: str) -> Iterator[httpx.Client]:
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


# ── the real OpenTelemetry SDK ─────────────────────────────────────────────────────────────────


def test_sdk_export_is_stored_priced_and_deduplicated(
    engine: Engine, base_url: str, token: str
) -> None:
    def exporter() -> OTLPSpanExporter:
        return OTLPSpanExporter(
            endpoint=f"{base_url}/v1/traces",
            headers={"Authorization": f"Bearer {token}"},
            compression=Compression.Gzip,
            timeout=30,
        )

    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "chat-api"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    provider.add_span_processor(BatchSpanProcessor(exporter()))
    try:
        tracer = provider.get_tracer("tests.test_receiver")
        with tracer.start_as_current_span(
            "POST /chat",
            kind=SpanKind.SERVER,
            attributes={"http.route": "/chat", "enduser.id": "u-1042"},
        ):
            for _ in range(2):
                with tracer.start_as_current_span(
                    "chat gpt-4o-mini",
                    kind=SpanKind.CLIENT,
                    attributes={
                        "gen_ai.provider.name": "openai",
                        "gen_ai.operation.name": "chat",
                        "gen_ai.request.model": "gpt-4o-mini",
                        "gen_ai.usage.input_tokens": 1000,
                        "gen_ai.usage.output_tokens": 200,
                    },
                ):
                    pass
        assert provider.force_flush(30_000)

        rows = unit_costs(engine, ["endpoint", "model"])
        assert len(rows) == 1
        row = rows[0]
        assert row.group == {"endpoint": "/chat", "model": "gpt-4o-mini"}
        assert (row.requests, row.llm_calls, row.unpriced_calls) == (1, 2, 0)
        assert (row.input_tokens, row.output_tokens) == (2000, 400)
        # gpt-4o-mini: $0.15 per million input tokens, $0.60 per million output tokens.
        assert row.cost_usd == Decimal("0.00054")
        by_user = unit_costs(engine, ["user"])
        assert [r.group["user"] for r in by_user] == ["u-1042"]

        # The same spans again (a sender retrying after a lost answer): stored once.
        spans = memory.get_finished_spans()
        assert len(spans) == 3
        again = exporter()
        try:
            assert again.export(spans) is SpanExportResult.SUCCESS
        finally:
            again.shutdown()
        assert unit_costs(engine, ["endpoint", "model"]) == rows
        assert stored(engine) == (1, 2, 0)
    finally:
        provider.shutdown()


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


def test_partial_success_quarantines_the_bad_span_and_stores_the_rest(
    engine: Engine, client: httpx.Client
) -> None:
    body = pb_request([700, -5, 800]).SerializeToString()
    response = client.post("/v1/traces", content=body, headers=PROTOBUF)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/x-protobuf"
    answer = ExportTraceServiceResponse.FromString(response.content)
    assert answer.HasField("partial_success")
    assert answer.partial_success.rejected_spans == 1
    assert "negative token count -5" in answer.partial_success.error_message
    assert stored(engine) == (1, 2, 1)
    with engine.connect() as conn:
        record = conn.execute(select(QuarantinedRecord)).one()
    assert record.collector == "push"
    assert record.source.startswith("push ")
    assert record.span_id == "21" * 8


def test_absurd_token_counts_are_rejected_in_json_too(engine: Engine, client: httpx.Client) -> None:
    response = client.post(
        "/v1/traces", content=json.dumps(json_request(input_tokens=20_000_000)), headers=JSON
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    partial = response.json()["partialSuccess"]
    assert int(partial["rejectedSpans"]) == 1  # int64: a decimal string in the JSON mapping
    assert "10,000,000" in partial["errorMessage"]
    assert stored(engine) == (1, 0, 1)


def test_full_success_leaves_partial_success_unset(engine: Engine, client: httpx.Client) -> None:
    response = client.post(
        "/v1/traces", content=pb_request([100]).SerializeToString(), headers=PROTOBUF
    )
    assert response.status_code == 200
    assert not ExportTraceServiceResponse.FromString(response.content).HasField("partial_success")

    response = client.post("/v1/traces", content=json.dumps(json_request()), headers=JSON)
    assert response.status_code == 200
    assert response.json() == {}
    assert stored(engine) == (2, 2, 0)


@pytest.mark.parametrize(
    ("encoding", "compress"),
    [
        ("gzip", gzip.compress),
        ("deflate", zlib.compress),
        ("zstd", lambda data: zstandard.ZstdCompressor().compress(data)),
    ],
)
def test_compressed_json(
    engine: Engine, client: httpx.Client, encoding: str, compress: Any
) -> None:
    body = compress(json.dumps(json_request()).encode())
    response = client.post(
        "/v1/traces", content=body, headers={**JSON, "Content-Encoding": encoding}
    )
    assert response.status_code == 200, response.text
    assert response.json() == {}
    rows = unit_costs(engine, ["endpoint", "model"])
    assert [(r.group["endpoint"], r.llm_calls, r.input_tokens) for r in rows] == [("/docs", 1, 500)]


def test_empty_exports_succeed_and_store_nothing(engine: Engine, client: httpx.Client) -> None:
    assert client.post("/v1/traces", content=b"", headers=PROTOBUF).status_code == 200
    assert client.post("/v1/traces", content=b"{}", headers=JSON).json() == {}
    empty = client.post("/v1/traces", content=b'{"resourceSpans": []}', headers=JSON)
    assert empty.json() == {}
    # Not a traces export at all (metrics sent to the traces URL): accepted, with a warning.
    odd = client.post("/v1/traces", content=b'{"resourceMetrics": []}', headers=JSON)
    assert odd.status_code == 200
    partial = odd.json()["partialSuccess"]
    assert "rejectedSpans" not in partial  # 0 rejected: a warning only
    assert "no resourceSpans" in partial["errorMessage"]
    assert stored(engine) == (0, 0, 0)


# ── refusals ───────────────────────────────────────────────────────────────────────────────────


@pytest.mark.parametrize(
    ("body", "headers", "message"),
    [
        (b"{not json", JSON, "not valid JSON"),
        (b'[{"resourceSpans": []}]', JSON, "expected a JSON object"),
        (b"\xff\xfe garbage \x00\x01", PROTOBUF, "not an OTLP protobuf message"),
        (b"not gzip at all", {**JSON, "Content-Encoding": "gzip"}, "not valid compressed data"),
        # mtime=0: the same bytes, so the same test id, in every pytest-xdist process.
        (
            gzip.compress(b'{"resourceSpans": []}', mtime=0)[:-12],
            {**JSON, "Content-Encoding": "gzip"},
            "",
        ),
    ],
)
def test_undecodable_bodies_get_400_and_store_nothing(
    engine: Engine, client: httpx.Client, body: bytes, headers: dict[str, str], message: str
) -> None:
    response = client.post("/v1/traces", content=body, headers=headers)
    assert response.status_code == 400
    media = headers["Content-Type"]
    assert response.headers["content-type"] == media
    if media == PROTOBUF["Content-Type"]:
        status = Status.FromString(response.content)
        code, text = status.code, status.message
    else:
        code, text = response.json()["code"], response.json()["message"]
    assert code == 3  # INVALID_ARGUMENT
    assert message in text
    assert stored(engine) == (0, 0, 0)


def test_bodies_over_the_limit_get_413(engine: Engine, client: httpx.Client) -> None:
    big = b" " * (LIMIT + 1)
    response = client.post("/v1/traces", content=big, headers=JSON)
    assert response.status_code == 413
    assert "api.max_body_bytes" in response.json()["message"]

    # Sent in chunks with no Content-Length: counted as it arrives.
    def chunks() -> Iterator[bytes]:
        for _ in range(8):
            yield b" " * (LIMIT // 4)

    response = client.post("/v1/traces", content=chunks(), headers=JSON)
    assert response.status_code == 413
    assert stored(engine) == (0, 0, 0)


@pytest.mark.parametrize(
    ("encoding", "compress"),
    [
        ("gzip", gzip.compress),
        ("deflate", zlib.compress),
        ("zstd", lambda data: zstandard.ZstdCompressor().compress(data)),
    ],
)
def test_compression_bombs_get_413(
    engine: Engine, client: httpx.Client, encoding: str, compress: Any
) -> None:
    # A valid JSON document (spaces before the object) 200 times the limit once inflated.
    bomb = compress(b" " * (LIMIT * 200) + json.dumps(json_request()).encode())
    assert len(bomb) < LIMIT
    response = client.post(
        "/v1/traces", content=bomb, headers={**JSON, "Content-Encoding": encoding}
    )
    assert response.status_code == 413
    assert stored(engine) == (0, 0, 0)


def test_unsupported_media_types_and_encodings_get_415(client: httpx.Client) -> None:
    response = client.post("/v1/traces", content=b"x", headers={"Content-Type": "text/plain"})
    assert response.status_code == 415
    assert "application/x-protobuf" in response.json()["message"]
    response = client.post("/v1/traces", content=b"x", headers={**JSON, "Content-Encoding": "br"})
    assert response.status_code == 415
    assert response.headers["accept-encoding"] == "gzip, deflate, zstd, zlib"


def test_tokens_and_scopes(engine: Engine, base_url: str) -> None:
    body = pb_request([100]).SerializeToString()
    _, decision = create_token(engine, "decision", "gateway")
    _, admin = create_token(engine, "admin", "ops")
    with httpx.Client(base_url=base_url, timeout=30) as http:
        missing = http.post("/v1/traces", content=body, headers=PROTOBUF)
        assert missing.status_code == 401
        assert missing.headers["www-authenticate"].startswith("Bearer")
        assert "required" in Status.FromString(missing.content).message

        wrong = http.post(
            "/v1/traces", content=body, headers={**PROTOBUF, "Authorization": "Bearer sg_nope"}
        )
        assert wrong.status_code == 401
        assert 'error="invalid_token"' in wrong.headers["www-authenticate"]

        basic = http.post(
            "/v1/traces", content=body, headers={**PROTOBUF, "Authorization": "Basic eDp5"}
        )
        assert basic.status_code == 401

        scoped = http.post(
            "/v1/traces", content=body, headers={**PROTOBUF, "Authorization": f"Bearer {decision}"}
        )
        assert scoped.status_code == 403
        assert 'error="insufficient_scope"' in scoped.headers["www-authenticate"]
        assert stored(engine) == (0, 0, 0)

        ok = http.post(
            "/v1/traces", content=body, headers={**PROTOBUF, "Authorization": f"Bearer {admin}"}
        )
        assert ok.status_code == 200  # admin implies every scope
        assert http.get("/healthz").status_code == 200
        assert http.get("/metrics").status_code == 200  # open by default
    assert stored(engine)[0] == 1


def test_revoked_tokens_are_refused_once_the_cache_expires(sqlite_engine: Engine) -> None:
    info, token = create_token(sqlite_engine, "ingest", "soon revoked")
    app = create_app(sqlite_engine, settings_for(sqlite_engine, token_cache_seconds=0))
    headers = {**JSON, "Authorization": f"Bearer {token}"}
    with TestClient(app) as http:
        assert http.post("/v1/traces", content=b"{}", headers=headers).status_code == 200
        revoke_token(sqlite_engine, info.id)
        assert http.post("/v1/traces", content=b"{}", headers=headers).status_code == 401


def test_metrics_can_require_a_token(sqlite_engine: Engine) -> None:
    _, token = create_token(sqlite_engine, "decision", "prometheus")
    app = create_app(sqlite_engine, settings_for(sqlite_engine, metrics_token_required=True))
    with TestClient(app) as http:
        assert http.get("/metrics").status_code == 401
        response = http.get("/metrics", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 200  # any valid token
        assert "spendguard_otlp_requests_total" in response.text
        assert http.get("/healthz").status_code == 200


def test_every_route_but_health_and_metrics_needs_a_token(sqlite_engine: Engine) -> None:
    app = create_app(sqlite_engine, settings_for(sqlite_engine))
    open_paths = {"/healthz", "/metrics"}
    checked = 0
    with TestClient(app) as http:
        for route in app.routes:
            assert isinstance(route, Route)
            if route.path in open_paths:
                continue
            path = route.path.replace("{", "").replace("}", "")  # any value for parameters
            for method in sorted(route.methods or {"GET"}):
                if method == "HEAD":
                    continue
                response = http.request(method, path)
                assert response.status_code == 401, f"{method} {route.path} answers without a token"
                checked += 1
    assert checked >= 1


def test_a_warehouse_failure_is_503_and_stores_nothing(
    engine: Engine, client: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy.exc import OperationalError

    real_load = Intake.load

    def load_then_fail(self: Intake, *args: Any, **kwargs: Any) -> Any:
        real_load(self, *args, **kwargs)  # everything written…
        raise OperationalError("INSERT …", {}, Exception("connection lost"))  # …then lost

    monkeypatch.setattr(Intake, "load", load_then_fail)
    body = pb_request([100, -1]).SerializeToString()
    response = client.post("/v1/traces", content=body, headers=PROTOBUF)
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert "retry" in Status.FromString(response.content).message
    assert stored(engine) == (0, 0, 0)  # one transaction: rolled back whole

    monkeypatch.setattr(Intake, "load", real_load)
    retried = client.post("/v1/traces", content=body, headers=PROTOBUF)
    assert retried.status_code == 200
    assert stored(engine) == (1, 1, 1)


def test_a_token_check_without_the_warehouse_is_503(
    sqlite_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy.exc import OperationalError

    import app.api.auth

    def unreachable(*_: Any) -> None:
        raise OperationalError("SELECT …", {}, Exception("connection refused"))

    monkeypatch.setattr(app.api.auth, "lookup_hash", unreachable)
    with TestClient(create_app(sqlite_engine, settings_for(sqlite_engine))) as http:
        response = http.post(
            "/v1/traces", content=b"{}", headers={**JSON, "Authorization": "Bearer sg_x"}
        )
    assert response.status_code == 503  # retryable: the sender tries again later
    assert response.headers["retry-after"] == "5"
