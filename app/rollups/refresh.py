"""Rebuild the rollups of the dirty days, one UTC day at a time.

A day is rebuilt whole from the base tables, never patched: its rollup rows are deleted and
written again, with the marks they answer, in one transaction, so a refresh that fails leaves
the rollups as they were and running it twice gives the same rows. One pass reads the requests
of the day (the `requests.started_at` index) with their calls, GPU shares and true-up factors
(by primary key) into a pairs table, one row per request and (model, provider); each rollup is
a GROUP BY of that table (`app.rollups.day_pairs`). A whole day is staged first, a commit
at a time (`app.rollups.staging`): its pairs, which readers then read instead of the day's base
tables, then the rollups' twins, which they read instead of the pairs; then the rollups are
written from the twins. The GPU rollups read the day's GPU shares likewise
(`app.rollups.gpu`). `rollup_call_days`, keyed by the calls' own day, is summed from
the calls that started that day (`app.rollups.call_days`), in the same transaction as the
rollups. Live days are rebuilt an hour at a time (`plan`); whole weeks are summed at the end
(`app.rollups.weeks`).

One refresh at a time per warehouse (named lock `rollup-refresh`); a refresh that finds the lock
held returns at once (`busy`), and the marks it did not handle stay for the next one.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import (
    Connection,
    Engine,
    delete,
    func,
    insert,
    literal,
    select,
)

from app.rollups.call_days import rebuild_call_slices
from app.rollups.day_pairs import rebuild_request_slices
from app.rollups.gpu import rebuild_gpu_slices
from app.rollups.staging import (
    Rebuild,
    read_settings,
    row_hour,
    stage_pairs,
    stage_twins,
    staged,
    write_staged,
)
from app.rollups.stale import MAX_STALE_HOURS, Stale, keys_and_sums
from app.rollups.weeks import build_weeks, invalidate
from app.warehouse.checkpoints import write_checkpoint
from app.warehouse.engine import session_scope
from app.warehouse.locks import named_lock
from app.warehouse.tables import LlmCall, Request
from app.warehouse.tables_rollup import (
    ROLLUPS,
    WHOLE_DAY,
    rollup_call_days,
    rollup_dirty,
    rollup_sliced,
)
from app.warehouse.tables_staged import TWINS, rollup_staged_pairs
from app.warehouse.types import as_date

log = logging.getLogger("spendguard.rollups")

LOCK = "rollup-refresh"
# PostgreSQL: held by a true-up or re-allocation writing its change with marks, not rebuilds
# (`app.rollups.swap`: the refresh lock was busy), for its transaction; a patch of late spans
# (`app.rollups.patch`) needs it too.
CHANGE_LOCK = "rollup-change"
MAX_PASSES = 3  # days marked while refreshing are taken in the next pass, a few times at most
# Readers start a rebuild of up to this many days (and read them from the base tables meanwhile).
LAZY_MAX_DAYS = 7
# The live days, stored as hour slices: the latest day with requests, and the one before it
# until the latest request is this far into its day (spans arriving late across midnight).
# Hour slices of a busy day hold about five times the rows of the day whole, which every
# per-user question reads: a second live day costs every page most of the day.
LIVE_GRACE = timedelta(hours=2)
# Every rollup a day's rebuild replaces (`rollup_call_days` by the calls' own day and hour).
_ALL = (*ROLLUPS, rollup_call_days)


@dataclass(slots=True)
class RefreshResult:
    days: int = 0  # rebuilds: of a day, or of some hours of a sliced day
    seconds: float = 0.0
    busy: bool = False  # another process was refreshing: nothing done here
    compacted: int = 0  # sliced days no longer live, summed into whole-day rows
    weeks: int = 0  # weeks summed into the weekly rollups (`app.rollups.weeks`)


def dirty_days(conn: Connection) -> list[date]:
    """Every day with a mark (whole or hours), oldest first."""
    d = rollup_dirty.c.day
    return [as_date(v) for v in conn.execute(select(d).distinct().order_by(d)).scalars()]


def plan(conn: Connection) -> list[Rebuild]:
    """What the marks ask for, oldest day first. A day that is not live is rebuilt whole into
    WHOLE_DAY rows (leaving `rollup_sliced` if it was there). A live day is rebuilt whole into
    hour slices when it is not sliced yet, is marked whole or has many hours marked, else only
    its marked hours. The plan holds while the caller holds the refresh lock (`refresh`): no
    one else rebuilds, slices or compacts meanwhile."""
    marks: dict[date, set[int | None]] = {}
    for day, hour in conn.execute(select(rollup_dirty.c.day, rollup_dirty.c.hour).distinct()):
        marks.setdefault(as_date(day), set()).add(hour)
    if not marks:
        return []
    sliced = {as_date(v) for v in conn.execute(select(rollup_sliced.c.day)).scalars()}
    live_from = _live_from(conn)
    jobs = []
    for day, hours in sorted(marks.items()):
        if live_from is None or day < live_from:
            jobs.append(Rebuild(day, None, sliced=False))
        elif None in hours or day not in sliced or len(hours) > MAX_STALE_HOURS:
            jobs.append(Rebuild(day, None, sliced=True))  # whole, into hour slices
        else:
            jobs.append(Rebuild(day, tuple(sorted(h for h in hours if h is not None)), True))
    return jobs


def _live_from(conn: Connection) -> date | None:
    """The first live day (None: no requests): see `live_from`."""
    last = conn.execute(select(func.max(Request.started_at))).scalar_one_or_none()
    return None if last is None else live_from(last)


def live_from(last: datetime) -> date:
    """The first live day when the latest request started at `last` (UTC): its day, or the
    day before during the first LIVE_GRACE of its day."""
    midnight = last.replace(hour=0, minute=0, second=0, microsecond=0)
    return last.date() - timedelta(days=1 if last - midnight < LIVE_GRACE else 0)


def refresh(engine: Engine, progress: Callable[[date], None] | None = None) -> RefreshResult:
    """Rebuild every dirty day (or hour), then compact the sliced days no longer live and sum
    the weeks whose days are all whole and current; `busy` when another refresh holds the
    lock."""
    result = RefreshResult()
    started = time.perf_counter()
    staged_days = False  # (`staged`, the function, is staging's test of one job)
    with named_lock(engine, LOCK) as held:
        if not held:
            result.busy = True
            return result
        for _ in range(MAX_PASSES):
            with engine.connect() as conn:
                jobs = plan(conn)
            if not jobs:
                break
            whole = [job for job in jobs if job.hours is None]
            staged_days = staged_days or bool(whole)
            if 1 < len(whole) <= LAZY_MAX_DAYS:
                # Readers take each from its staged pairs as soon as they are committed, the
                # latest (what pages show most) first; then from its twins; then the
                # rollups are written.
                latest_first = sorted(whole, key=lambda job: job.day, reverse=True)
                for job in latest_first:
                    stage_pairs(engine, job)
                for job in latest_first:
                    stage_twins(engine, job)
            for job in jobs:
                rebuild(engine, job)
                result.days += 1
                if progress is not None:
                    progress(job.day)
        result.compacted = compact(engine)
        with engine.connect() as conn:
            live_from = _live_from(conn)
        result.weeks = build_weeks(engine, live_from)
        if result.days or result.compacted:  # a stamp readers see (app.dashboard.versions)
            with session_scope(engine) as session:
                write_checkpoint(session, "rollups", "refresh", datetime.now(UTC).isoformat())
    if staged_days:
        vacuum_staged(engine)
    result.seconds = time.perf_counter() - started
    if result.days:
        log.info("rollups: %d rebuild(s) in %.2f s", result.days, result.seconds)
    return result


def vacuum_staged(engine: Engine) -> None:
    """PostgreSQL: the staged tables vacuumed, after a refresh that staged days. Every staging
    writes and deletes a day's pairs and twins (about 180,000 pairs a day at 10 million
    requests over 90 days), which stay as dead rows until a vacuum, and autovacuum may not
    reach them for long (busy with the rollups after a rebuild of many days). Outside the
    refresh lock: a vacuum blocks no reader or writer (one that would trim the file's end gives
    way to waiting readers)."""
    if engine.dialect.name != "postgresql":
        return
    names = ", ".join(table.name for table in (rollup_staged_pairs, *TWINS.values()))
    with engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql(f"VACUUM {names}")


def refresh_in_background(engine: Engine, max_days: int = LAZY_MAX_DAYS) -> threading.Thread | None:
    """Start a refresh in a thread of this process when a few days (at most `max_days`) are
    dirty and no refresh started here is still running; the thread, or None. Readers call it
    and do not wait: they read the dirty days from the base tables meanwhile. More days than
    that (a migrated warehouse, a re-price of months) are `spendguard ingest`'s and the
    worker's work."""
    key = engine.url.render_as_string(hide_password=False)
    with _BACKGROUND_LOCK:
        running = _BACKGROUND.get(key)
        if running is not None and running.is_alive():
            return None
        with engine.connect() as conn:
            days = dirty_days(conn)
        if not days or len(days) > max_days:
            return None
        thread = threading.Thread(
            target=_refresh_logged, args=(engine,), name="rollup-refresh", daemon=True
        )
        _BACKGROUND[key] = thread
        thread.start()
        return thread


