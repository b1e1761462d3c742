"""The durable outbox: notifications are rows written in the same transaction as the
transition that caused them, then delivered at least once.

Delivery of one item: claim it (a lease, `claimed_until`, committed before the request is
sent), post it, settle the outcome. A process that dies between claim and settle leaves the
lease to expire; the item is then sent again with the same `message_id` (`webhook-id`), so a
receiver can drop the duplicate. Outcomes:

- delivered (2xx);
- retry (5xx, 408, 425, 429, network errors): again after `Retry-After` when the endpoint gave
  one, else after exponential backoff with jitter (`retry_initial` × 2^(attempt-1), capped at
  `retry_max`, times a random factor in [0.5, 1)); a retry that would fall after
  `created_at + outbox_horizon` expires the item instead;
- gone (410): the endpoint is disabled (until its configured URL changes) and a notice is
  logged and audited; the endpoint's other items are cancelled;
- failed (other 4xx): permanent.

Per notifier and alert, items go out in order (a resolution never overtakes its firing); after a
retry outcome, the notifier's other items wait for the next pass. Slack endpoints get at most
one message per second (`RateLimiter`, whose clock and sleep tests replace).
"""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import Connection, Engine, insert, or_, select, update

from alerts import audit
from alerts.notifiers import Message, Outcome
from alerts.notifiers.base import DELIVERED, GONE, RETRY, target_hash
from app.durations import parse_duration
from app.killswitch.destinations import destinations, sender_class
from app.settings import Settings
from app.warehouse.tables import DisabledEndpoint, OutboxItem

log = logging.getLogger("spendguard.alerts")

PENDING, EXPIRED, CANCELLED = "pending", "expired", "cancelled"
LEASE = timedelta(minutes=2)  # longer than one HTTP attempt can take (10 s timeout)
SCAN_LIMIT = 500
HTTP_TIMEOUT = 10.0


def enqueue(
    conn: Connection, notifier: str, alert_key: str, transition_id: int | None, body: str,
    now: datetime,
) -> str:  # fmt: skip
    message_id = f"msg_{uuid.uuid4().hex}"
    conn.execute(
        insert(OutboxItem).values(
            message_id=message_id, notifier=notifier, alert_key=alert_key,
            transition_id=transition_id, body=body, status=PENDING, created_at=now,
            next_attempt_at=now, attempts=0,
        )
    )  # fmt: skip
    return message_id


@dataclass
class RateLimiter:
    """At most one message per `interval` per endpoint: waits (sleeps) for the rest. One is
    shared by the delivery passes of a process (`PROCESS_LIMITER`), so back-to-back passes
    (the worker's schedule, a collector run) respect it too."""

    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    last: dict[str, float] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def wait(self, key: str, interval: timedelta) -> None:
        gap = interval.total_seconds()
        with self.lock:
            if gap > 0 and key in self.last:
                remaining = self.last[key] + gap - self.clock()
                if remaining > 0:
                    self.sleep(remaining)
            self.last[key] = self.clock()


PROCESS_LIMITER = RateLimiter()


def backoff(attempt: int, initial: timedelta, maximum: timedelta, rng: random.Random) -> timedelta:
    """Exponential with "equal jitter": half of the step is fixed, half random."""
    step = min(maximum, initial * (1 << min(max(attempt - 1, 0), 30)))
    return step * (0.5 + rng.random() / 2)


@dataclass(frozen=True, slots=True)
class Delivery:
    message_id: str
    notifier: str
    attempt: int
    outcome: Outcome
    status: str  # the item's status after this attempt
    next_attempt_at: datetime | None


