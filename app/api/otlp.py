"""`POST /v1/traces`: the OTLP/HTTP trace receiver (push), per the OTLP specification.

What the spec asks (opentelemetry-proto docs/specification.md, "OTLP/HTTP") and how we answer:
- body `application/x-protobuf` or `application/json` (`ExportTraceServiceRequest`), optionally
  `Content-Encoding: gzip` (we also take `deflate`, `zlib` and `zstd`, as the Collector's
  `compression` options send them); anything else → 415;
- the size limit holds before AND after decompression (`api.max_body_bytes`, 20 MiB by default
  as recommended): decompression is incremental and stops one byte past the limit, so a gzip
  bomb costs no more memory than an honest body → 413 (not retried by senders);
- a body that cannot be decoded → 400 and nothing stored (not retried);
- success → 200 with an `ExportTraceServiceResponse` in the request's own encoding; its
  `partial_success` is unset when every span was stored, else carries `rejected_spans` (the
  records quarantined, see `spendguard report quarantine`) and an English `error_message`;
- errors carry a `google.rpc.Status` (code, message) in the request's encoding;
- the warehouse unreachable or busy → 503 with `Retry-After` (senders retry; the spans of one
  request are stored in ONE transaction, committed before the 200, so a retry never finds half
  a batch, and spans already stored are skipped: retries and duplicates store nothing twice).

Decompression, decoding and the database work run in worker threads, never on the event loop.
"""

from __future__ import annotations

import io
import json
import logging
import uuid
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from app.errors import InputError, WarehouseError
from app.settings import Settings
from app.traces.decoded import Decoded, Rejected
from app.traces.intake import Intake, IntakeCounts
from app.traces.otlp_json import decode_document, decode_json
from app.traces.otlp_proto import decode_protobuf
from app.warehouse.engine import session_scope

log = logging.getLogger(__name__)

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
# Request media types we decode → the encoding we answer in (the spec: the same Content-Type).
MEDIA_TYPES = {PROTOBUF: PROTOBUF, "application/protobuf": PROTOBUF, JSON: JSON}
ENCODINGS = ("gzip", "deflate", "zstd", "zlib")  # zlib: what the Collector sends for `zlib`
RETRY_AFTER_SECONDS = 5
WHERE = "POST /v1/traces"
COLLECTOR = "push"
MAX_REASONS = 5  # reasons quoted in a partial success message

# Database failures worth a retry: unreachable, locked, pool exhausted, or a concurrent insert
# of the same rows (the retry finds them stored). Anything else is a bug: 500, not retried.
TRANSIENT = (OperationalError, InterfaceError, IntegrityError, PoolTimeoutError, WarehouseError)
# google.rpc.Code values for the Status body (the spec says clients must not depend on them).
_RPC_CODES = {400: 3, 401: 16, 403: 7, 413: 8, 415: 3, 503: 14}


class BodyTooLarge(Exception):
    """The body, as received or decompressed, is over the configured limit."""


@dataclass(slots=True)
class ReceiverStats:
    """Counters for /metrics, per process (Prometheus sums the replicas)."""

    requests: Counter[str] = field(default_factory=Counter)
    spans_stored: int = 0
    spans_rejected: int = 0

    def render(self) -> str:
        lines = [
            "# HELP spendguard_otlp_requests_total OTLP/HTTP export requests by outcome.",
            "# TYPE spendguard_otlp_requests_total counter",
        ]
        lines += [
            f'spendguard_otlp_requests_total{{outcome="{outcome}"}} {n}'
            for outcome, n in sorted(self.requests.items())
        ]
        lines += [
            "# HELP spendguard_otlp_spans_total Spans received over OTLP/HTTP, by result.",
            "# TYPE spendguard_otlp_spans_total counter",
            f'spendguard_otlp_spans_total{{result="accepted"}} {self.spans_stored}',
            f'spendguard_otlp_spans_total{{result="rejected"}} {self.spans_rejected}',
        ]
        return "\n".join(lines) + "\n"


