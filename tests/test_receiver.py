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
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExportResult,
)
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from sqlalchemy import Engine, select

from app.reports.unit_costs import unit_costs
from app.warehouse.tables import QuarantinedRecord
from tests.receiver_support import (  # noqa: F401 (the *_fixture names: fixtures)
    JSON,
    LIMIT,
    PROTOBUF,
    base_url_fixture,
    client_fixture,
    json_request,
    pb_request,
    stored,
    token_fixture,
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
