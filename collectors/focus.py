"""`focus`: GPU lines of FOCUS 1.0–1.2 and CUR 2.0 billing exports (AWS Data Exports).

Layout (S3, or a local copy of it with `path:`):

    <prefix>/<export>/data/BILLING_PERIOD=YYYY-MM/<files>   Parquet, or gzip CSV
    <prefix>/<export>/metadata/BILLING_PERIOD=YYYY-MM/<export>-Manifest.json

A billing period of an export is read whole and replaces what was stored for it
(`collectors.gpu_common.replace_slices`): AWS rewrites a period as it is restated, weeks after the
month ended. Which files make the period (`collectors.focus_exports`) is what its manifest's
`dataFiles` says, when there is a manifest (with "create new export version", older versions
stay in the bucket); else every data file under the period. A run reads the periods whose files
changed (a fingerprint of their keys and ETags, kept in the checkpoint), among the last
`initial_months` and those read before; `--since D` reads again every period from D's month on.

Kept: lines of GPU or accelerator instances (by instance type, usage type or description) and
lines carrying one of `tag_keys`; the others are skipped (counted). Credits and refunds stay lines
of their own (negative amounts). Amounts are exact: CSV text is read as text, Parquet decimals as
decimals, Parquet doubles through their shortest text. The amount is `cost_column`: `BilledCost`
(CUR 2.0: `line_item_unblended_cost`) or `EffectiveCost` (CUR 2.0: the amortized cost of Savings
Plans and reservations). Optional columns may be missing and extra ones are ignored; a file
without the required ones fails its period, which stays as it was stored.
"""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import polars as pl
from sqlalchemy.orm import Session

from app.settings import FocusCollectorConfig, Settings
from collectors.base import Chunk, Collector, CollectorError, Loaded, RunContext
from collectors.billing_common import to_nanos
from collectors.focus_exports import Store, store_of
from collectors.gpu_common import (
    GpuLine,
    decimal_of,
    gpu_instance_type,
    milli,
    parse_tags,
    replace_slices,
    tag_value,
    tags_text,
)

log = logging.getLogger("spendguard.collectors")

# A cheap first pass in Polars (its regex engine has no look-behind); `gpu_instance_type` decides.
_MAYBE_GPU = r"(?i)(p[3-6]|g4|g5|g6|gr6|trn[12]|inf[12]|dl[12])[a-z0-9-]*\.[a-z0-9]"

FOCUS_COLUMNS = {
    "currency": "BillingCurrency",
    "start": "ChargePeriodStart",
    "end": "ChargePeriodEnd",
    "category": "ChargeCategory",
    "description": "ChargeDescription",
    "resource_id": "ResourceId",
    "usage": "ConsumedQuantity",
    "unit": "ConsumedUnit",
    "tags": "Tags",
    "usage_type": "x_UsageType",
    "sku": "SkuPriceDetails",
    "meter": "SkuMeter",
}
CUR_COLUMNS = {
    "currency": "line_item_currency_code",
    "start": "line_item_usage_start_date",
    "end": "line_item_usage_end_date",
    "category": "line_item_line_item_type",
    "description": "line_item_line_item_description",
    "resource_id": "line_item_resource_id",
    "usage": "line_item_usage_amount",
    "unit": "pricing_unit",
    "tags": "resource_tags",
    "usage_type": "line_item_usage_type",
    "sku": "product_instance_type",
    "meter": "product_instance_family",
    "billed": "line_item_unblended_cost",
    "sp_effective": "savings_plan_savings_plan_effective_cost",
    "ri_effective": "reservation_effective_cost",
}
_CUR_CATEGORIES = {
    "usage": "usage",
    "discountedusage": "usage",
    "savingsplancoveredusage": "usage",
    "credit": "credit",
    "refund": "refund",
    "tax": "tax",
    "fee": "purchase",
    "rifee": "purchase",
    "savingsplanrecurringfee": "purchase",
    "savingsplanupfrontfee": "purchase",
    "savingsplannegation": "adjustment",
}


@dataclass(slots=True)
class PeriodRows:
    export: str
    period: str
    lines: list[GpuLine] = field(default_factory=list)
    rejected: int = 0
    skipped: int = 0
    files: int = 0