class OtlpReceiver:
    def __init__(self, engine: Engine, settings: Settings) -> None:
        self._engine = engine
        self._intake = Intake(settings, COLLECTOR)
        self._limit = settings.api.max_body_bytes
        self.stats = ReceiverStats()
        # Called on the event loop after spans were stored (the kill rules' debounced poke).
        self.after_store: list[Callable[[], None]] = []

    async def export(self, request: Request) -> Response:
        """Decode, store in one transaction, and answer as OTLP/HTTP does."""
        media = request_media(request)
        if media is None:
            return self._refuse(
                JSON,
                415,
                f"unsupported Content-Type {request.headers.get('content-type')!r}; "
                f"send {PROTOBUF} or {JSON}",
                {"Accept": f"{PROTOBUF}, {JSON}"},
            )
        encoding = request.headers.get("content-encoding", "identity").strip().lower()
        if encoding not in (*ENCODINGS, "identity", ""):
            return self._refuse(
                media,
                415,
                f"unsupported Content-Encoding {encoding!r}; send {', '.join(ENCODINGS)} or none",
                {"Accept-Encoding": ", ".join(ENCODINGS)},
            )
        too_large = f"the body is over the limit of {self._limit} bytes (api.max_body_bytes)"
        try:
            raw = await self._read(request)
            decoded, warning = await run_in_threadpool(self._decode, raw, encoding, media)
        except BodyTooLarge:
            return self._refuse(media, 413, too_large + "; send smaller batches", {})
        except InputError as exc:
            return self._refuse(media, 400, str(exc), {})
        except ClientDisconnect:
            self.stats.requests["disconnected"] += 1
            return Response(status_code=400)
        try:
            stored = await run_in_threadpool(self._store, decoded)
        except TRANSIENT as exc:
            log.warning("OTLP export not stored, the warehouse is unavailable: %s", exc)
            return self._refuse(
                media,
                503,
                "the warehouse is unavailable; nothing was stored, retry later",
                {"Retry-After": str(RETRY_AFTER_SECONDS)},
            )
        rejected = stored.counts.quarantined if stored else 0
        self.stats.spans_stored += len(decoded) - rejected
        self.stats.spans_rejected += rejected
        self.stats.requests["partial" if rejected else "accepted"] += 1
        if stored and len(decoded) > rejected:
            for hook in self.after_store:
                hook()
        message = _partial_message(len(decoded), stored) if stored else warning
        return export_response(media, rejected, message)

    def deny(
        self, request: Request, status: int, message: str, headers: dict[str, str]
    ) -> Response:
        """Auth refusals on this route, as OTLP errors (a Status in the request's encoding)."""
        return self._refuse(request_media(request) or JSON, status, message, headers)

    def _refuse(self, media: str, status: int, message: str, headers: dict[str, str]) -> Response:
        self.stats.requests[str(status)] += 1
        return status_response(media, status, message, headers)

    async def _read(self, request: Request) -> bytes:
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self._limit:
            raise BodyTooLarge
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self._limit:
                raise BodyTooLarge
            chunks.append(chunk)
        return b"".join(chunks)

    def _decode(self, raw: bytes, encoding: str, media: str) -> tuple[Decoded, str]:
        """The decoded export and a warning for the sender ("" if none)."""
        data = decompress(raw, encoding, self._limit)
        if media == PROTOBUF:
            return decode_protobuf(data, WHERE), ""
        return decode_json_request(data)

    def _store(self, decoded: Decoded) -> Stored | None:
        if not len(decoded):
            return None  # an empty export: success, nothing to store (the spec says so)
        batch = self._intake.build(decoded)
        with session_scope(self._engine) as session:
            counts = self._intake.load(
                session, batch, f"{COLLECTOR} {uuid.uuid4()}", len(decoded.spans)
            )
        if counts.quarantined:
            log.info("OTLP export: %d record(s) quarantined", counts.quarantined)
        return Stored(counts, batch.rejected)


@dataclass(frozen=True, slots=True)
class Stored:
    counts: IntakeCounts
    rejected: list[Rejected]


def decode_json_request(data: bytes) -> tuple[Decoded, str]:
    """An `ExportTraceServiceRequest` in JSON, and a warning for the sender ("" if none).

    Per the protobuf JSON mapping absent fields are defaults: `{}` is a valid empty export, and
    an object without `resourceSpans` carries no spans; it is answered 200 (as a protobuf
    receiver would) but with a warning, since it is probably not a traces export."""
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError:
        return decode_json(data, WHERE), ""  # raises InputError, with the position
    if isinstance(doc, dict) and "resourceSpans" not in doc and "resource_spans" not in doc:
        if not doc:
            return Decoded(), ""
        return Decoded(), (
            f"no resourceSpans in the body (keys: {', '.join(sorted(doc)[:5])}): nothing was "
            "stored; is this a traces export?"
        )
    return decode_document(doc, WHERE), ""


def request_media(request: Request) -> str | None:
    """The encoding to decode and answer in, from Content-Type (parameters ignored)."""
    content_type = request.headers.get("content-type", "")
    return MEDIA_TYPES.get(content_type.split(";", 1)[0].strip().lower())


# ── decompression, bounded ─────────────────────────────────────────────────────────────────────


