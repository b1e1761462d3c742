"""Bearer-token authentication for the HTTP API, with scopes and a short in-memory cache.

Every route but `/healthz` (and `/metrics` unless `api.metrics_token_required`) is wrapped by
`Guard.protect(endpoint, scope)`: no token or an unknown/revoked one → 401 with
`WWW-Authenticate: Bearer` (RFC 6750), a token without the scope → 403.

A token check is remembered for `api.token_cache_seconds` (default 5 s), so under load an
authenticated request costs no query; a revoked token therefore stops working within that time
on every replica. `last_used_at` is written at most once a minute per token and replica, never
on every request, and off the request's path: the request does not wait for that write (on
SQLite it could otherwise queue behind the ingest writer's lock).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import cast

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from app.auth.tokens import MAX_TOKEN_LENGTH, TokenInfo, hash_token, lookup_hash, touch_token

log = logging.getLogger(__name__)

Endpoint = Callable[[Request], Awaitable[Response]] | Callable[[Request], Response]
# Renders a refusal: (request, HTTP status, message, extra headers) → response. The OTLP route
# answers with a google.rpc.Status in the request's encoding; the others with JSON.
Deny = Callable[[Request, int, str, dict[str, str]], Response]

REALM = 'Bearer realm="spendguard"'
RETRY_AFTER_SECONDS = 5
TOUCH_EVERY_SECONDS = 60.0
MAX_CACHED = 10_000


def json_deny(_request: Request, status: int, message: str, headers: dict[str, str]) -> Response:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


@dataclass(frozen=True, slots=True)
class _Entry:
    expires: float
    token: TokenInfo | None  # None: no such active token (remembered too, briefly)


class TokenCache:
    """Token checks by hash, remembered for `ttl` seconds; `last_used_at` writes throttled.

    `cached` never touches the database (safe on the event loop); `load` and `touch` do (run
    them in a thread). Thread-safe.
    """

    def __init__(
        self,
        engine: Engine,
        ttl: float,
        *,
        touch_every: float = TOUCH_EVERY_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._engine = engine
        self._ttl = ttl
        self._touch_every = touch_every
        self._clock = clock
        self._entries: dict[str, _Entry] = {}
        self._touched: dict[int, float] = {}
        self._lock = threading.Lock()
        self._pending: set[asyncio.Future[None]] = set()  # touches in flight (kept referenced)

    def cached(self, token_hash: str) -> _Entry | None:
        """The remembered answer for this hash if still fresh, else None."""
        with self._lock:
            entry = self._entries.get(token_hash)
        if entry is None or entry.expires <= self._clock():
            return None
        return entry

    def load(self, token_hash: str) -> TokenInfo | None:
        """Look the hash up in the warehouse and remember the answer (blocking)."""
        token = lookup_hash(self._engine, token_hash)
        if self._ttl > 0:
            now = self._clock()
            with self._lock:
                if len(self._entries) >= MAX_CACHED:
                    # Bounded: someone trying random tokens must not grow memory without end.
                    self._entries = {k: e for k, e in self._entries.items() if e.expires > now}
                    if len(self._entries) >= MAX_CACHED:
                        self._entries.clear()
                self._entries[token_hash] = _Entry(now + self._ttl, token)
        return token

    def claim_touch(self, token: TokenInfo) -> bool:
        """True (once a minute per token) when this request should record the token's use."""
        now = self._clock()
        with self._lock:
            last = self._touched.get(token.id)
            if last is not None and now - last < self._touch_every:
                return False
            self._touched[token.id] = now
            return True

    def touch(self, token: TokenInfo) -> None:
        """Write `last_used_at` (blocking); best effort: a failure only costs the timestamp."""
        try:
            touch_token(self._engine, token.id)
        except SQLAlchemyError as exc:
            log.warning("could not record the use of API token %d: %s", token.id, exc)

    def touch_later(self, token: TokenInfo) -> None:
        """Schedule `touch` on the default executor; the caller does not wait for it."""
        future = asyncio.get_running_loop().run_in_executor(None, self.touch, token)
        self._pending.add(future)
        future.add_done_callback(self._pending.discard)

    def forget(self) -> None:
        with self._lock:
            self._entries.clear()


class Guard:
    """Wraps endpoints so that they run only for a bearer token with the right scope."""

    def __init__(self, tokens: TokenCache) -> None:
        self.tokens = tokens

    def protect(self, endpoint: Endpoint, scope: str | None, deny: Deny = json_deny) -> Endpoint:
        """`endpoint` behind a token check; `scope` None accepts any valid token. The token's
        record is in `request.state.token` for the endpoint."""
        is_async = inspect.iscoroutinefunction(endpoint)

        async def guarded(request: Request) -> Response:
            refusal = await self.check(request, scope)
            if isinstance(refusal, tuple):
                status, message, headers = refusal
                return deny(request, status, message, headers)
            request.state.token = refusal
            if is_async:
                return await cast(Callable[[Request], Awaitable[Response]], endpoint)(request)
            return await run_in_threadpool(cast(Callable[[Request], Response], endpoint), request)

        guarded.__name__ = getattr(endpoint, "__name__", "endpoint")
        guarded.__doc__ = endpoint.__doc__
        return guarded

    async def check(
        self, request: Request, scope: str | None
    ) -> TokenInfo | tuple[int, str, dict[str, str]]:
        """The caller's token, or why it is refused: (status, message, headers)."""
        presented = bearer_token(request.headers.get("authorization"))
        if presented is None:
            return (
                401,
                "an API token is required: Authorization: Bearer <token>",
                {"WWW-Authenticate": REALM},
            )
        invalid = (
            401,
            "the API token is not valid (unknown or revoked)",
            {"WWW-Authenticate": f'{REALM}, error="invalid_token"'},
        )
        if len(presented) > MAX_TOKEN_LENGTH:
            return invalid
        digest = hash_token(presented)
        entry = self.tokens.cached(digest)
        if entry is not None:
            token = entry.token
        else:
            try:
                token = await run_in_threadpool(self.tokens.load, digest)
            except SQLAlchemyError as exc:
                log.warning("token check failed, the warehouse is unavailable: %s", exc)
                return (
                    503,
                    "the warehouse is unavailable; retry later",
                    {"Retry-After": str(RETRY_AFTER_SECONDS)},
                )
        if token is None:
            return invalid
        if not token.grants(scope):
            return (
                403,
                f"this API token has scope {token.scope!r}; this route needs {scope!r}",
                {"WWW-Authenticate": f'{REALM}, error="insufficient_scope", scope="{scope}"'},
            )
        if self.tokens.claim_touch(token):
            self.tokens.touch_later(token)
        return token


def bearer_token(header: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header (scheme case-insensitive)."""
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    if scheme.lower() != "bearer" or not value:
        return None
    return value
