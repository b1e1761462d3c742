"""Reconciliation: what traces estimated against what the provider billed, per provider, model
and UTC day.

- **Model rows** (`line_item` null): one per provider, model and day with traced calls.
  `estimated` is the cost of the priced calls that started that day (the call's own UTC day:
  bills count usage by day); `billed` the USD lines of the bill for that model that day whose
  `cost_type` is token usage (`tokens`, or none given). Models meet by name: both sides go
  through `normalize_billed_model`, so `gpt-4o-mini-2024-07-18` in a bill meets `gpt-4o-mini`
  in traces; a call's model is the one that answered (`response_model`), else the one requested.
  `billed` is null while the provider has no bill at all for that day (not collected yet), and
  "0" when its bill that day has no line for the model.
- **Unmatched rows** (`line_item` set): billed USD lines with no trace counterpart — a model
  with no traced call that day (untraced traffic), or lines that are not model tokens (web
  search, fine-tuning, storage…). `estimated` is 0 and `difference` the billed amount, so the
  differences of all rows add up to the whole gap, billed minus estimated.
- **Lines not in USD** are never summed into USD: each is its own row with null money columns
  and the amount and currency in its `line_item` (`"… [not USD: 12.500000000 EUR]"`); a model
  row whose only lines are not in USD has a null `billed`.

`ratio` is billed / estimated (6 decimals), null when either is null or estimated is 0.
Unpriced calls are in no estimate: `Reconciliation.unpriced_calls` counts them. Providers that
have never been billed here (self-hosted models, clouds without a billing collector) are left
out rather than shown as unbilled every day.

The calls are read from the daily rollup at this grain, `rollup_call_days` (the call's UTC day,
provider, served model), and the days waiting for its rebuild from `llm_calls`
(`app.rollups.call_days`): the same numbers as summing the calls, from a few hundred rows.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from sqlalchemy import Engine, func, select

from app.money import format_usd, nanos_to_usd
from app.rollups.call_days import traced_query
from app.rollups.stale import dirty_in
from app.warehouse.engine import snapshot
from app.warehouse.tables_billing import BilledCost
from app.warehouse.types import as_date
from collectors.billing_common import normalize_billed_model

COLUMNS = (
    "date",
    "provider",
    "model",
    "line_item",
    "estimated_usd",
    "billed_usd",
    "difference_usd",
    "ratio",
)
USD = "USD"
TOKEN_COST_TYPES = frozenset({None, "", "tokens"})  # bill lines that traces estimate
MISSING = "(none)"
_RATIO = Decimal("0.000001")

Key = tuple[date, str, str]  # day, provider, normalized model


@dataclass(frozen=True, slots=True)
class TracedGroup:
    """The priced cost of the calls of one provider, served model (as stored) and UTC day."""

    day: date
    provider: str
    raw_model: str
    cost_nanousd: int
    unpriced_calls: int

    @property
    def key(self) -> Key:
        return (self.day, self.provider, normalize(self.provider, self.raw_model))


@dataclass(frozen=True, slots=True)
class ReconRow:
    day: date
    provider: str
    model: str | None
    line_item: str | None  # None on model rows
    estimated_nanousd: int | None
    billed_nanousd: int | None  # None: no bill for the day yet, or not in USD
    other_currency: str | None = None  # lines not in USD: their currency and amount
    other_amount_nano: int | None = None

    @property
    def difference_nanousd(self) -> int | None:
        if self.billed_nanousd is None or self.estimated_nanousd is None:
            return None
        return self.billed_nanousd - self.estimated_nanousd

    @property
    def ratio(self) -> Decimal | None:
        if self.billed_nanousd is None or not self.estimated_nanousd:
            return None
        ratio = Decimal(self.billed_nanousd) / Decimal(self.estimated_nanousd)
        return ratio.quantize(_RATIO, rounding=ROUND_HALF_EVEN)


@dataclass(frozen=True, slots=True)
class Reconciliation:
    rows: list[ReconRow]
    unpriced_calls: int
    traced: list[TracedGroup]  # what the model rows were built from (the true-up uses it)

    @property
    def billed_nanousd(self) -> int:
        """USD billed over the rows (lines not in USD excluded)."""
        return sum(r.billed_nanousd or 0 for r in self.rows)

    @property
    def estimated_nanousd(self) -> int:
        """Estimated over the rows with a USD bill: billed minus this is the sum of the
        rows' differences, the gap to explain."""
        return sum(r.estimated_nanousd or 0 for r in self.rows if r.billed_nanousd is not None)

    @property
    def unbilled_nanousd(self) -> int:
        """Estimated over the rows without a USD bill (not collected yet, or not in USD)."""
        return sum(r.estimated_nanousd or 0 for r in self.rows if r.billed_nanousd is None)

    @property
    def not_usd(self) -> list[ReconRow]:
        return [r for r in self.rows if r.other_currency is not None]


def normalize(provider: str, model: str | None) -> str:
    return normalize_billed_model(provider, model) or MISSING


