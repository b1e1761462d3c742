"""Alerts, rules, budgets and kill switches for the dashboard (read-only; changes go through
`app.dashboard.actions`).

Budgets are rules: a rule on `cost_usd` over a calendar window (`day`, `week`, `month`) with an
`above` or `forecast_above` threshold is a budget for its period. Their current figures come
from the alert engine's own `judge` (the same SQL, windows and time zones as live evaluation),
at `now`, without writing anything.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import Engine, func, select

from alerts import audit
from alerts.config import CALENDAR_WINDOWS, RuleConfig
from alerts.evaluate import judge
from alerts.metrics import SqlMeasurer, first_request_at
from alerts.rules import Rule, compile_rule, compile_rules
from app.killswitch.model import Switch
from app.killswitch.store import list_switches
from app.settings import Settings
from app.warehouse.tables import AlertRule, AlertState, AlertTransition, AuditEntry

KILL_KINDS = ("kill_requested", "kill_added", "kill_approved", "kill_released", "kill_expired")
NANO = Decimal("0.000000001")


@dataclass(frozen=True, slots=True)
class BudgetLine:
    """A budget rule's group this period: spend so far, its threshold and the projection to
    the period's end (a straight line through the spend so far)."""

    rule_id: str
    description: str
    group: dict[str, str]
    period: str  # day, week, month
    period_start: datetime
    period_end: datetime
    spent: Decimal
    budget: Decimal
    forecast: Decimal | None
    configured: bool = True  # False: no budget rule, the month-to-date figure alone

    @property
    def over(self) -> bool:
        return self.configured and self.spent > self.budget

    @property
    def forecast_over(self) -> bool:
        return self.configured and self.forecast is not None and self.forecast > self.budget


def budget_rules(settings: Settings) -> list[Rule]:
    rules = compile_rules(settings)
    return [
        r
        for r in rules
        if r.config.metric == "cost_usd"
        and r.config.window in CALENDAR_WINDOWS
        and (r.config.condition.above is not None or r.config.condition.forecast_above is not None)
    ]


def month_to_date_rule(timezone: str) -> Rule:
    """No budget configured: the whole spend this month, so the page can still project it."""
    config = RuleConfig(
        id="month-to-date",
        description="Spend this month (no budget rule configured)",
        metric="cost_usd",
        window="month",
        timezone=timezone,
        condition={"above": "0"},  # validated like YAML
    )
    return compile_rule(config)


def budget_lines(
    engine: Engine, settings: Settings, now: datetime, per_rule: int = 5
) -> list[BudgetLine]:
    """Each budget rule's most-spending groups this period (at most `per_rule` of them); with
    no budget rule, one line with the month to date and no budget."""
    rules = budget_rules(settings)
    configured = bool(rules)
    if not rules:
        rules = [month_to_date_rule(settings.dashboard.timezone)]
    data_start = first_request_at(engine)
    out: list[BudgetLine] = []
    for rule in rules:
        cond = rule.config.condition
        threshold = cond.above if cond.above is not None else cond.forecast_above
        assert threshold is not None
        judged = judge(rule, SqlMeasurer(engine, rule), now, data_start)
        window = rule.spec.at(now)
        lines = []
        for key, judgement in judged.items():
            spent = judgement.verdict.value or Decimal(0)
            lines.append(
                BudgetLine(
                    rule_id=rule.id,
                    description=rule.config.description or rule.describe(),
                    group=rule.group(key),
                    period=rule.config.window,
                    period_start=window.start,
                    period_end=window.period_end,
                    spent=spent,
                    budget=Decimal(threshold),
                    forecast=_projection(spent, window.start, window.end, window.period_end),
                    configured=configured,
                )
            )
        if not lines:
            lines.append(
                BudgetLine(
                    rule.id, rule.config.description or rule.describe(), {}, rule.config.window,
                    window.start, window.period_end, Decimal(0), Decimal(threshold), Decimal(0),
                    configured,
                )
            )  # fmt: skip
        lines.sort(key=lambda b: -b.spent)
        out.extend(lines[:per_rule])
    return out


def _projection(spent: Decimal, start: datetime, now: datetime, end: datetime) -> Decimal | None:
    """Spend so far carried to the period's end at the period's average rate so far."""
    elapsed = (now - start).total_seconds()
    total = (end - start).total_seconds()
    if elapsed <= 0 or total <= 0:
        return None
    if elapsed < total / 24:  # the first hour of a day, the first ~7 h of a week: too early
        return None
    return (spent * Decimal(total) / Decimal(elapsed)).quantize(NANO)


