"""Rebuild the rollups of the dirty days, one UTC day per transaction.

A day is rebuilt whole from the base tables, never patched: its marks are deleted, its rollup
rows deleted and written again, in one transaction, so a refresh that fails changes nothing and
running it twice gives the same rows. One pass reads the requests of the day (the
`requests.started_at` index) with their calls, GPU shares and true-up factors (by primary key)
into a temporary table, one row per request and (model, provider); each rollup is a GROUP BY of
that table. The GPU rollups read the day's GPU shares likewise (`app.rollups.gpu`).
`rollup_call_days`, keyed by the calls' own day, is summed from the calls that started that day
(`app.rollups.call_days`), in the same transaction.

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
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Date,
    Engine,
    Integer,
    MetaData,
    Select,
    String,
    Table,
    and_,
    case,
    delete,
    func,
    insert,
    literal,
    select,
)
from sqlalchemy.schema import CreateTable

from app.rollups.call_days import rebuild_call_slices
from app.rollups.gpu import rebuild_gpu_slices
from app.rollups.stale import MAX_STALE_HOURS, Stale, hour_of, in_spans
from app.rollups.weeks import build_weeks, invalidate
from app.warehouse.checkpoints import write_checkpoint
from app.warehouse.engine import READ_SETTINGS, session_scope
from app.warehouse.locks import named_lock
from app.warehouse.tables import LlmCall, Request
from app.warehouse.tables_gpu import GpuAllocation
from app.warehouse.tables_rollup import (
    GPU_ROLLUPS,
    MEASURES,
    PAIR_MID,
    PAIR_START,
    ROLLUPS,
    SUMMED,
    WHOLE_DAY,
    rollup_call_days,
    rollup_daily,
    rollup_daily_calls,
    rollup_daily_set_calls,
    rollup_daily_user_calls,
    rollup_daily_user_set_calls,
    rollup_daily_user_totals,
    rollup_daily_users,
    rollup_dirty,
    rollup_sliced,
)
from app.warehouse.tables_rollup import (
    rollup_daily_call_sets as SETS,
)
from app.warehouse.tables_trueup import TrueUpFactor, factor_join, trued_cost
from app.warehouse.types import as_date

log = logging.getLogger("spendguard.rollups")

LOCK = "rollup-refresh"
MAX_PASSES = 3  # days marked while refreshing are taken in the next pass, a few times at most
# Readers start a rebuild of up to this many days (and read them from the base tables meanwhile).
LAZY_MAX_DAYS = 7
# The live days, stored as hour slices: the latest day with requests and the one before it.
LIVE_DAYS = 2
# Every rollup a day's rebuild replaces (`rollup_call_days` by the calls' own day and hour).
_ALL = (*ROLLUPS, rollup_call_days)


@dataclass(slots=True)
class RefreshResult:
    days: int = 0  # rebuilds: of a day, or of some hours of a sliced day
    seconds: float = 0.0
    busy: bool = False  # another process was refreshing: nothing done here
    compacted: int = 0  # sliced days no longer live, summed into whole-day rows
    weeks: int = 0  # weeks summed into the weekly rollups (`app.rollups.weeks`)


@dataclass(frozen=True, slots=True)
class Rebuild:
    """One transaction of the refresh: a day whole (`hours` None) or some hours of a sliced
    day; `sliced`: the rows are hour slices (the day is live)."""

    day: date
    hours: tuple[int, ...] | None
    sliced: bool


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
    """The first live day: LIVE_DAYS back from the latest day with requests (None: none)."""
    last = conn.execute(select(func.max(Request.started_at))).scalar_one_or_none()
    if last is None:
        return None
    return last.date() - timedelta(days=LIVE_DAYS - 1)


def refresh(engine: Engine, progress: Callable[[date], None] | None = None) -> RefreshResult:
    """Rebuild every dirty day (or hour), then compact the sliced days no longer live and sum
    the weeks whose days are all whole and current; `busy` when another refresh holds the
    lock."""
    result = RefreshResult()
    started = time.perf_counter()
    with named_lock(engine, LOCK) as held:
        if not held:
            result.busy = True
            return result
        for _ in range(MAX_PASSES):
            with engine.connect() as conn:
                jobs = plan(conn)
            if not jobs:
                break
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
    result.seconds = time.perf_counter() - started
    if result.days:
        log.info("rollups: %d rebuild(s) in %.2f s", result.days, result.seconds)
    return result


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
    """One `Rebuild`, in one transaction (under the refresh lock, as `plan` is): its marks
    deleted first (a mark written after that stays for the next refresh, and its rows are read
    after it anyway), its rows deleted and summed again from the base tables."""
    day = job.day
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # One day is a small slice of llm_calls: fetched by primary key, and grouped and
            # sorted in memory (the readers' settings).
            for setting in READ_SETTINGS:
                conn.exec_driver_sql(f"SET LOCAL {setting}")
        marks = rollup_dirty.c
        invalidate(conn, [day])  # its week's sums no longer hold (`app.rollups.weeks`)
        if job.hours is None:
            target = Stale((day,), ())
            conn.execute(delete(rollup_dirty).where(marks.day == day))
            for table in _ALL:
                conn.execute(delete(table).where(table.c.day == day))
            conn.execute(delete(rollup_sliced).where(rollup_sliced.c.day == day))
            if job.sliced:
                conn.execute(insert(rollup_sliced).values(day=day))
        else:
            target = Stale((), tuple((day, h) for h in job.hours))
            hours = list(job.hours)
            conn.execute(delete(rollup_dirty).where(marks.day == day, marks.hour.in_(hours)))
            for table in _ALL:
                conn.execute(delete(table).where(table.c.day == day, table.c.hour.in_(hours)))
        spans = target.periods()

        def hour(column: Any) -> Any:
            """The rows' `hour`: of `column` (a start) on a sliced day, else WHOLE_DAY."""
            return hour_of(column) if job.sliced else literal(WHOLE_DAY)

        conn.execute(CreateTable(_day_pairs, if_not_exists=True))
        conn.execute(delete(_day_pairs))
        pairs = _pairs(spans, hour(Request.started_at))
        conn.execute(insert(_day_pairs).from_select(list(pairs.selected_columns.keys()), pairs))
        for table in ROLLUPS:
            if table in GPU_ROLLUPS:
                continue  # below
            if table is SETS:
                conn.execute(_sets_insert(day, conn.dialect.name))
            elif table is rollup_daily_set_calls or table is rollup_daily_user_set_calls:
                conn.execute(_set_calls_insert(table, day, conn.dialect.name))
            else:
                conn.execute(_insert(table, day))
        # The GPU shares of the requests: moved by a re-allocation and by any change to the
        # requests' endpoint, user or team, which mark their day too.
        rebuild_gpu_slices(conn, day, spans, hour(Request.started_at))
        # The reconciliation's, by the calls' own day and hour.
        rebuild_call_slices(conn, day, spans, hour(LlmCall.started_at))


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
                keys = [col for col in c if col.name not in ("day", "hour", *MEASURES)]
                sums = [func.sum(col).label(col.name) for col in c if col.name in MEASURES]
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


