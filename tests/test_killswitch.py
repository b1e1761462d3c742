"""The decision API's HTTP contract: inputs (query, JSON, headers, NGINX and Envoy), the 403,
scopes, the admin routes, a warehouse outage and /metrics. The index itself:
test_killswitch_index.py."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine
from starlette.applications import Starlette
from starlette.testclient import TestClient

from app.api import create_app
from app.auth.tokens import create_token
from app.killswitch.model import OPERATOR, PENDING, Scope, Switch
from app.killswitch.store import add_now
from app.settings import ApiConfig, Settings
from app.warehouse.engine import make_engine

# ── the HTTP contract ─────────────────────────────────────────────────────────────────────────


@pytest.fixture
def app(sqlite_engine: Engine) -> Starlette:
    return create_app(sqlite_engine, Settings())


@pytest.fixture
def client(app: Starlette) -> Iterator[TestClient]:
    with TestClient(app) as c:
        yield c


def bearer(engine: Engine, scope: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {create_token(engine, scope, scope)[1]}"}


def block(engine: Engine, app: Starlette, scope: Scope, **kw: object) -> Switch:
    added = add_now(
        engine,
        Settings(),
        scope,
        "over budget",
        now=datetime.now(UTC),
        by="test",
        origin=OPERATOR,
        **kw,
    )  # type: ignore[arg-type]
    app.state.decisions.refresher.refresh()
    return added


def test_inputs_from_query_json_headers_and_the_gateways(
    sqlite_engine: Engine, app: Starlette, client: TestClient
) -> None:
    blocked = block(sqlite_engine, app, Scope(endpoint="/v1/chat/*", user="u-1"))
    headers = bearer(sqlite_engine, "decision")

    def get(params: dict[str, str] | None = None, headers: dict[str, str] = headers) -> int:
        return client.get("/v1/decision", params=params, headers=headers).status_code

    assert get(params={"endpoint": "/v1/chat/completions", "user": "u-1"}) == 403
    assert get(params={"endpoint": "/v1/embeddings", "user": "u-1"}) == 200
    post = client.post(
        "/v1/decision", headers=headers, json={"endpoint": "/v1/chat/x", "user": "u-1"}
    )
    assert post.status_code == 403
    assert (
        get(headers={**headers, "X-Spendguard-Endpoint": "/v1/chat/x", "X-Spendguard-User": "u-1"})
        == 403
    )
    # NGINX auth_request: the endpoint is the path of X-Original-URI (query left out, decoded).
    nginx = {
        **headers,
        "X-Original-URI": "/v1/chat/completions%3F?user=u-2",
        "X-Spendguard-User": "u-1",
    }
    assert get(headers=nginx) == 403
    assert get(headers={**nginx, "X-Spendguard-User": "u-2"}) == 200
    # Envoy ext_authz (HTTP service, path_prefix /v1/decision): any method, the original path;
    # the original query string is the caller's, never an input.
    envoy = {**headers, "X-Spendguard-User": "u-1"}
    assert (
        client.post("/v1/decision/v1/chat/completions", headers=envoy, content=b"{").status_code
        == 403
    )
    assert client.put("/v1/decision/v1/chat/completions?user=u-2", headers=envoy).status_code == 403
    assert client.get("/v1/decision/v1/other", headers=envoy).status_code == 200
    # Query wins over JSON, JSON over headers.
    mixed = client.post(
        "/v1/decision?user=u-2",
        headers={**headers, "X-Spendguard-User": "u-1"},
        json={"endpoint": "/v1/chat/x", "user": "u-1"},
    )
    assert mixed.status_code == 200
    assert client.post("/v1/decision", headers=headers, content=b"[1]").status_code == 400
    assert blocked.id


def test_the_403_says_why_which_switch_and_when_to_retry(
    sqlite_engine: Engine, app: Starlette, client: TestClient
) -> None:
    added = block(
        sqlite_engine, app, Scope(user="ü-1"), expires_at=datetime.now(UTC) + timedelta(hours=2)
    )
    headers = bearer(sqlite_engine, "decision")
    refused = client.get("/v1/decision", params={"user": "ü-1"}, headers=headers)
    assert refused.status_code == 403
    body = refused.json()
    assert body["allow"] is False and body["switch_id"] == added.id
    assert body["reason"] == "over budget"
    assert 7190 <= body["retry_after"] <= 7200
    assert refused.headers["Retry-After"] == str(body["retry_after"])
    assert refused.headers["X-Spendguard-Reason"] == "over budget"
    assert refused.headers["Cache-Control"] == "no-store"
    allowed = client.get("/v1/decision", params={"user": "u-2"}, headers=headers)
    assert (allowed.status_code, allowed.json()) == (200, {"allow": True})
    assert allowed.headers["Cache-Control"] == "max-age=1"  # gateways may reuse it a second


def test_scopes_401_and_403(sqlite_engine: Engine, client: TestClient) -> None:
    assert client.get("/v1/decision").status_code == 401
    assert (
        client.get("/v1/decision", headers={"Authorization": "Bearer sg_nope"}).status_code == 401
    )
    ingest, decision, admin = (bearer(sqlite_engine, s) for s in ("ingest", "decision", "admin"))
    assert client.get("/v1/decision", headers=ingest).status_code == 403
    assert client.get("/v1/decision", headers=admin).status_code == 200
    assert client.get("/v1/killswitches", headers=decision).status_code == 200
    new = {"user": "u-9", "reason": "test"}
    assert client.post("/v1/killswitches", headers=decision, json=new).status_code == 403
    assert client.delete("/v1/killswitches/1", headers=decision).status_code == 403
    assert client.post("/v1/killswitches", json=new).status_code == 401


def test_operators_add_list_release_and_approve_over_http(
    sqlite_engine: Engine, app: Starlette, client: TestClient
) -> None:
    admin, decision = bearer(sqlite_engine, "admin"), bearer(sqlite_engine, "decision")
    bad = [
        {"reason": "no scope"},
        {"user": "u-1"},
        {"user": "u-1", "reason": "x", "ttl": "soon"},
        {"user": 7, "reason": "x"},
        {"user": "u-1", "reason": "x", "dry_run": "yes"},
    ]
    for body in bad:
        assert client.post("/v1/killswitches", headers=admin, json=body).status_code == 400, body
    made = client.post(
        "/v1/killswitches",
        headers=admin,
        json={"user": "u-1", "reason": "loop", "ttl": "2h", "by": "alice"},
    )
    assert made.status_code == 201
    created = made.json()
    assert (created["state"], created["created_by"]) == ("active", "alice via token:admin")
    # Enforced at once on this replica (no wait for the next poll).
    assert client.get("/v1/decision?user=u-1", headers=decision).status_code == 403
    listed = client.get("/v1/killswitches", headers=decision).json()
    assert [s["id"] for s in listed["switches"]] == [created["id"]] and not listed["stale"]
    assert client.get("/v1/killswitches?state=bogus", headers=decision).status_code == 400
    released = client.delete(f"/v1/killswitches/{created['id']}", headers=admin)
    assert (released.status_code, released.json()["state"]) == (200, "released")
    assert client.get("/v1/decision?user=u-1", headers=decision).status_code == 200
    assert client.delete(f"/v1/killswitches/{created['id']}", headers=admin).status_code == 409
    assert client.delete("/v1/killswitches/999", headers=admin).status_code == 404
    assert client.delete("/v1/killswitches/abc", headers=admin).status_code == 404
    assert client.get("/v1/killswitches?state=released", headers=decision).json()["switches"]
    pending = block(sqlite_engine, app, Scope(team="t-1"), state=PENDING)
    assert client.get("/v1/decision?team=t-1", headers=decision).status_code == 200
    approved = client.post(f"/v1/killswitches/{pending.id}/approve", headers=admin)
    assert (approved.status_code, approved.json()["updated_by"]) == (200, "token:admin")
    assert client.get("/v1/decision?team=t-1", headers=decision).status_code == 403


def test_a_warehouse_outage_keeps_the_last_state_and_says_degraded(sqlite_engine: Engine) -> None:
    settings = Settings(api=ApiConfig(token_cache_seconds=0))  # every token check is a query
    app = create_app(sqlite_engine, settings)
    decision = bearer(sqlite_engine, "decision")
    with TestClient(app) as client:
        block(sqlite_engine, app, Scope(user="u-1"))
        assert client.get("/v1/decision?user=u-1", headers=decision).status_code == 403
        down = make_engine("postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=1")
        refresher = app.state.decisions.refresher
        refresher.engine = down
        app.state.guard.tokens._engine = down  # the token check fails too
        try:
            assert not refresher.refresh()
            health = client.get("/healthz")
            assert health.status_code == 200  # still routable: it answers decisions
            assert health.json()["status"] == "degraded"
            assert "unavailable" in health.json()["killswitches"]["error"]
            assert client.get("/v1/decision?user=u-1", headers=decision).status_code == 403
            assert client.get("/v1/decision?user=u-2", headers=decision).status_code == 200
            unknown = bearer(sqlite_engine, "decision")  # never seen by this process
            assert client.get("/v1/decision?user=u-2", headers=unknown).status_code == 503
        finally:
            down.dispose()
        refresher.engine = app.state.guard.tokens._engine = sqlite_engine
        assert refresher.refresh() is False and client.get("/healthz").json()["status"] == "ok"


def test_metrics_count_decisions_switches_and_the_outbox(
    sqlite_engine: Engine, app: Starlette, client: TestClient
) -> None:
    block(sqlite_engine, app, Scope(user="u-1"))
    decision = bearer(sqlite_engine, "decision")
    for user in ("u-1", "u-2", "u-3"):
        client.get(f"/v1/decision?user={user}", headers=decision)
    client.get("/v1/decision")
    text = client.get("/metrics").text
    assert 'spendguard_decisions_total{result="allow"} 2' in text
    assert 'spendguard_decisions_total{result="block"} 1' in text
    assert 'spendguard_decisions_total{result="unauthorized"} 1' in text
    assert "spendguard_decision_duration_seconds_count 4" in text
    assert 'spendguard_killswitches{state="active"} 1' in text
    assert "spendguard_outbox_backlog 0" in text
