"""`SwitchIndex`: the decision API's answer, from memory, in microseconds.

Built once per change from the active switches (the refresher swaps in a new one; an index is
never modified, so readers need no lock). Each switch is filed under ONE exact value, the most
selective its scope has (user, then team, endpoint, model): a decision looks its four values up
in four dicts and checks only the switches found there, plus the few whose scope is all globs
(compiled once). Expiry is checked at decision time, so a switch stops blocking the moment it
expires even if no sweep has run yet.

Among several matching switches the one that lifts last is reported (its `Retry-After` is when
the caller may really retry). Dry-run switches never block; they are reported as `dry_run_ids`
so /metrics can count what they would have blocked.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from app.killswitch.model import (
    ACTIVE,
    DIMENSIONS,
    PENDING,
    Switch,
    glob_regex,
    is_glob,
    literal,
)

# A switch without expiry lasts until released; `Retry-After` then says "try again in an hour"
# (a hint: an HTTP client needs a number, and re-asking costs nothing).
NO_EXPIRY_RETRY_AFTER = 3600
_FILING_ORDER = (2, 3, 0, 1)  # user, team, endpoint, model: most selective first
Values = tuple[str | None, str | None, str | None, str | None]  # endpoint, model, user, team


@dataclass(frozen=True, slots=True)
class Decision:
    allow: bool
    switch_id: int | None = None
    reason: str = ""
    retry_after: int | None = None  # seconds; only when refused
    dry_run_ids: tuple[int, ...] = ()


ALLOW = Decision(True)


@dataclass(frozen=True, slots=True)
class _Entry:
    id: int
    reason: str
    expires: float  # Unix seconds; inf for none
    dry_run: bool
    exact: tuple[tuple[int, str], ...]
    globs: tuple[tuple[int, re.Pattern[str]], ...]

    def matches(self, values: Values) -> bool:
        for i, wanted in self.exact:
            if values[i] != wanted:
                return False
        for i, pattern in self.globs:
            value = values[i]
            if value is None or pattern.fullmatch(value) is None:
                return False
        return True


def _entry(switch: Switch) -> _Entry:
    exact: list[tuple[int, str]] = []
    globs: list[tuple[int, re.Pattern[str]]] = []
    for i, dim in enumerate(DIMENSIONS):
        value = getattr(switch.scope, dim)
        if value is None:
            continue
        if is_glob(value):
            globs.append((i, glob_regex(value)))
        else:
            exact.append((i, literal(value)))
    expires = switch.expires_at.timestamp() if switch.expires_at is not None else math.inf
    return _Entry(switch.id, switch.reason, expires, switch.dry_run, tuple(exact), tuple(globs))


@dataclass(frozen=True)
class SwitchIndex:
    version: int = -1  # the `kill_switch_version` it was built from; -1: never loaded
    switches: tuple[Switch, ...] = ()
    _filed: tuple[dict[str, list[_Entry]], ...] = field(default=({}, {}, {}, {}), repr=False)
    _scan: tuple[_Entry, ...] = field(default=(), repr=False)

    @classmethod
    def build(cls, switches: Iterable[Switch], version: int) -> SwitchIndex:
        """An index of the ACTIVE switches among `switches` (pending ones are only counted)."""
        kept = tuple(switches)
        filed: tuple[dict[str, list[_Entry]], ...] = ({}, {}, {}, {})
        scan: list[_Entry] = []
        for switch in kept:
            if switch.state != ACTIVE:
                continue
            entry = _entry(switch)
            exact = dict(entry.exact)
            slot = next((i for i in _FILING_ORDER if i in exact), None)
            if slot is None:
                scan.append(entry)
            else:
                filed[slot].setdefault(exact[slot], []).append(entry)
        return cls(version, kept, filed, tuple(scan))

    def decide(
        self,
        endpoint: str | None = None,
        model: str | None = None,
        user: str | None = None,
        team: str | None = None,
        now: float | None = None,
    ) -> Decision:
        values: Values = (endpoint, model, user, team)
        candidates: list[_Entry] = []
        for i, table in enumerate(self._filed):
            value = values[i]
            if table and value is not None and (found := table.get(value)):
                candidates.extend(found)
        if self._scan:
            candidates.extend(self._scan)
        if not candidates:
            return ALLOW
        now = time.time() if now is None else now
        best: _Entry | None = None
        dry: list[int] = []
        for entry in candidates:
            if entry.expires <= now or not entry.matches(values):
                continue
            if entry.dry_run:
                dry.append(entry.id)
            elif best is None or entry.expires > best.expires:
                best = entry
        if best is None:
            return Decision(True, dry_run_ids=tuple(dry)) if dry else ALLOW
        retry = (
            NO_EXPIRY_RETRY_AFTER
            if math.isinf(best.expires)
            else max(1, math.ceil(best.expires - now))
        )
        return Decision(False, best.id, best.reason, retry, tuple(dry))

    def counts(self, now: float | None = None) -> dict[str, int]:
        """Switches by effective kind, for /metrics: active, dry_run, pending_approval."""
        now = time.time() if now is None else now
        out = {"active": 0, "dry_run": 0, PENDING: 0}
        for s in self.switches:
            if s.expires_at is not None and s.expires_at.timestamp() <= now:
                continue
            if s.state == PENDING:
                out[PENDING] += 1
            elif s.state == ACTIVE:
                out["dry_run" if s.dry_run else "active"] += 1
        return out

    def next_expiry(self) -> float | None:
        """When the next open switch expires (Unix seconds), for the sweep."""
        times = [s.expires_at.timestamp() for s in self.switches if s.expires_at is not None]
        return min(times) if times else None