class FocusCollector(Collector[FocusCollectorConfig, FocusCollectorConfig, PeriodRows]):
    name = "focus"
    description = "FOCUS 1.x / CUR 2.0 billing exports: GPU and tagged cost lines"

    def __init__(self, *, clock: Any | None = None) -> None:
        self._clock = clock

    def config(self, settings: Settings) -> FocusCollectorConfig:
        return settings.collectors.focus

    def sources(self, config: FocusCollectorConfig) -> Sequence[tuple[str, FocusCollectorConfig]]:
        if config.path is not None:
            return [(f"file://{config.path}", config)]
        if config.bucket:
            return [(f"s3://{config.bucket}/{config.prefix}", config)]
        return []

    def now(self) -> datetime:
        return (self._clock or (lambda: datetime.now(UTC)))().astimezone(UTC)

    def fetch(
        self,
        run: RunContext[FocusCollectorConfig],
        source: FocusCollectorConfig,
        checkpoint: str | None,
    ) -> Generator[Chunk[PeriodRows], None, None]:
        store = store_of(source)
        seen = _seen(checkpoint)
        today = self.now().date()
        cutoff = _month_start(
            run.since.date() if run.since else _months_back(today, source.initial_months - 1)
        )
        for period in store.periods():
            forced = run.since is not None and period.period >= cutoff
            wanted = period.period >= cutoff or period.key in seen
            if not forced and (not wanted or seen.get(period.key) == period.fingerprint):
                continue
            rows = PeriodRows(period.export, period.period)
            for key in period.files:
                _read_file(store, key, source, rows)
            seen[period.key] = period.fingerprint
            first = datetime.strptime(period.period, "%Y-%m").replace(tzinfo=UTC)
            end = _next_month(first)
            yield Chunk(rows, json.dumps(seen, sort_keys=True), (first, end))

    def load(
        self, session: Session, run: RunContext[FocusCollectorConfig], rows: PeriodRows
    ) -> Loaded:
        written, replaced = replace_slices(
            session, self.name, rows.export, {rows.period: rows.lines}, self.now()
        )
        details = {"periods_replaced": replaced, "files_read": rows.files}
        if rows.skipped:
            details["lines_not_gpu"] = rows.skipped
        return Loaded(rows=written, rejected=rows.rejected, details=details)


# ── reading one file ───────────────────────────────────────────────────────────────────────────


def _read_file(store: Store, key: str, config: FocusCollectorConfig, rows: PeriodRows) -> None:
    raw = store.read(key)
    try:
        if key.lower().endswith(".parquet"):
            frame = pl.read_parquet(io.BytesIO(raw))
        else:  # gzip CSV (Polars inflates it), or plain CSV; every column as text
            frame = pl.read_csv(raw, infer_schema=False)
    except Exception as exc:
        raise CollectorError(
            f"focus: {store.where}{key}: not a readable Parquet or CSV file ({exc}); the period "
            "stays as it was stored"
        ) from None
    rows.files += 1
    kind, names = _kind(frame, key, config)
    frame = _as_text(frame, names)
    keep = _prefilter(frame, config.tag_keys)
    rows.skipped += frame.height - int(keep.sum())
    for record in frame.filter(keep).iter_rows(named=True):
        line = _line(record, kind, config, rows.period)
        if line is None:
            rows.rejected += 1
        elif isinstance(line, GpuLine):
            rows.lines.append(line)
        else:
            rows.skipped += 1


def _kind(
    frame: pl.DataFrame, key: str, config: FocusCollectorConfig
) -> tuple[str, dict[str, str]]:
    """ "focus" or "cur", and the columns to read under their own names (absent ones too)."""
    columns = set(frame.columns)
    if "BilledCost" in columns and "ChargePeriodStart" in columns and "ChargePeriodEnd" in columns:
        names = {**FOCUS_COLUMNS, "billed": "BilledCost", "effective": "EffectiveCost"}
        return "focus", names
    required = (
        "line_item_unblended_cost",
        "line_item_usage_start_date",
        "line_item_usage_end_date",
    )
    if all(c in columns for c in required):
        return "cur", dict(CUR_COLUMNS)
    raise CollectorError(
        f"focus: {key}: neither FOCUS (BilledCost, ChargePeriodStart, ChargePeriodEnd) nor "
        f"CUR 2.0 (line_item_unblended_cost, line_item_usage_start_date, …) columns; "
        "check collectors.focus.prefix points at a FOCUS or CUR 2.0 export"
    )


