"""New true-up factors written with the request rollups they change, in one transaction, so
that readers never read those days from the base tables for them.

A mark (`app.rollups.dirty`) sends every reader of its day to the base tables until the refresh
stages the day: seconds on a busy day, with every page slower meanwhile. The true-up knows its
change before it writes it: the factors of some of a provider's days, which move only the
request rollups' `trued_cost_nanousd` and `trued_up_calls`. So `swap_factors` first sums each
request day whose trued-up costs they change into the request rollups' twins
(`app.warehouse.tables_staged`) as it will be with the new factors (`prestage`: the day's pairs
are read with the factors from a temporary table, `true_up_pending`, in place of
`true_up_factors`), while readers still read the rollups' rows and the factors stored; then, in
one transaction, it writes the factors and replaces those days' request rollup rows by the
twins' (`swap_in`). Readers see the old factors with the old rows, or the new with the new.

It runs under the refresh lock (`app.rollups.refresh.LOCK`), as a staging does: no refresh
stages, rebuilds or compacts meanwhile. A prestaged day lists no marks
(`rollup_staged_marks`), so readers never take its twins for a staging's: they read the day's
rollup rows, or the base tables where it is marked. Marks are left as they are. A write that
the twins hold and whose mark stays only sends readers to the base tables (and the day to the
next refresh); a write after the twins were summed has its mark, which stays after the swap.

What is not prestaged is marked, as before: the hours of a sliced (live) day with a few hours
changed (rebuilt alone by the next refresh, read meanwhile from the base tables hour by hour),
every day when more than `MAX_DAYS` would be (a true-up of months: the refresh's work), and
every day when the refresh lock stays taken for `WAIT` seconds.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, cast

from sqlalchemy import (
    Column,
    Connection,
    Engine,
    MetaData,
    Table,
    and_,
    delete,
    insert,
    not_,
    select,
)
from sqlalchemy.schema import CreateTable

from app.rollups.day_pairs import ORDER, write_pairs, write_twin
from app.rollups.dirty import Slice, mark_slices
from app.rollups.refresh import LAZY_MAX_DAYS, LOCK
from app.rollups.staging import Rebuild, clear_staged, read_settings, replace_rows, row_hour
from app.rollups.stale import MAX_STALE_HOURS, Stale
from app.rollups.weeks import invalidate
from app.warehouse.locks import waiting_lock
from app.warehouse.tables import Request
from app.warehouse.tables_rollup import rollup_sliced
from app.warehouse.tables_staged import rollup_staged_pairs
from app.warehouse.tables_trueup import TrueUpFactor
from app.warehouse.types import as_date

log = logging.getLogger("spendguard.rollups")

# At most this many request days prestaged by one true-up (more are marked, for the refresh).
MAX_DAYS = LAZY_MAX_DAYS
# How long a true-up waits for the refresh lock (a refresh of a few days) before it marks.
WAIT = 30.0

_FACTORS = cast(Table, TrueUpFactor.__table__)
# The factors a prestaged day's pairs apply: those stored, but the provider's days being
# replaced, which hold the new rows instead. Same columns and key as `true_up_factors`.
_pending = Table(
    "true_up_pending",
    MetaData(),
    *(Column(c.name, c.type, primary_key=c.primary_key) for c in _FACTORS.c),
    prefixes=["TEMPORARY"],
)


@dataclass(frozen=True, slots=True)
class NewFactors:
    """A provider's factors for the UTC days [since, until), replacing those stored: rows of
    `true_up_factors` (every column, by name)."""

    provider: str
    since: date
    until: date
    rows: Sequence[Mapping[str, Any]]

    def replaced(self) -> Any:
        """The stored rows these replace."""
        f = _FACTORS.c
        return and_(f.provider == self.provider, f.day >= self.since, f.day < self.until)

    def write(self, conn: Connection) -> None:
        conn.execute(delete(_FACTORS).where(self.replaced()))
        if self.rows:
            conn.execute(insert(_FACTORS), [dict(row) for row in self.rows])


def swap_factors(
    engine: Engine, factors: NewFactors, hours: Iterable[Slice], wait: float = WAIT
) -> list[date]:
    """Write `factors`, with the rollups of the request days and hours (`hours`) whose trued-up
    costs they change: each day prestaged and swapped in with them, or marked (see the
    module); the days swapped in."""
    changed: dict[date, set[int | None]] = {}
    for day, hour in hours:
        changed.setdefault(day, set()).add(hour)
    with waiting_lock(engine, LOCK, wait) as held:
        if not held:
            log.info("true-up: the rollups' refresh is busy: %d day(s) marked", len(changed))
        jobs, marks = _plan(engine, changed) if held else ([], _every(changed))
        for job in jobs:
            prestage(engine, job, factors)
        with engine.begin() as conn:
            factors.write(conn)
            for job in jobs:
                swap_in(conn, job.day)
            mark_slices(conn, marks)
    return [job.day for job in jobs]


def _plan(
    engine: Engine, changed: Mapping[date, set[int | None]]
) -> tuple[list[Rebuild], list[Slice]]:
    """The days to prestage, each as its rows are stored (hour slices or whole), and the marks
    to write instead (see the module)."""
    with engine.connect() as conn:
        sliced = {as_date(v) for v in conn.execute(select(rollup_sliced.c.day)).scalars()}
    jobs: list[Rebuild] = []
    marks: list[Slice] = []
    for day, hours in sorted(changed.items()):
        if day in sliced and None not in hours and len(hours) <= MAX_STALE_HOURS:
            marks += [(day, hour) for hour in hours]
        else:
            jobs.append(Rebuild(day, None, sliced=day in sliced))
    if len(jobs) > MAX_DAYS:
        return [], _every(changed)
    return jobs, marks


def _every(changed: Mapping[date, set[int | None]]) -> list[Slice]:
    return [(day, hour) for day, hours in changed.items() for hour in hours]


def prestage(engine: Engine, job: Rebuild, factors: NewFactors) -> None:
    """The request rollups of `job`'s day (a whole day) summed into their twins with `factors`
    in place of the provider's stored ones, a commit for the pairs and one per twin. Under the
    refresh lock: the day's staged rows, whatever they were, are replaced."""
    day = job.day
    with engine.begin() as conn:
        read_settings(conn)
        clear_staged(conn, day)
        conn.execute(CreateTable(_pending, if_not_exists=True))
        conn.execute(delete(_pending))
        kept = select(_FACTORS).where(not_(factors.replaced()))
        conn.execute(insert(_pending).from_select([c.name for c in _FACTORS.c], kept))
        if factors.rows:
            conn.execute(insert(_pending), [dict(row) for row in factors.rows])
        spans = Stale((day,), ()).periods()
        hour = row_hour(job, Request.started_at)
        write_pairs(conn, day, spans, hour, rollup_staged_pairs, _pending)
    for table in ORDER:
        with engine.begin() as conn:
            read_settings(conn)
            write_twin(conn, table, day)
    with engine.begin() as conn:
        conn.execute(delete(rollup_staged_pairs).where(rollup_staged_pairs.c.day == day))


def swap_in(conn: Connection, day: date) -> None:
    """A prestaged day's request rollup rows in place of the stored ones (in the transaction
    that writes the factors they were summed with)."""
    invalidate(conn, [day])  # its week's sums no longer hold (`app.rollups.weeks`)
    replace_rows(conn, ORDER, day)
