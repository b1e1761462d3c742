"""Late spans of a past day written with the rollup rows they change, in the load's own
transaction: no mark, so readers never read that day from the base tables for them.

A mark (`app.rollups.dirty`) sends every reader of its day to the base tables until a refresh
rebuilds the day. On a live day that costs little: the day is stored as hour slices and a mark
stales an hour. A past day is stored whole, and a span arriving late for it (more than
`LIVE_GRACE` into the next day: a slow exporter, a trace file uploaded hours late) would stale
all of it: seconds of base-table reads for every page, until the next refresh has staged it.
So a batch of at most PATCH_MAX requests on at most PATCH_DAYS days (an OTLP export, a batch of
a trace file collected late), whose requests and calls all fall on such days, patches their
rows instead:

1. `begin`, before the load, checks that every day the batch touches (its requests' stored
   days, its candidates' and its calls' days) is *settled*: before the live days
   (`app.rollups.refresh.live_from`), not sliced, unmarked and summed (it has rollup rows).
   Only then does it take the refresh lock until the transaction ends (`transaction_lock`: no
   refresh, staging, swap or compaction replaces those days' rows before this transaction
   commits), on PostgreSQL `CHANGE_LOCK` too (a true-up or re-allocation writing its change
   with marks: `app.rollups.swap`); on SQLite it writes first, to hold the database's write
   lock. It checks again, then reads the batch's requests as the rollups count them now,
   signed -1, into temporary tables (and checks that they lie on the days it checked): their
   pairs (`app.rollups.day_pairs`), their GPU cells (`app.rollups.gpu`), and their calls on
   the batch's call days by call day (`app.rollups.call_days`; a load adds calls and never
   changes one).
2. The load writes the batch (PostgreSQL's trigger on a moved request stands aside for it:
   migration 0020).
3. `Patch.apply` reads them again, signed +1, and merges the sums into the rollups
   (`app.rollups.merge`): each rollup's rows of the groups the change touches are summed with
   it and written back, a group that sums to nothing deleted, so that the rows are those a
   rebuild writes; the spread GPU requests' rows of the batch's requests are replaced; the
   weekly rollups' rows (`app.rollups.weeks`) of the weeks whose sums hold those days are
   merged likewise. The dashboard's stamp moves (checkpoint `rollups/refresh`).

The batch's trace ids are read from a temporary table (`rollup_patch_ids`), so that a batch of
thousands costs no parameter per id.

A bulk run (`bounded`: `spendguard ingest`, a run of the traces collector) patches at most
PATCH_BUDGET requests in all, then marks: a day sent again whole costs one rebuild, not a
patch per batch.

Anything else marks, as before: a bigger batch (a bulk load: one rebuild costs less than many
patches), a day that is not settled, the locks held elsewhere, and a request that the load
moves to another day (a late root from the day before): a
re-price, or a true-up or re-allocation summing its change, may have read the request on its
old day before the patch commits, and they mark or rebuild the day they read
(`apply` returns False and the caller marks). The true-up and the re-allocation read the hours
of their change once no patch can commit before it (`app.rollups.swap.write_change`). A mark
written by another writer wins: readers read its day from the base tables until the refresh
rebuilds it, whatever a patch wrote.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Date,
    Integer,
    Select,
    String,
    delete,
    func,
    insert,
    literal,
    select,
)
from sqlalchemy.orm import Session
from sqlalchemy.schema import CreateTable

from app.rollups import call_days as call_days_rollup
from app.rollups import gpu
from app.rollups.day_pairs import ORDER, _pairs, _weighted
from app.rollups.merge import (
    GPU,
    insert_from,
    merge,
    merge_weeks,
    prepare,
    summed_weeks,
    temporary,
)
from app.rollups.refresh import CHANGE_LOCK, LOCK, live_from
from app.rollups.stale import Stale, hour_of
from app.warehouse.checkpoints import write_checkpoint
from app.warehouse.locks import transaction_lock
from app.warehouse.tables import LlmCall, Request
from app.warehouse.tables_rollup import (
    GPU_SUMMED,
    WHOLE_DAY,
    rollup_call_days,
    rollup_daily,
    rollup_daily_gpu_spread,
    rollup_dirty,
    rollup_sliced,
)
from app.warehouse.tables_staged import pair_columns
from app.warehouse.tables_weekly import WEEKLY
from app.warehouse.types import as_date

# At most this many requests in a batch that patches: an OTLP export (a few hundred spans), or
# a batch of a trace file collected late (`app.ingest.BATCH_SPANS` spans, a few thousand
# requests). At 10 million requests a patch of 5,000 costs about 3 s (SQLite holds its write
# lock that long), a day's rebuild 12 s. A bigger batch (a bulk load) marks its days for one
# rebuild each, and the batches after it then mark too.
PATCH_MAX = 5000
# At most this many days in a batch that patches: a patch reads every row of its days and of
# their weeks (a batch of a trace file in time order lands on one or two, an exporter's
# backlog on a few).
PATCH_DAYS = 3
# At most this many requests patched by one bulk run (`bounded`: a trace file's ingest, a run
# of the traces collector), about a day's rebuild of patching; then its batches mark. A day
# sent again whole (every batch small, every day summed) costs one rebuild, not a patch per
# batch; the receiver's batches are not bounded.
PATCH_BUDGET = 20_000
_CHUNK = 5000  # trace ids a statement reads before the locks (a bound parameter each)
Hour = tuple[date, int]

_BUDGET: ContextVar[list[int] | None] = ContextVar("spendguard_patch_budget", default=None)


@contextmanager
def bounded(requests: int | None = None) -> Iterator[None]:
    """In the block (a bulk run), batches patch at most `requests` requests in all (default
    PATCH_BUDGET), and mark once they would go past it."""
    token = _BUDGET.set([PATCH_BUDGET if requests is None else requests])
    try:
        yield
    finally:
        _BUDGET.reset(token)


_SETTING = "spendguard.rollup_patch"  # read by PostgreSQL's trigger (migration 0020)


def _sign() -> Column[int]:
    return Column("sign", Integer)  # -1: as the rollups count it before the load; +1: after


# The batch's requests before and after the load: pairs, GPU cells, calls by call day.
_pairs_t = temporary("rollup_patch_pairs", *pair_columns(), _sign())
_cells_t = temporary(  # a day's GPU shares' table (`app.rollups.gpu`), by request day
    "rollup_patch_gpu",
    Column("day", Date),
    *(Column(c.name, c.type) for c in gpu.DAY_SHARES.c),
    _sign(),
)
_ids_t = temporary("rollup_patch_ids", Column("trace_id", String(32), primary_key=True))
_calls_t = temporary(
    "rollup_patch_calls",
    Column("day", Date),
    Column("provider", String(64)),
    Column("model", String(256)),
    *(Column(name, BigInteger) for name in call_days_rollup.MEASURES),
    _sign(),
)
_TEMPORARY = (_ids_t, _pairs_t, _cells_t, _calls_t)
_TRACES = select(_ids_t.c.trace_id)  # the batch's trace ids, once under the locks


@dataclass(slots=True)
class Patch:
    """A batch's patch under way (`begin`; its requests' trace ids are in `rollup_patch_ids`,
    on the connection): the hours the caller marks if the patch is dropped, the stored
    requests' days before the load, and the settled days it may write."""

    hours: set[Hour]
    stored: dict[str, date]
    days: set[date]
    call_days: set[date]  # the days of the batch's calls

    def apply(self, session: Session) -> bool:
        """After the load: the batch's requests read again and merged into the rollups; False
        (nothing merged) when the load moved a request to another day, or a request or call
        is on a day not settled, for the caller to mark `hours` instead. (A request that
        moves day leaves rows that other writers — a re-price, a true-up, a re-allocation —
        may have read on its old day before this commits: those writers mark, or rebuild,
        the day they saw.)"""
        conn = session.connection()
        _trigger(conn, on=False)
        now = _request_days(conn, _TRACES)
        self.hours |= set(now.values())
        if any(self.stored.get(trace, day) != day for trace, (day, _) in now.items()):
            return False
        _read(conn, self.call_days, +1)
        if not _read_days(conn) <= self.days:
            return False
        weeks = summed_weeks(conn, self.days)
        for table in ORDER:
            keys, measures, where = _weighted(table, _pairs_t)
            p = _pairs_t.c
            delta = select(  # (the keys hold the pairs' hour: WHOLE_DAY)
                p.day,
                *keys,
                *(func.sum(m * p.sign).label(name) for name, m in measures.items()),
            ).where(*where)
            merge(conn, table, delta.group_by(p.day, *keys), self.days)
            if table in WEEKLY:
                merge_weeks(conn, table, weeks)
        c = _cells_t.c
        for table in GPU:
            keys = [c[col.name] for col in table.c if col.name not in ("day", "hour", *GPU_SUMMED)]
            delta = select(
                c.day,
                literal(WHOLE_DAY).label("hour"),
                *keys,
                func.sum(c.single * c.sign).label("requests"),
                func.sum(c.calls * c.sign).label("calls"),
                func.sum(c.gpu_cost_nanousd * c.sign).label("gpu_cost_nanousd"),
            )
            merge(conn, table, delta.group_by(c.day, *keys), self.days)
        _replace_spread(conn, self.days)
        k = _calls_t.c
        delta = select(
            k.day,
            literal(WHOLE_DAY).label("hour"),
            k.provider,
            k.model,
            *(func.sum(k[name] * k.sign).label(name) for name in call_days_rollup.MEASURES),
        ).group_by(k.day, k.provider, k.model)
        merge(conn, rollup_call_days, delta, self.days)
        write_checkpoint(conn, "rollups", "refresh", datetime.now(UTC).isoformat())
        return True


