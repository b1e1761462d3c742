"""What the cloud GPU collectors (`aws_ce`, `focus`, `opencost`) share: the normalized cost
line, telling GPU instances from others, reading tags, and storing a slice.

Sources restate what they said (Cost Explorer's estimated days, a FOCUS billing period rewritten
weeks after month end, OpenCost catching up), so a run stores whole SLICES — a day, or a billing
period of one export — and a slice REPLACES what was stored for it (`replace_slices`): a slice
read differently is deleted and inserted again (counted in `slices_replaced`), a slice read the
same is left alone, so a re-run adds nothing and never appends twice.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import astuple, dataclass, fields
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from app.warehouse.tables_gpu import GpuCost

# EC2 (and SageMaker `ml.`) instance types with GPUs or AI accelerators: p3 … p6, g4dn … gr6,
# Trainium, Inferentia, Gaudi. Found in an instance type, a usage type (`USW2-BoxUsage:g6e.xlarge`)
# or a SKU description.
GPU_INSTANCE = re.compile(
    r"(?<![a-z0-9])((?:p3dn|p3|p4de|p4d|p5en|p5e|p5|p6[a-z0-9-]*|g4dn|g4ad|g5g|g5|g6e|g6f|g6"
    r"|gr6|trn1n|trn1|trn2|inf1|inf2|dl1|dl2q)\.(?:[0-9]*x?large|metal[a-z0-9-]*))(?![a-z0-9])",
    re.IGNORECASE,
)


def gpu_instance_type(*texts: str | None) -> str | None:
    """The first GPU/accelerator instance type named in any of `texts`, lower case."""
    for text in texts:
        if text:
            found = GPU_INSTANCE.search(text)
            if found:
                return found.group(1).lower()
    return None


def tag_value(tags: Mapping[str, str], key: str) -> str | None:
    """A tag's value under any of the names bills give it: `gpu-pool`, `user:gpu-pool`
    (Cost Explorer, legacy CUR) or `user_gpu_pool` (CUR 2.0 `resource_tags`)."""
    snake = re.sub(r"[^A-Za-z0-9]", "_", key)
    for name in (key, f"user:{key}", f"user_{key}", f"user_{snake}", snake):
        value = tags.get(name)
        if value not in (None, ""):
            return str(value)
    return None


def parse_tags(raw: Any) -> dict[str, str]:
    """Tags as a plain map from a JSON object, a JSON list of {key, value} (Parquet maps), a
    list of such pairs, or a mapping; anything else (missing, unreadable) is no tags."""
    value = raw
    if isinstance(raw, str):
        text = raw.strip()
        if not text:
            return {}
        if text.startswith("{") and not text.startswith('{"key"'):
            try:
                value = json.loads(text)
            except ValueError:
                return {}
        else:
            try:
                value = json.loads(f"[{text}]" if not text.startswith("[") else text)
            except ValueError:
                return {}
    if isinstance(value, Mapping):
        return {str(k): str(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        pairs = (p for p in value if isinstance(p, Mapping) and "key" in p)
        return {str(p["key"]): str(p["value"]) for p in pairs if p.get("value") is not None}
    return {}


def tags_text(tags: Mapping[str, str]) -> str | None:
    return json.dumps(dict(sorted(tags.items())), separators=(",", ":")) if tags else None


def decimal_of(raw: Any) -> Decimal | None:
    """An amount as an exact Decimal from text or a JSON number; None for null, blank, NaN."""
    if raw is None or isinstance(raw, bool):
        return None
    if isinstance(raw, Decimal | int):
        value = Decimal(raw)
    elif isinstance(raw, float):
        value = Decimal(repr(raw))  # the shortest text that reads back as this float
    else:
        text = str(raw).strip()
        if not text:
            return None
        try:
            value = Decimal(text)
        except InvalidOperation:
            return None
    return value if value.is_finite() else None


def milli(quantity: Decimal | None) -> int | None:
    """A quantity (hours) as integer thousandths, half-even."""
    if quantity is None:
        return None
    return int((quantity * 1000).to_integral_value(rounding=ROUND_HALF_EVEN))


@dataclass(frozen=True, slots=True)
class GpuLine:
    """One normalized GPU cost line (a `GpuCost` row without its source and fetch time)."""

    slice_key: str
    period_start: datetime
    period_end: datetime
    charge_category: str
    instance_type: str | None
    resource_id: str | None
    namespace: str | None
    tags: str | None
    description: str | None
    usage_milli: int | None
    usage_unit: str | None
    amount_nano: int
    currency: str
    estimated: bool = False
    efficiency_permille: int | None = None


_FIELDS = tuple(f.name for f in fields(GpuLine))


def replace_slices(
    session: Session,
    source: str,
    source_key: str,
    slices: Mapping[str, Iterable[GpuLine]],
    fetched_at: datetime,
) -> tuple[int, int]:
    """Store each slice of `slices` (its key → its lines; an empty slice means the source now
    says nothing for it) in place of what was stored for it. Returns (rows written, stored
    slices replaced)."""
    written = replaced = 0
    for key, lines in slices.items():
        new = list(lines)
        stored = session.execute(
            select(*(getattr(GpuCost, name) for name in _FIELDS)).where(
                GpuCost.source == source, GpuCost.source_key == source_key, GpuCost.slice_key == key
            )
        ).all()
        old = Counter(_utc(tuple(row)) for row in stored)
        if old == Counter(_utc(astuple(line)) for line in new):
            continue
        replaced += bool(old)
        session.execute(
            delete(GpuCost).where(
                GpuCost.source == source, GpuCost.source_key == source_key, GpuCost.slice_key == key
            )
        )
        session.add_all(
            GpuCost(source=source, source_key=source_key, fetched_at=fetched_at, **_row(line))
            for line in new
        )
        written += len(new)
    session.flush()
    return written, replaced


def _row(line: GpuLine) -> dict[str, Any]:
    return {name: getattr(line, name) for name in _FIELDS}


def _utc(values: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(
        v.astimezone(UTC) if isinstance(v, datetime) else bool(v) if isinstance(v, bool) else v
        for v in values
    )
