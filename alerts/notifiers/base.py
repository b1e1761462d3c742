"""The notifier base class and registry: a notifier renders an `Alert` into the body the outbox
stores, and `send(message) → outcome` posts one stored message once.

A notifier never retries by itself: the outbox decides (backoff, `Retry-After`, the horizon)
from the `Outcome`. HTTP goes through the `httpx.Client` it is given, so tests swap the
transport (`httpx.MockTransport`) or point it at a local server.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import ClassVar

import httpx

from alerts.config import NotifierConfig
from alerts.messages import Alert

DELIVERED, RETRY, GONE, FAILED = "delivered", "retry", "gone", "failed"
RETRYABLE_STATUS = frozenset({408, 425, 429})


@dataclass(frozen=True, slots=True)
class Message:
    """One attempt at one outbox item: `id` is the same on every attempt (`webhook-id`)."""

    id: str
    body: str
    attempt: int
    timestamp: datetime


@dataclass(frozen=True, slots=True)
class Outcome:
    status: str  # delivered, retry (transient), gone (410: disable the endpoint), failed
    http_status: int | None = None
    retry_after: timedelta | None = None
    detail: str = ""


class Notifier(ABC):
    kind: ClassVar[str]
    # The least time between two messages to one endpoint (Slack: 1 message per second).
    min_interval: ClassVar[timedelta] = timedelta(0)

    def __init__(self, name: str, config: NotifierConfig, client: httpx.Client) -> None:
        self.name, self.config, self.client = name, config, client

    @classmethod
    @abstractmethod
    def render(cls, alert: Alert) -> str:
        """The body to store and send, as text."""

    @abstractmethod
    def send(self, message: Message) -> Outcome: ...

    @classmethod
    def problem(cls, config: NotifierConfig) -> str | None:
        """What is wrong with a config that validated but cannot work, for `rules check`."""
        return None

    def target_hash(self) -> str:
        """Names the endpoint without revealing it (a Slack webhook URL is a secret)."""
        return target_hash(self.config)

    def post(self, message: Message, headers: dict[str, str]) -> Outcome:
        try:
            response = self.client.post(
                self.config.target(),
                content=message.body.encode(),
                headers={"content-type": "application/json", **headers},
            )
        except httpx.HTTPError as exc:
            return Outcome(RETRY, detail=f"{type(exc).__name__}: {exc}"[:300])
        return outcome_of(response, message.timestamp)


def target_hash(config: NotifierConfig) -> str:
    return hashlib.sha256(config.target().encode()).hexdigest()


def outcome_of(response: httpx.Response, now: datetime) -> Outcome:
    code = response.status_code
    detail = response.text[:300]
    if 200 <= code < 300:
        return Outcome(DELIVERED, code)
    if code == 410:
        return Outcome(GONE, code, detail=detail)
    if code in RETRYABLE_STATUS or code >= 500:
        wait = retry_after(response.headers.get("retry-after"), now)
        return Outcome(RETRY, code, wait, detail)
    return Outcome(FAILED, code, detail=detail)


def retry_after(value: str | None, now: datetime) -> timedelta | None:
    """`Retry-After` as seconds or as an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return timedelta(seconds=int(value))
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(when - now, timedelta(0))


NOTIFIERS: dict[str, type[Notifier]] = {}


def register(cls: type[Notifier]) -> type[Notifier]:
    NOTIFIERS[cls.kind] = cls
    return cls
