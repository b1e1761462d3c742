"""The decision API and the kill-switch routes (ARCHITECTURE, "HTTP API").

    GET|POST /v1/decision            scope decision: may this request go through?
    ANY      /v1/decision/{path}     the same, as Envoy's ext_authz HTTP service calls it
    GET      /v1/killswitches        scope decision: the open switches (?state=…, or all)
    POST     /v1/killswitches        scope admin: add a switch (201)
    DELETE   /v1/killswitches/{id}   scope admin: release it
    POST     /v1/killswitches/{id}/approve   scope admin: approve a pending one

A decision's inputs, per dimension, come from the query string, then the JSON body, then the
headers `X-Spendguard-Endpoint|Model|User|Team`; without an endpoint, it is the path of
`X-Original-URI` (NGINX `auth_request`) or the path after `/v1/decision` (Envoy forwards the
original path there; its query string is the original request's and is NOT read as inputs).
Answers: 200 `{"allow": true}` (`Cache-Control: max-age=1`, so a gateway may reuse it for a
second) or 403 `{"allow": false, "reason", "switch_id", "retry_after"}` with `X-Spendguard-Reason`
and `Retry-After` (403, because NGINX `auth_request` understands only 2xx, 401 and 403).

A decision never queries the warehouse: the switches come from the in-memory index, and the
token check from the guard's cache. If the warehouse is down, a token that passed a check on
this process before is still accepted for decisions (instead of 503), so gateways keep getting
answers from the last known state; /healthz says degraded.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from time import perf_counter
from typing import Any
from urllib.parse import unquote

from anyio import to_thread
from sqlalchemy import Engine
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from app.api.auth import Guard, bearer_token, json_deny
from app.api.killswitches import KillSwitchRoutes, read_json
from app.auth.tokens import hash_token
from app.killswitch.index import Values
from app.killswitch.live import MIN_INTERVAL, KillRules, Pusher
from app.killswitch.metrics import DecisionStats
from app.killswitch.model import DIMENSIONS
from app.killswitch.refresh import POLL_SECONDS, Refresher
from app.settings import Settings

HEADERS = {d: f"x-spendguard-{d}" for d in DIMENSIONS}
ANY_METHOD = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
ALLOWED = b'{"allow":true}'
MAX_REASON_HEADER = 200
MAX_KNOWN_TOKENS = 10_000


def header_text(text: str) -> str:
    """A header-safe copy: printable ASCII ('?' for anything else), one line, bounded, and
    without quotes or backslashes, so a gateway may also paste it into a JSON string."""
    flat = " ".join(text.split()).replace('"', "'").replace("\\", "/")
    return "".join(c if " " <= c <= "~" else "?" for c in flat[:MAX_REASON_HEADER])


class DecisionApi:
    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        guard: Guard,
        *,
        poll_seconds: float = POLL_SECONDS,
        evaluate_every: float = MIN_INTERVAL,
    ) -> None:
        self.guard = guard
        self.stats = DecisionStats()
        self.pusher = Pusher(engine, settings, evaluate_every)
        self.refresher = Refresher(
            engine, settings, interval=poll_seconds, on_change=self.pusher.poke
        )
        self.kill_rules = KillRules(engine, settings, self.refresher.poke, evaluate_every)
        self.admin = KillSwitchRoutes(engine, settings, self.refresher)
        self._known: set[str] = set()  # token hashes that passed a decision-scope check

    def routes(self) -> list[Route]:
        decide = self._timed(self._guarded(self.decide))
        protect = self.guard.protect
        return [
            Route("/v1/decision", decide, methods=["GET", "POST"]),
            Route("/v1/decision/{path:path}", decide, methods=ANY_METHOD),
            Route("/v1/killswitches", protect(self.admin.list, "decision"), methods=["GET"]),
            Route("/v1/killswitches", protect(self.admin.add, "admin"), methods=["POST"]),
            Route(
                "/v1/killswitches/{id}",
                protect(self.admin.release, "admin"),
                methods=["DELETE"],
            ),
            Route(
                "/v1/killswitches/{id}/approve",
                protect(self.admin.approve, "admin"),
                methods=["POST"],
            ),
        ]

    @contextlib.asynccontextmanager
    async def lifespan(self, _app: Starlette) -> AsyncIterator[None]:
        """Load the switches before serving; keep them current while serving."""
        await to_thread.run_sync(self.refresher.refresh)
        loops = (self.refresher, self.kill_rules, self.pusher)
        tasks = [asyncio.create_task(loop.run()) for loop in loops]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def decide(self, request: Request) -> Response:
        values = await self._inputs(request)
        if isinstance(values, Response):
            request.state.decision = "bad_request"
            return values
        decision = self.refresher.index.decide(*values)
        if decision.allow:
            request.state.decision = "dry_run" if decision.dry_run_ids else "allow"
            return Response(
                ALLOWED, media_type="application/json", headers={"Cache-Control": "max-age=1"}
            )
        request.state.decision = "block"
        body = {
            "allow": False,
            "reason": decision.reason,
            "switch_id": decision.switch_id,
            "retry_after": decision.retry_after,
        }
        headers = {
            "X-Spendguard-Reason": header_text(decision.reason),
            "Retry-After": str(decision.retry_after),
            "Cache-Control": "no-store",
        }
        return JSONResponse(body, status_code=403, headers=headers)

    async def _inputs(self, request: Request) -> Values | Response:
        forwarded = "path" in request.path_params  # Envoy: the query is the original's
        query = {} if forwarded else request.query_params
        body: dict[str, Any] = {}
        if request.method == "POST" and not forwarded:
            parsed = await read_json(request, allow_empty=True)
            if isinstance(parsed, Response):
                return parsed
            body = parsed
        values: list[str | None] = []
        for dim in DIMENSIONS:
            given = body.get(dim)
            if given is not None and not isinstance(given, str | int):
                return json_deny(request, 400, f"{dim} must be a string", {})
            value = query.get(dim) or (str(given) if given is not None else None)
            values.append(value or request.headers.get(HEADERS[dim]) or None)
        if values[0] is None:
            original = request.headers.get("x-original-uri")
            if original:
                values[0] = unquote(original.split("?", 1)[0]) or None
            elif forwarded:
                values[0] = "/" + request.path_params["path"]
        return values[0], values[1], values[2], values[3]

    def _guarded(
        self, endpoint: Callable[[Request], Awaitable[Response]]
    ) -> Callable[[Request], Awaitable[Response]]:
        """The guard's check, except that a warehouse outage does not refuse a token this
        process has already accepted for decisions."""

        async def guarded(request: Request) -> Response:
            checked = await self.guard.check(request, "decision")
            if isinstance(checked, tuple):
                status, message, headers = checked
                token = bearer_token(request.headers.get("authorization"))
                if not (status == 503 and token and hash_token(token) in self._known):
                    return json_deny(request, status, message, headers)
            else:
                token = bearer_token(request.headers.get("authorization"))
                if token and len(self._known) < MAX_KNOWN_TOKENS:
                    self._known.add(hash_token(token))
            return await endpoint(request)

        return guarded

    def _timed(
        self, endpoint: Callable[[Request], Awaitable[Response]]
    ) -> Callable[[Request], Awaitable[Response]]:
        async def timed(request: Request) -> Response:
            start = perf_counter()
            response = await endpoint(request)
            self.stats.latency.observe(perf_counter() - start)
            self.stats.results[getattr(request.state, "decision", "unauthorized")] += 1
            return response

        return timed

    def render_metrics(self) -> str:
        health = self.refresher.health()
        return self.stats.render(self.refresher.index.counts(), health)

    def health(self) -> dict[str, Any]:
        return self.refresher.health()
