"""A change to what the rollups sum, written with the rollup rows it changes in one
transaction, so that readers never read its days from the base tables: the true-up's new
factors (`app.trueup`) and a GPU re-allocation of a day (`app.gpu.allocate`).

A mark (`app.rollups.dirty`) sends every reader of its day to the base tables until the refresh
stages the day: seconds on a busy day, with every page slower meanwhile. These two writers know
their change before they write it, and it is small: some provider-days' factors, which move
only the request rollups' trued-up costs, or one day's GPU shares, which move the request
rollups' GPU cost and the GPU rollups. So `write_change` first sums each request day whose sums
it changes into the twins of those rollups (`app.warehouse.tables_staged`) as they will be with
the change (`prestage`: the day's pairs and GPU shares are read with the change's rows from
temporary tables, `true_up_pending` or `gpu_pending`, in place of the stored rows they
replace), while readers still read the stored rows; then, in one transaction, it writes the
change and replaces those days' rows of those rollups by the twins' (`swap_in`). Readers see
the old rows with the old data, or the new with the new.

It runs under the refresh lock (`app.rollups.refresh.LOCK`), as a staging does: no refresh
stages, rebuilds or compacts meanwhile. A prestaged day lists no marks
(`rollup_staged_marks`), so readers never take its twins for a staging's: they read the day's
rollup rows, or the base tables where it is marked. Marks are left as they are. A write that
the twins hold and whose mark stays only sends readers to the base tables (and the day to the
next refresh); a write after the twins were summed has its mark, which stays after the swap.

What is not prestaged is marked, as before: a day already stale whole (read from the base
tables, or its staging, until the refresh, which rebuilds it anyway); the hours of a sliced
(live) day with at most MAX_STALE_HOURS changed (the refresh rebuilds them alone, and readers
read only those hours from the base tables meanwhile); every day when more than `MAX_DAYS` would
be prestaged (a true-up of months: the refresh's work); and every day when the refresh lock
stays taken for `WAIT` seconds.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Protocol, cast

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
from app.rollups.gpu import rebuild_gpu_slices
from app.rollups.refresh import CHANGE_LOCK, LAZY_MAX_DAYS, LOCK, vacuum_staged
from app.rollups.staging import Rebuild, clear_staged, read_settings, replace_rows, row_hour
from app.rollups.stale import MAX_STALE_HOURS, Stale, dirty_in
from app.rollups.weeks import invalidate
from app.warehouse.checkpoints import write_checkpoint
from app.warehouse.locks import wait_transaction_lock, waiting_lock
from app.warehouse.tables import Request
from app.warehouse.tables_gpu import GpuAllocation, GpuPoolHour, Reallocated
from app.warehouse.tables_rollup import GPU_ROLLUPS, rollup_sliced
from app.warehouse.tables_staged import TWINS, rollup_staged_pairs
from app.warehouse.tables_trueup import TrueUpFactor
from app.warehouse.types import as_date

log = logging.getLogger("spendguard.rollups")

# At most this many request days prestaged for one change (more are marked, for the refresh).
MAX_DAYS = LAZY_MAX_DAYS
# How long a change waits for the refresh lock (a refresh of a few days) before it marks.
WAIT = 30.0

_FACTORS = cast(Table, TrueUpFactor.__table__)
_SHARES = cast(Table, GpuAllocation.__table__)
_POOL_HOURS = cast(Table, GpuPoolHour.__table__)


def _temporary(name: str, like: Table) -> Table:
    """A temporary table with the columns and key of `like`, emptied at each commit on
    PostgreSQL (its rows don't stay in a pooled connection)."""
    columns = (Column(c.name, c.type, primary_key=c.primary_key) for c in like.c)
    return Table(
        name, MetaData(), *columns, prefixes=["TEMPORARY"], postgresql_on_commit="DELETE ROWS"
    )


# The factors a prestaged day's pairs apply: those stored, but the provider's days being
# replaced, which hold the new rows instead.
_pending_factors = _temporary("true_up_pending", _FACTORS)
# The GPU shares of the hours being re-allocated.
_pending_shares = _temporary("gpu_pending", _SHARES)


@dataclass(frozen=True, slots=True)
class Sources:
    """What a prestaged day's sums read in place of the stored rows (`write_pairs`)."""

    factors: Table | None = None
    shares: Reallocated | None = None


class Change(Protocol):
    """A change to what the rollups sum, known before it is written."""

    @property
    def rollups(self) -> tuple[Table, ...]:
        """The rollups it changes (each request day's rows of them are summed again)."""

    def write(self, conn: Connection) -> None:
        """Write the change (in the swap's transaction)."""

    def sources(self, conn: Connection) -> Sources:
        """Its rows as the sums read them, in temporary tables of `conn`."""


@dataclass(frozen=True, slots=True)
class NewFactors:
    """A provider's true-up factors for the UTC days [since, until), replacing those stored:
    rows of `true_up_factors` (every column, by name). They move only the request rollups'
    trued-up costs."""

    provider: str
    since: date
    until: date
    rows: Sequence[Mapping[str, Any]]
    rollups: tuple[Table, ...] = ORDER

    def replaced(self) -> Any:
        """The stored rows these replace."""
        f = _FACTORS.c
        return and_(f.provider == self.provider, f.day >= self.since, f.day < self.until)

    def write(self, conn: Connection) -> None:
        conn.execute(delete(_FACTORS).where(self.replaced()))
        if self.rows:
            conn.execute(insert(_FACTORS), [dict(row) for row in self.rows])

    def sources(self, conn: Connection) -> Sources:
        """Every factor stored but the replaced ones, and these (`true_up_pending`)."""
        conn.execute(CreateTable(_pending_factors, if_not_exists=True))
        conn.execute(delete(_pending_factors))
        kept = select(_FACTORS).where(not_(self.replaced()))
        names = [c.name for c in _FACTORS.c]
        conn.execute(insert(_pending_factors).from_select(names, kept))
        if self.rows:
            conn.execute(insert(_pending_factors), [dict(row) for row in self.rows])
        _analyze(conn, _pending_factors)
        return Sources(factors=_pending_factors)


@dataclass(frozen=True, slots=True)
class NewAllocations:
    """The GPU allocation of the UTC hours [start, end): rows of `gpu_allocations` and
    `gpu_pool_hours` (every column, by name), replacing those stored. The shares move the
    request rollups' GPU cost and the GPU rollups (no rollup reads the pool-hours)."""

    start: datetime
    end: datetime
    shares: Sequence[Mapping[str, Any]]
    pool_hours: Sequence[Mapping[str, Any]]
    rollups: tuple[Table, ...] = (*ORDER, *GPU_ROLLUPS)

    def write(self, conn: Connection) -> None:
        for table, rows in ((_SHARES, self.shares), (_POOL_HOURS, self.pool_hours)):
            hour = table.c.hour
            conn.execute(delete(table).where(hour >= self.start, hour < self.end))
            if rows:
                conn.execute(insert(table), [dict(row) for row in rows])

    def sources(self, conn: Connection) -> Sources:
        """These shares (`gpu_pending`), read in place of the stored ones of their hours."""
        conn.execute(CreateTable(_pending_shares, if_not_exists=True))
        conn.execute(delete(_pending_shares))
        if self.shares:
            conn.execute(insert(_pending_shares), [dict(row) for row in self.shares])
        _analyze(conn, _pending_shares)
        return Sources(shares=Reallocated(_pending_shares, self.start, self.end))


def _analyze(conn: Connection, table: Table) -> None:
    """PostgreSQL: the temporary table's statistics (autovacuum never sees temporary tables,
    and without them the planner guesses their size), so that the day's sums look its rows up
    by key rather than scan them per request."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"ANALYZE {table.name}")


@dataclass(slots=True)
class Written:
    """What `write_change` did besides writing the change."""

    rebuilt: list[date] = field(default_factory=list)  # the days swapped in with it
    busy: bool = False  # the refresh lock stayed taken: every day marked


# The request days and hours whose sums a change moves, or a function that reads them on a
# connection (`write_change` calls it once no patch of late spans can commit before the change
# does: `app.rollups.patch`).
Hours = Iterable[Slice] | Callable[[Connection], Iterable[Slice]]


def write_change(
    engine: Engine,
    change: Change,
    hours: Hours,
    wait: float = WAIT,
    *,
    rebuild: bool = True,
) -> Written:
    """Write `change`, with the rollups of the request days and hours (`hours`) whose sums it
    changes: each day prestaged and swapped in with it, or marked (see the module; all of
    them without `rebuild`: one change of many, such as a re-allocation of weeks, a day at a
    time). A prestaging that fails is logged, and its days are marked instead: the change is
    never lost to it. A function `hours` is called under the refresh lock, or when that is
    busy in the transaction that writes the change (after its first write on SQLite, after
    taking CHANGE_LOCK on PostgreSQL), so that it sees every patch of late spans committed
    before the change, and none commits in between (`app.rollups.patch`)."""
    if not rebuild:
        with engine.begin() as conn:
            _written_with_marks(conn, change, hours)
        return Written()
    written = Written()
    jobs: list[Rebuild] = []
    marks: list[Slice] | None = None  # (None: read with the change's write)
    with waiting_lock(engine, LOCK, wait) as held:
        if held:
            with engine.connect() as conn:
                changed = _by_day(_read(conn, hours))
            jobs, marks = _plan(engine, changed)
        else:
            log.info("rollups: the refresh is busy: a change's days are marked")
            written.busy = True
        began = time.perf_counter()
        try:
            for job in jobs:
                prestage(engine, job, change)
        except Exception:
            log.exception("rollups: summing a change failed; its days are marked instead")
            _unstage(engine, jobs)
            jobs, marks = [], _every(changed)
        summed = time.perf_counter()
        with engine.begin() as conn:
            if marks is None:
                _written_with_marks(conn, change, hours)
            else:
                change.write(conn)
                mark_slices(conn, marks)
            for job in jobs:
                swap_in(conn, job.day, change.rollups)
            if jobs:  # a stamp readers see, as after a refresh (app.dashboard.versions)
                write_checkpoint(conn, "rollups", "refresh", datetime.now(UTC).isoformat())
    if jobs:
        log.info(
            "rollups: %d day(s) summed with a change in %.2f s, written with it in %.2f s",
            len(jobs),
            summed - began,
            time.perf_counter() - summed,
        )
        vacuum_staged(engine)  # (the staged rows it wrote and deleted: outside the lock)
    written.rebuilt = [job.day for job in jobs]
    return written


def _written_with_marks(conn: Connection, change: Change, hours: Hours) -> None:
    """`change` written and its hours marked, read after the write (see `write_change`)."""
    wait_transaction_lock(conn, CHANGE_LOCK)
    change.write(conn)
    mark_slices(conn, _every(_by_day(_read(conn, hours))))


def _read(conn: Connection, hours: Hours) -> Iterable[Slice]:
    return hours(conn) if callable(hours) else hours


def _by_day(hours: Iterable[Slice]) -> dict[date, set[int | None]]:
    changed: dict[date, set[int | None]] = {}
    for day, hour in hours:
        changed.setdefault(day, set()).add(hour)
    return changed


def _unstage(engine: Engine, jobs: Iterable[Rebuild]) -> None:
    """What a failed prestaging left of its days' staged rows, deleted (readers never read
    them, as no mark of theirs is listed; the next staging of the day would replace them)."""
    try:
        with engine.begin() as conn:
            for job in jobs:
                clear_staged(conn, job.day)
    except Exception:
        log.exception("rollups: the staged rows of a failed change stay until their day is staged")


def _plan(
    engine: Engine, changed: Mapping[date, set[int | None]]
) -> tuple[list[Rebuild], list[Slice]]:
    """The days to prestage, each as its rows are stored (hour slices or whole), and the marks
    to write instead (see the module)."""
    with engine.connect() as conn:
        sliced = {as_date(v) for v in conn.execute(select(rollup_sliced.c.day)).scalars()}
        stale = dirty_in(conn, None, None)
    jobs: list[Rebuild] = []
    marks: list[Slice] = []
    for day, hours in sorted(changed.items()):
        # With the hours marked already: more than a few would stale the live day whole.
        marked = {h for d, h in stale.hours if d == day}
        few = day in sliced and None not in hours and len(hours | marked) <= MAX_STALE_HOURS
        if few or day in stale.days:
            marks += [(day, hour) for hour in hours]
        else:
            jobs.append(Rebuild(day, None, sliced=day in sliced))
    if len(jobs) > MAX_DAYS:
        return [], _every(changed)
    return jobs, marks


def _every(changed: Mapping[date, set[int | None]]) -> list[Slice]:
    return [(day, hour) for day, hours in changed.items() for hour in hours]


def prestage(engine: Engine, job: Rebuild, change: Change) -> None:
    """The rollups that `change` changes, of `job`'s day (a whole day), summed into their
    twins with its rows in place of the stored ones they replace: the pairs and the GPU
    rollups' twins in one commit (they read its temporary tables), then a commit per request
    rollup's twin. Under the refresh lock: the day's staged rows, whatever they were, are
    replaced."""
    day = job.day
    spans = Stale((day,), ()).periods()
    hour = row_hour(job, Request.started_at)
    with engine.begin() as conn:
        read_settings(conn)
        clear_staged(conn, day)
        read = change.sources(conn)
        write_pairs(conn, day, spans, hour, rollup_staged_pairs, read.factors, read.shares)
        if read.shares is not None:
            rebuild_gpu_slices(conn, day, spans, hour, TWINS.__getitem__, read.shares)
    for table in ORDER:
        with engine.begin() as conn:
            read_settings(conn)
            write_twin(conn, table, day)
    with engine.begin() as conn:
        conn.execute(delete(rollup_staged_pairs).where(rollup_staged_pairs.c.day == day))


def swap_in(conn: Connection, day: date, rollups: Iterable[Table] = ORDER) -> None:
    """A prestaged day's rows of these rollups in place of the stored ones (in the transaction
    that writes the change they were summed with)."""
    invalidate(conn, [day])  # its week's sums no longer hold (`app.rollups.weeks`)
    replace_rows(conn, rollups, day)