def begin(
    session: Session,
    trace_ids: Iterable[str],
    candidates: Collection[Hour],
    calls: Collection[Hour],
) -> Patch | None:
    """Before a batch's load: a `Patch` when the batch may patch the rollups (the UTC days and
    hours of its request `candidates` and of its `calls`), its requests read as the rollups
    count them now; None when it marks. The checks run first without a lock (most
    batches are live, or not small: the lock is not taken for them), then again under the
    locks."""
    ids = list(dict.fromkeys(trace_ids))
    budget = _BUDGET.get()
    if not ids or len(ids) > min(PATCH_MAX, budget[0] if budget else PATCH_MAX):
        return None
    hours = {*candidates, *calls}
    conn = session.connection()
    first_live = _first_live(conn, hours)
    if first_live is None or any(day >= first_live for day, _ in hours):
        return None  # (the live ingest's batches: one cheap read)
    # The batch's own days first (a bulk load's days were never summed: no read per request),
    # then those its stored requests add, if any.
    own = _settled_days(conn, hours, {}, first_live)
    if own is None:
        return None
    stored_now = _request_days(conn, ids)
    if not {day for day, _ in stored_now.values()} <= own and (
        _settled_days(conn, hours, stored_now, first_live) is None
    ):
        return None
    postgresql = conn.dialect.name == "postgresql"
    if not transaction_lock(session, LOCK):
        return None
    if postgresql and not transaction_lock(session, CHANGE_LOCK):
        return None  # (a true-up or re-allocation writing its change and marks: `swap`)
    # (No row locks on the stored requests: the load's own upserts take theirs in key order,
    # and locking some first could deadlock with another load. A writer that changes one
    # meanwhile marks its days, and its marks win; one that moves it makes `apply` decline.)
    if not postgresql:
        # A write first, so that this transaction takes the database's write lock before it
        # reads (a read snapshot could not become a write once another writer commits).
        write_checkpoint(conn, "rollups", "refresh", datetime.now(UTC).isoformat())
    for table in _TEMPORARY:
        conn.execute(CreateTable(table, if_not_exists=True))
        conn.execute(delete(table))  # (SQLite keeps a temporary table's rows past a commit)
    conn.execute(insert(_ids_t), [{"trace_id": trace} for trace in ids])
    if postgresql:  # its size, for the planner (at 10M requests reads a third faster with it)
        conn.exec_driver_sql(f"ANALYZE {_ids_t.name}")
    stored = _request_days(conn, _TRACES)
    days = _settled_days(conn, hours, stored, _first_live(conn, hours))
    if days is None:
        return None
    prepare(conn)
    call_days = {day for day, _ in calls}
    _read(conn, call_days, -1)
    if not _read_days(conn) <= days:
        return None
    _trigger(conn, on=True)
    if budget:
        budget[0] -= len(ids)
    stored_days = {trace: day for trace, (day, _) in stored.items()}
    return Patch({*hours, *stored.values()}, stored_days, days, call_days)


