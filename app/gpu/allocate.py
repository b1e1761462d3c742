"""Allocate each GPU pool's hourly bill to the LLM calls of its models, exactly.

For every pool and UTC hour with a bill (`app.gpu.pools`), the hour's cost C is split:

- no call of the pool's models in the hour: all of C is idle;
- calls, and no `capacity_per_hour`: all of C is allocated to them;
- calls using W of a configured capacity K (same unit): C × W/K is allocated and the rest is idle
  (all allocated once W ≥ K);

and the allocated part is shared among the hour's calls in proportion to their key:
`gpu_seconds` (the call span's duration, in ms) or `tokens` (input + output). Every split is
integer nano-dollars by largest remainder (`app.money.split_exact`), so per pool-hour
`allocated + idle == cost` exactly (lines of no pool, `(unassigned)`, are neither), and the
calls' shares add up to `allocated` exactly. Idle is a line of its own
(`gpu_pool_hours.idle_nanousd`), never spread into requests. Credits are part of the hour's
cost (a negative share). The arithmetic is `app.gpu.shares`; this module reads its inputs and
stores its rows.

`refresh` recomputes whole UTC days and replaces what was stored for them, in one transaction per
day: re-running it changes nothing, and never counts twice. `refresh_stale` finds the days that
need it — calls stored since the last refresh under a pooled model's (requested) name, cost
lines fetched since, or a changed `gpu_pools` config — and refreshes those; the worker runs it
after each collector run, so calls pushed or ingested by any path are allocated within a cycle.
One refresh at a time (named lock `gpu-allocation`).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, func, or_, select
from sqlalchemy.orm import Session

from app.gpu.pools import CostLine, PoolHours, hour_floor, pool_hours
from app.gpu.shares import Call, split_day
from app.rollups.dirty import request_hours
from app.rollups.swap import MAX_DAYS, WAIT, Hours, NewAllocations, write_change
from app.settings import GpuPoolConfig, Settings
from app.warehouse.checkpoints import read_checkpoint, write_checkpoint
from app.warehouse.engine import session_scope
from app.warehouse.locks import named_lock
from app.warehouse.runs import finish_run, start_run
from app.warehouse.tables import LlmCall
from app.warehouse.tables_gpu import GpuAllocation, GpuCost, GpuPoolHour
from app.warehouse.types import as_date

log = logging.getLogger("spendguard.gpu")

DAY = timedelta(days=1)
RUN_NAME = "gpu_allocation"  # its runs in collector_runs, its watermark in checkpoints
# A writer stamps its rows (`ingested_at`, `fetched_at`) when it writes them, not when it
# commits: the ingest holds a transaction open for up to a few seconds (app.ingest), and API
# replicas stamp by their own clocks. Rows committed after a refresh can so carry a stamp older
# than the newest it saw. The watermark stays this far behind the clock, so those rows are
# still found; the days of recent rows are re-allocated meanwhile (the same result again).
SETTLE = timedelta(minutes=5)
LOCK = "gpu-allocation"


@dataclass(slots=True)
class AllocationResult:
    days: int = 0
    pool_hours: int = 0
    calls: int = 0
    cost_nanousd: int = 0
    allocated_nanousd: int = 0
    idle_nanousd: int = 0
    not_usd_lines: int = 0
    busy: bool = False  # another refresh was running: nothing done
    # The request days whose rollups were rebuilt with the new shares and written with them
    # (`app.rollups.swap`); the others whose shares moved are marked for the refresh.
    rebuilt_days: list[date] = field(default_factory=list)


def midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def refresh(
    engine: Engine, settings: Settings, since: date, until: date, *, record: bool = True
) -> AllocationResult:
    """Recompute the allocation of the UTC days [since, until) for the configured pools."""
    result = AllocationResult()
    with named_lock(engine, LOCK) as held:
        if not held:
            result.busy = True
            return result
        run_id = start_run(engine, RUN_NAME, f"{since}..{until}") if record else None
        try:
            _refresh_days(engine, settings.gpu_pools, _days(since, until), result)
        except BaseException as exc:
            if run_id is not None:
                finish_run(engine, run_id, status="failed", rows_loaded=0, error=str(exc)[:500])
            raise
        if run_id is not None:
            finish_run(
                engine,
                run_id,
                status="ok",
                rows_loaded=result.calls,
                window=(midnight(since), midnight(until)),
            )
    return result


def refresh_stale(
    engine: Engine, settings: Settings, *, now: datetime | None = None
) -> AllocationResult | None:
    """Refresh the days whose calls or bills changed since the last refresh (or all days with
    a bill when `gpu_pools` changed); None when there was nothing to do. `now`: the clock
    (before anything is read), for `SETTLE`."""
    settled = (now or datetime.now(UTC)) - SETTLE - timedelta(microseconds=1)
    pools = settings.gpu_pools
    digest = pools_digest(pools)
    with session_scope(engine) as session:
        mark = _watermark(session)
    calls_after, costs_after = mark.get("calls"), mark.get("costs")
    days: set[date] = set()
    models = [m for pool in pools for m in pool.models]
    # Only the calls of pooled models (the (model, started_at) index narrows the scan): the
    # worker asks this after every collector run.
    recent = LlmCall.model.in_(models)
    with engine.connect() as conn:
        last_call = None
        if models:
            last_call = conn.execute(select(func.max(LlmCall.ingested_at)).where(recent)).scalar()
        last_cost = conn.execute(select(func.max(GpuCost.fetched_at))).scalar()
        if mark.get("pools") != digest:
            first, last = conn.execute(
                select(func.min(GpuCost.period_start), func.max(GpuCost.period_end))
            ).one()
            if first is not None:
                days.update(_days(_day(first), _day(last) + DAY))
            first, last = conn.execute(
                select(func.min(GpuPoolHour.hour), func.max(GpuPoolHour.hour))
            ).one()
            if first is not None:  # pools removed or renamed: their hours go
                days.update(_days(_day(first), _day(last) + DAY))
        else:
            if _newer(last_call, calls_after):
                query = select(func.date(LlmCall.started_at)).where(recent).distinct()
                if calls_after:
                    query = query.where(LlmCall.ingested_at > _parse(calls_after))
                days.update(as_date(d) for d in conn.execute(query).scalars())
            if _newer(last_cost, costs_after):
                query = select(GpuCost.period_start, GpuCost.period_end)
                if costs_after:
                    query = query.where(GpuCost.fetched_at > _parse(costs_after))
                for begin, stop in conn.execute(query.distinct()):
                    days.update(_days(_day(begin), _day(stop - timedelta(microseconds=1)) + DAY))
    result = None
    if days:
        result = AllocationResult()
        for lo, hi in _ranges(sorted(days)):
            part = refresh(engine, settings, lo, hi)
            if part.busy:
                return part
            _add(result, part)
    with session_scope(engine) as session:
        write_checkpoint(
            session,
            RUN_NAME,
            "watermark",
            json.dumps(
                {
                    "calls": _settled(last_call, settled) if last_call else calls_after,
                    "costs": _settled(last_cost, settled) if last_cost else costs_after,
                    "pools": digest,
                }
            ),
        )
    return result


def pools_digest(pools: Sequence[GpuPoolConfig]) -> str:
    text = json.dumps([p.model_dump(mode="json") for p in pools], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# ── one day ────────────────────────────────────────────────────────────────────────────────────


def _refresh_days(
    engine: Engine, pools: Sequence[GpuPoolConfig], days: Iterable[date], result: AllocationResult
) -> None:
    days = list(days)
    # Each day's change is written with the rollups it changes (`app.rollups.swap`) when the
    # days are a few (the worker's usual re-allocation of the last days), else marked for the
    # refresh (a changed pool config re-allocates every day: the refresh's work).
    rebuild = len(days) <= MAX_DAYS
    wait = WAIT
    for day in days:
        start, end = midnight(day), midnight(day + DAY)
        with session_scope(engine) as session:
            hours = pool_hours(_lines(session, start, end), pools, start, end)
            calls = {pool.name: _calls(session, pool, start, end) for pool in pools}
            moved = _replace_day(session, pools, hours, calls, start, end, result)
        if moved is not None:  # written with the rollups it changes (`app.rollups.swap`)
            written = write_change(engine, *moved, wait, rebuild=rebuild)
            result.rebuilt_days = sorted({*result.rebuilt_days, *written.rebuilt})
            if written.busy:  # a long refresh: the next days don't wait for it again
                wait = 0
        result.days += 1
        result.not_usd_lines += hours.not_usd


def _lines(session: Session, start: datetime, end: datetime) -> list[tuple[CostLine, str]]:
    query = select(
        GpuCost.source,
        GpuCost.period_start,
        GpuCost.period_end,
        GpuCost.charge_category,
        GpuCost.resource_id,
        GpuCost.namespace,
        GpuCost.tags,
        GpuCost.amount_nano,
        GpuCost.usage_milli,
        GpuCost.currency,
    ).where(GpuCost.period_start < end, GpuCost.period_end > start)
    return [
        (CostLine(r[0], r[1], r[2], r[3], r[4], r[5], r[6], int(r[7]), r[8]), str(r[9]))
        for r in session.execute(query)
    ]


def _serves(models: Sequence[str]) -> Any:
    return or_(LlmCall.model.in_(models), LlmCall.response_model.in_(models))


def _calls(session: Session, pool: GpuPoolConfig, start: datetime, end: datetime) -> list[Call]:
    if not pool.models:
        return []
    weight = (
        LlmCall.duration_ms
        if pool.allocate_by == "gpu_seconds"
        else LlmCall.input_tokens + LlmCall.output_tokens
    )
    query = (
        select(LlmCall.trace_id, LlmCall.span_id, LlmCall.started_at, weight)
        .where(_serves(pool.models), LlmCall.started_at >= start, LlmCall.started_at < end)
        .order_by(LlmCall.started_at, LlmCall.trace_id, LlmCall.span_id)
    )
    return [
        Call(trace, span, hour_floor(at), max(0, int(w or 0)))
        for trace, span, at, w in session.execute(query)
    ]


def _replace_day(
    session: Session,
    pools: Sequence[GpuPoolConfig],
    hours: PoolHours,
    calls: dict[str, list[Call]],
    start: datetime,
    end: datetime,
    result: AllocationResult,
) -> tuple[NewAllocations, Hours] | None:
    """The day's allocation, written when no call's share came, went or changed (the pool-hours
    may have: no rollup reads them); else nothing is written, and the new allocation and the
    request days and hours of those calls are returned, for `write_change`."""
    before = _allocated(session, start, end)
    day = split_day(pools, hours, calls, datetime.now(UTC))
    result.pool_hours += len(day.hour_rows)
    result.calls += day.calls
    result.cost_nanousd += day.cost_nanousd
    result.allocated_nanousd += day.allocated_nanousd
    result.idle_nanousd += day.idle_nanousd
    new = NewAllocations(start, end, day.allocation_rows, day.hour_rows)
    # The rollups count GPU shares on their requests' days and hours: those of the calls whose
    # share came, went or changed are rebuilt, not the whole day's (the worker re-allocates
    # today after every collector run, for each new call of a pooled model: only the hours of
    # that call's pool-hour change).
    after = {_allocation(row) for row in day.allocation_rows}
    moved = sorted({row[0] for row in before ^ after})
    if not moved:
        new.write(session.connection())
        return None
    # (The hours read once the change may be written: `write_change`.)
    return new, functools.partial(request_hours, trace_ids=moved)


_Allocation = tuple[str, str, str, datetime, int, int]


def _allocation(row: dict[str, Any]) -> _Allocation:
    """A call's allocation as the rollups read it (all but when it was computed)."""
    return (
        row["trace_id"],
        row["span_id"],
        row["pool"],
        row["hour"],
        int(row["weight"]),
        int(row["gpu_cost_nanousd"]),
    )


