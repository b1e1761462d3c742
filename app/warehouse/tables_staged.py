"""A whole day's rollup rebuild, staged: the day's rows of every rollup, written first into
twin tables and kept until they replace the day's rows.

A day rebuilt whole (a late span on a past day, a re-price, a bulk load of the latest day) takes
seconds to sum and seconds more to write into the big indexed rollups at volume, and until its
rollups are current every reader takes that day from the base tables. The refresh
(`app.rollups.staging`) therefore commits the rebuild's sums first, on their own: each rollup
has a twin here (`rollup_staged_<name>`: the same columns, indexed by day only), holding the
staged days' rows, and `rollup_staged_marks` lists the marks (`rollup_dirty` ids) those rows
were summed after. While every mark of a day is one of those, the twins' rows are that day's
rollup rows: the rollups' readers (`app.rollups.query`, `app.rollups.gpu`,
`app.rollups.call_days`) read them in place of the base tables. A mark written after the
staging sends readers back to the base tables. Writing the staged rows into the rollups
deletes their marks and the twins' rows of the day in one transaction.

A staging commits in steps. First the marks, the day's requests read once into
`rollup_staged_pairs` (one row per request and (model, provider) it called,
`app.rollups.day_pairs`) and the names of the twins still to write in `rollup_staged_paired`;
then the twins, a step at a time (`app.rollups.staging.STEPS`), each committed with its names
taken off: first `rollup_call_days`' and the GPU rollups' (their readers read the day from the
base tables until then: `Stale.ready`), then the request rollups', each summed from the pairs
(or from a finer twin). The pairs are deleted with the last. Meanwhile readers take a request
rollup whose twin is not written from the day's pairs, each row weighted as the rollup would
count it: no join and no sort, so the day leaves the base tables after the one read of its
requests, and each rollup after its own GROUP BY.

On PostgreSQL the tables are UNLOGGED (migration 0017): no WAL for rows that live seconds. A
crash empties them all, which leaves the day unstaged, and so read from the base tables.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, Column, Date, Index, Integer, String, Table, Text

from app.warehouse.tables import Base
from app.warehouse.tables_rollup import ROLLUPS, SUMMED, rollup_call_days

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


def pair_columns() -> list[Column[Any]]:
    """The columns of a day's pairs (`app.rollups.day_pairs`): one row per request and
    (model, provider) it called, or one with NULLs for a request without calls."""
    return [
        Column("day", Date, nullable=False),
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


# The pairs of the days being staged, until their twins are written: the rows of a day or two,
# each read whole, but indexed by day, as PostgreSQL keeps the deleted rows of every staging
# until a vacuum (`app.rollups.refresh.vacuum_staged`), and a scan reads them all (migration
# 0019).
rollup_staged_pairs = Table("rollup_staged_pairs", _metadata, *pair_columns(), Index(None, "day"))

# The request rollups of the staged days whose twins are not written yet: read from the pairs.
rollup_staged_paired = Table(
    "rollup_staged_paired",
    _metadata,
    Column("day", Date, primary_key=True),
    Column("rollup", String(64), primary_key=True),
)
