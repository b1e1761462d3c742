"""The OpenAPI document matches the app's routes, and the API logs JSON lines without secrets."""

from __future__ import annotations

import json
import logging

from sqlalchemy import Engine
from starlette.routing import Route
from starlette.testclient import TestClient

from app.api import create_app
from app.api.docs import openapi_spec
from app.api.logs import JsonFormatter
from app.auth.tokens import create_token
from app.settings import Settings

IGNORED_METHODS = {"HEAD", "OPTIONS"}


def _app_routes(engine: Engine) -> set[tuple[str, str]]:
    app = create_app(engine, Settings())
    found = set()
    for route in app.routes:
        assert isinstance(route, Route)
        path = route.path.replace("{path:path}", "{path}")
        methods = set(route.methods or ()) - IGNORED_METHODS
        if path == "/v1/decision/{path}":
            methods = {"GET"}  # every method is accepted; the document describes GET
        found |= {(path, m.lower()) for m in methods}
    return found


def test_every_route_is_documented_and_nothing_else(sqlite_engine: Engine) -> None:
    spec = openapi_spec()
    documented = {
        (path, method)
        for path, item in spec["paths"].items()
        for method in item
        if method in {"get", "post", "put", "patch", "delete"}
    }
    assert _app_routes(sqlite_engine) == documented
    assert spec["openapi"].startswith("3.")
    for path, item in spec["paths"].items():
        for method, op in item.items():
            if method == "parameters":
                continue
            assert "security" in op, f"{method} {path} says nothing about its token"
            if path not in {"/healthz", "/metrics"}:
                assert op["security"], f"{method} {path} must need a token"


def test_openapi_json_needs_a_token(sqlite_engine: Engine) -> None:
    _, token = create_token(sqlite_engine, scope="ingest", name="docs")
    with TestClient(create_app(sqlite_engine, Settings())) as client:
        assert client.get("/openapi.json").status_code == 401
        answer = client.get("/openapi.json", headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200
    assert answer.json()["paths"].keys() == openapi_spec()["paths"].keys()


def test_access_log_lines_are_json_without_query_strings() -> None:
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5555", "GET", "/v1/decision?user=u-1&model=gpt-4o", "1.1", 403),
        None,
    )
    line = json.loads(JsonFormatter().format(record))
    assert line["event"] == "access"
    assert (line["method"], line["path"], line["status"]) == ("GET", "/v1/decision", 403)
    assert "u-1" not in json.dumps(line)
    other = logging.LogRecord(
        "spendguard.worker", logging.WARNING, __file__, 1, "x %s", ("y",), None
    )
    assert json.loads(JsonFormatter().format(other))["message"] == "x y"
