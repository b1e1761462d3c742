"""The long-running processes: the API answers, and `spendguard up` starts and stops all three."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine
from starlette.testclient import TestClient

from app.api import create_app
from app.ingest import ingest_paths
from app.settings import Settings
from tests.conftest import FIXTURES
from tests.servers import free_port


def test_healthz_and_metrics(sqlite_engine: Engine) -> None:
    ingest_paths(sqlite_engine, Settings(), [FIXTURES / "otlp" / "counting.json"])
    with TestClient(create_app(sqlite_engine, Settings())) as client:
        health = client.get("/healthz")
        assert health.status_code == 200
        assert health.json()["status"] == "ok"
        metrics = client.get("/metrics").text
        assert "spendguard_requests_stored 5" in metrics
        assert "spendguard_llm_calls_stored 5" in metrics


def _wait_for(url: str, deadline: float) -> httpx.Response:
    while True:
        try:
            return httpx.get(url, timeout=2)
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def _start_up(tmp_path: Path) -> tuple[subprocess.Popen[str], int, int]:
    api_port, dash_port = free_port(), free_port()
    config = tmp_path / "spendguard.yaml"
    config.write_text(
        f"database: {{url: 'sqlite:///{tmp_path / 'w.db'}'}}\n"
        f"api: {{host: 127.0.0.1, port: {api_port}}}\n"
        f"dashboard: {{port: {dash_port}}}\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPENDGUARD_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "app", "--config", str(config), "up"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    return proc, api_port, dash_port


def _reap(proc: subprocess.Popen[str]) -> None:
    """Whatever happened, leave no process and no open pipe behind."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)  # `up` stops its children (each in its own group)
        try:
            proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)


@pytest.mark.slow
def test_up_serves_api_and_dashboard_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    proc, api_port, dash_port = _start_up(tmp_path)
    try:
        deadline = time.monotonic() + 60
        assert _wait_for(f"http://127.0.0.1:{api_port}/healthz", deadline).status_code == 200
        dash = _wait_for(f"http://127.0.0.1:{dash_port}/_stcore/health", deadline)
        assert dash.status_code == 200
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        out, _ = proc.communicate(timeout=30)
    finally:
        _reap(proc)
    assert proc.returncode == 0, out
    assert "stopping api, worker and dashboard" in out
    for port in (api_port, dash_port):
        with pytest.raises(httpx.TransportError):
            httpx.get(f"http://127.0.0.1:{port}/", timeout=1)


@pytest.mark.slow
def test_up_stops_everything_when_one_process_dies(tmp_path: Path) -> None:
    proc, api_port, _ = _start_up(tmp_path)
    try:
        _wait_for(f"http://127.0.0.1:{api_port}/healthz", time.monotonic() + 60)
        api_pid = int(
            subprocess.run(
                ["pgrep", "-P", str(proc.pid), "-f", "app --config .* api$"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.split()[0]
        )
        os.kill(api_pid, signal.SIGKILL)
        out, _ = proc.communicate(timeout=30)
    finally:
        _reap(proc)
    assert proc.returncode != 0
    assert "api exited" in out
