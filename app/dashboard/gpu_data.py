"""Cached loaders for the "GPU cost" page (`app.gpu.report` does the counting), keyed by the
warehouse URL, hashable arguments and the data version, like `app.dashboard.data`."""

from __future__ import annotations

from datetime import date, datetime

from app.dashboard.data import Filters, engine
from app.dashboard.versions import versioned
from app.gpu import report
from app.gpu.report import AllocationRow, DailySplit, PoolRow


@versioned(engine)
def hour_bounds(url: str) -> tuple[datetime, datetime] | None:
    return report.hour_bounds(engine(url))


@versioned(engine, show_spinner="Adding up GPU costs…")
def pool_rows(url: str, since: date, until: date) -> list[PoolRow]:
    return report.pool_rows(engine(url), since, until)


@versioned(engine)
def daily_split(url: str, since: date, until: date) -> list[DailySplit]:
    return report.daily_split(engine(url), since, until)


@versioned(engine, show_spinner="Adding up GPU costs…")
def allocation_rows(
    url: str,
    dims: tuple[str, ...],
    since: date,
    until: date,
    pools: tuple[str, ...],
    limit: int | None,
    filters: Filters = (),
) -> list[AllocationRow]:
    return report.allocation_rows(engine(url), dims, since, until, pools, limit, dict(filters))


@versioned(engine)
def last_allocation(url: str) -> datetime | None:
    return report.last_allocation(engine(url))
