"""An HTTP client for collectors of web APIs, shared: one retry policy, one way to explain failure.

`ApiClient.get_json` sends a GET and returns the decoded JSON, with JSON numbers that have a
fraction as `Decimal` (never float: they are money). It retries, with exponential backoff and
jitter, what may pass: timeouts and other transport errors, 5xx, and 429 — honouring
`Retry-After` in seconds or as an HTTP date. 401 and 403 fail at once with the setting to fix;
other answers fail with the API's own message. Every attempt counts in `calls`.

The transport, the sleep function, the clock and the random source are injectable, so tests
fake the network with `httpx.MockTransport` and time with a fake clock that never sleeps.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import Any

import httpx

from collectors.base import CollectorError

Params = Sequence[tuple[str, str | int]]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int = 5  # in all, the first one included
    base_delay: float = 1.0  # seconds before the first retry, doubled after each one
    max_delay: float = 60.0
    max_retry_after: float = 600.0  # a longer Retry-After fails the run (the next run retries)

    def backoff(self, retry: int, rng: random.Random) -> float:
        """Seconds before retry number `retry` (0-based): between half and all of
        base × 2^retry, capped — jitter spreads clients that failed together."""
        ceiling = min(self.max_delay, self.base_delay * 2**retry)
        return float(ceiling * (0.5 + rng.random() / 2))


@dataclass(frozen=True, slots=True)
class SettingNames:
    """Which settings a failure should name: the key and the base URL."""

    key: str  # e.g. collectors.openai.admin_key
    base_url: str  # e.g. collectors.openai.base_url
    key_hint: str = ""  # what kind of key the API wants, for the 401/403 message
    credential: str = "the admin key"  # what a 401/403 refused, in its message


class _Retry(Exception):
    def __init__(self, reason: str, wait: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.wait = wait


class ApiClient:
    def __init__(
        self,
        base_url: str,
        headers: Mapping[str, str],
        settings: SettingNames,
        *,
        name: str,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 60.0,
        policy: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        now: Callable[[], datetime] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.name = name  # names the API in messages: "openai"
        self.settings = settings
        self.policy = policy or RetryPolicy()
        self.calls = 0  # HTTP requests sent, retries included
        self._sleep = sleep
        self._now = now or (lambda: datetime.now(UTC))
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not security
        self._http = httpx.Client(
            base_url=base_url.rstrip("/") + "/",
            headers={**headers, "user-agent": "spendguard"},
            transport=transport,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            follow_redirects=True,
        )

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def get_json(self, path: str, params: Params = ()) -> Any:
        """GET `path` (relative to the base URL) and decode the JSON answer, retrying."""
        where = f"{self.name} GET /{path.lstrip('/')}"
        for attempt in range(self.policy.attempts):
            try:
                return self._attempt(path.lstrip("/"), params, where)
            except _Retry as retry:
                if attempt + 1 == self.policy.attempts:
                    raise CollectorError(
                        f"{where}: still failing after {self.policy.attempts} attempts "
                        f"({retry.reason}); check {self.settings.base_url} if it lasts — the "
                        "next run retries from the checkpoint"
                    ) from None
                wait = retry.wait
                if wait is None:
                    wait = self.policy.backoff(attempt, self._rng)
                elif wait > self.policy.max_retry_after:
                    raise CollectorError(
                        f"{where}: {retry.reason} and asked to wait {wait:.0f} s (more than "
                        f"{self.policy.max_retry_after:.0f} s); the next run retries"
                    ) from None
                self._sleep(wait)
        raise AssertionError("unreachable")  # pragma: no cover

    def _attempt(self, path: str, params: Params, where: str) -> Any:
        self.calls += 1
        try:
            response = self._http.get(path, params=list(params))
        except httpx.TimeoutException as exc:
            raise _Retry(f"timed out: {type(exc).__name__}") from None
        except httpx.TransportError as exc:
            raise _Retry(f"cannot connect: {type(exc).__name__}: {exc}") from None
        status = response.status_code
        if status == 429:
            raise _Retry("429 rate limited", self._retry_after(response))
        if status >= 500:
            raise _Retry(f"{status} {_api_message(response)}", self._retry_after(response))
        if status in (401, 403):
            verb = "refused" if status == 401 else "does not allow this with"
            raise CollectorError(
                f"{where}: {status}, the API {verb} {self.settings.credential} "
                f"({_api_message(response)}); "
                f"fix {self.settings.key}{self.settings.key_hint}"
            )
        if status == 404:
            raise CollectorError(
                f"{where}: 404 not found at {response.request.url.copy_with(query=None)}; "
                f"check {self.settings.base_url}"
            )
        if status >= 400:
            raise CollectorError(f"{where}: {status} {_api_message(response)}")
        try:
            return json.loads(response.text, parse_float=Decimal)
        except ValueError:
            raise CollectorError(
                f"{where}: the answer is not JSON ({response.headers.get('content-type')}); "
                f"check {self.settings.base_url}"
            ) from None

    def _retry_after(self, response: httpx.Response) -> float | None:
        """`Retry-After` as seconds to wait: delta-seconds or an HTTP date; None if absent."""
        value = response.headers.get("retry-after", "").strip()
        if not value:
            return None
        try:
            return max(0.0, float(value))
        except ValueError:
            pass
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return max(0.0, (when - self._now()).total_seconds())


def _api_message(response: httpx.Response) -> str:
    """The API's own error text: `{"error": {"message": …}}` (OpenAI and Anthropic alike)."""
    try:
        body = response.json()
    except ValueError:
        return response.reason_phrase or "no message"
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return str(error["message"])[:300]
    return response.reason_phrase or "no message"
