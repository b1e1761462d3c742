"""A whole day's rollup rebuild, staged: the day's requests read from the base tables once, kept
until the rollups are written from them.

A day rebuilt whole (a late span on a past day, a re-price, a bulk load of the latest day) takes
seconds to write at volume, and until its rollups are current every reader takes that day from
the base tables. The refresh (`app.rollups.refresh`) therefore commits the rebuild's first step
on its own: `rollup_staged_pairs` holds the day's rows of the rebuild's pairs table (one row
per request and (model, provider) it called, `app.rollups.day_pairs`), from which every request
rollup is a GROUP BY, and `rollup_staged_marks` the marks (`rollup_dirty` ids) those rows were
read after. While every mark of a day is one of those, the staged rows are that day's rollups
before grouping: readers (`app.rollups.query`) sum them in place of the base tables. A mark
written after the staging sends readers back to the base tables. The rollups' rebuild from the
staged rows deletes its marks and its staged rows in one transaction.

On PostgreSQL both tables are UNLOGGED (migration 0017): no WAL for rows that live seconds.
A crash empties both together, which leaves the day unstaged, and so read from the base tables.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, Column, Date, Index, Integer, String, Table, Text

from app.warehouse.tables import Base
from app.warehouse.tables_rollup import SUMMED


def pair_columns() -> list[Column[Any]]:
    """The columns of a day's pairs table (after `day`): one row per request and
    (model, provider) it called, one row with NULLs for a request without calls."""
    return [
        Column("trace_id", String(32)),
        Column("hour", Integer),  # the request's UTC hour, or WHOLE_DAY
        Column("user_id", String(256)),
        Column("endpoint", String(512)),
        Column("team", String(256)),
        Column("model", String(256)),
        Column("provider", String(64)),
        # The request's set of pairs as one text (`PAIR_START` model `PAIR_MID` provider
        # `PAIR_START` …, sorted), the same on each of its rows; NULL without calls.
        Column("pairs", Text),
        *(Column(name, BigInteger) for name in SUMMED),
        Column("is_first", Integer),  # the request's first row: counts the request once
        Column("is_first_provider", Integer),  # its first provider for this model
        Column("is_first_model", Integer),  # its first model for this provider
    ]


rollup_staged_pairs = Table(
    "rollup_staged_pairs",
    Base.metadata,
    Column("day", Date, nullable=False),
    *pair_columns(),
    Index(None, "day"),
)

rollup_staged_marks = Table(
    "rollup_staged_marks",
    Base.metadata,
    Column("mark_id", Integer, primary_key=True, autoincrement=False),
    Column("day", Date, nullable=False),
    Index(None, "day"),
)