# The day being rebuilt, one row per request and (model, provider) it called (one row with
# NULLs for a request without calls): read from the base tables once, summed four ways.
_day_pairs = Table(
    "rollup_day_pairs",
    MetaData(),
    Column("trace_id", String(32)),
    Column("hour", Integer),  # the request's UTC hour, or WHOLE_DAY
    Column("user_id", String(256)),
    Column("endpoint", String(512)),
    Column("team", String(256)),
    Column("model", String(256)),
    Column("provider", String(64)),
    *(Column(name, BigInteger) for name in SUMMED),
    Column("is_first", Integer),  # the request's first row: counts the request once
    Column("is_first_provider", Integer),  # its first provider for this model
    Column("is_first_model", Integer),  # its first model for this provider
    prefixes=["TEMPORARY"],
)


def _pairs(spans: list[tuple[datetime, datetime]], hour: Any) -> Select[Any]:
    """The rows of `_day_pairs` for the requests that started in `spans` (UTC ranges), with
    the flags that keep distinct counts exact; `hour`: the rows' hour (an expression of the
    request's start, or WHOLE_DAY)."""
    r, c, g, f = Request, LlmCall, GpuAllocation, TrueUpFactor
    per_pair = (
        select(
            r.trace_id,
            hour.label("hour"),
            r.user_id,
            r.endpoint,
            r.team,
            c.model,
            c.provider,
            func.count(c.span_id).label("llm_calls"),
            func.coalesce(func.sum(c.input_tokens), 0).label("input_tokens"),
            func.coalesce(func.sum(c.output_tokens), 0).label("output_tokens"),
            func.coalesce(func.sum(c.cost_nanousd), 0).label("token_cost_nanousd"),
            func.coalesce(func.sum(g.gpu_cost_nanousd), 0).label("gpu_cost_nanousd"),
            (func.count(c.span_id) - func.count(c.cost_nanousd)).label("unpriced_calls"),
            func.coalesce(func.sum(trued_cost()), 0).label("trued_cost_nanousd"),
            func.count(f.factor_den).label("trued_up_calls"),
        )
        .select_from(r)
        .outerjoin(c, c.trace_id == r.trace_id)
        .outerjoin(g, and_(g.trace_id == c.trace_id, g.span_id == c.span_id))
        # At most one factor per call; its day spelled out too, so the lookup is by key.
        .outerjoin(f, and_(factor_join(), f.day == func.date(c.started_at)))
        .where(in_spans(r.started_at, spans))
        .group_by(r.trace_id, r.started_at, r.user_id, r.endpoint, r.team, c.model, c.provider)
        .subquery("pairs")
    )
    p = per_pair.c
    first = func.row_number().over(partition_by=p.trace_id, order_by=(p.model, p.provider))
    first_provider = func.min(p.provider).over(partition_by=(p.trace_id, p.model))
    first_model = func.min(p.model).over(partition_by=(p.trace_id, p.provider))
    return select(
        *p,
        case((first == 1, 1), else_=0).label("is_first"),
        case((p.provider == first_provider, 1), else_=0).label("is_first_provider"),
        case((p.model == first_model, 1), else_=0).label("is_first_model"),
    )


