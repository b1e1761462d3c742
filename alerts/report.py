"""Read-only views for the CLI: transitions as records, the outbox, disabled endpoints.

Group values are untrusted (they come from traces): `printable` shows control characters
(terminal escape sequences, newlines) as `\\xNN` instead of passing them to a terminal.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, select

from alerts.conditions import format_value
from alerts.state import Transition
from app.warehouse.tables import DisabledEndpoint, OutboxItem

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")

TRANSITION_COLUMNS = [
    "at", "rule", "group", "event", "delivery", "value", "compared", "threshold", "requests",
    "window_start", "window_end", "method",
]  # fmt: skip
OUTBOX_COLUMNS = [
    "id", "created_at", "notifier", "status", "attempts", "next_attempt_at", "last_http_status",
    "last_error", "message_id",
]  # fmt: skip


def printable(text: str) -> str:
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def group_text(group: dict[str, str]) -> str:
    return ", ".join(f"{k}={printable(v)}" for k, v in group.items()) or "(all)"


def transition_record(t: Transition, exact: bool) -> dict[str, Any]:
    """One row for `rules backtest` / `alerts run`: exact decimal strings for JSON, rounded
    values for people."""
    verdict, window = t.judgement.verdict, t.judgement.window

    def shown(value: Any) -> str | None:
        if exact:
            return None if value is None else f"{value:f}"
        return format_value(t.metric, value)

    return {
        "at": _iso(t.at),
        "rule": t.rule_id,
        "group": t.group if exact else group_text(t.group),
        "event": t.kind,
        "delivery": t.delivery,
        "value": shown(verdict.value),
        "compared": shown(verdict.compared),
        "threshold": shown(verdict.threshold),
        "requests": t.judgement.requests,
        "window_start": _iso(window.start),
        "window_end": _iso(window.end),
        "method": verdict.method,
    }


@dataclass(frozen=True, slots=True)
class Disabled:
    notifier: str
    disabled_at: datetime
    reason: str


def outbox_records(engine: Engine, status: str | None, limit: int) -> list[dict[str, Any]]:
    """The latest `limit` items (optionally of one status), newest first."""
    query = select(OutboxItem).order_by(OutboxItem.id.desc()).limit(limit)
    if status is not None:
        query = query.where(OutboxItem.status == status)
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    return [
        {
            "id": r.id,
            "created_at": _iso(r.created_at),
            "notifier": r.notifier,
            "status": r.status,
            "attempts": r.attempts,
            "next_attempt_at": _iso(r.next_attempt_at) if r.status == "pending" else None,
            "last_http_status": r.last_http_status,
            "last_error": printable(r.last_error[:120]) if r.last_error else None,
            "message_id": r.message_id,
        }
        for r in rows
    ]


def disabled_endpoints(engine: Engine, current: dict[str, str]) -> list[Disabled]:
    """Endpoints disabled by a 410 that are still configured (`current`: notifier → target
    hash); a notifier whose URL changed since is enabled again."""
    with engine.connect() as conn:
        rows = conn.execute(select(DisabledEndpoint).order_by(DisabledEndpoint.disabled_at)).all()
    return [
        Disabled(r.notifier, r.disabled_at, r.reason)
        for r in rows
        if current.get(r.notifier) == r.target_hash
    ]


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")