def _as_text(frame: pl.DataFrame, names: dict[str, str]) -> pl.DataFrame:
    """The columns we read, each as text (absent optional columns as nulls): exact decimals,
    times as ISO text in UTC, tag maps as JSON."""
    out = []
    for alias, column in names.items():
        if column not in frame.columns:
            out.append(pl.lit(None, dtype=pl.String).alias(alias))
            continue
        dtype = frame.schema[column]
        expr = pl.col(column)
        if isinstance(dtype, pl.Datetime):
            if dtype.time_zone is None:
                expr = expr.dt.replace_time_zone("UTC")
            expr = expr.dt.convert_time_zone("UTC").dt.to_string("%Y-%m-%dT%H:%M:%S%.fZ")
        elif isinstance(dtype, pl.List):
            expr = expr.list.eval(pl.element().struct.json_encode()).list.join(",")
        elif isinstance(dtype, pl.Struct):
            expr = expr.struct.json_encode()
        else:
            expr = expr.cast(pl.String)
        out.append(expr.alias(alias))
    return frame.select(out)


def _prefilter(frame: pl.DataFrame, tag_keys: Sequence[str]) -> pl.Series:
    texts = [pl.col(c).fill_null("") for c in ("usage_type", "sku", "description", "meter")]
    maybe = pl.concat_str(texts, separator=" ").str.contains(_MAYBE_GPU)
    for key in tag_keys:
        snake = re.sub(r"[^A-Za-z0-9]", "_", key)
        for needle in {key, snake}:
            maybe = maybe | pl.col("tags").fill_null("").str.contains(needle, literal=True)
    return frame.select(maybe.alias("keep"))["keep"]


def _line(
    r: dict[str, Any], kind: str, config: FocusCollectorConfig, period: str
) -> GpuLine | str | None:
    """A kept line, "skip" (not GPU after all), or None (not understood: rejected)."""
    tags = parse_tags(r["tags"])
    instance = gpu_instance_type(r["usage_type"], r["sku"], r["meter"], r["description"])
    tagged = any(tag_value(tags, key) for key in config.tag_keys)
    if instance is None and not tagged:
        return "skip"
    amount = _amount(r, kind, config.cost_column)
    start, end = _time(r["start"]), _time(r["end"])
    if amount is None or start is None or end is None or end < start:
        log.warning("focus: a %s line without a readable amount or period: rejected", period)
        return None
    usage = decimal_of(r["usage"])
    if amount == 0 and not usage:
        return "skip"
    return GpuLine(
        slice_key=period,
        period_start=start,
        period_end=end,
        charge_category=_category(r["category"], kind),
        instance_type=instance,
        resource_id=(r["resource_id"] or None) and str(r["resource_id"])[:512],
        namespace=None,
        tags=tags_text(tags),
        description=(r["description"] or None) and str(r["description"])[:512],
        usage_milli=milli(usage),
        usage_unit=(r["unit"] or None) and str(r["unit"])[:32],
        amount_nano=to_nanos(amount),
        currency=str(r["currency"] or "USD").strip().upper()[:8] or "USD",
    )


def _amount(r: dict[str, Any], kind: str, cost_column: str) -> Any:
    billed = decimal_of(r["billed"])
    if cost_column == "BilledCost":
        return billed
    if kind == "focus":
        effective = decimal_of(r.get("effective"))
        return billed if effective is None else effective
    line_type = str(r["category"] or "").lower()
    if line_type == "savingsplancoveredusage":
        return decimal_of(r["sp_effective"])
    if line_type == "discountedusage":
        return decimal_of(r["ri_effective"])
    if line_type == "savingsplannegation":
        return decimal_of("0")
    return billed


def _category(raw: Any, kind: str) -> str:
    text = str(raw or "").strip()
    if kind == "cur":
        lowered = text.lower()
        if "discount" in lowered:
            return "discount"
        return _CUR_CATEGORIES.get(lowered, lowered or "usage")
    return text.lower() or "usage"


def _time(raw: Any) -> datetime | None:
    if raw is None or not str(raw).strip():
        return None
    text = str(raw).strip().replace(" ", "T").replace("Z", "+00:00")
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).astimezone(UTC)


# ── periods and the checkpoint ─────────────────────────────────────────────────────────────────


def _seen(checkpoint: str | None) -> dict[str, str]:
    if not checkpoint:
        return {}
    try:
        seen = json.loads(checkpoint)
    except ValueError:
        seen = None
    if not isinstance(seen, dict):
        log.warning("focus: unreadable checkpoint %r: reading as on a first run", checkpoint)
        return {}
    return {str(k): str(v) for k, v in seen.items()}


def _month_start(day: date) -> str:
    return f"{day.year:04d}-{day.month:02d}"


def _months_back(day: date, months: int) -> date:
    index = day.year * 12 + day.month - 1 - months
    return date(index // 12, index % 12 + 1, 1)


def _next_month(first: datetime) -> datetime:
    return first.replace(year=first.year + first.month // 12, month=first.month % 12 + 1)
