"""What the provider-bill collectors (`openai`, `anthropic`) share on the data side: the
normalized lines of a cost or usage report, exact amounts, model names, and storing a window.

Providers restate recent days, so storing a window REPLACES, day by day, what was stored for
the days it covers (`replace_days`): a day reported differently is deleted and inserted again
(counted in `days_replaced`), a day reported the same is left alone — a re-run adds nothing
and never appends twice. How a run reads its windows: `collectors.billing`.

`normalize_billed_model` makes a bill's model meet the name traces use
(`gpt-4o-mini-2024-07-18` → `gpt-4o-mini`); reconciliation applies it to both sides.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from typing import Any, TypeVar

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from app.warehouse.tables_billing import BilledCost, BilledUsage

DAY = timedelta(days=1)

# Dated snapshot suffixes: `-2024-07-18` (OpenAI), `-20250929` (Anthropic), the moving alias
# `-latest`; OpenAI's older four-digit `-0613` only for OpenAI (elsewhere digits may be a size).
_SNAPSHOT = re.compile(r"-(?:\d{4}-\d{2}-\d{2}|\d{8}|latest)$")
_OPENAI_MMDD = re.compile(r"-\d{4}$")


def normalize_billed_model(provider: str, model: str | None) -> str | None:
    """The model as traces name it: lower case, without a dated snapshot suffix (applied
    twice, it changes nothing); fine-tuned models (`ft:…`) keep their whole name; None and
    blank give None."""
    if model is None or not model.strip():
        return None
    name = model.strip().lower()
    if name.startswith("ft:"):
        return name
    if provider == "openai":
        name = _OPENAI_MMDD.sub("", _SNAPSHOT.sub("", name.removeprefix("openai/")))
        return name or None
    name = name.removeprefix("anthropic/") if provider == "anthropic" else name
    return _SNAPSHOT.sub("", name) or name


def to_nanos(amount: Decimal, scale: int = 0) -> int:
    """`amount` × 10^-scale units (cents: scale 2) as exact nano-units, half-even."""
    if not amount.is_finite():
        raise ValueError(f"{amount} is not a finite amount")
    with localcontext() as ctx:
        ctx.prec = 60
        return int(amount.scaleb(9 - scale).to_integral_value(rounding=ROUND_HALF_EVEN))


def midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class CostLine:
    """One line of a cost report, normalized (a `BilledCost` row without its model)."""

    day: date
    line_item: str
    model_raw: str | None
    cost_type: str | None
    token_type: str | None
    project: str | None
    amount_nano: int
    currency: str  # upper case, as the API gave it


@dataclass(frozen=True, slots=True)
class UsageLine:
    """One result of a usage report bucket (a `BilledUsage` row without its model)."""

    bucket_start: datetime
    bucket_width: str
    model_raw: str | None
    project: str | None
    api_key_id: str | None
    input_tokens: int  # includes cache reads and writes
    cache_read_tokens: int
    cache_write_tokens: int
    output_tokens: int
    requests: int | None


@dataclass(slots=True)
class WindowRead:
    """What the APIs said about a window of days; `rejected` counts results not understood."""

    costs: list[CostLine] = field(default_factory=list)
    usage: list[UsageLine] = field(default_factory=list)
    rejected: int = 0


@dataclass(frozen=True, slots=True)
class BillRows:
    """A window to store: its days [first, end) replace what was stored for them."""

    first: date
    end: date
    read: WindowRead
    api_calls: int


def replace_days(
    session: Session, provider: str, rows: BillRows, fetched_at: datetime
) -> tuple[int, int]:
    """Store a window, day by day: a day reported differently from what is stored replaces it,
    a day reported the same is left alone. Returns (rows written, stored days replaced)."""
    lo, hi = midnight(rows.first), midnight(rows.end)
    costs = _by_day((c for c in rows.read.costs), lambda c: c.day)
    usage = _by_day((u for u in rows.read.usage), lambda u: u.bucket_start.date())
    stored_costs = _by_day(
        session.execute(
            select(*(getattr(BilledCost, f) for f in _COST_KEY)).where(
                BilledCost.provider == provider,
                BilledCost.day >= rows.first,
                BilledCost.day < rows.end,
            )
        ),
        lambda r: r[0],
    )
    stored_usage = _by_day(
        session.execute(
            select(*(getattr(BilledUsage, f) for f in _USAGE_KEY)).where(
                BilledUsage.provider == provider,
                BilledUsage.bucket_start >= lo,
                BilledUsage.bucket_start < hi,
            )
        ),
        lambda r: r[0].astimezone(UTC).date(),
    )
    written = replaced = 0
    for day in (rows.first + timedelta(days=i) for i in range((rows.end - rows.first).days)):
        new_costs = Counter(_key(c, _COST_KEY) for c in costs.get(day, []))
        new_usage = Counter(_key(u, _USAGE_KEY) for u in usage.get(day, []))
        old_costs = Counter(tuple(r) for r in stored_costs.get(day, []))
        old_usage = Counter(_utc(tuple(r)) for r in stored_usage.get(day, []))
        if new_costs == old_costs and new_usage == old_usage:
            continue
        replaced += bool(old_costs or old_usage)
        session.execute(
            delete(BilledCost).where(BilledCost.provider == provider, BilledCost.day == day)
        )
        session.execute(
            delete(BilledUsage).where(
                BilledUsage.provider == provider,
                BilledUsage.bucket_start >= midnight(day),
                BilledUsage.bucket_start < midnight(day + DAY),
            )
        )
        for c in costs.get(day, []):
            model = normalize_billed_model(provider, c.model_raw)
            session.add(BilledCost(provider=provider, model=model, fetched_at=fetched_at, **_d(c)))
        for u in usage.get(day, []):
            model = normalize_billed_model(provider, u.model_raw)
            session.add(BilledUsage(provider=provider, model=model, fetched_at=fetched_at, **_d(u)))
        written += len(costs.get(day, [])) + len(usage.get(day, []))
    session.flush()
    return written, replaced


_COST_KEY = tuple(f.name for f in fields(CostLine))
_USAGE_KEY = tuple(f.name for f in fields(UsageLine))
T = TypeVar("T")


def _by_day(items: Iterable[T], day_of: Callable[[T], date]) -> dict[date, list[T]]:
    grouped: dict[date, list[T]] = {}
    for item in items:
        grouped.setdefault(day_of(item), []).append(item)
    return grouped


def _key(line: CostLine | UsageLine, names: tuple[str, ...]) -> tuple[Any, ...]:
    return _utc(tuple(getattr(line, name) for name in names))


def _utc(values: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(v.astimezone(UTC) if isinstance(v, datetime) else v for v in values)


def _d(line: CostLine | UsageLine) -> dict[str, Any]:
    return {f.name: getattr(line, f.name) for f in fields(line)}