def _joined_pairs(dialect: str) -> Any:
    """The aggregate of a request's rows of `_day_pairs` into its pairs' text (without the
    leading PAIR_START)."""
    f = _day_pairs.c
    piece = f.model + literal(PAIR_MID) + f.provider + literal(PAIR_START)
    if dialect == "postgresql":
        return func.string_agg(piece, literal(""))
    return func.group_concat(piece, literal(""))


def _sets_insert(day: date, dialect: str) -> Any:
    """`rollup_daily_call_sets` of the day: each request's pairs as one text, counted. The
    pairs' order in the text is whatever the aggregate gives: the same set in two orders is
    two rows, and each request is still counted once."""
    f = _day_pairs.c
    joined = _joined_pairs(dialect)
    per_request = (
        select(f.hour, f.endpoint, f.team, (literal(PAIR_START) + joined).label("pairs"))
        .where(f.model.is_not(None))
        .group_by(f.trace_id, f.hour, f.endpoint, f.team)
        .subquery("per_request")
    )
    r = per_request.c
    query = select(
        literal(day, Date).label("day"),
        r.hour,
        r.endpoint,
        r.team,
        r.pairs,
        func.count().label("requests"),
    ).group_by(r.hour, r.endpoint, r.team, r.pairs)
    return insert(SETS).from_select([c.name for c in query.selected_columns], query)


def _set_calls_insert(table: Table, day: date, dialect: str) -> Any:
    """`rollup_daily_set_calls` or `rollup_daily_user_set_calls` of the day: each row of
    `_day_pairs` with a call, beside its request's pairs text (the aggregate over the request's
    rows, as a window: one text per request whatever its order), summed by key, set and pair."""
    f = _day_pairs.c
    pairs = literal(PAIR_START) + _joined_pairs(dialect).over(partition_by=f.trace_id)
    per_pair = (
        select(
            f.hour,
            f.user_id,
            f.endpoint,
            f.team,
            f.model,
            f.provider,
            pairs.label("pairs"),
            f.is_first_provider,
            f.is_first_model,
            *(f[name] for name in SUMMED),
        )
        .where(f.model.is_not(None))
        .subquery("per_pair")
    )
    p = per_pair.c
    keys = [p.hour, p.endpoint, p.team, p.model, p.provider, p.pairs]
    if "user_id" in table.c:
        keys.insert(1, p.user_id)
    query = select(
        literal(day, Date).label("day"),
        *keys,
        func.count().label("requests"),
        func.sum(p.is_first_provider).label("requests_model"),
        func.sum(p.is_first_model).label("requests_provider"),
        *(func.sum(p[name]).label(name) for name in SUMMED),
    ).group_by(*keys)
    return insert(table).from_select([c.name for c in query.selected_columns], query)


def _insert(table: Table, day: date) -> Any:
    """One rollup's rows of the day, summed from `_day_pairs`."""
    f = _day_pairs.c
    names = {
        rollup_daily: ("endpoint", "team"),
        rollup_daily_calls: ("endpoint", "team", "model", "provider"),
        rollup_daily_users: ("user_id", "endpoint", "team"),
        rollup_daily_user_totals: ("user_id", "team"),
        rollup_daily_user_calls: ("user_id", "endpoint", "team", "model", "provider"),
    }[table]
    keys = [f.hour, *(f[n] for n in names)]
    if "model" in names:  # only calls: a request counts where it made one
        counts = [
            func.count().label("requests"),
            func.sum(f.is_first_provider).label("requests_model"),
            func.sum(f.is_first_model).label("requests_provider"),
        ]
        where = [f.model.is_not(None)]
    else:  # every request, once
        counts = [func.sum(f.is_first).label("requests")]
        where = []
    query = (
        select(
            literal(day, Date).label("day"),
            *keys,
            *counts,
            *(func.sum(f[name]).label(name) for name in SUMMED),
        )
        .where(*where)
        .group_by(*keys)
    )
    return insert(table).from_select([c.name for c in query.selected_columns], query)
