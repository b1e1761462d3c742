"""A GPU re-allocation writes a day's new shares with the request and GPU rollup rows they
change, in one transaction (`app.rollups.swap`): readers never read those days from the base
tables for it. (The true-up's side: tests/test_rollup_swap.py.)"""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Any

from sqlalchemy import Engine

from app.gpu.allocate import refresh as allocate
from app.gpu.report import allocation_query, base_allocation_query
from app.rollups.day_pairs import ORDER
from app.rollups.dirty import mark_traces
from app.rollups.refresh import LOCK, dirty_days, rebuild_day
from app.rollups.refresh import refresh as rollup_refresh
from app.rollups.stale import sliced_in
from app.rollups.swap import MAX_DAYS
from app.warehouse.engine import session_scope
from app.warehouse.locks import named_lock
from app.warehouse.tables import LlmCall, Request
from app.warehouse.tables_rollup import GPU_ROLLUPS
from tests.test_gpu_allocation import DAY as GPU_DAY
from tests.test_gpu_allocation import LLAMA, add_cost, hand_made_day
from tests.test_gpu_allocation import SETTINGS as GPU_SETTINGS
from tests.test_gpu_allocation import add_call as gpu_call
from tests.test_gpu_allocation import at as gpu_at
from tests.test_gpu_rollup import _rows as gpu_rows
from tests.test_reconcile import usd
from tests.test_rollup_swap import answers, nothing_staged, reads_base_tables, rows_of

GPU_DIMS: list[tuple[str, ...]] = [(), ("endpoint",), ("model",), ("user", "pool"), ("team",)]


def gpu_answers(engine: Engine) -> dict[tuple[str, ...], list[Any]]:
    """Every GPU breakdown as `spendguard report gpu` reads it, each checked against the base
    tables alone."""
    got = {}
    for dims in GPU_DIMS:
        with engine.connect() as conn:
            query = allocation_query(conn, dims)
        rows = gpu_rows(engine, query)
        assert rows == gpu_rows(engine, base_allocation_query(dims)), dims
        got[dims] = rows
    return got


def gpu_reads_base_tables(engine: Engine) -> bool:
    with engine.connect() as conn:
        return "gpu_allocations.trace_id" in str(allocation_query(conn, ("endpoint",)))


def test_a_reallocated_day_is_written_with_its_rollups(engine: Engine) -> None:
    """The hand-made GPU day, stored whole (a later day is live): a restated cost line moves
    its shares; the request days of the calls whose share moved are rebuilt with the new shares
    and written with them, nothing is marked, and the GPU breakdowns and unit costs answer from
    the rollups like the base tables, with the rows a refresh writes."""
    hand_made_day(engine)
    later = gpu_at(12) + timedelta(days=2)
    gpu_call(engine, "8" * 32, later, "llama-3.1-70b", ms=10)
    allocate(engine, GPU_SETTINGS, GPU_DAY, GPU_DAY + timedelta(days=1))
    rollup_refresh(engine)
    with engine.connect() as conn:
        assert dirty_days(conn) == []
        assert sliced_in(conn, None, None) == {later.date()}
    before = gpu_answers(engine)
    unit = answers(engine)
    add_cost(engine, "focus", gpu_at(10), gpu_at(11), "50.00", tags=LLAMA)  # 10h costs more
    result = allocate(engine, GPU_SETTINGS, GPU_DAY, GPU_DAY + timedelta(days=1))
    assert not result.busy
    with engine.connect() as conn:
        assert dirty_days(conn) == []
    assert not gpu_reads_base_tables(engine) and not reads_base_tables(engine)
    assert nothing_staged(engine)
    after = gpu_answers(engine)
    assert after != before
    assert answers(engine) != unit  # (each checked against the base tables)
    # 10h's $50 more went to a, b and c (the llama pool's calls of 10h).
    assert dict(after[()][0])["cost"] == dict(before[()][0])["cost"] + usd("50")
    swapped = rows_of(engine, GPU_DAY, (*ORDER, *GPU_ROLLUPS))
    rebuild_day(engine, GPU_DAY)
    assert rows_of(engine, GPU_DAY, (*ORDER, *GPU_ROLLUPS)) == swapped


