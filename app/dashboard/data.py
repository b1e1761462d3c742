"""Cached loaders between the pages and the queries.

The engine is a cached resource per database URL (disposed when the cache releases it); query
results are cached under hashable arguments only: the URL, dates, dimension tuples and a
`Filters` tuple, plus the data version (`app.dashboard.versions`): a result is read again as
soon as the warehouse or the configuration changed, and otherwise kept up to the backstop TTL.
Keying by URL keeps two warehouses (or two tests) apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime

import streamlit as st
from sqlalchemy import Engine

from app.dashboard import queries
from app.dashboard.queries import DailyRow, DataBounds
from app.dashboard.versions import versioned
from app.reports.unit_costs import Scope, UnitCostRow, unit_costs
from app.settings import Settings, load_settings
from app.warehouse.engine import make_engine

TTL_SECONDS = 60  # whether the schema exists: looked at again within a minute
# ((dimension, (value, ...)), ...): the hashable form of `Scope.filters`.
Filters = tuple[tuple[str, tuple[str, ...]], ...]


def settings() -> Settings:
    """The configuration, read again on each rerun (cheap; a bad file shows its error)."""
    return load_settings()


def _dispose(engine: Engine) -> None:
    engine.dispose()


@st.cache_resource(show_spinner=False, on_release=_dispose)
def engine(url: str) -> Engine:
    return make_engine(url)


def scope(since: date, until: date, filters: Filters = ()) -> Scope:
    # With pricing.true_up, estimated costs are scaled to the provider bills (app.trueup).
    return Scope(
        since=since,
        until=until,
        filters=dict(filters) or None,
        true_up=settings().pricing.true_up,
    )


def freshen(url: str) -> None:
    """Start rebuilding the rollups' dirty days in the background (not cached: one small query
    per run); pages read those days from the base tables meanwhile."""
    queries.freshen(engine(url))


@st.cache_data(ttl=TTL_SECONDS, show_spinner=False)
def has_warehouse(url: str) -> bool:
    return queries.has_warehouse(engine(url))


@versioned(engine)
def data_bounds(url: str) -> DataBounds | None:
    return queries.data_bounds(engine(url))


@versioned(engine)
def last_reprice(url: str) -> datetime | None:
    return queries.last_reprice(engine(url))


@versioned(engine, show_spinner="Adding up costs…")
def unit_cost_rows(
    url: str, dims: tuple[str, ...], since: date, until: date, filters: Filters
) -> list[UnitCostRow]:
    return unit_costs(engine(url), dims, scope(since, until, filters))


@versioned(engine, show_spinner="Adding up costs…")
def top_unit_cost_rows(
    url: str, dims: tuple[str, ...], since: date, until: date, filters: Filters, limit: int
) -> list[UnitCostRow]:
    return unit_costs(engine(url), dims, scope(since, until, filters), limit=limit)


@versioned(engine)
def daily_rows(url: str, since: date, until: date, filters: Filters) -> list[DailyRow]:
    rows = queries.daily_unit_costs(engine(url), scope(since, until, filters))
    return queries.fill_days(rows, since, until)


@versioned(engine)
def filter_options(url: str, dim: str, since: date, until: date, limit: int) -> list[str]:
    return queries.filter_options(engine(url), dim, scope(since, until), limit)


def total(rows: Sequence[UnitCostRow]) -> UnitCostRow | None:
    """The single row of an ungrouped `unit_cost_rows` call (None when nothing matched)."""
    return rows[0] if rows else None
