"""Live evaluation: `evaluate_once` judges every enabled rule at `now`, moves each group's
state, and writes the transition, its audit entry and its outbox items in one transaction;
`run_cycle` is that plus a delivery pass. The worker calls `run_cycle` every
`alerts.interval` and after each collector run that loaded data.

Incremental by construction: each rule reads only the windows its condition needs at `now`
(the window ending now, the same window in past weeks for anomalies), each a bounded query on
the indexed `requests.started_at`; nothing re-scans the history.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError

from alerts import audit
from alerts.config import KILL
from alerts.evaluate import group_key, judge
from alerts.messages import build_alert
from alerts.metrics import SqlMeasurer, first_request_at
from alerts.notifiers import NOTIFIERS
from alerts.outbox import Delivery, deliver_due, enqueue
from alerts.rules import Rule, compile_rules, group_id
from alerts.state import (
    FIRING,
    Conflict,
    Step,
    Transition,
    advance,
    load_states,
    note_evaluation,
    record_transition,
    store,
    transition_of,
)
from app.killswitch.rules import trip_for_rule
from app.killswitch.store import expire_due
from app.settings import Settings

log = logging.getLogger("spendguard.alerts")


@dataclass(frozen=True, slots=True)
class Cycle:
    transitions: list[Transition]
    deliveries: list[Delivery]


def evaluate_once(
    engine: Engine,
    settings: Settings,
    now: datetime | None = None,
    *,
    only: Collection[str] | None = None,
) -> list[Transition]:
    """Judge every enabled rule (or those of them in `only`) at `now` (default: the wall
    clock); returns what changed."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    configured = compile_rules(settings, [r.id for r in settings.rules])
    with engine.begin() as conn:
        audit.sync_rules(conn, configured, now)
    data_start = first_request_at(engine)
    transitions: list[Transition] = []
    for rule in (r for r in configured if r.config.enabled and (only is None or r.id in only)):
        transitions.extend(_evaluate_rule(engine, settings, rule, now, data_start))
    return transitions


def run_cycle(
    engine: Engine,
    settings: Settings,
    now: datetime | None = None,
    *,
    transport: httpx.BaseTransport | None = None,
) -> Cycle:
    """Evaluate, expire kill switches past their time, then deliver the outbox items that are
    due. For the worker's schedule."""
    transitions = evaluate_once(engine, settings, now)
    expire_due(engine, settings, (now or datetime.now(UTC)).astimezone(UTC))
    return Cycle(transitions, deliver_due(engine, settings, now, transport=transport))


def _evaluate_rule(
    engine: Engine, settings: Settings, rule: Rule, now: datetime, data_start: datetime | None
) -> list[Transition]:
    with engine.connect() as conn:
        states = load_states(conn, rule.id)
    firing = [
        key
        for group, state in states.values()
        if state.firing and (key := group_key(rule, group)) is not None
    ]
    out: list[Transition] = []
    judged = judge(rule, SqlMeasurer(engine, rule), now, data_start, firing)
    for key, judgement in judged.items():
        group = rule.group(key)
        old = states.get(group_id(group), (group, None))[1]
        step = advance(old, judgement.verdict.breached, now, rule.cooldown, rule.renotify)
        if step is None:
            continue
        transition = transition_of(rule, group, old, step, now, judgement)
        if _record(engine, settings, rule, transition, step):
            out.append(transition)
    # After the loop: a judged group's state now follows its verdict (this evaluator's step,
    # or the same verdict recorded by the one that won a race).
    breached = sum(1 for j in judged.values() if j.verdict.breached)
    with engine.begin() as conn:
        note_evaluation(conn, rule.id, now, len(judged), breached)
    return out


def _record(engine: Engine, settings: Settings, rule: Rule, t: Transition, step: Step) -> bool:
    """State, history, audit and outbox together, or not at all (another evaluator won)."""
    try:
        with engine.begin() as conn:
            store(conn, rule.id, t.group, step.state, t.at)
            transition_id = record_transition(conn, t)
            verdict = t.judgement.verdict
            audit.record(
                conn, t.at, t.kind, rule_id=t.rule_id, group=t.group, delivery=t.delivery,
                value=verdict.value, compared=verdict.compared, threshold=verdict.threshold,
                method=verdict.method, window_start=t.judgement.window.start,
                window_end=t.judgement.window.end, requests=t.judgement.requests,
            )  # fmt: skip
            if t.kind == FIRING and KILL in t.actions:
                trip_for_rule(conn, settings, rule, t)  # the switch, per the rule's kill_mode
            if t.notify:
                alert = build_alert(t, rule, settings.dashboard.public_url)
                alert_key = f"{rule.id}:{group_id(t.group)}"
                for name in rule.notifiers:
                    config = settings.notifiers[name]
                    if not config.enabled:
                        continue
                    body = NOTIFIERS[config.kind].render(alert)
                    enqueue(conn, name, alert_key, transition_id, body, t.at)
    except (Conflict, IntegrityError):
        log.info("alerts: %s %s already recorded by another evaluator", t.rule_id, t.kind)
        return False
    log.info("alerts: %s %s %s (%s)", t.rule_id, t.group or "(all)", t.kind, t.delivery)
    return True