@dataclass(frozen=True, slots=True)
class TransitionRow:
    at: datetime
    rule_id: str
    group: dict[str, str]
    kind: str
    delivery: str
    severity: str
    metric: str
    value: str | None
    threshold: str | None
    requests: int
    window_start: datetime
    window_end: datetime
    method: str


def alert_history(
    engine: Engine, since: datetime, until: datetime, limit: int = 500
) -> list[TransitionRow]:
    """Firings, re-notifications and resolutions in [since, until), newest first."""
    query = (
        select(AlertTransition)
        .where(AlertTransition.at >= since, AlertTransition.at < until)
        .order_by(AlertTransition.at.desc(), AlertTransition.id.desc())
        .limit(limit)
    )
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    return [
        TransitionRow(
            r.at, r.rule_id, json.loads(r.group_json), r.kind, r.delivery, r.severity, r.metric,
            r.value, r.threshold, int(r.requests), r.window_start, r.window_end, r.method,
        )
        for r in rows
    ]  # fmt: skip


@dataclass(frozen=True, slots=True)
class RuleStatus:
    rule_id: str
    enabled: bool
    summary: str
    severity: str
    actions: list[str]
    firing_groups: int
    last_event_at: datetime | None
    last_event: str | None
    # The engine's latest evaluation of the rule (None: never evaluated since it last changed).
    evaluated_at: datetime | None = None
    evaluated_groups: int | None = None
    evaluated_firing: int | None = None


def rule_statuses(engine: Engine, settings: Settings) -> list[RuleStatus]:
    """Every configured rule with its firing groups, its latest stored transition and its
    latest evaluation."""
    firing = (
        select(AlertState.rule_id, func.count().label("n"))
        .where(AlertState.status == "firing")
        .group_by(AlertState.rule_id)
    )
    latest = select(AlertTransition.rule_id, func.max(AlertTransition.id).label("id")).group_by(
        AlertTransition.rule_id
    )
    with engine.connect() as conn:
        firing_by_rule = {r.rule_id: int(r.n) for r in conn.execute(firing)}
        ids = [r.id for r in conn.execute(latest)]
        last = {
            r.rule_id: (r.at, r.kind)
            for r in conn.execute(select(AlertTransition).where(AlertTransition.id.in_(ids)))
        }
        evaluated = {
            r.rule_id: r
            for r in conn.execute(
                select(
                    AlertRule.rule_id,
                    AlertRule.config_hash,
                    AlertRule.last_evaluated_at,
                    AlertRule.last_groups,
                    AlertRule.last_firing,
                )
            )
        }
    out = []
    for rule in compile_rules(settings, [r.id for r in settings.rules]):
        at, kind = last.get(rule.id, (None, None))
        found = evaluated.get(rule.id)
        # An evaluation of another configuration (the file changed since) is not this rule's.
        if found is None or found.config_hash != rule.config_hash:
            found = None
        out.append(
            RuleStatus(
                rule.id, rule.config.enabled, rule.describe(), rule.config.severity,
                list(rule.config.actions), firing_by_rule.get(rule.id, 0), at, kind,
                found.last_evaluated_at if found else None,
                found.last_groups if found else None,
                found.last_firing if found else None,
            )
        )  # fmt: skip
    return out


def open_switches(engine: Engine, now: datetime) -> list[Switch]:
    return list_switches(engine, now, ["active", "pending_approval"])


def recent_switches(engine: Engine, now: datetime, limit: int = 100) -> list[Switch]:
    return list_switches(engine, now, None, limit=limit)


def switch_audit(engine: Engine, limit: int = 100) -> list[audit.AuditRecord]:
    """The latest kill-switch entries of the audit log (who did what), newest first."""
    query = (
        select(AuditEntry)
        .where(AuditEntry.kind.in_(KILL_KINDS))
        .order_by(AuditEntry.id.desc())
        .limit(limit)
    )
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    return [
        audit.AuditRecord(
            r.id, r.at, r.kind, r.rule_id, r.group_json, r.notifier, r.message_id,
            json.loads(r.detail),
        )
        for r in rows
    ]  # fmt: skip
