"""The dashboard benchmark's worker cycle: what the worker's true-up and GPU allocation change
after a collector run, timed on the generated warehouse, and what they rebuild or mark
(`worker_cycle`, with a batch of late spans: `bench.dashboard_late`); and the true-up of a
past day run again and again beside the pages (`swapping`). Each leaves the warehouse as it
was.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine, delete, func, select

from app.gpu.allocate import refresh as allocate
from app.rollups.dirty import mark_slices
from app.rollups.refresh import refresh as refresh_rollups
from app.settings import Settings, load_settings
from app.trueup import TrueUpResult, refresh_true_up
from app.warehouse.engine import session_scope
from app.warehouse.tables import LlmCall, Request
from app.warehouse.tables_billing import BilledCost
from app.warehouse.tables_gpu import GpuCost
from app.warehouse.tables_rollup import rollup_dirty
from bench.dashboard_data import END
from bench.dashboard_late import late_spans, looping


def worker_cycle(engine: Engine, config: Path) -> list[str]:
    """What the worker's true-up and GPU allocation change after a collector run, and what
    they rebuild or mark (the rollups' refresh rebuilds what they mark): the true-up of the
    last days again with the bills as they were (a billing collector re-reads its last days
    every hour), a restated provider bill and GPU bill of the day before the latest
    (`restated_bill`, `restated_gpu_cost`), and the latest day's allocation again after one
    new call of a pooled model (the allocation runs after every collector run that brings
    one). The warehouse is left as it was."""
    settings = load_settings(config)
    last = _latest(engine)
    day = last.date()
    lines = []
    marked: set[date] = set()
    began = time.perf_counter()
    for provider in ("openai", "anthropic"):
        result = refresh_true_up(
            engine, provider, day - timedelta(days=3), day + timedelta(days=1), now=END
        )
        marked.update(result.changed_days)
    lines.append(
        f"true-up of the last 4 days again, bills as they were: {len(marked)} day(s) changed "
        f"({time.perf_counter() - began:.2f} s); then the rollups' refresh: "
        f"{refresh_rollups(engine).seconds:.2f} s"
    )
    lines += late_spans(engine, day - timedelta(days=3))  # as the receiver gets them
    lines += late_spans(engine, day - timedelta(days=3), 2500)  # a trace file's batch
    lines += restated_bill(engine, day - timedelta(days=1))
    lines += restated_gpu_cost(engine, settings, day - timedelta(days=1))
    trace = "f" * 32
    with session_scope(engine) as session:
        session.add(Request(trace_id=trace, started_at=last, root_key="k", endpoint="/bench",
                            user_id="bench", updated_at=last))  # fmt: skip
        session.add(LlmCall(trace_id=trace, span_id="s1", started_at=last, duration_ms=500,
                            provider="vllm", model="llama-3.1-70b", family="otel-genai",
                            input_tokens=10, output_tokens=10, cost_nanousd=0,
                            price_source="override", ingested_at=datetime.now(UTC)))  # fmt: skip
    began = time.perf_counter()
    allocate(engine, settings, day, day + timedelta(days=1))
    seconds = time.perf_counter() - began
    hours = sorted(_marked_hours(engine), key=lambda h: -1 if h is None else h)
    lines.append(
        f"allocation of {day} again after one new llama-3.1-70b call: {seconds:.2f} s, "
        f"{len(hours)} hour(s) marked ({', '.join(_hour(h) for h in hours)})"
    )
    lines.append(f"then the rollups' refresh: {refresh_rollups(engine).seconds:.2f} s")
    with session_scope(engine) as session:  # as it was
        session.execute(delete(LlmCall).where(LlmCall.trace_id == trace))
        session.execute(delete(Request).where(Request.trace_id == trace))
        mark_slices(session.connection(), [(day, last.hour)])
    allocate(engine, settings, day, day + timedelta(days=1))
    refresh_rollups(engine)
    return lines


def restated_bill(engine: Engine, day: date) -> list[str]:
    """A restated openai bill of `day` (a past day, stored whole) and the true-up after it: the
    request days whose factors it changes are summed again with the new factors and written
    with them (`app.rollups.swap`), with no mark, so pages never read them from the base
    tables; then the bill as it was, and the true-up again. The warehouse is left as it was."""
    lines = []
    for restated in (True, False):
        began = time.perf_counter()
        result = restate(engine, day, restated)
        seconds = time.perf_counter() - began
        with engine.connect() as conn:
            marked = conn.execute(select(func.count(rollup_dirty.c.day.distinct()))).scalar_one()
        what = "restated (+$1.00)" if restated else "as it was"
        lines.append(
            f"true-up after openai's bill of {day} {what}: {seconds:.2f} s, factors changed on "
            f"{', '.join(map(str, result.changed_days)) or 'no day'}, rollups rebuilt with "
            f"them: {', '.join(map(str, result.rebuilt_days)) or 'none'}; {marked} day(s) "
            f"marked (read from the base tables until a refresh)"
        )
    return lines


def restate(engine: Engine, day: date, restated: bool) -> TrueUpResult:
    """openai's bill of `day` with $1.00 more (`restated`) or as it was, and the true-up of
    the days around it after it."""
    with session_scope(engine) as session:
        session.execute(delete(BilledCost).where(BilledCost.line_item == "bench restated"))
        if restated:
            model = session.execute(
                select(BilledCost.model).where(BilledCost.provider == "openai",
                                               BilledCost.day == day,
                                               BilledCost.model.is_not(None)).limit(1)
            ).scalar_one()  # fmt: skip
            session.add(BilledCost(provider="openai", day=day, line_item="bench restated",
                                   model=model, model_raw=model, cost_type="tokens",
                                   amount_nano=10**9, currency="USD",
                                   fetched_at=datetime.now(UTC)))  # fmt: skip
    week = day - timedelta(days=2), day + timedelta(days=2)
    return refresh_true_up(engine, "openai", *week, now=END)


@contextlib.contextmanager
def swapping(engine: Engine, day: date) -> Iterator[dict[str, int]]:
    """For the block: `day`'s openai bill restated and back, again and again in a thread, each
    time trued up (the day summed with its new factors and written with them: no mark). The
    counts: true-ups, days rebuilt, and days marked (read from the base tables meanwhile)."""
    counts = {"true-ups": 0, "rebuilt": 0, "marked": 0}

    def step() -> None:
        result = restate(engine, day, counts["true-ups"] % 2 == 0)  # restated, then as it was
        counts["true-ups"] += 1
        counts["rebuilt"] += len(result.rebuilt_days)
        counts["marked"] += int(bool(result.changed_days) and not result.rebuilt_days)

    try:
        with looping(step, "swapping"):
            yield counts
    finally:
        restate(engine, day, False)  # as it was


def restated_gpu_cost(engine: Engine, settings: Settings, day: date) -> list[str]:
    """A restated GPU bill of `day` (a past day, stored whole: $24 more for the llama-70b pool
    over the day, so every call's share moves) and its re-allocation: the request days of the
    calls whose share moved are summed again with the new shares and written with them
    (`app.rollups.swap`), with no mark; then the bill as it was, and again. The warehouse is
    left as it was."""
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    lines = []
    for what in ("restated (+$24.00 over the day)", "as it was"):
        with session_scope(engine) as session:
            if what == "as it was":
                session.execute(delete(GpuCost).where(GpuCost.source_key == "bench restated"))
            else:
                session.add(GpuCost(source="focus", source_key="bench restated",
                                    slice_key=day.isoformat(), period_start=start,
                                    period_end=start + timedelta(days=1), charge_category="usage",
                                    tags='{"gpu-pool":"llama-70b"}', amount_nano=24 * 10**9,
                                    currency="USD", fetched_at=datetime.now(UTC)))  # fmt: skip
        began = time.perf_counter()
        result = allocate(engine, settings, day, day + timedelta(days=1))
        seconds = time.perf_counter() - began
        with engine.connect() as conn:
            marked = conn.execute(select(func.count(rollup_dirty.c.day.distinct()))).scalar_one()
        lines.append(
            f"allocation of {day} after its GPU bill {what}: {seconds:.2f} s, rollups rebuilt "
            f"with the new shares: {', '.join(map(str, result.rebuilt_days)) or 'none'}; "
            f"{marked} day(s) marked (read from the base tables until a refresh)"
        )
    return lines


def _latest(engine: Engine) -> datetime:
    with engine.connect() as conn:
        last: datetime = conn.execute(select(func.max(Request.started_at))).scalar_one()
    return last


def _marked_hours(engine: Engine) -> set[int | None]:
    with engine.connect() as conn:
        return set(conn.execute(select(rollup_dirty.c.hour).distinct()).scalars())


def _hour(hour: int | None) -> str:
    return "the whole day" if hour is None else f"{hour:02d}:00"