def decompress(data: bytes, encoding: str, limit: int) -> bytes:
    """`data` decoded from `encoding`, never holding more than `limit` + 1 bytes of output.

    Raises `BodyTooLarge` past the limit and `InputError` for corrupt or truncated data.
    """
    if encoding in ("identity", ""):
        return data
    if encoding == "gzip":
        return _inflate(data, 16 + zlib.MAX_WBITS, limit, members=True)
    if encoding in ("deflate", "zlib"):
        # HTTP "deflate" is zlib-wrapped (RFC 9110), but some clients send raw deflate.
        wrapped = len(data) >= 2 and data[0] & 0x0F == 8 and (data[0] << 8 | data[1]) % 31 == 0
        return _inflate(data, zlib.MAX_WBITS if wrapped else -zlib.MAX_WBITS, limit, members=False)
    if encoding == "zstd":
        return _unzstd(data, limit)
    raise InputError(f"{WHERE}: unsupported Content-Encoding {encoding!r}")


def _inflate(data: bytes, wbits: int, limit: int, *, members: bool) -> bytes:
    out = bytearray()
    pending = data
    while True:
        inflater = zlib.decompressobj(wbits)
        try:
            while pending:
                # Ask for one byte more than allowed: getting it means the body is too large.
                out += inflater.decompress(pending, limit - len(out) + 1)
                if len(out) > limit:
                    raise BodyTooLarge
                pending = inflater.unconsumed_tail
        except zlib.error as exc:
            raise InputError(f"{WHERE}: the body is not valid compressed data ({exc})") from None
        if not inflater.eof:
            raise InputError(f"{WHERE}: the compressed body is truncated")
        pending = inflater.unused_data
        if not (members and pending):  # gzip allows several members, one after the other
            return bytes(out)


def _unzstd(data: bytes, limit: int) -> bytes:
    import zstandard

    out = bytearray()
    try:
        with zstandard.ZstdDecompressor().stream_reader(
            io.BytesIO(data), read_across_frames=True
        ) as reader:
            while chunk := reader.read(min(1 << 20, limit - len(out) + 1)):
                out += chunk
                if len(out) > limit:
                    raise BodyTooLarge
    except zstandard.ZstdError as exc:
        raise InputError(f"{WHERE}: the body is not valid zstd data ({exc})") from None
    return bytes(out)


# ── responses ──────────────────────────────────────────────────────────────────────────────────


def export_response(media: str, rejected: int, message: str) -> Response:
    """200 with an `ExportTraceServiceResponse`; `partial_success` set only when there is
    something to report (rejected spans, or a warning with `rejected_spans` 0)."""
    if media == PROTOBUF:
        body = ExportTraceServiceResponse()
        if rejected or message:
            body.partial_success.rejected_spans = rejected
            body.partial_success.error_message = message
        return Response(body.SerializeToString(), media_type=PROTOBUF)
    # The protobuf JSON mapping: int64 as a decimal string, default values left out.
    partial: dict[str, str] = {}
    if rejected:
        partial["rejectedSpans"] = str(rejected)
    if message:
        partial["errorMessage"] = message
    return Response(json.dumps({"partialSuccess": partial} if partial else {}), media_type=JSON)


def status_response(media: str, status: int, message: str, headers: dict[str, str]) -> Response:
    """An error answer: a `google.rpc.Status` {code, message} in the request's encoding."""
    code = _RPC_CODES.get(status, 2)  # 2: UNKNOWN
    if media == PROTOBUF:
        content = _status_protobuf(code, message)
    else:
        content = json.dumps({"code": code, "message": message}).encode()
    return Response(content, status_code=status, media_type=media, headers=headers)


def _status_protobuf(code: int, message: str) -> bytes:
    # google.rpc.Status is `int32 code = 1; string message = 2;` (plus details, unused). It is
    # not in opentelemetry-proto, and two fields do not justify another dependency.
    text = message.encode("utf-8")
    return b"\x08" + _varint(code) + b"\x12" + _varint(len(text)) + text


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        bits, value = value & 0x7F, value >> 7
        if value:
            out.append(bits | 0x80)
        else:
            out.append(bits)
            return bytes(out)


def _partial_message(received: int, stored: Stored) -> str:
    """The English `error_message` of a partial success: how many, and the first reasons."""
    quarantined = stored.counts.quarantined
    if not quarantined:
        return ""
    reasons = [f"{r.location}: {r.reason}" for r in stored.rejected[:MAX_REASONS]]
    more = len(stored.rejected) - len(reasons)
    return (
        f"{quarantined} of {received} span record(s) rejected and quarantined, the rest "
        f"stored: {'; '.join(reasons)}"
        + (f"; and {more} more" if more > 0 else "")
        + ". Fix them at the source; `spendguard report quarantine` lists them."
    )
