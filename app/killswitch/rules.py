"""The `kill` action of a rule: when a group starts firing, one switch for that group.

Called by the alerts engine inside the transaction that records the firing, so the switch
exists if and only if the firing does (two evaluators racing record it once). The rule's
`kill_mode` decides the switch: `enforce` blocks at once, `approve` waits in
`pending_approval` for an operator (`spendguard kill approve ID`), `dry_run` is recorded and
announced but never blocks.

Scope: the group's values, escaped so that a user id containing `*` is matched literally, plus
each single-valued filter of the rule on endpoint/model/user/team (a list filter is not carried:
the whole group is blocked). Expiry: the end of the rule's window (a daily cap re-opens at the
next midnight in the rule's time zone; a rolling window of length L, L from now, when the spend
that tripped it has left the window).

Resolution does NOT release the switch: a blocked group stops spending, so its rule resolves
by itself once the window rolls on; releasing then would let the runaway loop straight back in.
The switch lifts at its expiry or when an operator releases it.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection

from alerts import audit
from alerts.conditions import format_value
from alerts.rules import Rule
from alerts.state import Transition
from app.killswitch import store
from app.killswitch.model import ACTIVE, DIMENSIONS, PENDING, RULE, Scope, Switch, escape
from app.settings import Settings


def scope_for(rule: Rule, group: dict[str, str]) -> Scope:
    values: dict[str, str] = {}
    for dim, filtered in rule.config.filter_values().items():
        if dim in DIMENSIONS and len(filtered) == 1:
            values[dim] = filtered[0]
    for dim, value in group.items():
        if dim in DIMENSIONS:
            values[dim] = escape(value)
    return Scope(**values)


def expiry(rule: Rule, transition: Transition) -> datetime:
    window = transition.judgement.window
    if rule.spec.calendar:
        return window.period_end
    return transition.at + rule.spec.rolling_length


def reason_for(rule: Rule, transition: Transition) -> str:
    verdict = transition.judgement.verdict
    value = format_value(rule.config.metric, verdict.value)
    text = f"rule {rule.id}: {rule.config.metric} {value} over {rule.config.window}"
    return f"{text} ({verdict.method})" if verdict.method else text


def trip_for_rule(
    conn: Connection, settings: Settings, rule: Rule, transition: Transition
) -> Switch | None:
    """The switch for a firing group (None if the rule's scope would be everything)."""
    scope = scope_for(rule, transition.group)
    if not scope.items():
        # A rule without group_by or filters fires on all traffic: refusing everything is
        # not something to do automatically. The firing is still recorded and notified.
        audit.record(
            conn, transition.at, "kill_requested", rule_id=rule.id, group=transition.group,
            switch_id=None, note="no switch: the rule's scope is all traffic",
        )  # fmt: skip
        return None
    mode = rule.config.kill_mode
    return store.add(
        conn, settings, scope, reason_for(rule, transition), now=transition.at,
        by=f"rule:{rule.id}", origin=RULE, expires_at=expiry(rule, transition),
        state=PENDING if mode == "approve" else ACTIVE, dry_run=mode == "dry_run",
        rule_id=rule.id, group=transition.group,
    )  # fmt: skip
