"""From stored GPU cost lines to each pool's cost per UTC hour.

A line belongs to the first pool (in config order) whose `match` it meets: any of its tags
criterion (all of those tags), `instance_ids` (its resource id) or `namespace` (OpenCost's
aggregate name); a line of no pool goes to `(unassigned)`. A line is spread over the UTC hours
of its charge period in proportion to the seconds of each hour it covers, exactly
(`app.money.split_exact`), so a daily Cost Explorer line or a monthly fee lands hour by hour.

Several collectors may see the same spend (Cost Explorer and a FOCUS export of the same
account), so a pool takes each UTC day from ONE source: the first of its `sources` that has a
line for the pool on that day. Lines in a currency other than USD are left out (counted).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from app.money import split_exact
from app.settings import GpuPoolConfig
from app.settings.models import GPU_SOURCES, UNASSIGNED_POOL
from collectors.gpu_common import parse_tags, tag_value

HOUR = timedelta(hours=1)
CREDIT_CATEGORIES = frozenset({"credit", "refund", "discount"})


@dataclass(frozen=True, slots=True)
class CostLine:
    """The parts of a stored `gpu_costs` row the allocation needs."""

    source: str
    period_start: datetime
    period_end: datetime
    charge_category: str
    resource_id: str | None
    namespace: str | None
    tags: str | None
    amount_nano: int
    usage_milli: int | None


@dataclass(slots=True)
class HourCost:
    """One pool's bill for one hour, from one source."""

    cost: int = 0
    credits: int = 0
    usage_milli: int | None = None


@dataclass(slots=True)
class PoolHours:
    """Each pool's cost per hour (the sources already chosen) and what was left out."""

    hours: dict[tuple[str, datetime], tuple[str, HourCost]] = field(default_factory=dict)
    not_usd: int = 0


def pool_of(line: CostLine, pools: Sequence[GpuPoolConfig]) -> str:
    tags = parse_tags(line.tags) if line.tags else {}
    for pool in pools:
        match = pool.match
        if match.tag and all(tag_value(tags, k) == v for k, v in match.tag.items()):
            return pool.name
        if match.instance_ids and line.resource_id in match.instance_ids:
            return pool.name
        if match.namespace and line.namespace in match.namespace:
            return pool.name
    return UNASSIGNED_POOL


def hour_floor(when: datetime) -> datetime:
    return when.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def spread(line: CostLine) -> list[tuple[datetime, int, int | None]]:
    """(hour, amount, usage) for each UTC hour the line's period covers, adding up exactly."""
    start, end = line.period_start.astimezone(UTC), line.period_end.astimezone(UTC)
    if end <= start:
        return [(hour_floor(start), line.amount_nano, line.usage_milli)]
    hours, seconds = [], []
    hour = hour_floor(start)
    while hour < end:
        covered = (min(end, hour + HOUR) - max(start, hour)).total_seconds()
        if covered > 0:
            hours.append(hour)
            seconds.append(round(covered * 1000))
        hour += HOUR
    amounts = split_exact(line.amount_nano, seconds)
    usages = split_exact(line.usage_milli, seconds) if line.usage_milli is not None else None
    return [
        (h, a, None if usages is None else usages[i])
        for i, (h, a) in enumerate(zip(hours, amounts, strict=True))
    ]


def pool_hours(
    lines: Iterable[tuple[CostLine, str]],
    pools: Sequence[GpuPoolConfig],
    since: datetime,
    until: datetime,
) -> PoolHours:
    """Each pool's (and `(unassigned)`'s) cost per hour in [since, until), from the lines
    (each with its currency), one source per pool and UTC day."""
    result = PoolHours()
    by_source: dict[tuple[str, str, datetime], HourCost] = defaultdict(HourCost)
    days: dict[tuple[str, date], set[str]] = defaultdict(set)
    for line, currency in lines:
        if currency != "USD":
            result.not_usd += 1
            continue
        pool = pool_of(line, pools)
        credit = line.charge_category in CREDIT_CATEGORIES
        for hour, amount, usage in spread(line):
            if not since <= hour < until:
                continue
            share = by_source[(pool, line.source, hour)]
            share.cost += amount
            share.credits += amount if credit else 0
            if usage is not None and not credit:
                share.usage_milli = (share.usage_milli or 0) + usage
            days[(pool, hour.date())].add(line.source)
    order = {pool.name: list(pool.sources) for pool in pools}
    chosen = {
        key: next(s for s in order.get(key[0], GPU_SOURCES) if s in sources)
        for key, sources in days.items()
        if any(s in sources for s in order.get(key[0], GPU_SOURCES))
    }
    for (pool, source, hour), share in by_source.items():
        if chosen.get((pool, hour.date())) == source:
            result.hours[(pool, hour)] = (source, share)
    return result
