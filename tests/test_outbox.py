"""The durable outbox against a real local HTTP server (a Slack / webhook fake in a thread):
Retry-After honoured, 500s retried then delivered once, the horizon, 410, Slack's 1 message/s,
order per alert, and a delivery process killed mid-request delivered again after restart with
the same webhook-id. Time is a fake clock (`now` passed in): backoff is computed, never waited.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from sqlalchemy import Engine, select
from standardwebhooks import Webhook

from alerts.outbox import LEASE, RateLimiter, backoff, deliver_due, enqueue
from app.settings import Settings
from app.warehouse.tables import AuditEntry, DisabledEndpoint, OutboxItem

# Real time, because receivers check the signature's age; the one test that verifies signatures
# takes its own clock, so a slow suite run cannot age this one past the 5-minute tolerance.
NOW = datetime.now(UTC).replace(microsecond=0)
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: str


@dataclass
class FakeEndpoint:
    """A local HTTP server answering scripted (status, headers) responses, then 200 "ok".
    With `hold` set, it announces a request (`arrived`) and answers only once `release` is."""

    script: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    accepted: list[Received] = field(default_factory=list)
    hold: bool = False
    arrived: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)

    def start(self) -> ThreadingHTTPServer:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", 0))
                got = Received(self.path, dict(self.headers), self.rfile.read(length).decode())
                fake.received.append(got)
                if fake.hold:
                    fake.hold = False
                    fake.arrived.set()
                    fake.release.wait(30)
                status, headers = fake.script.pop(0) if fake.script else (200, {})
                if status < 300:
                    fake.accepted.append(got)
                try:
                    self.send_response(status)
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(b"ok" if status < 300 else b"error")
                except OSError:
                    pass  # the client is gone (the killed delivery process)

            def log_message(self, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        return server


@pytest.fixture
def endpoint() -> Iterator[tuple[FakeEndpoint, str]]:
    fake = FakeEndpoint()
    server = fake.start()
    yield fake, f"http://127.0.0.1:{server.server_address[1]}"
    fake.release.set()
    server.shutdown()
    server.server_close()


def settings_for(base: str, **alerts: str) -> Settings:
    return Settings(
        notifiers={
            "slack": {"kind": "slack", "webhook_url": f"{base}/slack"},
            "hook": {"kind": "webhook", "url": f"{base}/hook", "secret": SECRET},
        },
        alerts=alerts,
    )


def fake_limiter() -> RateLimiter:
    """Slack's 1 message/s on a fake clock: waiting advances it instead of sleeping."""
    clock = [0.0]

    def sleep(seconds: float) -> None:
        clock[0] += seconds

    return RateLimiter(clock=lambda: clock[0], sleep=sleep)


def put(engine: Engine, notifier: str, body: dict[str, Any], key: str = "r:g") -> str:
    with engine.begin() as conn:
        return enqueue(conn, notifier, key, None, json.dumps(body), NOW)


def item(engine: Engine, message_id: str) -> Any:
    with engine.connect() as conn:
        return conn.execute(select(OutboxItem).where(OutboxItem.message_id == message_id)).one()


def test_429_with_retry_after_then_200_delivers_exactly_one_message(
    engine: Engine, endpoint: tuple[FakeEndpoint, str]
) -> None:
    fake, base = endpoint
    fake.script = [(429, {"Retry-After": "30"})]
    settings, limiter = settings_for(base), fake_limiter()
    message_id = put(engine, "slack", {"text": "hello"})
    [first] = deliver_due(engine, settings, NOW, limiter=limiter)
    assert (first.status, first.outcome.http_status) == ("pending", 429)
    assert first.next_attempt_at == NOW + timedelta(seconds=30)  # Retry-After, not backoff
    assert deliver_due(engine, settings, NOW + timedelta(seconds=29), limiter=limiter) == []
    [second] = deliver_due(engine, settings, NOW + timedelta(seconds=30), limiter=limiter)
    assert second.status == "delivered"
    assert [json.loads(r.body) for r in fake.accepted] == [{"text": "hello"}]
    assert (item(engine, message_id).attempts, len(fake.received)) == (2, 2)
    assert deliver_due(engine, settings, NOW + timedelta(hours=1), limiter=limiter) == []


def test_500s_for_a_while_then_delivered_once_on_a_computed_backoff(
    engine: Engine, endpoint: tuple[FakeEndpoint, str]
) -> None:
    fake, base = endpoint
    fake.script = [(500, {})] * 4
    settings = settings_for(base, retry_initial="10s", retry_max="1m")
    put(engine, "hook", {"n": 1})
    now, waits = NOW, []
    for _ in range(5):
        [delivery] = deliver_due(engine, settings, now, rng=random.Random(7))
        if delivery.status == "delivered":
            break
        assert delivery.next_attempt_at is not None
        waits.append(delivery.next_attempt_at - now)
        now = delivery.next_attempt_at
    assert len(fake.accepted) == 1
    assert len(fake.received) == 5
    # 10 s, 20 s, 40 s, then capped at 60 s, each × a jitter factor in [0.5, 1).
    for wait, step in zip(waits, (10, 20, 40, 60), strict=True):
        assert timedelta(seconds=step / 2) <= wait < timedelta(seconds=step)


def test_backoff_is_exponential_with_jitter_and_capped() -> None:
    rng = random.Random(1)
    initial, cap = timedelta(seconds=10), timedelta(hours=1)
    steps = [backoff(n, initial, cap, rng) for n in range(1, 16)]
    assert timedelta(seconds=5) <= steps[0] < timedelta(seconds=10)
    assert all(s < cap for s in steps)
    assert steps[-1] >= cap / 2


