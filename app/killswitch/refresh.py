"""Keeps one API process's `SwitchIndex` current: a version check every second.

Every change to a switch bumps `kill_switch_version` in its own transaction, so the check is
one primary-key read; only when the number moved are the open switches loaded again and a new
index swapped in (a plain reference assignment: decisions running meanwhile use the old one).
A change made on any process is therefore enforced by every replica within about a second
(`refresh_now()`/`poke()` make this process look at once, after a change it made itself).

The same pass sweeps switches past their expiry (one process wins each; the others find it done)
so that gateways are told, though decisions stop honouring them the moment they expire anyway.

When the warehouse cannot be read, the last index stays in force and `health()` says degraded;
decisions keep being answered from memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from anyio import to_thread
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from app.errors import WarehouseError
from app.killswitch.index import SwitchIndex
from app.killswitch.store import expire_due, load_open, read_version
from app.settings import Settings

log = logging.getLogger("spendguard.killswitch")

POLL_SECONDS = 1.0
STALE_SECONDS = 5.0  # no successful check for this long: degraded


class Refresher:
    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        *,
        interval: float = POLL_SECONDS,
        on_change: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.engine, self.settings, self.interval = engine, settings, interval
        self.index = SwitchIndex()
        self.on_change = on_change  # called on the loop after a new index is swapped in
        self._clock = clock
        self._last_ok: float | None = None
        self._error: str | None = None
        self._wake = asyncio.Event()
        self._lock = threading.Lock()  # one refresh at a time: an older load never wins

    def refresh(self) -> bool:
        """Check the version, reload if it moved, sweep expired switches (blocking; run it in
        a thread). True when a new index was swapped in."""
        with self._lock:
            return self._refresh()

    def _refresh(self) -> bool:
        try:
            due = self.index.next_expiry()
            if due is not None and due <= time.time():
                expire_due(self.engine, self.settings, datetime.now(UTC))
            with self.engine.connect() as conn:
                version = read_version(conn)
                changed = version != self.index.version
                if changed:
                    self.index = SwitchIndex.build(load_open(conn), version)
        except (SQLAlchemyError, WarehouseError) as exc:
            if self._error is None:
                log.warning(
                    "kill switches: the warehouse is unavailable, deciding from the last known "
                    "state (version %d): %s",
                    self.index.version,
                    exc,
                )
            self._error = str(exc).splitlines()[0][:300]
            return False
        if self._error is not None:
            log.info("kill switches: the warehouse is back (version %d)", version)
        self._error = None
        self._last_ok = self._clock()
        return changed

    def poke(self) -> None:
        """Look again now (call on the event loop)."""
        self._wake.set()

    async def refresh_now(self) -> None:
        """`refresh` from the event loop (in a thread), then `on_change` if it changed."""
        if await to_thread.run_sync(self.refresh) and self.on_change is not None:
            self.on_change()

    async def run(self) -> None:
        """The background loop, until cancelled."""
        while True:
            self._wake.clear()
            await self.refresh_now()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.interval)

    def health(self) -> dict[str, Any]:
        age = None if self._last_ok is None else self._clock() - self._last_ok
        degraded = self._error is not None or age is None or age > STALE_SECONDS
        out: dict[str, Any] = {
            "state": "degraded" if degraded else "ok",
            "version": self.index.version,
            "checked_seconds_ago": None if age is None else round(age, 3),
            **self.index.counts(),
        }
        if self._error is not None:
            out["error"] = (
                f"the warehouse is unavailable, deciding from the last known state: {self._error}"
            )
        return out
