"""True-up factors: how a provider's bill scales the estimated (trace) cost of its calls.

One row per provider, model as traces name it (the served model: `response_model`, else the
requested `model`) and UTC day that is over and has a USD bill for the model. Rows are written by
`app.trueup.refresh_true_up` (`spendguard trueup`, and the worker after a billing collector
run) and read by the unit-cost report when `Scope(true_up=True)`.

A call's trued-up cost, `trued_cost` below, is exact integer arithmetic in SQL:

    floor(cost × num / den)                     every call of the model-day
    + residual_nano                             the one carrier call of the model-day

`num / den` is billed / estimated, held as a fraction whose terms are at most 2**31 - 1 (the
exact ratio when its terms fit, else the closest such fraction), and evaluated as
`(cost / den) * num + ((cost % den) * num) / den`: the same value as floor(cost × num / den),
but no intermediate product exceeds 2**62, so the 64-bit integers of SQLite and PostgreSQL never
overflow. What the floors and the fraction leave over (`billed_nano` minus the sum of the
scaled calls, a few nano-dollars) is added to one carrier call, the most expensive call of the
model-day, so the trued-up calls of a model-day add up to its bill exactly, to the nano-dollar.
Every call has one trued-up cost, so every view that sums calls adds up to the same total.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import BigInteger, ColumnElement, Date, String, Table, and_, case, func
from sqlalchemy.orm import Mapped, mapped_column

from app.warehouse.tables import Base, LlmCall
from app.warehouse.types import UtcDateTime

# The largest term of a factor: keeps (cost % den) * num below 2**62 in SQL.
MAX_TERM = 2**31 - 1


class TrueUpFactor(Base):
    """Billed / estimated for one provider, traced model and UTC day, with the residual."""

    __tablename__ = "true_up_factors"

    provider: Mapped[str] = mapped_column(String(64), primary_key=True)
    model: Mapped[str] = mapped_column(String(256), primary_key=True)  # as the calls name it
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    starts_at: Mapped[datetime] = mapped_column(UtcDateTime())  # the day's bounds, for a
    ends_at: Mapped[datetime] = mapped_column(UtcDateTime())  # range join on started_at
    billed_model: Mapped[str] = mapped_column(String(256))  # normalized: the bill's model
    billed_nano: Mapped[int] = mapped_column(BigInteger)  # USD billed, normalized model-day
    estimated_nano: Mapped[int] = mapped_column(BigInteger)  # traced estimate, same group
    factor_num: Mapped[int] = mapped_column(BigInteger)
    factor_den: Mapped[int] = mapped_column(BigInteger)
    carrier_trace_id: Mapped[str | None] = mapped_column(String(32))
    carrier_span_id: Mapped[str | None] = mapped_column(String(16))
    residual_nano: Mapped[int] = mapped_column(BigInteger, default=0)
    computed_at: Mapped[datetime] = mapped_column(UtcDateTime())


def served_model() -> ColumnElement[Any]:
    """The model a call was billed for: the one that answered, else the one requested."""
    return func.coalesce(LlmCall.response_model, LlmCall.model)


def factor_join(factors: Table | None = None) -> ColumnElement[bool]:
    """Joins a call (`llm_calls`) to its factor row, if its model-day has one. `factors`: a
    table with `true_up_factors`' columns to read instead (`app.rollups.swap`)."""
    f = _columns(factors)
    return and_(
        f.provider == LlmCall.provider,
        f.model == served_model(),
        LlmCall.started_at >= f.starts_at,
        LlmCall.started_at < f.ends_at,
    )


def scaled_cost(factors: Table | None = None) -> ColumnElement[Any]:
    """floor(cost × num / den) without overflow (costs are never negative); NULL stays NULL."""
    f = _columns(factors)
    cost, num, den = LlmCall.cost_nanousd, f.factor_num, f.factor_den
    scaled: ColumnElement[Any] = (cost // den) * num + ((cost % den) * num) // den
    return scaled


def trued_cost(factors: Table | None = None) -> ColumnElement[Any]:
    """A call's cost after the true-up; its estimate when its model-day has no factor.
    Unpriced calls (NULL cost) stay NULL: unpriced, never priced as 0."""
    f = _columns(factors)
    carrier = and_(LlmCall.trace_id == f.carrier_trace_id, LlmCall.span_id == f.carrier_span_id)
    residual = case((carrier, f.residual_nano), else_=0)
    return case(
        (f.factor_den.is_(None), LlmCall.cost_nanousd), else_=scaled_cost(factors) + residual
    )


def _columns(factors: Table | None) -> Any:
    return TrueUpFactor if factors is None else factors.c