def test_retries_stop_at_the_horizon(engine: Engine, endpoint: tuple[FakeEndpoint, str]) -> None:
    fake, base = endpoint
    fake.script = [(503, {})] * 50
    settings = settings_for(base, retry_initial="1h", retry_max="8h", outbox_horizon="24h")
    message_id = put(engine, "hook", {"n": 1})
    now, statuses = NOW, []
    while True:
        [delivery] = deliver_due(engine, settings, now)
        statuses.append(delivery.status)
        if delivery.status != "pending":
            break
        assert delivery.next_attempt_at is not None
        now = delivery.next_attempt_at
    assert statuses[-1] == "expired"
    assert now - NOW <= timedelta(hours=24)
    assert item(engine, message_id).status == "expired"
    assert fake.accepted == []


def test_410_disables_the_endpoint_and_cancels_what_was_queued(
    engine: Engine, endpoint: tuple[FakeEndpoint, str]
) -> None:
    fake, base = endpoint
    fake.script = [(410, {})]
    settings = settings_for(base)
    first = put(engine, "slack", {"n": 1}, key="a")
    second = put(engine, "slack", {"n": 2}, key="b")
    [gone] = deliver_due(engine, settings, NOW)
    assert (gone.message_id, gone.status) == (first, "gone")
    assert deliver_due(engine, settings, NOW) == []
    assert item(engine, second).status == "cancelled"
    assert len(fake.received) == 1
    with engine.connect() as conn:
        assert conn.execute(select(DisabledEndpoint.notifier)).scalars().all() == ["slack"]
        kinds = conn.execute(select(AuditEntry.kind).order_by(AuditEntry.id)).scalars().all()
    assert kinds == ["notification_gone", "endpoint_disabled", "notification_cancelled"]
    # A new URL is a new endpoint: delivered again.
    moved = settings_for(base + "/v2")
    third = put(engine, "slack", {"n": 3}, key="c")
    assert [d.message_id for d in deliver_due(engine, moved, NOW)] == [third]


def test_slack_gets_at_most_one_message_per_second(
    sqlite_engine: Engine, endpoint: tuple[FakeEndpoint, str]
) -> None:
    fake, base = endpoint
    clock, slept = [100.0], []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock[0] += seconds

    for n in range(3):
        put(sqlite_engine, "slack", {"n": n}, key=f"k{n}")
    put(sqlite_engine, "hook", {"n": 9}, key="k9")
    limiter = RateLimiter(clock=lambda: clock[0], sleep=sleep)
    done = deliver_due(sqlite_engine, settings_for(base), NOW, limiter=limiter)
    assert [d.status for d in done] == ["delivered"] * 4
    assert slept == [1.0, 1.0]  # between the three Slack messages; the webhook does not wait
    assert sorted(r.path for r in fake.accepted) == ["/hook", "/slack", "/slack", "/slack"]


def test_per_alert_order_a_resolution_never_overtakes_its_firing(
    sqlite_engine: Engine, endpoint: tuple[FakeEndpoint, str]
) -> None:
    fake, base = endpoint
    fake.script = [(503, {"Retry-After": "60"})]
    settings = settings_for(base)
    firing = put(sqlite_engine, "hook", {"kind": "firing"}, key="rule:group")
    resolved = put(sqlite_engine, "hook", {"kind": "resolved"}, key="rule:group")
    assert [d.message_id for d in deliver_due(sqlite_engine, settings, NOW)] == [firing]
    later = NOW + timedelta(seconds=60)
    delivered = [d.message_id for d in deliver_due(sqlite_engine, settings, later)]
    assert delivered == [firing, resolved]
    assert [json.loads(r.body)["kind"] for r in fake.accepted] == ["firing", "resolved"]


DELIVER_SCRIPT = """
import json, sys
from datetime import datetime
from app.settings import Settings
from app.warehouse.engine import make_engine
from alerts.outbox import deliver_due
url, settings, now = sys.argv[1], json.loads(sys.argv[2]), datetime.fromisoformat(sys.argv[3])
deliver_due(make_engine(url), Settings(**settings), now)
"""


@pytest.mark.slow
def test_a_delivery_killed_mid_request_is_delivered_after_restart_with_the_same_id(
    warehouse_url: str, engine: Engine, endpoint: tuple[FakeEndpoint, str]
) -> None:
    fake, base = endpoint
    now = datetime.now(UTC).replace(microsecond=0)
    fake.hold = True
    raw = {"notifiers": {"hook": {"kind": "webhook", "url": f"{base}/hook", "secret": SECRET}}}
    message_id = put(engine, "hook", {"alert": "user-daily-cap"})
    worker = subprocess.Popen(
        [sys.executable, "-c", DELIVER_SCRIPT, warehouse_url, json.dumps(raw), now.isoformat()],
        cwd=os.getcwd(),
    )
    try:
        assert fake.arrived.wait(60), "the delivery process never sent its request"
        worker.send_signal(signal.SIGKILL)  # dies after the claim, before recording anything
        worker.wait(30)
    finally:
        if worker.poll() is None:
            worker.kill()
    fake.release.set()
    claimed = item(engine, message_id)
    assert (claimed.status, claimed.attempts) == ("pending", 1)
    assert claimed.claimed_until == now + LEASE
    settings = Settings(**raw)  # type: ignore[arg-type]
    assert deliver_due(engine, settings, now + LEASE - timedelta(seconds=1)) == []  # leased
    [redelivery] = deliver_due(engine, settings, now + LEASE)
    assert (redelivery.status, redelivery.attempt) == ("delivered", 2)
    ids = [r.headers["webhook-id"] for r in fake.received]
    assert ids == [message_id, message_id]  # at least once, deduplicable by webhook-id
    for request in fake.received:
        Webhook(SECRET).verify(request.body, request.headers)
