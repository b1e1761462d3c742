"""Cached loaders for the Overview, Spend, Alerts and Collectors pages (`data.py` holds the
engine, the scope and the unit-cost loaders).

Arguments are hashable only (the URL, dates, tuples), so results are cached per warehouse and
selection, and per data version (`app.dashboard.versions`): new runs, bills, alerts and switches
show on the next rerun. The switch list also expires within seconds (a switch's expiry is a
matter of the clock, not of a write), a backtest after ten minutes.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time

from alerts.audit import AuditRecord
from alerts.backtest import backtest
from alerts.report import transition_record
from app.dashboard import data, queries_alerts, queries_collectors, queries_spend
from app.dashboard.data import Filters, engine
from app.dashboard.queries_alerts import BudgetLine, RuleStatus, TransitionRow
from app.dashboard.queries_collectors import Freshness, Run
from app.dashboard.queries_spend import BilledGap, DaySpend, Mover
from app.dashboard.versions import versioned
from app.killswitch.model import Switch
from app.reports.reconcile import ReconRow

SWITCH_TTL = 5
BACKTEST_TTL = 600


def now() -> datetime:
    """The wall clock (tests replace it to judge budgets at a fixed moment)."""
    return datetime.now(UTC)


def midnight(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


@versioned(engine)
def spend_by_day(
    url: str, dim: str, since: date, until: date, filters: Filters, top: int
) -> list[DaySpend]:
    return queries_spend.spend_by_day(engine(url), dim, data.scope(since, until, filters), top)


@versioned(engine, show_spinner="Comparing periods…")
def top_movers(
    url: str, dim: str, since: date, until: date, before: date, filters: Filters, limit: int
) -> list[Mover]:
    current = data.scope(since, until, filters)
    previous = data.scope(before, since, filters)
    return queries_spend.top_movers(engine(url), dim, current, previous, limit)


@versioned(engine)
def estimated_vs_billed(url: str, since: date, until: date) -> list[BilledGap]:
    # From the cached detail rows: the page shows both, from one reconciliation.
    return queries_spend.gaps(reconcile_rows(url, since, until))


@versioned(engine)
def reconcile_rows(url: str, since: date, until: date) -> list[ReconRow]:
    return queries_spend.reconcile_rows(engine(url), since, until)


@versioned(engine)
def budget_lines(url: str, at: datetime) -> list[BudgetLine]:
    return queries_alerts.budget_lines(engine(url), data.settings(), at)


@versioned(engine)
def alert_history(url: str, since: date, until: date) -> list[TransitionRow]:
    return queries_alerts.alert_history(engine(url), midnight(since), midnight(until))


@versioned(engine)
def rule_statuses(url: str) -> list[RuleStatus]:
    return queries_alerts.rule_statuses(engine(url), data.settings())


@versioned(engine, ttl=SWITCH_TTL)
def open_switches(url: str) -> list[Switch]:
    return queries_alerts.open_switches(engine(url), now())


@versioned(engine, ttl=SWITCH_TTL)
def recent_switches(url: str) -> list[Switch]:
    return queries_alerts.recent_switches(engine(url), now())


@versioned(engine, ttl=SWITCH_TTL)
def switch_audit(url: str) -> list[AuditRecord]:
    return queries_alerts.switch_audit(engine(url))


@versioned(engine, ttl=BACKTEST_TTL, show_spinner="Replaying the rules over history…")
def backtest_records(
    url: str, since: date, until: date, rule_ids: tuple[str, ...]
) -> list[dict[str, object]]:
    transitions = backtest(
        engine(url), data.settings(), midnight(since), midnight(until), rule_ids=list(rule_ids)
    )
    return [transition_record(t, exact=False) for t in transitions]


@versioned(engine)
def recent_runs(url: str, limit: int) -> list[Run]:
    return queries_collectors.recent_runs(engine(url), limit)


@versioned(engine)
def freshness(url: str) -> list[Freshness]:
    return queries_collectors.freshness(engine(url))


def clear_switches() -> None:
    """After a change: the next run reads the switches and their audit entries again."""
    open_switches.clear()
    recent_switches.clear()
    switch_audit.clear()


def clear_runs() -> None:
    recent_runs.clear()
    freshness.clear()
    data.data_bounds.clear()
