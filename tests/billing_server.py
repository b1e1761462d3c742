"""A local fake of the OpenAI and Anthropic Admin APIs at the wire, for the billing tests.

`BillingServer` is a real HTTP server on 127.0.0.1 in the test process. It answers from a
`Ledger` of results in the real shapes (copied from the recorded pages in
tests/fixtures/billing, themselves copies of ../shared/samples) through the same
`FakeBillingApi` the demo uses, a few buckets a page, and injects faults on the n-th request to
an endpoint: an error status (with headers such as `Retry-After`) or a stall that outlasts the
client's timeout. `FakeClock` is the collectors' clock and sleep: a retry "waits" instantly.
"""

from __future__ import annotations

import copy
import json
import socket
import threading
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr

from app.demo.bills import FakeBillingApi, Ledger
from app.settings import (
    AnthropicCollectorConfig,
    CollectorsConfig,
    OpenAICollectorConfig,
    Settings,
)

RECORDED = Path(__file__).parent / "fixtures" / "billing"
KEY = "sk-admin-test-key"
NOW = datetime(2025, 11, 21, 12, 30, tzinfo=UTC)
TODAY = NOW.date()


def recorded(provider: str, name: str) -> Any:
    """A recorded page, its JSON numbers as exact `Decimal`s."""
    return json.loads((RECORDED / provider / name).read_text(), parse_float=Decimal)


def recorded_results(provider: str, name: str) -> list[dict[str, Any]]:
    return [r for bucket in recorded(provider, name)["data"] for r in bucket["results"]]


def days_before(today: date, count: int) -> list[date]:
    """`count` days ending with `today`, oldest first."""
    return [today - timedelta(days=count - 1 - i) for i in range(count)]


def openai_ledger(days: list[date]) -> Ledger:
    """Every day bills what the recorded page bills for 2025-11-20 (two lines, gpt-4o-mini)."""
    ledger = Ledger("openai")
    for day in days:
        ledger.costs[day] = copy.deepcopy(recorded_results("openai", "costs_page1.json"))
        ledger.usage[day] = copy.deepcopy(recorded_results("openai", "usage_completions.json"))
    return ledger


def anthropic_ledger(days: list[date]) -> Ledger:
    """Every day bills what the recorded cost report bills (Sonnet 4.5 in and out, web search)."""
    ledger = Ledger("anthropic")
    for day in days:
        ledger.costs[day] = copy.deepcopy(recorded_results("anthropic", "cost_report.json"))
        ledger.usage[day] = copy.deepcopy(recorded_results("anthropic", "usage_messages.json"))
    return ledger


def settings_for(provider: str, base_url: str, **options: Any) -> Settings:
    config = {"enabled": True, "admin_key": SecretStr(KEY), "base_url": base_url, **options}
    if provider == "openai":
        return Settings(collectors=CollectorsConfig(openai=OpenAICollectorConfig(**config)))
    return Settings(collectors=CollectorsConfig(anthropic=AnthropicCollectorConfig(**config)))


class FakeClock:
    """Now, and a sleep that only moves now on (and remembers how long it was asked for)."""

    def __init__(self, now: datetime = NOW) -> None:
        self.now = now
        self.slept: list[float] = []

    def __call__(self) -> datetime:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += timedelta(seconds=seconds)


@dataclass
class Fault:
    path: str  # a part of the path: "costs", "cost_report", "usage"
    nth: int  # the n-th request (from 1) to such paths is the first answered so
    status: int = 500
    headers: dict[str, str] = field(default_factory=dict)
    times: int | None = 1  # consecutive requests answered so; None: every one from then on
    stall: bool = False  # answer nothing until the client has given up


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that timed out has hung up: nothing to report


class BillingServer:
    def __init__(self, ledger: Ledger, *, page_size: int = 2) -> None:
        self.ledger = ledger
        self.api = FakeBillingApi(ledger, page_size=page_size, key=KEY)
        self.faults: list[Fault] = []
        self.seen: list[httpx.Request] = []
        self._counts: Counter[int] = Counter()
        self._lock = threading.Lock()
        self._release = threading.Event()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                # Headers and body go out in two writes: without this, delayed ACKs cost 40 ms.
                self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def do_GET(self) -> None:
                owner._answer(self)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = _Server(("127.0.0.1", 0), Handler)
        serve = lambda: self.httpd.serve_forever(poll_interval=0.02)  # noqa: E731
        self._thread = threading.Thread(target=serve, daemon=True)
        self._thread.start()

    @property
    def base_url(self) -> str:
        root = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        return f"{root}/v1" if self.ledger.provider == "openai" else root

    def paths(self) -> list[str]:
        return [r.url.path for r in self.seen]

    def close(self) -> None:
        self._release.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def _answer(self, handler: BaseHTTPRequestHandler) -> None:
        url = f"http://{handler.headers.get('host', '127.0.0.1')}{handler.path}"
        request = httpx.Request("GET", url, headers=list(handler.headers.items()))
        with self._lock:
            self.seen.append(request)
            fault = self._fault(request.url.path)
        if fault is not None and fault.stall:
            self._release.wait(10)
            return
        if fault is not None:
            response = httpx.Response(
                fault.status, json={"error": {"message": "injected fault"}}, headers=fault.headers
            )
        else:
            response = self.api(request)
        body = response.content
        handler.send_response(response.status_code)
        for name, value in response.headers.items():
            if name.lower() not in ("content-length", "transfer-encoding", "connection"):
                handler.send_header(name, value)
        handler.send_header("content-length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    def _fault(self, path: str) -> Fault | None:
        found = None
        for i, fault in enumerate(self.faults):
            if fault.path in path:
                self._counts[i] += 1
                n = self._counts[i]
                last = None if fault.times is None else fault.nth + fault.times - 1
                if n >= fault.nth and (last is None or n <= last):
                    found = found or fault
        return found
