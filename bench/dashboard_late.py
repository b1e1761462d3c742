"""The dashboard benchmark's late spans of a past day, as an exporter that fell behind sends
them, loaded as the receiver loads a batch (`load_batch`): each batch patches the day's rollup
rows in its own transaction, with no mark (`app.rollups.patch`). `late_spans` times one (of an
OTLP export's size, or of a trace file's batch, collected late) and compares the rows with a
rebuild's; `patching` loads one after another beside the pages. Each
leaves the warehouse as it was.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import Engine, delete, func, select

from app.rollups.day_pairs import ORDER
from app.rollups.dirty import mark_days
from app.rollups.refresh import rebuild_day
from app.rollups.refresh import refresh as refresh_rollups
from app.rollups.weeks import week_of
from app.traces.attribution import RequestFacts
from app.traces.batch import Batch, CallRow
from app.warehouse.engine import session_scope
from app.warehouse.load import load_batch
from app.warehouse.tables import LlmCall, Request
from app.warehouse.tables_rollup import GPU_ROLLUPS, rollup_call_days, rollup_dirty
from app.warehouse.tables_weekly import WEEKLY

_TAG = "benchlate"  # the start of every span id and new trace id written here


def late_spans(engine: Engine, day: date, traces: int = 100) -> list[str]:
    """One batch of late spans of `day` (a past day, stored whole): a late call for `traces` of
    the day's requests, and `traces` new requests with a call each. Timed; then the day's rows
    compared with a rebuild's. The warehouse is left as it was."""
    batch = _late_batch(engine, day, traces, 0)
    began = time.perf_counter()
    with session_scope(engine) as session:
        load_batch(session, batch, {})
    seconds = time.perf_counter() - began
    marked = _marked(engine)
    patched = _rows_of(engine, day)
    rebuild_day(engine, day)
    refresh_rollups(engine)  # (its week summed again)
    same = "equal to" if _rows_of(engine, day) == patched else "DIFFERENT from"
    _undo(engine, day)
    return [
        f"late spans of {day} (a call for {traces} of its requests, {traces} new requests, in "
        f"one batch): loaded with their rollup rows patched in {seconds:.2f} s; {marked} "
        f"day(s) marked; the day's rows (and its week's) {same} a rebuild's"
    ]


@contextlib.contextmanager
def patching(engine: Engine, day: date, traces: int = 100) -> Iterator[dict[str, float]]:
    """For the block: batches of late spans of `day` loaded one after another in a thread, each
    patching the day's rows. The counts: batches, the slowest batch's seconds, and the most
    days marked at once (read from the base tables meanwhile)."""
    counts: dict[str, float] = {"batches": 0, "slowest": 0.0, "marked": 0}

    def step() -> None:
        batch = _late_batch(engine, day, traces, int(counts["batches"]) + 1)
        began = time.perf_counter()
        with session_scope(engine) as session:
            load_batch(session, batch, {})
        counts["slowest"] = max(counts["slowest"], time.perf_counter() - began)
        counts["batches"] += 1
        counts["marked"] = max(counts["marked"], _marked(engine))

    try:
        with looping(step, "patching"):
            yield counts
    finally:
        _undo(engine, day)


@contextlib.contextmanager
def looping(step: Callable[[], None], name: str) -> Iterator[None]:
    """For the block: `step` called again and again in a thread (a writer beside the pages),
    stopped and joined when the block ends."""
    stop = threading.Event()

    def run() -> None:
        while not stop.is_set():
            step()

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _late_batch(engine: Engine, day: date, traces: int, n: int) -> Batch:
    """The `n`th batch: a late call for `traces` of the day's requests (the `n`th ones), and
    `traces` new requests with a call each."""
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    r = Request
    with engine.connect() as conn:
        stored = conn.execute(
            select(r.trace_id, r.started_at)
            .where(r.started_at >= start, r.started_at < start + timedelta(days=1))
            .order_by(r.started_at)
            .offset(n * traces)
            .limit(traces)
        ).all()
    batch = Batch()
    span = f"{_TAG}{n:07d}"
    for i, (trace, at) in enumerate(stored):
        batch.requests[trace] = _facts(trace, at, None, None)
        batch.calls[(trace, span)] = _call(trace, span, at + timedelta(seconds=1), i)
    for i in range(traces):
        trace, at = f"{_TAG}{n:07d}{i:016d}", start + timedelta(minutes=(7 * i + n) % 1440)
        batch.requests[trace] = _facts(trace, at, "/bench", f"bench-{i % 10}")
        batch.calls[(trace, span)] = _call(trace, span, at, i)
    return batch


def _facts(trace: str, at: datetime, endpoint: str | None, user: str | None) -> RequestFacts:
    """A request's facts: a root's (`endpoint`), or a call's, which the stored root beats."""
    key = ("0" if endpoint else "5") + at.isoformat()
    return RequestFacts(trace, at, key, "r" if endpoint else None, endpoint or "(none)", None,
                        None, user, key if user else None, None, None)  # fmt: skip


def _call(trace: str, span: str, at: datetime, i: int) -> CallRow:
    model, provider = ("gpt-4o-mini", "openai") if i % 2 else ("claude-haiku-4-5", "anthropic")
    return CallRow(trace, span, at, 800, provider, model, None, None, "chat", "otel-genai",
                   1200, 0, 0, 300, 0, 1_500_000, "catalog")  # fmt: skip


def _marked(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count(rollup_dirty.c.day.distinct()))).scalar_one())


def _undo(engine: Engine, day: date) -> None:
    """What the batches wrote deleted, and the day rebuilt."""
    with session_scope(engine) as session:
        session.execute(delete(LlmCall).where(LlmCall.span_id.like(f"{_TAG}%")))
        session.execute(delete(Request).where(Request.trace_id.like(f"{_TAG}%")))
        mark_days(session.connection(), [day])
    refresh_rollups(engine)


def _rows_of(engine: Engine, day: date) -> list[list[tuple[str, ...]]]:
    """Every rollup's rows of `day`, and every weekly rollup's of its week, as text, sorted."""
    tables = [(t, t.c.day == day) for t in (*ORDER, *GPU_ROLLUPS, rollup_call_days)]
    tables += [(t, t.c.week == week_of(day)) for t in WEEKLY.values()]
    with engine.connect() as conn:
        return [
            sorted(tuple(map(str, row)) for row in conn.execute(select(t).where(which)))
            for t, which in tables
        ]
