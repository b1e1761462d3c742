"""One UTC day's GPU allocation as rows: each pool-hour's bill split into its calls' shares and
idle (the arithmetic `app.gpu.allocate` describes), with no I/O.

`split_day` turns a day's billed pool-hours (`app.gpu.pools.PoolHours`) and each pool's calls
into the rows of `gpu_pool_hours` and `gpu_allocations`; `app.gpu.allocate` reads the inputs
and replaces the stored rows with these.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from app.gpu.pools import PoolHours
from app.money import split_exact
from app.settings import GpuPoolConfig
from app.settings.models import UNASSIGNED_POOL


@dataclass(frozen=True, slots=True)
class Call:
    trace_id: str
    span_id: str
    hour: datetime
    weight: int


@dataclass(slots=True)
class DaySplit:
    hour_rows: list[dict[str, Any]] = field(default_factory=list)  # of gpu_pool_hours
    allocation_rows: list[dict[str, Any]] = field(default_factory=list)  # of gpu_allocations
    calls: int = 0
    cost_nanousd: int = 0
    allocated_nanousd: int = 0
    idle_nanousd: int = 0


def split_day(
    pools: Sequence[GpuPoolConfig],
    hours: PoolHours,
    calls: dict[str, list[Call]],
    now: datetime,
) -> DaySplit:
    """Each billed pool-hour's cost split into its calls' shares and idle, stamped `now`."""
    config = {pool.name: pool for pool in pools}
    by_hour: dict[tuple[str, datetime], list[Call]] = defaultdict(list)
    for name, pool_calls in calls.items():
        for call in pool_calls:
            by_hour[(name, call.hour)].append(call)
    day = DaySplit()
    for (pool, hour), (source, bill) in sorted(hours.hours.items()):
        in_hour = by_hour.get((pool, hour), [])
        capacity = capacity_of(config.get(pool))
        used = sum(c.weight for c in in_hour)
        if not in_hour:
            allocated = 0
        elif capacity is not None and used < capacity:
            allocated, _ = split_exact(bill.cost, [used, capacity - used])
        else:
            allocated = bill.cost
        # A pool's unused hours are idle; a line of no pool is neither idle nor allocated.
        idle = 0 if pool == UNASSIGNED_POOL else bill.cost - allocated
        shares = split_exact(allocated, [c.weight for c in in_hour]) if in_hour else []
        for call, share in zip(in_hour, shares, strict=True):
            day.allocation_rows.append(
                {
                    "trace_id": call.trace_id,
                    "span_id": call.span_id,
                    "pool": pool,
                    "hour": hour,
                    "weight": call.weight,
                    "gpu_cost_nanousd": share,
                    "computed_at": now,
                }
            )
        day.hour_rows.append(
            {
                "pool": pool,
                "hour": hour,
                "source": source,
                "cost_nanousd": bill.cost,
                "credits_nanousd": bill.credits,
                "allocated_nanousd": allocated,
                "idle_nanousd": idle,
                "calls": len(in_hour),
                "weight": used,
                "capacity": capacity,
                "usage_milli": bill.usage_milli,
                "computed_at": now,
            }
        )
        day.calls += len(in_hour)
        day.cost_nanousd += bill.cost
        day.allocated_nanousd += allocated
        day.idle_nanousd += idle
    return day


def capacity_of(pool: GpuPoolConfig | None) -> int | None:
    """The pool's capacity per hour in the unit of its key (call-ms or tokens), if configured."""
    if pool is None or pool.capacity_per_hour is None:
        return None
    return pool.capacity_per_hour * (1000 if pool.allocate_by == "gpu_seconds" else 1)
