"""An API process's background work for kill switches, besides keeping its index current.

- `KillRules`: spend pushed to `POST /v1/traces` reaches the rules that have a `kill` action
  within a second, instead of at the worker's next `alerts.interval`. Each stored export pokes
  it; it evaluates those rules at once, then at most once per `min_interval` however many
  exports arrive (debounced: a burst of pushes costs one evaluation per second per replica).
  Replicas and the worker may evaluate concurrently: the alert state's version makes one of them
  record a firing (and its switch), the others skip it.
- `Pusher`: delivers the outbox (switch events to gateways, and whatever else is due) soon after
  a change is seen, so LiteLLM and webhook gateways hear of a trip in seconds. Leases on outbox
  items keep replicas and the worker from sending one item twice at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable

from anyio import to_thread
from sqlalchemy import Engine

from alerts.config import KILL
from app.settings import Settings

log = logging.getLogger("spendguard.killswitch")

MIN_INTERVAL = 1.0


class Debounced:
    """Runs `work` (blocking, in a thread) after `poke()`, at most once per `min_interval`."""

    def __init__(self, name: str, work: Callable[[], object], min_interval: float) -> None:
        self.name, self.work, self.min_interval = name, work, min_interval
        self.runs: Counter[str] = Counter()
        self._wake = asyncio.Event()
        self._last = -float("inf")

    def poke(self) -> None:
        """Ask for a run (call on the event loop)."""
        self._wake.set()

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            wait = self._last + self.min_interval - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)  # the rate limit itself, not a poll
            self._wake.clear()  # pokes from now on ask for another run
            self._last = time.monotonic()
            try:
                result = await to_thread.run_sync(self.work)
            except Exception:
                self.runs["failed"] += 1
                log.exception("kill switches: %s failed; retried on the next change", self.name)
                continue
            self.runs["ok"] += 1
            self.after(result)

    def after(self, result: object) -> None:
        """Hook for subclasses, on the loop after a successful run."""


class KillRules(Debounced):
    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        on_trip: Callable[[], None],
        min_interval: float = MIN_INTERVAL,
    ) -> None:
        self.engine, self.settings, self.on_trip = engine, settings, on_trip
        self.rule_ids = frozenset(r.id for r in settings.rules if r.enabled and KILL in r.actions)
        super().__init__("kill rule evaluation", self._evaluate, min_interval)

    def poke(self) -> None:
        if self.rule_ids:
            super().poke()

    def _evaluate(self) -> int:
        from alerts.engine import evaluate_once  # the engine imports this package's rules

        return len(evaluate_once(self.engine, self.settings, only=self.rule_ids))

    def after(self, result: object) -> None:
        if result:
            self.on_trip()  # a firing may have tripped a switch: refresh the index now


class Pusher(Debounced):
    def __init__(self, engine: Engine, settings: Settings, min_interval: float = MIN_INTERVAL):
        self.engine, self.settings = engine, settings
        super().__init__("outbox delivery", self._deliver, min_interval)

    def poke(self) -> None:
        if self.settings.gateways or self.settings.notifiers:
            super().poke()

    def _deliver(self) -> int:
        from alerts.outbox import deliver_due

        return len(deliver_due(self.engine, self.settings))
