"""Judging a rule at one moment: measure the windows its condition asks for, per group, and
get each group's verdict. Shared by the live engine and the backtest (which differ only in
how windows are measured and where states are kept)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime

from alerts.conditions import Series
from alerts.metrics import EMPTY, Measured, Measurer, metric_value
from alerts.rules import GroupKey, Rule
from alerts.state import Judgement


def judge(
    rule: Rule,
    measurer: Measurer,
    now: datetime,
    data_start: datetime | None,
    also: Iterable[GroupKey] = (),
) -> dict[GroupKey, Judgement]:
    """Verdicts at `now` for every group with data in the judged window, plus `also` (the
    groups currently firing, so they resolve when their traffic stops)."""
    current = rule.spec.at(now)
    windows = rule.condition.windows(current, rule.spec)
    measured: list[Measured | None] = []
    for window in windows:
        # History from before the warehouse's first request is unknown, not zero.
        past = window.end <= current.start
        unknown = past and (data_start is None or window.start < data_start)
        measured.append(None if unknown else measurer.measure(window))
    judged = measured[0] or {}
    metric, minimum = rule.config.metric, rule.config.min_requests
    out: dict[GroupKey, Judgement] = {}
    for key in {*judged, *also}:
        totals = judged.get(key, EMPTY)
        values = tuple(
            None if m is None else metric_value(metric, m.get(key, EMPTY)) for m in measured
        )
        verdict = rule.condition.evaluate(Series(tuple(windows), values))
        if verdict.breached and totals.requests < minimum:
            note = f"; only {totals.requests} requests, below min_requests {minimum}"
            verdict = replace(verdict, breached=False, method=verdict.method + note)
        out[key] = Judgement(verdict, current, totals.requests)
    return out


def group_key(rule: Rule, group: dict[str, str]) -> GroupKey | None:
    """A stored group's key under the rule's current `group_by` (None if it changed)."""
    if set(group) != set(rule.dims):
        return None
    return tuple(group[d] for d in rule.dims)