def _settled_days(
    conn: Connection, hours: Collection[Hour], stored: dict[str, Hour], first_live: date | None
) -> set[date] | None:
    """The days a batch touches (those of `hours`: its candidates' and calls'; and its
    requests' stored days) when all are settled (before `first_live`: `_first_live`), else
    None."""
    days = {day for day, _ in (*hours, *stored.values())}
    if (
        not days
        or len(days) > PATCH_DAYS
        or first_live is None
        or max(days) >= first_live
        or not _settled(conn, days)
    ):
        return None
    return days


def _read_days(conn: Connection) -> set[date]:
    """The days of what the temporary tables hold: the requests' and the calls'."""
    days = select(_pairs_t.c.day).union(select(_cells_t.c.day), select(_calls_t.c.day))
    return {as_date(v) for v in conn.execute(days).scalars()}


def _first_live(conn: Connection, hours: Iterable[Hour]) -> date | None:
    """The first live day once these (candidate) hours are stored too."""
    last = conn.execute(select(func.max(Request.started_at))).scalar_one_or_none()
    starts = [datetime.combine(day, time(hour)) for day, hour in hours]
    if last is not None:
        starts.append(last.replace(tzinfo=None))
    return live_from(max(starts)) if starts else None


def _request_days(conn: Connection, traces: Sequence[str] | Select[Any]) -> dict[str, Hour]:
    """The stored UTC day and hour of each of these requests (`traces`: their trace ids, or a
    select of them)."""
    r = Request
    query = select(r.trace_id, func.date(r.started_at), hour_of(r.started_at))
    chunks = [traces] if isinstance(traces, Select) else _chunks(traces)
    found = (row for chunk in chunks for row in conn.execute(query.where(r.trace_id.in_(chunk))))
    return {trace: (as_date(day), int(hour)) for trace, day, hour in found}