_BACKGROUND: dict[str, threading.Thread] = {}
_BACKGROUND_LOCK = threading.Lock()


def wait_for_background(timeout: float = 60.0) -> None:
    """Wait for the background refreshes started in this process (tests, before they reset
    a warehouse under a refresh)."""
    with _BACKGROUND_LOCK:
        threads = list(_BACKGROUND.values())
    for thread in threads:
        thread.join(timeout)


def _refresh_logged(engine: Engine) -> None:
    try:
        refresh(engine)
    except Exception:  # a thread has nobody to raise to; the marks stay for the next refresh
        log.exception("rollups: background refresh failed; the dirty days stay marked")


def rebuild_day(engine: Engine, day: date) -> None:
    """Rebuild one day whole, into WHOLE_DAY rows."""
    rebuild(engine, Rebuild(day, None, sliced=False))


def rebuild(engine: Engine, job: Rebuild) -> None:
    """One `Rebuild` (under the refresh lock, as `plan` is): its rows deleted and summed
    again. Some hours of a sliced day in one transaction, from the base tables: their marks
    deleted first (a mark written after that stays for the next refresh, and its rows are
    read after it anyway). A whole day staged (`stage`) unless it is staged after every mark
    it has (or its twins only, when its pairs are), then its staged rows written
    (`write_staged`)."""
    if job.hours is None:
        with engine.connect() as conn:
            ready = staged(conn, job)
            paired = not ready and staged(conn, job, pairs=True)
        if not ready:
            if not paired:
                stage_pairs(engine, job)
            stage_twins(engine, job)
        write_staged(engine, job)
        return
    day, hours = job.day, list(job.hours)
    with engine.begin() as conn:
        read_settings(conn)
        invalidate(conn, [day])  # its week's sums no longer hold (`app.rollups.weeks`)
        marks = rollup_dirty.c
        conn.execute(delete(rollup_dirty).where(marks.day == day, marks.hour.in_(hours)))
        for table in _ALL:
            conn.execute(delete(table).where(table.c.day == day, table.c.hour.in_(hours)))
        _rebuild_rows(conn, job, Stale((), tuple((day, h) for h in hours)).periods())


