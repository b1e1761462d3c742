"""Kill switches in the warehouse: every change writes the row, its audit entry (who did it),
the gateway events (outbox) and a bump of `kill_switch_version` in ONE transaction, so a
replica that sees the new version also sees the change, and no change goes unannounced.

Audit kinds: `kill_requested` (a rule's `kill` action created the switch), `kill_added` (an
operator did), `kill_approved`, `kill_released`, `kill_expired`. Each entry's detail has the
switch id, its scope, state and `by`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, insert, select, update

from alerts import audit
from app.errors import SpendguardError
from app.killswitch.events import enqueue_change
from app.killswitch.model import (
    ACTIVE,
    EXPIRED,
    OPEN_STATES,
    PENDING,
    RELEASED,
    RULE,
    Scope,
    Switch,
)
from app.settings import Settings
from app.warehouse.tables_killswitch import KillSwitch, KillSwitchVersion

LIST_LIMIT = 1000


class SwitchError(SpendguardError):
    """A switch cannot be changed as asked (unknown id, already released…)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status  # the HTTP answer: 404 unknown, 409 wrong state


def bump_version(conn: Connection) -> None:
    done = conn.execute(
        update(KillSwitchVersion)
        .where(KillSwitchVersion.id == 1)
        .values(version=KillSwitchVersion.version + 1)
    )
    if done.rowcount == 0:  # the row the migration inserts was removed: start again
        conn.execute(insert(KillSwitchVersion).values(id=1, version=1))


def read_version(conn: Connection) -> int:
    value = conn.execute(select(KillSwitchVersion.version).where(KillSwitchVersion.id == 1))
    return int(value.scalar_one_or_none() or 0)


def _switch(row: Any) -> Switch:
    return Switch(
        id=row.id, scope=Scope(row.endpoint, row.model, row.user_id, row.team), reason=row.reason,
        origin=row.origin, created_by=row.created_by, state=row.state, dry_run=bool(row.dry_run),
        created_at=row.created_at, expires_at=row.expires_at, updated_at=row.updated_at,
        updated_by=row.updated_by, rule_id=row.rule_id,
        group=None if row.group_json is None else json.loads(row.group_json),
    )  # fmt: skip


def load_open(conn: Connection) -> list[Switch]:
    """Active and pending switches (expired ones included until swept: callers check)."""
    rows = conn.execute(select(KillSwitch).where(KillSwitch.state.in_(OPEN_STATES)))
    return [_switch(r) for r in rows]


def get(conn: Connection, switch_id: int) -> Switch | None:
    row = conn.execute(select(KillSwitch).where(KillSwitch.id == switch_id)).first()
    return None if row is None else _switch(row)


def list_switches(
    engine: Engine, now: datetime, states: Sequence[str] | None = None, limit: int = LIST_LIMIT
) -> list[Switch]:
    """Switches whose effective state is in `states` (default: all), newest first."""
    query = select(KillSwitch).order_by(KillSwitch.id.desc()).limit(limit)
    if states is not None and set(states) <= set(OPEN_STATES):
        query = query.where(KillSwitch.state.in_(OPEN_STATES))
    with engine.connect() as conn:
        found = [_switch(r) for r in conn.execute(query)]
    return [s for s in found if states is None or s.state_at(now) in states]


