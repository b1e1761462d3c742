"""A whole day's rollup rebuild, staged: the day's rows of every rollup, written first into
twin tables and kept until they replace the day's rows.

A day rebuilt whole (a late span on a past day, a re-price, a bulk load of the latest day) takes
seconds to sum and seconds more to write into the big indexed rollups at volume, and until its
rollups are current every reader takes that day from the base tables. The refresh
(`app.rollups.refresh`) therefore commits the rebuild's sums first, on their own: each rollup
has a twin here (`rollup_staged_<name>`: the same columns, indexed by day only), holding the
staged days' rows, and `rollup_staged_marks` lists the marks (`rollup_dirty` ids) those rows
were summed after. While every mark of a day is one of those, the twins' rows are that day's
rollup rows: the rollups' readers (`app.rollups.query`, `app.rollups.gpu`,
`app.rollups.call_days`) read them in place of the base tables. A mark written after the
staging sends readers back to the base tables. Writing the staged rows into the rollups
deletes their marks and the twins' rows of the day in one transaction.

On PostgreSQL the tables are UNLOGGED (migration 0017): no WAL for rows that live seconds. A
crash empties them all, which leaves the day unstaged, and so read from the base tables.
"""

from __future__ import annotations

from sqlalchemy import Column, Date, Index, Integer, Table

from app.warehouse.tables import Base
from app.warehouse.tables_rollup import ROLLUPS, rollup_call_days

_metadata = Base.metadata


def _twin(table: Table) -> Table:
    """The staged twin of a rollup: its columns (no server defaults: every write names them
    all), indexed by day."""
    return Table(
        table.name.replace("rollup_", "rollup_staged_", 1),
        _metadata,
        *(Column(c.name, c.type, nullable=c.nullable) for c in table.c),
        Index(None, "day"),
    )


# Every rollup a day's rebuild replaces, and its twin.
TWINS = {table: _twin(table) for table in (*ROLLUPS, rollup_call_days)}

rollup_staged_marks = Table(
    "rollup_staged_marks",
    _metadata,
    Column("mark_id", Integer, primary_key=True, autoincrement=False),
    Column("day", Date, nullable=False),
    Index(None, "day"),
)
