"""Two `spendguard api` processes on one warehouse (PostgreSQL, and SQLite in WAL mode): a switch
added through one is enforced by the other within 2 s, and a release likewise."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine

from app.auth.tokens import create_token
from tests.killswitch_support import clean_env, wait_until
from tests.servers import free_port

PROPAGATION_SECONDS = 2.0


@contextmanager
def api_process(config: Path, port: int) -> Iterator[str]:
    """A `spendguard api` process on `port`, up (it answers /healthz), stopped on the way out."""
    with _api_process(config, port) as (wait_up, url):
        wait_up()
        yield url


@contextmanager
def api_processes(config: Path, count: int) -> Iterator[list[str]]:
    """`count` API processes on free ports, started together (each takes seconds to import and
    start; the test waits for them side by side), stopped on the way out."""
    with ExitStack() as stack:
        started = [stack.enter_context(_api_process(config, free_port())) for _ in range(count)]
        for wait_up, _url in started:
            wait_up()
        yield [url for _wait_up, url in started]


@contextmanager
def _api_process(config: Path, port: int) -> Iterator[tuple[Callable[[], None], str]]:
    log = config.parent / f"api-{port}.log"  # a file, not a pipe: access logs never block it
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "app", "--config", str(config), "api", "--port", str(port)],
            env=clean_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:

        def up() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"the API exited: {log.read_text()[-2000:]}")
            try:
                return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        def wait_up() -> None:
            wait_until(up, 60, step=0.1)

        yield wait_up, url
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # uvicorn: graceful shutdown, lifespan included
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)


@pytest.mark.slow
def test_a_switch_added_on_one_replica_is_enforced_by_the_other(
    tmp_path: Path, warehouse_url: str, engine: Engine
) -> None:
    config = tmp_path / "spendguard.yaml"
    config.write_text(json.dumps({"database": {"url": warehouse_url}}))
    admin = {"Authorization": f"Bearer {create_token(engine, 'admin', 'ops')[1]}"}
    gateway = {"Authorization": f"Bearer {create_token(engine, 'decision', 'gw')[1]}"}
    with api_processes(config, 2) as (one, two):

        def status_on(url: str) -> int:
            answer = httpx.get(f"{url}/v1/decision", params={"user": "u-1313"}, headers=gateway)
            return answer.status_code

        assert status_on(one) == status_on(two) == 200
        added = httpx.post(
            f"{one}/v1/killswitches", headers=admin, json={"user": "u-1313", "reason": "runaway"}
        )
        assert added.status_code == 201
        assert status_on(one) == 403  # the replica that took the change: at once
        took = wait_until(lambda: status_on(two) == 403, PROPAGATION_SECONDS)
        print(f"\nswitch added on one replica enforced by the other after {took:.3f} s")

        released = httpx.delete(f"{two}/v1/killswitches/{added.json()['id']}", headers=admin)
        assert released.status_code == 200
        took = wait_until(lambda: status_on(one) == 200, PROPAGATION_SECONDS)
        print(f"release on the other replica seen after {took:.3f} s")
        health = httpx.get(f"{two}/healthz").json()
        assert health["status"] == "ok" and health["killswitches"]["version"] == 2