def _allocated(session: Session, start: datetime, end: datetime) -> set[_Allocation]:
    """The stored allocations of the calls in the pool-hours of [start, end)."""
    g = GpuAllocation
    rows = session.execute(
        select(g.trace_id, g.span_id, g.pool, g.hour, g.weight, g.gpu_cost_nanousd).where(
            g.hour >= start, g.hour < end
        )
    )
    return {_allocation(dict(row._mapping)) for row in rows}


# ── small helpers ──────────────────────────────────────────────────────────────────────────────


def _days(since: date, until: date) -> list[date]:
    return [since + timedelta(days=i) for i in range((until - since).days)]


def _ranges(days: Sequence[date]) -> list[tuple[date, date]]:
    """Consecutive days as [first, end) ranges."""
    ranges: list[tuple[date, date]] = []
    for day in days:
        if ranges and ranges[-1][1] == day:
            ranges[-1] = (ranges[-1][0], day + DAY)
        else:
            ranges.append((day, day + DAY))
    return ranges


def _add(total: AllocationResult, part: AllocationResult) -> None:
    for name in ("days", "pool_hours", "calls", "cost_nanousd", "allocated_nanousd"):
        setattr(total, name, getattr(total, name) + getattr(part, name))
    total.idle_nanousd += part.idle_nanousd
    total.not_usd_lines += part.not_usd_lines
    total.rebuilt_days = sorted({*total.rebuilt_days, *part.rebuilt_days})


def _watermark(session: Session) -> dict[str, Any]:
    raw = read_checkpoint(session, RUN_NAME, "watermark")
    try:
        value = json.loads(raw) if raw else {}
    except ValueError:
        value = {}
    return value if isinstance(value, dict) else {}


def _day(value: Any) -> date:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.astimezone(UTC).date() if value.tzinfo else value.date()  # type: ignore[no-any-return]


def _iso(value: Any) -> str:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return str(value.astimezone(UTC).isoformat())


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def _newer(last: Any, mark: str | None) -> bool:
    """Whether the newest stamp is past the watermark (rows may have come since)."""
    return last is not None and (not mark or _parse(_iso(last)) > _parse(mark))


def _settled(last: Any, settled: datetime) -> str:
    """The next watermark: the newest stamp seen, but no later than `SETTLE` ago."""
    return _iso(min(_parse(_iso(last)), settled))
