"""The synthetic traffic model: how many requests each hour, from whom, to which endpoint.

Volume per UTC hour = requests_per_day × hour-of-day weight × day-of-week weight × a slow growth
trend × a little day-to-day noise, drawn as a Poisson count; the weights average to 1, so an
average day has about `requests_per_day` requests (plus the runaway user's, below). Users are
drawn by their Zipf-like weight, endpoints by the user's team preferences; the LLM calls a
request makes are shaped by `app.demo.calls`.

In the last `RUNAWAY_HOURS` hours one user (`catalog.RUNAWAY_USER`) runs an agent that loops:
a few requests an hour to /v1/agent/run, each with dozens of calls on a growing context.

Every draw comes from the one `random.Random` passed in, in a fixed order, so a seed and a window
give the same traffic every time.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from itertools import accumulate

from app.demo.calls import CallShaper, LlmCall, ms
from app.demo.catalog import (
    ENDPOINTS,
    ENDPOINTS_BY_ROUTE,
    RUNAWAY_USER,
    TEAMS,
    USERS,
    DemoUser,
    EndpointSpec,
)

NS = 1_000_000_000
HOUR = timedelta(hours=1)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# UTC hour of day: quiet at night, busy in (European and American) working hours.
_HOURLY = (
    0.15, 0.10, 0.08, 0.08, 0.10, 0.18, 0.35, 0.60, 0.90, 1.15, 1.25, 1.25,
    1.15, 1.25, 1.40, 1.50, 1.50, 1.40, 1.20, 0.95, 0.75, 0.55, 0.40, 0.25,
)  # fmt: skip
HOUR_WEIGHTS = tuple(w * 24 / sum(_HOURLY) for w in _HOURLY)
# Monday first; weekends are quiet.
_WEEKLY = (1.05, 1.10, 1.10, 1.05, 0.95, 0.40, 0.35)
WEEKDAY_WEIGHTS = tuple(w * 7 / sum(_WEEKLY) for w in _WEEKLY)

RUNAWAY_HOURS = 42
ERROR_RATE = 0.006  # requests whose last LLM call fails


@dataclass(frozen=True, slots=True)
class DemoRequest:
    trace_id: str
    span_id: str
    endpoint: EndpointSpec
    user: DemoUser
    start_ns: int
    end_ns: int
    status: int
    calls: tuple[LlmCall, ...]
    runaway: bool = False  # one of the runaway agent loop's requests


def iter_days(
    rng: random.Random, start: datetime, end: datetime, requests_per_day: int
) -> Iterator[tuple[date, list[DemoRequest]]]:
    """(UTC day, its requests by start time) for each day that overlaps [start, end)."""
    gen = _Generator(rng, start, end, requests_per_day)
    hour = start.replace(minute=0, second=0, microsecond=0)
    day: date | None = None
    batch: list[DemoRequest] = []
    day_factor = 1.0
    while hour < end:
        if hour.date() != day:
            if day is not None:
                yield day, batch
            day, batch = hour.date(), []
            day_factor = rng.lognormvariate(0.0, 0.08)
        batch.extend(gen.hour(hour, day_factor))
        hour += HOUR
    if day is not None:
        yield day, batch


class _Generator:
    def __init__(
        self, rng: random.Random, start: datetime, end: datetime, requests_per_day: int
    ) -> None:
        self.rng = rng
        self.shaper = CallShaper(rng)
        self.start, self.end = start, end
        self.rate = requests_per_day
        self.runaway_from = max(start, end - timedelta(hours=RUNAWAY_HOURS))
        self.runaway_per_hour = max(1, round(requests_per_day / 300))
        self.runaway_user = next(u for u in USERS if u.id == RUNAWAY_USER)
        self.user_cum = _cumulative([u.weight for u in USERS])
        self.endpoint_cum: dict[str, list[float]] = {}
        for team in TEAMS:
            prefers = dict(team.prefers)
            weights = [e.weight * prefers.get(e.route, 1.0) for e in ENDPOINTS]
            self.endpoint_cum[team.name] = _cumulative(weights)

    # --- volume -----------------------------------------------------------------------------

    def hour(self, hour: datetime, day_factor: float) -> list[DemoRequest]:
        lo, hi = max(hour, self.start), min(hour + HOUR, self.end)
        covered = (hi - lo) / HOUR
        trend = 0.9 + 0.2 * ((hour - self.start) / (self.end - self.start))
        expected = (
            self.rate / 24
            * HOUR_WEIGHTS[hour.hour]
            * WEEKDAY_WEIGHTS[hour.weekday()]
            * trend
            * day_factor
            * covered
        )  # fmt: skip
        lo_ns, width = _ns(lo), _ns(hi) - _ns(lo)
        starts = sorted(lo_ns + self.rng.randrange(width) for _ in range(self._poisson(expected)))
        out = [self._request(t) for t in starts]
        if hi > self.runaway_from:
            first = _ns(max(lo, self.runaway_from))
            n = round(self.runaway_per_hour * (_ns(hi) - first) / (NS * 3600))
            runaway = sorted(first + self.rng.randrange(_ns(hi) - first) for _ in range(n))
            out.extend(self._runaway_request(t) for t in runaway)
            out.sort(key=lambda r: (r.start_ns, r.trace_id))
        return out

    def _poisson(self, lam: float) -> int:
        if lam <= 0:
            return 0
        if lam > 30:
            return max(0, round(self.rng.gauss(lam, math.sqrt(lam))))
        limit, k, p = math.exp(-lam), 0, self.rng.random()
        while p > limit:
            k += 1
            p *= self.rng.random()
        return k

    # --- one request --------------------------------------------------------------------------

    def _request(self, start_ns: int) -> DemoRequest:
        rng = self.rng
        user = rng.choices(USERS, cum_weights=self.user_cum)[0]
        endpoint = rng.choices(ENDPOINTS, cum_weights=self.endpoint_cum[user.team])[0]
        t = start_ns + ms(rng.randint(*endpoint.overhead_ms))
        calls: list[LlmCall] = []
        status = 200
        if endpoint.pattern == "none" or rng.random() < endpoint.no_llm_rate:
            # Answered by the app alone: a profile read, an app-level cache hit, a bad input.
            if endpoint.method == "POST" and rng.random() < 0.05:
                status = 422
            elif endpoint.pattern == "none" and rng.random() < 0.01:
                status = 404
        else:
            if endpoint.pattern == "rag":
                calls = self.shaper.rag(endpoint, t)
            elif endpoint.pattern == "agent":
                calls = self.shaper.agent(endpoint, t)
            else:
                calls = self.shaper.sequence(endpoint, t)
            if rng.random() < ERROR_RATE:
                # The last call fails (no usage reported) and so does the request.
                failed = calls[-1]
                error = rng.choice(("RateLimitError", "APITimeoutError", "InternalServerError"))
                calls[-1] = LlmCall(
                    failed.span_id, failed.model, failed.start_ns, failed.end_ns, 0, 0, error=error
                )
                status = {"RateLimitError": 503, "APITimeoutError": 504}.get(error, 502)
            t = calls[-1].end_ns
        end_ns = t + ms(rng.randint(*endpoint.overhead_ms))
        return DemoRequest(
            self.shaper.trace_id(), self.shaper.span_id(), endpoint, user,
            start_ns, end_ns, status, tuple(calls),
        )  # fmt: skip

    def _runaway_request(self, start_ns: int) -> DemoRequest:
        endpoint = ENDPOINTS_BY_ROUTE["/v1/agent/run"]
        calls = self.shaper.runaway_loop(start_ns + ms(self.rng.randint(50, 400)))
        end_ns = calls[-1].end_ns + ms(self.rng.randint(50, 400))
        return DemoRequest(
            self.shaper.trace_id(), self.shaper.span_id(), endpoint, self.runaway_user,
            start_ns, end_ns, 200, tuple(calls), runaway=True,
        )  # fmt: skip


def _cumulative(weights: list[float]) -> list[float]:
    return list(accumulate(weights))


def _ns(t: datetime) -> int:
    # Exact integer nanoseconds, no float rounding.
    return (t - EPOCH) // timedelta(microseconds=1) * 1000