def _chunks(ids: Sequence[str]) -> list[Sequence[str]]:
    return [ids[i : i + _CHUNK] for i in range(0, len(ids), _CHUNK)]


def _sliced(conn: Connection, days: Collection[date]) -> bool:
    s = rollup_sliced.c
    return conn.execute(select(s.day).where(s.day.in_(sorted(days))).limit(1)).first() is not None


def _settled(conn: Connection, days: Collection[date]) -> bool:
    """Whether all these days are stored whole, unmarked, and summed (a day never summed is
    a bulk load's: it marks, so that its next batches mark too and one rebuild sums them)."""
    listed = sorted(days)
    if _sliced(conn, days):
        return False
    m = rollup_dirty.c
    if conn.execute(select(m.id).where(m.day.in_(listed)).limit(1)).first() is not None:
        return False
    summed = (
        select(rollup_daily.c.day)
        .where(rollup_daily.c.day.in_(listed))
        .union(select(rollup_call_days.c.day).where(rollup_call_days.c.day.in_(listed)))
    )
    return {as_date(v) for v in conn.execute(summed).scalars()} >= set(days)


def _trigger(conn: Connection, *, on: bool) -> None:
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"SELECT set_config('{_SETTING}', %s, true)", ("on" if on else "off",))


def _read(conn: Connection, call_days: Collection[date], sign: int) -> None:
    """The batch's requests (`_TRACES`) as the rollups count them (pairs, GPU cells), and their
    calls on `call_days` (the batch's: a load adds calls and never changes one) by call day,
    signed, into the temporary tables."""
    signed = literal(sign).label("sign")
    pairs = _pairs(None, [], literal(WHOLE_DAY), conn.dialect.name, traces=_TRACES)  # type: ignore[arg-type]
    insert_from(conn, _pairs_t, pairs.add_columns(signed))
    cells = gpu._shares([], literal(WHOLE_DAY), traces=_TRACES)
    insert_from(conn, _cells_t, cells.add_columns(signed))
    if call_days:
        c = LlmCall
        on_days = [c.trace_id.in_(_TRACES), Stale(tuple(call_days)).covers(c.started_at)]
        day = func.date(c.started_at)
        calls = call_days_rollup._summed(day, on_days, by_day=True, keys=[])
        insert_from(conn, _calls_t, calls.add_columns(signed))


def _replace_spread(conn: Connection, days: Collection[date]) -> None:
    """The spread GPU requests' rows of the batch's requests (`rollup_daily_gpu_spread`)
    replaced by their cells now."""
    s, c = rollup_daily_gpu_spread.c, _cells_t.c
    conn.execute(
        delete(rollup_daily_gpu_spread).where(s.day.in_(sorted(days)), s.trace_id.in_(_TRACES))
    )
    names = [col.name for col in rollup_daily_gpu_spread.c]
    rows = select(*(c[n] for n in names)).where(c.sign == 1, c.single == 0)
    insert_from(conn, rollup_daily_gpu_spread, rows)
