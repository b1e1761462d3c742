"""The audit log: append-only (this module only inserts), one row per event, UTC timestamps.

Kinds: `rule_added`, `rule_changed`, `rule_removed` (configuration hashes), `firing`,
`renotify`, `resolved` (with the values), `kill_requested` (the `kill` action of a firing rule;
the switch itself comes with the kill-switch feature), `notification_attempt` and its outcome
(`delivered`, `retry`, `failed`, `expired`, `gone`, `cancelled`), `endpoint_disabled`.
`spendguard audit --since D` prints it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, delete, insert, select

from alerts.rules import Rule, group_json
from app.warehouse.tables import AlertRule, AuditEntry


@dataclass(frozen=True, slots=True)
class AuditRecord:
    id: int
    at: datetime
    kind: str
    rule_id: str | None
    group: str | None
    notifier: str | None
    message_id: str | None
    detail: dict[str, Any]


def record(
    conn: Connection,
    at: datetime,
    kind: str,
    *,
    rule_id: str | None = None,
    group: dict[str, str] | None = None,
    notifier: str | None = None,
    message_id: str | None = None,
    **detail: Any,
) -> None:
    conn.execute(
        insert(AuditEntry).values(
            at=at,
            kind=kind,
            rule_id=rule_id,
            group_json=None if group is None else group_json(group),
            notifier=notifier,
            message_id=message_id,
            detail=json.dumps(detail, default=str, sort_keys=True),
        )
    )


def read(
    engine: Engine, since: datetime | None = None, limit: int | None = None
) -> list[AuditRecord]:
    """Entries from `since` on, oldest first (with `limit`, the latest `limit` of them)."""
    query = select(AuditEntry).order_by(AuditEntry.id.desc())
    if since is not None:
        query = query.where(AuditEntry.at >= since)
    if limit is not None:
        query = query.limit(limit)
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    return [
        AuditRecord(
            r.id, r.at, r.kind, r.rule_id, r.group_json, r.notifier, r.message_id,
            json.loads(r.detail),
        )
        for r in reversed(rows)
    ]  # fmt: skip


def sync_rules(conn: Connection, rules: Sequence[Rule], now: datetime) -> list[str]:
    """Note added, changed and removed rules (by configuration hash); returns what changed."""
    known = {r.rule_id: r for r in conn.execute(select(AlertRule)).all()}
    changes: list[str] = []
    for rule in rules:
        config = json.dumps(rule.config.model_dump(mode="json"), sort_keys=True)
        stored = known.pop(rule.id, None)
        if stored is not None and stored.config_hash == rule.config_hash:
            continue
        kind = "rule_added" if stored is None else "rule_changed"
        if stored is not None:
            conn.execute(delete(AlertRule).where(AlertRule.rule_id == rule.id))
        conn.execute(
            insert(AlertRule).values(
                rule_id=rule.id, config_hash=rule.config_hash, config_json=config, updated_at=now
            )
        )
        previous = stored.config_hash if stored is not None else None
        record(conn, now, kind, rule_id=rule.id, config_hash=rule.config_hash, previous=previous)
        changes.append(f"{kind} {rule.id}")
    for rule_id, stored in known.items():
        conn.execute(delete(AlertRule).where(AlertRule.rule_id == rule_id))
        record(conn, now, "rule_removed", rule_id=rule_id, previous=stored.config_hash)
        changes.append(f"rule_removed {rule_id}")
    return changes
