"""The state machine of one (rule, group): ok → firing → resolved (→ firing again …).

`advance` is pure (the backtest runs it in memory, the engine against `alert_states`):

- ok/resolved and breached → **firing**, notified unless the group was notified less than
  `cooldown` ago (then recorded as silenced: flapping makes history, not noise);
- firing and still breached → nothing (dedupe), except a **renotify** every `renotify`, or
  once the cooldown that silenced the firing is over;
- firing and no longer breached → **resolved**, notified if the firing was.

Every transition is stored in `alert_transitions` with the values that caused it. A stored
state carries a version; `store` writes only over the version it read, so when two evaluators
race, one records the transition and the other gets `Conflict` and skips it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import Connection, insert, or_, select, update

from alerts.conditions import Verdict
from alerts.rules import Rule, group_id, group_json
from alerts.windows import Window
from app.warehouse.tables import AlertRule, AlertState, AlertTransition

FIRING, RESOLVED, RENOTIFY = "firing", "resolved", "renotify"


@dataclass(frozen=True, slots=True)
class GroupState:
    status: str
    since: datetime
    notified_at: datetime | None = None
    silenced_at: datetime | None = None
    version: int = 0  # 0: not stored yet

    @property
    def firing(self) -> bool:
        return self.status == FIRING


@dataclass(frozen=True, slots=True)
class Step:
    state: GroupState
    kind: str
    notify: bool


def advance(
    state: GroupState | None,
    breached: bool,
    now: datetime,
    cooldown: timedelta | None,
    renotify: timedelta | None,
) -> Step | None:
    """The transition `breached` causes at `now`, or None when nothing changes."""
    version = state.version if state else 0
    last = state.notified_at if state else None
    if breached and not (state and state.firing):
        quiet = cooldown is not None and last is not None and now - last < cooldown
        new = GroupState(FIRING, now, last if quiet else now, now if quiet else None, version)
        return Step(new, FIRING, not quiet)
    if state is None or not state.firing:
        return None
    if not breached:
        return Step(GroupState(RESOLVED, now, last, None, version), RESOLVED, not state.silenced_at)
    if state.silenced_at is not None:
        due = cooldown is None or last is None or now - last >= cooldown
    else:
        due = renotify is not None and last is not None and now - last >= renotify
    if not due:
        return None
    return Step(GroupState(FIRING, state.since, now, None, version), RENOTIFY, True)


@dataclass(frozen=True, slots=True)
class Judgement:
    """How one group fared in one evaluation."""

    verdict: Verdict
    window: Window
    requests: int


@dataclass(frozen=True, slots=True)
class Transition:
    rule_id: str
    group: dict[str, str]
    kind: str
    at: datetime
    notify: bool
    judgement: Judgement
    severity: str
    metric: str
    actions: tuple[str, ...]
    config_hash: str
    firing_since: datetime

    @property
    def delivery(self) -> str:
        return "notify" if self.notify else "silenced"


def transition_of(
    rule: Rule,
    group: dict[str, str],
    old: GroupState | None,
    step: Step,
    now: datetime,
    j: Judgement,
) -> Transition:
    cfg = rule.config
    since = now if step.kind == FIRING or old is None else old.since
    return Transition(
        cfg.id, group, step.kind, now, step.notify, j, cfg.severity, cfg.metric,
        tuple(cfg.actions), rule.config_hash, since,
    )  # fmt: skip


class Conflict(Exception):
    """Another evaluator changed this group's state first: its transition wins."""


def load_states(conn: Connection, rule_id: str) -> dict[str, tuple[dict[str, str], GroupState]]:
    """group id → (group, state) for every group of the rule that ever fired."""
    rows = conn.execute(select(AlertState).where(AlertState.rule_id == rule_id)).all()
    return {
        r.group_id: (
            json.loads(r.group_json),
            GroupState(r.status, r.since, r.notified_at, r.silenced_at, r.version),
        )
        for r in rows
    }


def store(
    conn: Connection, rule_id: str, group: dict[str, str], new: GroupState, now: datetime
) -> None:
    """Write `new` over the version it was derived from, or raise `Conflict` (an insert that
    lost the race raises the database's IntegrityError instead)."""
    values = {
        "status": new.status,
        "since": new.since,
        "notified_at": new.notified_at,
        "silenced_at": new.silenced_at,
        "updated_at": now,
        "version": new.version + 1,
    }
    gid = group_id(group)
    if new.version == 0:
        conn.execute(
            insert(AlertState).values(
                rule_id=rule_id, group_id=gid, group_json=group_json(group), **values
            )
        )
        return
    done = conn.execute(
        update(AlertState)
        .where(
            AlertState.rule_id == rule_id,
            AlertState.group_id == gid,
            AlertState.version == new.version,
        )
        .values(**values)
    )
    if done.rowcount != 1:
        raise Conflict(rule_id)


def record_transition(conn: Connection, t: Transition) -> int:
    verdict, window = t.judgement.verdict, t.judgement.window
    result = conn.execute(
        insert(AlertTransition).values(
            at=t.at,
            rule_id=t.rule_id,
            group_json=group_json(t.group),
            kind=t.kind,
            delivery=t.delivery,
            severity=t.severity,
            metric=t.metric,
            value=_text(verdict.value),
            compared=_text(verdict.compared),
            threshold=_text(verdict.threshold),
            requests=t.judgement.requests,
            method=verdict.method,
            window_start=window.start,
            window_end=window.end,
            actions=json.dumps(list(t.actions)),
            config_hash=t.config_hash,
        )
    )
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0])


def _text(value: Decimal | None) -> str | None:
    return None if value is None else f"{value:f}"


def note_evaluation(conn: Connection, rule_id: str, at: datetime, groups: int, firing: int) -> None:
    """Remember the rule's latest evaluation (one UPDATE of its `alert_rules` row): judged at
    `at`, `groups` groups judged, `firing` of them breached (so firing after it). An evaluation
    of an earlier moment (a slower evaluator finishing late) does not overwrite a later one."""
    conn.execute(
        update(AlertRule)
        .where(
            AlertRule.rule_id == rule_id,
            or_(AlertRule.last_evaluated_at.is_(None), AlertRule.last_evaluated_at <= at),
        )
        .values(last_evaluated_at=at, last_groups=groups, last_firing=firing)
    )
