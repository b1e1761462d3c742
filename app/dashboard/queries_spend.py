"""Spend over time and between periods, aggregated in SQL.

Every figure is built from `app.reports.unit_costs.cost_query` (the rollups, or the base
tables), so it follows the report's counting rules: a request's UTC day decides where it falls,
calls follow their request, a model or provider group counts only its own calls. Only one row
per (day, group) or per group comes back; rows are never read one by one.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from sqlalchemy import Engine

from app.money import nanos_to_usd, per_thousand
from app.reports.reconcile import ReconRow, reconcile
from app.reports.unit_costs import Scope, UnitCostRow, cost_query, unit_costs
from app.warehouse.engine import snapshot
from app.warehouse.types import as_date

OTHER = "(other)"


@dataclass(frozen=True, slots=True)
class DaySpend:
    """The spend of one group on one UTC day (`group` is OTHER for the groups not shown)."""

    day: date
    group: str
    cost_nanousd: int

    @property
    def cost_usd(self) -> Decimal:
        return nanos_to_usd(self.cost_nanousd)


def spend_by_day(engine: Engine, dim: str, scope: Scope, top: int = 8) -> list[DaySpend]:
    """Spend per UTC day of the `top` most expensive groups of `dim` in the scope, the rest as
    one OTHER series (the day's total less those groups: every view adds up to the total)."""
    leaders = [r.group[dim] for r in unit_costs(engine, [dim], scope, limit=top)]
    if not leaders:
        return []
    with snapshot(engine) as conn:
        by_group = cost_query(conn, [dim], scope, by_day=True)
        by_group = by_group.where(by_group.selected_columns[dim].in_(leaders))
        totals = cost_query(conn, [], scope, by_day=True)
        grouped = conn.execute(by_group).mappings().all()
        daily = conn.execute(totals).mappings().all()
    out: list[DaySpend] = []
    shown: dict[date, int] = defaultdict(int)
    for r in grouped:
        d = as_date(r["day"])
        out.append(DaySpend(d, str(r[dim]), int(r["cost_nanousd"])))
        shown[d] += int(r["cost_nanousd"])
    for r in daily:
        d = as_date(r["day"])
        rest = int(r["cost_nanousd"]) - shown[d]
        if rest:
            out.append(DaySpend(d, OTHER, rest))
    order = {g: i for i, g in enumerate([*leaders, OTHER])}
    out.sort(key=lambda s: (s.day, order.get(s.group, len(order))))
    return out


@dataclass(frozen=True, slots=True)
class Mover:
    """One group's spend and unit cost in two equal periods, `before` and `now`."""

    group: str
    cost_now_nanousd: int
    cost_before_nanousd: int
    requests_now: int
    requests_before: int

    @property
    def change_nanousd(self) -> int:
        return self.cost_now_nanousd - self.cost_before_nanousd

    @property
    def change_usd(self) -> Decimal:
        return nanos_to_usd(self.change_nanousd)

    @property
    def change_ratio(self) -> Decimal | None:
        """now / before − 1 (None when there was no spend before)."""
        if self.cost_before_nanousd <= 0:
            return None
        return Decimal(self.cost_now_nanousd) / Decimal(self.cost_before_nanousd) - 1

    @property
    def per_1k_now(self) -> Decimal | None:
        return per_thousand(self.cost_now_nanousd, self.requests_now)

    @property
    def per_1k_before(self) -> Decimal | None:
        return per_thousand(self.cost_before_nanousd, self.requests_before)


def top_movers(
    engine: Engine, dim: str, now: Scope, before: Scope, limit: int = 10, depth: int = 200
) -> list[Mover]:
    """The groups whose spend changed most (up or down) from `before` to `now`.

    Each period is cut in SQL to its `depth` most expensive groups, so a long tail of users
    stays in the database; a group can only move much if it is expensive in one of them.
    """
    current = {r.group[dim]: r for r in unit_costs(engine, [dim], now, limit=depth)}
    previous = {r.group[dim]: r for r in unit_costs(engine, [dim], before, limit=depth)}
    movers = [
        Mover(
            group=g,
            cost_now_nanousd=_cost(current.get(g)),
            cost_before_nanousd=_cost(previous.get(g)),
            requests_now=_requests(current.get(g)),
            requests_before=_requests(previous.get(g)),
        )
        for g in {*current, *previous}
    ]
    movers = [m for m in movers if m.change_nanousd != 0]
    movers.sort(key=lambda m: (-abs(m.change_nanousd), m.group))
    return movers[:limit]


def _cost(row: UnitCostRow | None) -> int:
    return 0 if row is None else row.cost_nanousd


def _requests(row: UnitCostRow | None) -> int:
    return 0 if row is None else row.requests


@dataclass(frozen=True, slots=True)
class BilledGap:
    """Estimated (traces) against billed (invoices) for one provider and UTC day, in USD."""

    day: date
    provider: str
    estimated_nanousd: int
    billed_nanousd: int | None  # None: no bill for the day yet
    other_currency_lines: int

    @property
    def gap_nanousd(self) -> int | None:
        return None if self.billed_nanousd is None else self.billed_nanousd - self.estimated_nanousd


@dataclass(frozen=True, slots=True)
class BilledSummary:
    """The headline of estimated vs billed over a range of `BilledGap`s, in USD nano-dollars.

    The gap compares only the days that are over *and* have a bill: a day with no bill yet has
    nothing to compare, and a day not over yet (UTC) has a partial bill (it grows through the
    day, and providers' cost reports lag it by hours), whose gap to the day's whole estimate
    would read as a large saving that is not there."""

    estimated_nanousd: int  # every day's
    billed_nanousd: int  # every bill line in USD, partial days' too
    compared_estimated_nanousd: int  # the estimate of the compared days
    gap_nanousd: int  # billed − estimated on the compared days
    unbilled_days: int  # days with a provider that has no bill for it yet
    partial_days: int  # days with a bill that are not over yet


def billed_summary(gaps: Sequence[BilledGap], today: date) -> BilledSummary:
    """Sum `gaps` for the headline; `today`: the current UTC day (it and later days are not
    over)."""
    compared = [g for g in gaps if g.billed_nanousd is not None and g.day < today]
    compared_estimated = sum(g.estimated_nanousd for g in compared)
    return BilledSummary(
        estimated_nanousd=sum(g.estimated_nanousd for g in gaps),
        billed_nanousd=sum(g.billed_nanousd or 0 for g in gaps),
        compared_estimated_nanousd=compared_estimated,
        gap_nanousd=sum(g.billed_nanousd or 0 for g in compared) - compared_estimated,
        unbilled_days=len({g.day for g in gaps if g.billed_nanousd is None}),
        partial_days=len({g.day for g in gaps if g.billed_nanousd is not None and g.day >= today}),
    )


def estimated_vs_billed(engine: Engine, since: date, until: date) -> list[BilledGap]:
    """`spendguard report reconcile` summed per provider and day (its rows are already one per
    provider, model and day, aggregated in SQL); lines not in USD are counted, never summed."""
    return gaps(reconcile(engine, since, until).rows)


def gaps(rows: Sequence[ReconRow]) -> list[BilledGap]:
    """The reconciliation's rows summed per provider and day (`estimated_vs_billed`)."""
    est: dict[tuple[date, str], int] = defaultdict(int)
    billed: dict[tuple[date, str], int | None] = {}
    other: dict[tuple[date, str], int] = defaultdict(int)
    for row in rows:
        key = (row.day, row.provider)
        est[key] += row.estimated_nanousd or 0
        if row.other_currency is not None:
            other[key] += 1
            billed.setdefault(key, None)
        elif row.billed_nanousd is not None:
            billed[key] = (billed.get(key) or 0) + row.billed_nanousd
        else:
            billed.setdefault(key, None)
    keys = sorted({*est, *billed, *other})
    return [BilledGap(d, p, est[(d, p)], billed.get((d, p)), other[(d, p)]) for d, p in keys]


def reconcile_rows(engine: Engine, since: date, until: date) -> list[ReconRow]:
    """The report's own rows (provider, model, day, line item), for the detail table."""
    return reconcile(engine, since, until).rows
