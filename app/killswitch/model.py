"""A kill switch as the rest of the code sees it (plain, frozen dataclasses).

Scope: each of endpoint, model, user, team is an exact value, a glob or None (any value). Globs
are case-sensitive, as rule filters are: `*` any run of characters, `?` one character, and a
backslash makes the next character literal (`\\*`, `\\?`, `\\\\`), which is how a rule's switch
names a user id that happens to contain `*`. A request matches a switch when every set
dimension matches the request's value; a request that does not say its model (say) never
matches a switch that names a model: spendguard only blocks what it can see.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

ACTIVE, PENDING, RELEASED, EXPIRED = "active", "pending_approval", "released", "expired"
STATES = (ACTIVE, PENDING, RELEASED, EXPIRED)
OPEN_STATES = (ACTIVE, PENDING)  # may still change (be approved, released or expire)
RULE, OPERATOR = "rule", "operator"
DIMENSIONS = ("endpoint", "model", "user", "team")
GLOB_CHARS = frozenset("*?")
MAX_VALUE = 1024


def _tokens(pattern: str) -> list[tuple[str, bool]]:
    """(character, is_wildcard) pairs; a backslash makes the next character literal."""
    out: list[tuple[str, bool]] = []
    escaped = False
    for c in pattern:
        if escaped:
            out.append((c, False))
            escaped = False
        elif c == "\\":
            escaped = True
        else:
            out.append((c, c in GLOB_CHARS))
    if escaped:
        out.append(("\\", False))
    return out


def is_glob(value: str) -> bool:
    return any(wild for _c, wild in _tokens(value))


def literal(value: str) -> str:
    """The exact value a pattern without wildcards stands for (escapes removed)."""
    return "".join(c for c, _wild in _tokens(value))


def escape(value: str) -> str:
    """A pattern matching exactly `value` (for group values taken from traces)."""
    return value.replace("\\", "\\\\").replace("*", "\\*").replace("?", "\\?")


def glob_regex(pattern: str) -> re.Pattern[str]:
    """`*` and `?` only; every other character stands for itself (brackets included)."""
    parts = [(".*" if c == "*" else ".") if wild else re.escape(c) for c, wild in _tokens(pattern)]
    return re.compile("".join(parts), re.DOTALL)


@dataclass(frozen=True, slots=True)
class Scope:
    endpoint: str | None = None
    model: str | None = None
    user: str | None = None
    team: str | None = None

    def items(self) -> list[tuple[str, str]]:
        """The dimensions that are set, in DIMENSIONS order."""
        return [(d, v) for d in DIMENSIONS if (v := getattr(self, d)) is not None]

    def describe(self) -> str:
        return " ".join(f"{d}={v}" for d, v in self.items()) or "(everything)"

    def check(self) -> None:
        """Refuse an empty scope (block everything by accident) and unreasonable values."""
        if not self.items():
            raise ValueError(
                "a kill switch needs a scope: at least one of endpoint, model, user, team "
                "(to stop all traffic, give endpoint '*')"
            )
        for dim, value in self.items():
            if not value or len(value) > MAX_VALUE:
                raise ValueError(f"{dim} must be 1 to {MAX_VALUE} characters")


@dataclass(frozen=True, slots=True)
class Switch:
    id: int
    scope: Scope
    reason: str
    origin: str  # rule or operator
    created_by: str  # the rule id, or who added it
    state: str  # as stored
    dry_run: bool
    created_at: datetime
    expires_at: datetime | None
    updated_at: datetime
    updated_by: str | None = None
    rule_id: str | None = None
    group: dict[str, str] | None = None  # the firing group, for a rule's switch

    def state_at(self, now: datetime) -> str:
        """The effective state: an open switch past its expiry is expired."""
        if self.state in OPEN_STATES and self.expires_at is not None and self.expires_at <= now:
            return EXPIRED
        return self.state

    def to_json(self, now: datetime) -> dict[str, Any]:
        return {
            "id": self.id,
            "endpoint": self.scope.endpoint,
            "model": self.scope.model,
            "user": self.scope.user,
            "team": self.scope.team,
            "reason": self.reason,
            "origin": self.origin,
            "created_by": self.created_by,
            "rule_id": self.rule_id,
            "state": self.state_at(now),
            "dry_run": self.dry_run,
            "created_at": _iso(self.created_at),
            "expires_at": _iso(self.expires_at),
            "updated_at": _iso(self.updated_at),
            "updated_by": self.updated_by,
        }


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat().replace("+00:00", "Z")
