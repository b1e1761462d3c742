"""A real nginx (the Debian package; `make test` / `.ci/run` install it when missing) runs the
configuration of docs/gateways.md in front of a dummy upstream, with `auth_request` to the
decision API: a blocked user gets 403 through nginx, others reach the upstream, and with
spendguard down requests still go through (the documented fail-open choice)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine

from app.api import create_app
from app.auth.tokens import create_token
from app.killswitch.model import OPERATOR, Scope
from app.killswitch.store import add_now
from app.settings import Settings
from tests.conftest import UNDER_CI
from tests.killswitch_support import serve, wait_until
from tests.servers import free_port

DOC = Path(__file__).resolve().parents[1] / "docs" / "gateways.md"
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)

pytestmark = pytest.mark.slow


def documented_config() -> str:
    section = DOC.read_text(encoding="utf-8").split("## NGINX", 1)[1]
    match = re.search(r"```nginx\n(.*?)```", section, re.DOTALL)
    assert match, "docs/gateways.md has no ```nginx block under ## NGINX"
    return match.group(1)


class Upstream(BaseHTTPRequestHandler):
    seen: list[tuple[str, str, str | None]] = []

    def _answer(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length).decode()
        Upstream.seen.append((self.command, self.path, self.headers.get("x-user-id")))
        payload = json.dumps({"upstream": "ok", "body": body}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = _answer

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass


@contextmanager
def upstream() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@contextmanager
def nginx(tmp_path: Path, api_port: int, app_port: int, token: str) -> Iterator[str]:
    assert NGINX is not None
    port = free_port()
    snippet = (
        documented_config()
        .replace("server 127.0.0.1:8700;", f"server 127.0.0.1:{api_port};")
        .replace("server 127.0.0.1:8000;", f"server 127.0.0.1:{app_port};")
        .replace("listen 8080;", f"listen 127.0.0.1:{port};")
        .replace("sg_REPLACE_WITH_A_DECISION_TOKEN", token)
        .replace("/var/cache/nginx/spendguard", str(tmp_path / "cache"))
    )
    temp = "".join(
        f"  {k}_temp_path {tmp_path / k};\n"
        for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    user = "user root;\n" if os.geteuid() == 0 else ""  # workers must reach the temp dirs
    conf = tmp_path / "nginx.conf"
    conf.write_text(
        f"{user}worker_processes 1;\npid {tmp_path / 'nginx.pid'};\n"
        f"error_log {tmp_path / 'error.log'} warn;\nevents {{ worker_connections 256; }}\n"
        f"http {{\n  access_log {tmp_path / 'access.log'};\n{temp}{snippet}\n}}\n"
    )
    check = subprocess.run(
        [NGINX, "-t", "-p", str(tmp_path), "-c", str(conf)], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stderr
    proc = subprocess.Popen(
        [NGINX, "-p", str(tmp_path), "-c", str(conf), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:

        def listening() -> bool:
            assert proc.poll() is None, (tmp_path / "error.log").read_text()
            try:
                httpx.get(f"{url}/healthz-probe", timeout=1)
                return True
            except httpx.TransportError:
                return False

        wait_until(listening, 20, step=0.05)
        yield url
    finally:
        proc.send_signal(signal.SIGQUIT)  # graceful: workers finish, then the master exits
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=20)


@pytest.fixture
def nginx_binary() -> str:
    if NGINX is None:
        if UNDER_CI:
            pytest.fail("nginx is not installed: `make test` / `.ci/run` install nginx-light")
        pytest.skip("nginx is not installed (apt-get install -y nginx-light, or run `make test`)")
    return NGINX


def test_nginx_auth_request_blocks_the_runaway_user_only(
    tmp_path: Path, sqlite_engine: Engine, nginx_binary: str
) -> None:
    token = create_token(sqlite_engine, "decision", "nginx")[1]
    app = create_app(sqlite_engine, Settings())
    add_now(
        sqlite_engine,
        Settings(),
        Scope(user="u-1313"),
        "daily cap of $50 reached",
        now=datetime.now(UTC),
        by="test",
        origin=OPERATOR,
    )
    with upstream() as app_port, serve(app) as api_url:
        api_port = int(api_url.rsplit(":", 1)[1])
        with nginx(tmp_path, api_port, app_port, token) as url:
            Upstream.seen.clear()  # (the readiness probe went through)
            chat = f"{url}/v1/chat/completions"
            blocked = httpx.post(chat, json={"model": "gpt-4o"}, headers={"X-User-Id": "u-1313"})
            assert blocked.status_code == 403
            assert blocked.headers["x-spendguard-reason"] == "daily cap of $50 reached"
            assert blocked.headers["retry-after"] == "3600"  # no expiry: a hint
            assert "blocked by spendguard" in blocked.json()["error"]["message"]
            assert Upstream.seen == []  # never reached the application

            allowed = httpx.post(chat, json={"model": "gpt-4o"}, headers={"X-User-Id": "u-2"})
            assert allowed.status_code == 200, allowed.text
            assert allowed.json() == {"upstream": "ok", "body": '{"model":"gpt-4o"}'}
            assert Upstream.seen == [("POST", "/v1/chat/completions", "u-2")]
            # Cached for a second, then asked again: both reach the upstream.
            assert httpx.get(f"{url}/v1/models", headers={"X-User-Id": "u-2"}).status_code == 200

    # spendguard is gone now (its server stopped): the documented config fails open.
    with upstream() as app_port, nginx(tmp_path, api_port, app_port, token) as url:
        unchecked = httpx.post(f"{url}/v1/chat/completions", json={}, headers={"X-User-Id": "u-3"})
        assert unchecked.status_code == 200
