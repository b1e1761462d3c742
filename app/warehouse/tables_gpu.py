"""Cloud GPU costs as billed, and their allocation to LLM calls.

- `gpu_costs`: the GPU/accelerator lines of the cloud bills (Cost Explorer, FOCUS / CUR 2.0
  exports, OpenCost), each with its own period, as the source gave it. Credits and refunds are
  lines of their own (negative amounts). A collector run replaces a whole slice at a time (a day,
  or a billing period of an export), so a restatement replaces and never appends.
- `gpu_pool_hours`: one row per configured pool and UTC hour with cost: the pool's bill for the
  hour (`cost_nanousd`, credits included), what was allocated to calls and what stayed idle.
  `allocated_nanousd + idle_nanousd == cost_nanousd`, exactly. Lines of no pool are kept under
  the pool `(unassigned)` with nothing allocated.
- `gpu_allocations`: the allocated share of one LLM call (at most one row per call, since a model
  is served by one pool), so reports add GPU cost to token cost with one outer join.

Money is integer nano-units (`amount_nano` in the line's currency; `*_nanousd` in USD).
Written by `collectors/{aws_ce,focus,opencost}.py` and `app.gpu.allocate`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import BigInteger, Boolean, ColumnElement, Index, Integer, String, Table, Text, or_
from sqlalchemy.orm import Mapped, mapped_column

from app.warehouse.tables import Base
from app.warehouse.types import UtcDateTime


class GpuCost(Base):
    """One GPU/accelerator cost line of a cloud bill, for its charge period."""

    __tablename__ = "gpu_costs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(16))  # aws_ce, focus, opencost
    source_key: Mapped[str] = mapped_column(String(256))  # the export, the CE query, the API
    slice_key: Mapped[str] = mapped_column(String(32))  # what a run replaces: a day or a period
    period_start: Mapped[datetime] = mapped_column(UtcDateTime())
    period_end: Mapped[datetime] = mapped_column(UtcDateTime())  # exclusive
    charge_category: Mapped[str] = mapped_column(String(32))  # usage, credit, refund, tax, …
    instance_type: Mapped[str | None] = mapped_column(String(64))
    resource_id: Mapped[str | None] = mapped_column(String(512))
    namespace: Mapped[str | None] = mapped_column(String(256))  # OpenCost's aggregate name
    tags: Mapped[str | None] = mapped_column(Text)  # JSON object, keys sorted
    description: Mapped[str | None] = mapped_column(String(512))
    usage_milli: Mapped[int | None] = mapped_column(BigInteger)  # hours × 1000
    usage_unit: Mapped[str | None] = mapped_column(String(32))
    amount_nano: Mapped[int] = mapped_column(BigInteger)  # nano-units of `currency`
    currency: Mapped[str] = mapped_column(String(8))
    estimated: Mapped[bool] = mapped_column(Boolean, default=False)  # CE: not final yet
    efficiency_permille: Mapped[int | None] = mapped_column(Integer)  # OpenCost gpuEfficiency
    fetched_at: Mapped[datetime] = mapped_column(UtcDateTime())

    __table_args__ = (
        Index(None, "source", "source_key", "slice_key"),
        Index(None, "period_start"),
    )


class GpuPoolHour(Base):
    """A pool's bill for one UTC hour and how it was split: allocated to calls, or idle."""

    __tablename__ = "gpu_pool_hours"

    pool: Mapped[str] = mapped_column(String(128), primary_key=True)
    hour: Mapped[datetime] = mapped_column(UtcDateTime(), primary_key=True)
    source: Mapped[str] = mapped_column(String(16))  # the bill the hour was priced from
    cost_nanousd: Mapped[int] = mapped_column(BigInteger)  # credits included
    credits_nanousd: Mapped[int] = mapped_column(BigInteger, default=0)
    allocated_nanousd: Mapped[int] = mapped_column(BigInteger, default=0)
    idle_nanousd: Mapped[int] = mapped_column(BigInteger, default=0)
    calls: Mapped[int] = mapped_column(Integer, default=0)
    weight: Mapped[int] = mapped_column(BigInteger, default=0)  # call-ms or tokens used
    capacity: Mapped[int | None] = mapped_column(BigInteger)  # same unit, when configured
    usage_milli: Mapped[int | None] = mapped_column(BigInteger)  # billed hours × 1000
    computed_at: Mapped[datetime] = mapped_column(UtcDateTime())

    __table_args__ = (Index(None, "hour"),)


class GpuAllocation(Base):
    """The GPU cost allocated to one LLM call (its pool's cost of the call's hour, shared)."""

    __tablename__ = "gpu_allocations"

    trace_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    span_id: Mapped[str] = mapped_column(String(16), primary_key=True)
    pool: Mapped[str] = mapped_column(String(128))
    hour: Mapped[datetime] = mapped_column(UtcDateTime())
    weight: Mapped[int] = mapped_column(BigInteger)
    gpu_cost_nanousd: Mapped[int] = mapped_column(BigInteger)
    computed_at: Mapped[datetime] = mapped_column(UtcDateTime())

    __table_args__ = (Index(None, "hour"), Index(None, "pool", "hour"))


@dataclass(frozen=True, slots=True)
class Reallocated:
    """The GPU shares of the calls of the UTC hours [start, end) as a re-allocation is about to
    write them (`app.rollups.swap`): the rows of `table`, a temporary table with
    `gpu_allocations`' columns, in place of those stored for these hours."""

    table: Table
    start: datetime
    end: datetime

    def kept(self) -> ColumnElement[bool]:
        """The stored shares that stay: those of other hours."""
        return or_(GpuAllocation.hour < self.start, GpuAllocation.hour >= self.end)