@dataclass
class Deliverer:
    """One delivery pass over due items. `rng` and `limiter` are the tests' fake clock."""

    engine: Engine
    settings: Settings
    client: httpx.Client
    rng: random.Random = field(default_factory=random.Random)
    limiter: RateLimiter = field(default_factory=lambda: PROCESS_LIMITER)

    def run(self, now: datetime, limit: int = 100) -> list[Delivery]:
        with self.engine.connect() as conn:
            disabled = {(r.notifier, r.target_hash) for r in conn.execute(select(DisabledEndpoint))}
            items = conn.execute(
                select(OutboxItem.id, OutboxItem.notifier, OutboxItem.alert_key,
                       OutboxItem.next_attempt_at, OutboxItem.claimed_until)
                .where(OutboxItem.status == PENDING).order_by(OutboxItem.id).limit(SCAN_LIMIT)
            ).all()  # fmt: skip
        waiting: set[tuple[str, str]] = set()  # (notifier, alert) with an earlier item pending
        blocked: set[str] = set()
        done: list[Delivery] = []
        for item in items:
            key = (item.notifier, item.alert_key)
            if len(done) >= limit:
                break
            if key in waiting:
                continue  # an earlier item of the same alert goes first
            busy = item.claimed_until is not None and item.claimed_until > now
            if item.notifier in blocked or item.next_attempt_at > now or busy:
                waiting.add(key)
                continue
            config = destinations(self.settings).get(item.notifier)  # notifiers and gateways
            if config is None or not config.enabled:
                self._cancel(item.id, now, f"notifier {item.notifier!r} is not configured/enabled")
                continue
            if (item.notifier, target_hash(config)) in disabled:
                self._cancel(item.id, now, "endpoint disabled after 410 Gone")
                continue
            claimed = self._claim(item.id, now)
            if claimed is None:
                waiting.add(key)  # another deliverer took it
                continue
            notifier = sender_class(config.kind)(item.notifier, config, self.client)
            self.limiter.wait(target_hash(config), notifier.min_interval)
            message = Message(claimed.message_id, claimed.body, claimed.attempts, now)
            outcome = notifier.send(message)
            delivery = self._settle(claimed, outcome, now, target_hash(config))
            done.append(delivery)
            if delivery.status == PENDING:
                waiting.add(key)
            if outcome.status in (RETRY, GONE):
                blocked.add(item.notifier)
                if outcome.status == GONE:
                    disabled.add((item.notifier, target_hash(config)))
        return done

    def _claim(self, item_id: int, now: datetime) -> Any:
        with self.engine.begin() as conn:
            won = conn.execute(
                update(OutboxItem)
                .where(OutboxItem.id == item_id, OutboxItem.status == PENDING,
                       or_(OutboxItem.claimed_until.is_(None), OutboxItem.claimed_until <= now))
                .values(claimed_until=now + LEASE, attempts=OutboxItem.attempts + 1)
            ).rowcount  # fmt: skip
            if won != 1:
                return None
            return conn.execute(select(OutboxItem).where(OutboxItem.id == item_id)).one()

    def _settle(self, item: Any, outcome: Outcome, now: datetime, target: str) -> Delivery:
        alerts = self.settings.alerts
        status, next_at = outcome.status, None
        if outcome.status == RETRY:
            wait = outcome.retry_after or backoff(
                item.attempts,
                parse_duration(alerts.retry_initial),
                parse_duration(alerts.retry_max),
                self.rng,
            )
            next_at = now + wait
            horizon = item.created_at + parse_duration(alerts.outbox_horizon)
            status = PENDING if next_at <= horizon else EXPIRED
        finished = None if status == PENDING else now
        with self.engine.begin() as conn:
            conn.execute(
                update(OutboxItem).where(OutboxItem.id == item.id).values(
                    status=status, claimed_until=None, last_http_status=outcome.http_status,
                    last_error=outcome.detail or None, finished_at=finished,
                    next_attempt_at=next_at or item.next_attempt_at,
                )
            )  # fmt: skip
            audit.record(
                conn, now, f"notification_{'retry' if status == PENDING else status}",
                notifier=item.notifier, message_id=item.message_id, attempt=item.attempts,
                http_status=outcome.http_status, detail=outcome.detail, next_attempt_at=next_at,
            )  # fmt: skip
            if outcome.status == GONE:
                self._disable(conn, item.notifier, target, now)
        if status in (DELIVERED, PENDING):
            log.info("alerts: %s to %s: %s", item.message_id, item.notifier, status)
        else:
            log.warning("alerts: %s to %s: %s %s", item.message_id, item.notifier, status,
                        outcome.detail[:200])  # fmt: skip
        return Delivery(item.message_id, item.notifier, item.attempts, outcome, status, next_at)

    def _disable(self, conn: Connection, notifier: str, target: str, now: datetime) -> None:
        known = conn.execute(
            select(DisabledEndpoint).where(
                DisabledEndpoint.notifier == notifier, DisabledEndpoint.target_hash == target
            )
        ).first()
        if known is None:
            reason = "410 Gone: the endpoint no longer exists; change its URL to re-enable it"
            conn.execute(
                insert(DisabledEndpoint).values(
                    notifier=notifier, target_hash=target, disabled_at=now, reason=reason
                )
            )
            audit.record(conn, now, "endpoint_disabled", notifier=notifier, reason=reason)
            log.warning("alerts: notifier %r disabled: %s", notifier, reason)

    def _cancel(self, item_id: int, now: datetime, reason: str) -> None:
        with self.engine.begin() as conn:
            message_id = conn.execute(
                update(OutboxItem).where(OutboxItem.id == item_id, OutboxItem.status == PENDING)
                .values(status=CANCELLED, finished_at=now, last_error=reason)
                .returning(OutboxItem.message_id)
            ).scalar_one_or_none()  # fmt: skip
            if message_id is not None:
                audit.record(conn, now, "notification_cancelled", message_id=message_id,
                             reason=reason)  # fmt: skip


def deliver_due(
    engine: Engine,
    settings: Settings,
    now: datetime | None = None,
    *,
    transport: httpx.BaseTransport | None = None,
    limiter: RateLimiter | None = None,
    rng: random.Random | None = None,
    limit: int = 100,
) -> list[Delivery]:
    """Deliver what is due at `now` (default: the wall clock), at most `limit` attempts."""
    with httpx.Client(timeout=HTTP_TIMEOUT, transport=transport) as client:
        deliverer = Deliverer(engine, settings, client)
        if limiter is not None:
            deliverer.limiter = limiter
        if rng is not None:
            deliverer.rng = rng
        return deliverer.run(now or datetime.now(UTC), limit)