def reconcile(engine: Engine, since: date, until: date | None = None) -> Reconciliation:
    """The reconciliation of the UTC days `since` (inclusive) to `until` (exclusive)."""
    billed_anywhere = billed_provider_names(engine)
    # Only providers that bill: none, and the calls are not even read.
    traced = traced_groups(engine, since, until, sorted(billed_anywhere)) if billed_anywhere else []
    estimated: dict[Key, int] = defaultdict(int)
    for group in traced:
        estimated[group.key] += group.cost_nanousd
    lines = billed_lines(engine, since, until)
    billed_days = {(day, provider) for day, provider, *_ in lines}
    billed: dict[Key, int] = defaultdict(int)
    not_usd_keys: set[Key] = set()
    rows: list[ReconRow] = []
    for day, provider, model, line_item, cost_type, currency, amount in lines:
        key = (day, provider, normalize(provider, model))
        is_model_line = model is not None and cost_type in TOKEN_COST_TYPES
        if currency != USD:
            if is_model_line:
                not_usd_keys.add(key)
            rows.append(_not_usd_row(key, model, line_item, currency, amount))
        elif is_model_line and key in estimated:
            billed[key] += amount
        else:
            model_name = None if model is None else key[2]
            rows.append(ReconRow(day, provider, model_name, line_item, 0, amount))
    for key, cost in estimated.items():
        day, provider, model = key
        if key in billed:
            bill: int | None = billed[key]
        elif key in not_usd_keys or (day, provider) not in billed_days:
            bill = None
        else:
            bill = 0
        rows.append(ReconRow(day, provider, model, None, cost, bill))
    rows.sort(key=_order)
    unpriced = sum(g.unpriced_calls for g in traced)
    return Reconciliation(rows=rows, unpriced_calls=unpriced, traced=traced)


def traced_groups(
    engine: Engine, since: date, until: date | None, providers: Sequence[str] | None = None
) -> list[TracedGroup]:
    """Priced cost and unpriced calls per provider, served model and the calls' UTC day (of
    `providers` only, when given): from the call-day rollup, the days waiting for a rebuild
    from `llm_calls` (`app.rollups.call_days`), in one statement."""
    with snapshot(engine) as conn:
        dirty = dirty_in(conn, since, until)
        result = conn.execute(traced_query(since, until, providers, dirty)).mappings().all()
    return [
        TracedGroup(
            as_date(r["day"]),
            str(r["provider"]),
            str(r["model"]),
            int(r["cost_nanousd"]),
            int(r["unpriced_calls"]),
        )
        for r in result
    ]


def billed_provider_names(engine: Engine) -> set[str]:
    """Every provider with at least one stored bill line, on any day."""
    with engine.connect() as conn:
        return set(conn.execute(select(BilledCost.provider).distinct()).scalars())


def billed_lines(
    engine: Engine, since: date, until: date | None
) -> list[tuple[date, str, str | None, str, str | None, str, int]]:
    """The bill's lines summed per day, provider, model, line item, cost type and currency."""
    cols = (
        BilledCost.day,
        BilledCost.provider,
        BilledCost.model,
        BilledCost.line_item,
        BilledCost.cost_type,
        func.upper(BilledCost.currency),
    )
    conds = [BilledCost.day >= since] + ([BilledCost.day < until] if until else [])
    query = select(*cols, func.sum(BilledCost.amount_nano)).where(*conds).group_by(*cols)
    with engine.connect() as conn:
        result = conn.execute(query).all()
    return [(as_date(d), p, m, li, ct, cur, int(a)) for d, p, m, li, ct, cur, a in result]


def reconcile_record(row: ReconRow) -> dict[str, Any]:
    """The JSON/CSV shape: exactly `COLUMNS`, money as decimal strings."""
    ratio = row.ratio
    return {
        "date": row.day.isoformat(),
        "provider": row.provider,
        "model": row.model,
        "line_item": row.line_item,
        "estimated_usd": _usd(row.estimated_nanousd),
        "billed_usd": _usd(row.billed_nanousd),
        "difference_usd": _usd(row.difference_nanousd),
        "ratio": None if ratio is None else f"{ratio:f}",
    }


def reconcile_records(rows: Iterable[ReconRow]) -> list[dict[str, Any]]:
    return [reconcile_record(r) for r in rows]


def midnight(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def _not_usd_row(
    key: Key, model: str | None, line_item: str, currency: str, amount: int
) -> ReconRow:
    day, provider, normalized = key
    note = f"{line_item} [not USD: {format_usd(nanos_to_usd(amount))} {currency}]"
    model_name = None if model is None else normalized
    return ReconRow(day, provider, model_name, note, None, None, currency, amount)


def _usd(nanos: int | None) -> str | None:
    return None if nanos is None else format_usd(nanos_to_usd(nanos))


def _order(row: ReconRow) -> tuple[Any, ...]:
    # Per day and provider: model rows, then unmatched lines, then lines not in USD.
    kind = 0 if row.line_item is None else 2 if row.other_currency else 1
    return (row.day, row.provider, kind, row.model or "~", row.line_item or "")
