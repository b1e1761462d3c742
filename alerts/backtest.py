"""`spendguard rules backtest`: replay rules over stored history, to tune them before they page.

The rules are judged every `step` (default: an hour, less when a window is not a whole number
of hours) from `since` to `until`, with the same conditions and the same state machine as the
live engine, states kept in memory: nothing is written, nothing is sent. Each rule's range is
read once in `step` buckets (`BucketMeasurer`), so a month of history replays in seconds.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import Engine

from alerts.evaluate import judge
from alerts.metrics import BucketMeasurer, first_request_at
from alerts.rules import GroupKey, Rule, compile_rules
from alerts.state import GroupState, Transition, advance, transition_of
from alerts.windows import floor_to
from app.settings import Settings


def backtest(
    engine: Engine,
    settings: Settings,
    since: datetime,
    until: datetime,
    *,
    step: timedelta | None = None,
    rule_ids: Sequence[str] | None = None,
) -> list[Transition]:
    """What would have fired, re-notified and resolved in (since, until], in time order."""
    data_start = first_request_at(engine)
    out: list[Transition] = []
    for rule in compile_rules(settings, rule_ids):
        out.extend(replay(engine, rule, since, until, step or rule.spec.default_step(), data_start))
    out.sort(key=lambda t: (t.at, t.rule_id, sorted(t.group.items())))
    return out


def replay(
    engine: Engine,
    rule: Rule,
    since: datetime,
    until: datetime,
    step: timedelta,
    data_start: datetime | None,
) -> list[Transition]:
    moment = floor_to(since, step)
    if moment < since:
        moment += step
    if moment > until:
        return []
    first = rule.condition.windows(rule.spec.at(moment), rule.spec)
    measurer = BucketMeasurer(engine, rule, min(w.start for w in first), until, step)
    states: dict[GroupKey, GroupState] = {}
    out: list[Transition] = []
    while moment <= until:
        firing = [key for key, state in states.items() if state.firing]
        for key, judgement in judge(rule, measurer, moment, data_start, firing).items():
            old = states.get(key)
            change = advance(old, judgement.verdict.breached, moment, rule.cooldown, rule.renotify)
            if change is not None:
                states[key] = change.state
                out.append(transition_of(rule, rule.group(key), old, change, moment, judgement))
        moment += step
    return out
