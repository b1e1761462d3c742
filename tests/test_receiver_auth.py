"""The OTLP/HTTP receiver's tokens and scopes (every route but health and metrics needs one), and
a warehouse that fails or cannot be reached (503, retryable, nothing stored).
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from google.rpc.status_pb2 import Status
from sqlalchemy import Engine
from starlette.routing import Route
from starlette.testclient import TestClient

from app.api import create_app
from app.auth.tokens import create_token, revoke_token
from app.traces.intake import Intake
from tests.receiver_support import (  # noqa: F401 (the *_fixture names: fixtures)
    JSON,
    PROTOBUF,
    base_url_fixture,
    client_fixture,
    pb_request,
    settings_for,
    stored,
    token_fixture,
)


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
