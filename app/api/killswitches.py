"""`/v1/killswitches`: list (scope decision), add, release, approve (scope admin).

    GET    /v1/killswitches[?state=active,pending_approval|all]  200 {"version", "switches": [...]}
    POST   /v1/killswitches {"endpoint"?, "model"?, "user"?, "team"?, "reason", "ttl"? ("2h"),
                             "expires_at"? (ISO 8601), "dry_run"? (false), "by"? (who)}  201 switch
    DELETE /v1/killswitches/{id}             200 switch (released); 404 unknown; 409 not open
    POST   /v1/killswitches/{id}/approve     200 switch (active); 404; 409 not pending

Who did it, in the audit log: the admin token's name, with `by` when the caller names a person.
A change is enforced by this process at once (it re-reads its index) and by every other replica
within about a second. Without the warehouse, the list falls back to this process's memory
(`"stale": true`) and changes answer 503.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from anyio import to_thread
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from app.api.auth import json_deny
from app.durations import parse_duration
from app.errors import WarehouseError
from app.killswitch import store
from app.killswitch.model import DIMENSIONS, OPEN_STATES, OPERATOR, STATES, Scope, Switch
from app.killswitch.refresh import Refresher
from app.settings import Settings

MAX_JSON_BYTES = 64 * 1024
UNAVAILABLE = (SQLAlchemyError, WarehouseError)


async def read_json(request: Request, *, allow_empty: bool = False) -> dict[str, Any] | Response:
    """The body as a JSON object (bounded), or the 400/413 answer."""
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_JSON_BYTES:
                return json_deny(request, 413, f"the body is over {MAX_JSON_BYTES} bytes", {})
            chunks.append(chunk)
    except ClientDisconnect:
        return Response(status_code=400)
    raw = b"".join(chunks)
    if not raw.strip() and allow_empty:
        return {}
    try:
        parsed = json.loads(raw)
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict):
        return json_deny(request, 400, "the body must be a JSON object", {})
    return parsed


def _who(request: Request, body: dict[str, Any]) -> str:
    token = getattr(request.state, "token", None)
    name = f"token:{token.name}" if token is not None else "api"
    person = body.get("by")
    return f"{str(person)[:100]} via {name}" if person else name


def _expiry(body: dict[str, Any], now: datetime) -> datetime | None:
    ttl, at = body.get("ttl"), body.get("expires_at")
    if ttl is not None and at is not None:
        raise ValueError("give ttl or expires_at, not both")
    if ttl is not None:
        return now + parse_duration(str(ttl))
    if at is not None:
        moment = datetime.fromisoformat(str(at).replace("Z", "+00:00"))
        if moment.tzinfo is None:
            raise ValueError("expires_at needs a time zone (e.g. 2026-03-04T00:00:00Z)")
        return moment.astimezone(UTC)
    return None


def _states(text: str | None) -> list[str] | None:
    if text is None:
        return list(OPEN_STATES)
    if text == "all":
        return None
    states = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in states if s not in STATES]
    if unknown:
        raise ValueError(f"unknown state {unknown[0]!r}; choose from {', '.join(STATES)} or all")
    return states


class KillSwitchRoutes:
    def __init__(self, engine: Engine, settings: Settings, refresher: Refresher) -> None:
        self.engine, self.settings, self.refresher = engine, settings, refresher

    async def list(self, request: Request) -> Response:
        now = datetime.now(UTC)
        try:
            states = _states(request.query_params.get("state"))
        except ValueError as exc:
            return json_deny(request, 400, str(exc), {})
        try:
            found = await to_thread.run_sync(store.list_switches, self.engine, now, states)
            version, stale = self.refresher.index.version, False
        except UNAVAILABLE:
            index = self.refresher.index
            found = [s for s in index.switches if states is None or s.state_at(now) in states]
            version, stale = index.version, True
        body = {"version": version, "stale": stale, "switches": [s.to_json(now) for s in found]}
        return JSONResponse(body)

    async def add(self, request: Request) -> Response:
        body = await read_json(request)
        if isinstance(body, Response):
            return body
        now = datetime.now(UTC)
        try:
            scope = Scope(**{d: _text(body.get(d), d) for d in DIMENSIONS})
            reason = _text(body.get("reason"), "reason") or ""
            expires_at = _expiry(body, now)
            dry_run = body.get("dry_run", False)
            if not isinstance(dry_run, bool):
                raise ValueError("dry_run must be true or false")
        except ValueError as exc:
            return json_deny(request, 400, str(exc), {})
        return await self._change(
            request, 201, store.add_now, self.engine, self.settings, scope, reason, now=now,
            by=_who(request, body), origin=OPERATOR, expires_at=expires_at, dry_run=dry_run,
        )  # fmt: skip

    async def release(self, request: Request) -> Response:
        return await self._move(request, store.release)

    async def approve(self, request: Request) -> Response:
        return await self._move(request, store.approve)

    async def _move(self, request: Request, move: Any) -> Response:
        text = request.path_params["id"]
        if not text.isdigit():
            return json_deny(request, 404, f"there is no kill switch {text[:40]!r}", {})
        return await self._change(
            request, 200, move, self.engine, self.settings, int(text), _who(request, {}),
            datetime.now(UTC),
        )  # fmt: skip

    async def _change(
        self, request: Request, status: int, fn: Any, *args: Any, **kw: Any
    ) -> Response:
        def call() -> Switch:
            result: Switch = fn(*args, **kw)
            return result

        try:
            switch = await to_thread.run_sync(call)
        except store.SwitchError as exc:
            return json_deny(request, exc.status, str(exc), {})
        except UNAVAILABLE:
            return json_deny(
                request, 503, "the warehouse is unavailable; retry later", {"Retry-After": "5"}
            )
        await self.refresher.refresh_now()  # enforced here before we answer
        return JSONResponse(switch.to_json(datetime.now(UTC)), status_code=status)


def _text(value: object, key: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ValueError(f"{key} must be a string")
    return value