def add(
    conn: Connection,
    settings: Settings,
    scope: Scope,
    reason: str,
    *,
    now: datetime,
    by: str,
    origin: str,
    expires_at: datetime | None = None,
    state: str = ACTIVE,
    dry_run: bool = False,
    rule_id: str | None = None,
    group: dict[str, str] | None = None,
) -> Switch:
    """Insert a switch (inside the caller's transaction) and announce it."""
    try:
        scope.check()
    except ValueError as exc:
        raise SwitchError(str(exc), 400) from None
    if not reason.strip():
        raise SwitchError("a kill switch needs a reason", 400)
    if expires_at is not None and expires_at <= now:
        raise SwitchError("the switch would expire before it starts", 400)
    result = conn.execute(
        insert(KillSwitch).values(
            endpoint=scope.endpoint, model=scope.model, user_id=scope.user, team=scope.team,
            reason=reason.strip()[:2000], origin=origin, created_by=by[:256], rule_id=rule_id,
            group_json=None if group is None else json.dumps(group, sort_keys=True),
            state=state, dry_run=dry_run, created_at=now, expires_at=expires_at, updated_at=now,
        )
    )  # fmt: skip
    key = result.inserted_primary_key
    assert key is not None
    switch = get(conn, int(key[0]))
    assert switch is not None
    _changed(conn, settings, switch, "kill_requested" if origin == RULE else "kill_added", now, by)
    return switch


def add_now(engine: Engine, settings: Settings, scope: Scope, reason: str, **kw: Any) -> Switch:
    """`add` in a transaction of its own (operators: CLI, API)."""
    with engine.begin() as conn:
        return add(conn, settings, scope, reason, **kw)


def release(engine: Engine, settings: Settings, switch_id: int, by: str, now: datetime) -> Switch:
    return _move(engine, settings, switch_id, OPEN_STATES, RELEASED, by, now)


def approve(engine: Engine, settings: Settings, switch_id: int, by: str, now: datetime) -> Switch:
    return _move(engine, settings, switch_id, (PENDING,), ACTIVE, by, now)


def expire_due(engine: Engine, settings: Settings, now: datetime) -> list[Switch]:
    """Mark open switches past their expiry as expired (one writer wins per switch)."""
    with engine.connect() as conn:
        due = conn.execute(
            select(KillSwitch.id).where(
                KillSwitch.state.in_(OPEN_STATES), KillSwitch.expires_at <= now
            )
        ).scalars()
        ids = list(due)
    out = []
    for switch_id in ids:
        try:
            out.append(_move(engine, settings, switch_id, OPEN_STATES, EXPIRED, "expiry", now))
        except SwitchError:
            continue  # another process swept it first
    return out


def _move(
    engine: Engine, settings: Settings, switch_id: int, from_states: Sequence[str], to: str,
    by: str, now: datetime,
) -> Switch:  # fmt: skip
    with engine.begin() as conn:
        current = get(conn, switch_id)
        if current is None:
            raise SwitchError(f"there is no kill switch {switch_id}", 404)
        effective = current.state_at(now)
        if effective not in from_states and not (to == EXPIRED and current.state in from_states):
            wanted = " or ".join(from_states)
            raise SwitchError(f"kill switch {switch_id} is {effective}, not {wanted}", 409)
        done = conn.execute(
            update(KillSwitch)
            .where(KillSwitch.id == switch_id, KillSwitch.state == current.state)
            .values(state=to, updated_at=now, updated_by=by[:256])
        )
        if done.rowcount != 1:
            raise SwitchError(f"kill switch {switch_id} was changed meanwhile; try again", 409)
        switch = get(conn, switch_id)
        assert switch is not None
        kind = {RELEASED: "kill_released", ACTIVE: "kill_approved", EXPIRED: "kill_expired"}[to]
        _changed(conn, settings, switch, kind, now, by)
    return switch


def _changed(
    conn: Connection, settings: Settings, switch: Switch, kind: str, now: datetime, by: str
) -> None:
    audit.record(
        conn, now, kind, rule_id=switch.rule_id, group=switch.group, switch_id=switch.id,
        scope=switch.scope.describe(), state=switch.state, dry_run=switch.dry_run, by=by,
        reason=switch.reason, expires_at=switch.expires_at,
    )  # fmt: skip
    if settings.gateways:  # the others matter only to what gateways are told
        others = [
            s.id
            for s in load_open(conn)
            if s.id != switch.id and s.scope == switch.scope and not s.dry_run
            and s.state_at(now) == ACTIVE
        ]  # fmt: skip
        enqueue_change(conn, settings, switch, kind, now, others)
    bump_version(conn)