def _rebuild_rows(conn: Connection, job: Rebuild, spans: list[tuple[datetime, datetime]]) -> None:
    """Every rollup's rows of the requests (and, for `rollup_call_days`, the calls) that started
    in `spans` (of the job's day)."""
    rebuild_request_slices(conn, job.day, spans, row_hour(job, Request.started_at))
    # The GPU shares of the requests: moved by a re-allocation and by any change to the
    # requests' endpoint, user or team, which mark their day too.
    rebuild_gpu_slices(conn, job.day, spans, row_hour(job, Request.started_at))
    # The reconciliation's, by the calls' own day and hour.
    rebuild_call_slices(conn, job.day, spans, row_hour(job, LlmCall.started_at))


def compact(engine: Engine) -> int:
    """Sum each sliced day that is no longer live and has no mark into WHOLE_DAY rows (the
    slices add up: each request and call is in one hour), and take it off `rollup_sliced`;
    the number of days compacted. Readers read one state (`app.warehouse.engine.snapshot`), so
    none sees a day half compacted or its marks and rows from two states."""
    with engine.connect() as conn:
        live_from = _live_from(conn)
        marked = select(rollup_dirty.c.day)
        sliced = select(rollup_sliced.c.day).where(rollup_sliced.c.day.not_in(marked))
        days = sorted(as_date(v) for v in conn.execute(sliced).scalars())
    days = [d for d in days if live_from is None or d < live_from]
    for day in days:
        with engine.begin() as conn:
            if conn.execute(select(rollup_dirty.c.id).where(rollup_dirty.c.day == day)).first():
                continue  # marked since: the next refresh rebuilds it whole
            invalidate(conn, [day])
            # (A mark committed during the compaction is on a day no longer sliced: readers
            # take that day whole from the base tables, and the next refresh rebuilds it.)
            for table in _ALL:
                c = table.c
                keys, sums = keys_and_sums(table)
                query = (
                    select(c.day, *keys, *sums, literal(WHOLE_DAY).label("hour"))
                    .where(c.day == day, c.hour != WHOLE_DAY)
                    .group_by(c.day, *keys)
                )
                names = [col.name for col in query.selected_columns]
                conn.execute(insert(table).from_select(names, query))
                conn.execute(delete(table).where(c.day == day, c.hour != WHOLE_DAY))
            conn.execute(delete(rollup_sliced).where(rollup_sliced.c.day == day))
    if days:
        log.info("rollups: %d day(s) compacted from hour slices", len(days))
    return len(days)