def test_a_reallocation_waits_for_a_running_refresh(engine: Engine) -> None:
    """A re-allocation that finds the refresh lock taken waits for it (a refresh of a few
    days), then rebuilds and writes as before: nothing marked."""
    hand_made_day(engine)
    later = gpu_at(12) + timedelta(days=2)
    gpu_call(engine, "8" * 32, later, "llama-3.1-70b", ms=10)
    allocate(engine, GPU_SETTINGS, GPU_DAY, GPU_DAY + timedelta(days=1))
    rollup_refresh(engine)
    add_cost(engine, "focus", gpu_at(10), gpu_at(11), "50.00", tags=LLAMA)
    taken, hold = threading.Event(), 0.5

    def refreshing() -> None:
        with named_lock(engine, LOCK) as held:
            assert held
            taken.set()
            time.sleep(hold)

    thread = threading.Thread(target=refreshing)
    thread.start()
    assert taken.wait(5)
    began = time.monotonic()
    allocate(engine, GPU_SETTINGS, GPU_DAY, GPU_DAY + timedelta(days=1))
    assert time.monotonic() - began >= hold * 0.5
    thread.join()
    with engine.connect() as conn:
        assert dirty_days(conn) == []
    gpu_answers(engine)
    answers(engine)


def test_a_reallocation_of_many_days_marks_them(engine: Engine) -> None:
    """A re-allocation of more days than MAX_DAYS (a changed pool config re-allocates every
    day) writes each day's shares and marks the hours whose shares moved, for the refresh."""
    hand_made_day(engine)
    gpu_call(engine, "8" * 32, gpu_at(12) + timedelta(days=2), "llama-3.1-70b", ms=10)
    allocate(engine, GPU_SETTINGS, GPU_DAY, GPU_DAY + timedelta(days=1))
    rollup_refresh(engine)
    add_cost(engine, "focus", gpu_at(10), gpu_at(11), "50.00", tags=LLAMA)
    first = GPU_DAY - timedelta(days=MAX_DAYS)
    result = allocate(engine, GPU_SETTINGS, first, GPU_DAY + timedelta(days=1))
    assert result.days == MAX_DAYS + 1 and result.rebuilt_days == []
    with engine.connect() as conn:
        assert dirty_days(conn) == [GPU_DAY]
    assert gpu_reads_base_tables(engine)
    gpu_answers(engine)
    rollup_refresh(engine)
    assert not gpu_reads_base_tables(engine)
    gpu_answers(engine)


def test_a_request_across_midnight_keeps_its_other_days_share(engine: Engine) -> None:
    """A request at 23:50 with pooled calls at 23:55 and 00:10: re-allocating the second day
    moves only the 00:10 share. The request's day (the first) is rebuilt with that share new
    and the 23:55 one as stored, a spread request of two call days, as a refresh builds it."""
    hand_made_day(engine)
    eve = GPU_DAY - timedelta(days=1)
    late = gpu_at(0) - timedelta(minutes=10)
    with session_scope(engine) as session:
        session.add(Request(trace_id="m" * 32, started_at=late, root_key="k",
                            endpoint="/night", user_id="u-8", updated_at=late))  # fmt: skip
        for span, when in (("s1", late + timedelta(minutes=5)), ("s2", gpu_at(0, 10))):
            session.add(LlmCall(trace_id="m" * 32, span_id=span, started_at=when,
                                duration_ms=1000, provider="vllm", model="llama-3.1-70b",
                                family="otel-genai", input_tokens=1, output_tokens=1,
                                cost_nanousd=0, price_source="override",
                                ingested_at=when))  # fmt: skip
        session.flush()
        mark_traces(session.connection(), ["m" * 32])
    add_cost(engine, "focus", gpu_at(0) - timedelta(hours=1), gpu_at(0), "7.00", tags=LLAMA)
    add_cost(engine, "focus", gpu_at(0), gpu_at(1), "9.00", tags=LLAMA)
    gpu_call(engine, "8" * 32, gpu_at(12) + timedelta(days=2), "llama-3.1-70b", ms=10)
    allocate(engine, GPU_SETTINGS, eve, GPU_DAY + timedelta(days=1))
    rollup_refresh(engine)
    before = gpu_answers(engine)
    add_cost(engine, "focus", gpu_at(0), gpu_at(1), "5.00", tags=LLAMA)  # 00h: $14 now
    result = allocate(engine, GPU_SETTINGS, GPU_DAY, GPU_DAY + timedelta(days=1))
    assert result.rebuilt_days == [eve]
    with engine.connect() as conn:
        assert dirty_days(conn) == []
    after = gpu_answers(engine)
    assert after != before
    night = {r for r in after[("endpoint",)] if ("endpoint", "/night") in r}
    assert night == {(("calls", 2), ("cost", usd("21")), ("endpoint", "/night"), ("requests", 1))}
    swapped = rows_of(engine, eve, (*ORDER, *GPU_ROLLUPS))
    assert swapped["rollup_daily_gpu_spread"]  # two call days: a spread request
    rebuild_day(engine, eve)
    assert rows_of(engine, eve, (*ORDER, *GPU_ROLLUPS)) == swapped
    answers(engine)
