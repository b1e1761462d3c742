"""A rule's metric per group over a window, from the shared unit-cost aggregation.

`unit_cost_query` (app/reports/unit_costs.py) does the counting (every request of an endpoint
or user counts, model groups count the requests that called the model, unpriced calls are
counted, never priced as 0); here it is bounded to the window on `requests.started_at` (an
indexed column), so an evaluation reads the windows ending now, never the whole history.

What comes back per group are additive totals (`Totals`); every metric is derived from them,
ratios included, so totals of adjacent windows add up exactly. The backtest relies on that:
`BucketMeasurer` reads the replayed range once, bucketed by the step, and answers any window
made of whole buckets from prefix sums (others fall back to a direct query).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from operator import add, sub
from typing import Any, Protocol

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Connection,
    Engine,
    cast,
    func,
    literal,
    literal_column,
    or_,
    select,
)
from sqlalchemy.sql import Select

from alerts.rules import GroupKey, Rule
from alerts.windows import Window
from app.money import nanos_to_usd, per_thousand
from app.reports.unit_costs import COLUMNS, MEASURES, Scope, unit_cost_query
from app.rollups.query import rollup_query
from app.rollups.stale import dirty_in, in_spans, sliced_in, staged_by_hour
from app.rollups.weeks import weeks_in
from app.warehouse.engine import snapshot
from app.warehouse.tables import Request

GLOB_CHARS = frozenset("*?")
_FIELDS = MEASURES[:6]  # requests … unpriced_calls: what a rule can measure


@dataclass(frozen=True, slots=True)
class Totals:
    requests: int = 0
    llm_calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_nanousd: int = 0
    unpriced_calls: int = 0

    def __add__(self, other: Totals) -> Totals:
        return Totals(*(a + b for a, b in zip(self.astuple(), other.astuple(), strict=True)))

    def __sub__(self, other: Totals) -> Totals:
        return Totals(*(a - b for a, b in zip(self.astuple(), other.astuple(), strict=True)))

    def astuple(self) -> tuple[int, ...]:
        return tuple(getattr(self, f) for f in _FIELDS)

    def empty(self) -> bool:
        return not any(self.astuple())


EMPTY = Totals()
Measured = dict[GroupKey, Totals]


def metric_value(metric: str, totals: Totals) -> Decimal | None:
    if metric == "cost_usd":
        return nanos_to_usd(totals.cost_nanousd)
    if metric == "cost_per_1k_requests":
        return per_thousand(totals.cost_nanousd, totals.requests)
    if metric == "tokens":
        return Decimal(totals.input_tokens + totals.output_tokens)
    if metric == "requests":
        return Decimal(totals.requests)
    return Decimal(totals.unpriced_calls)


class Measurer(Protocol):
    def measure(self, window: Window) -> Measured:
        """Totals per group in `window` (groups with nothing in it may be left out)."""


def rule_query(rule: Rule, dialect: str) -> Select[Any]:
    """The rule's unit-cost query (its groups and filters), not yet bounded in time."""
    exact: dict[str, list[str]] = {}
    globs: list[ColumnElement[bool]] = []
    for dim, values in rule.config.filter_values().items():
        plain = [v for v in values if not GLOB_CHARS & set(v)]
        patterns = [v for v in values if GLOB_CHARS & set(v)]
        if plain and not patterns:
            exact[dim] = plain
            continue
        column = COLUMNS[dim]
        alternatives = [glob_match(column, p, dialect) for p in patterns]
        if plain:
            alternatives.append(column.in_(plain))
        globs.append(or_(*alternatives))
    query = unit_cost_query(rule.dims, Scope(filters=exact))
    # A condition on a call column after the outer join keeps only requests with such calls:
    # the same rows the inner join `unit_cost_query` uses for exact call filters would keep.
    return query.where(*globs) if globs else query


def glob_match(column: Any, pattern: str, dialect: str) -> ColumnElement[bool]:
    """`*` and `?` globs, case-sensitive on both backends (SQLite's LIKE is not)."""
    if dialect == "sqlite":
        escaped = "".join(f"[{c}]" if c == "[" else c for c in pattern)
        return column.op("GLOB")(literal(escaped))  # type: ignore[no-any-return]
    like = pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return column.like(like.replace("*", "%").replace("?", "_"), escape="\\")  # type: ignore[no-any-return]


def _totals(row: Any) -> Totals:
    return Totals(*(int(row[f]) for f in _FIELDS))


def _key(row: Any, dims: tuple[str, ...]) -> GroupKey:
    return tuple(str(row[d]) for d in dims)


class SqlMeasurer:
    """Bounded queries per window (remembered for the life of the measurer). The whole UTC
    days inside a window come from the daily rollups when they answer the rule exactly (no
    glob filter, and `rollup_query` can), and so do the whole hours of its partial days at
    either end when those are sliced (the live days: a window ending now); the rest (minutes
    at either end, other partial days, the days or hours waiting for a rebuild) from the base
    tables. Totals are additive over time, so the sum is the base tables' answer. Most of a
    day stored whole (a rolling `24h` window reaching into the day before the latest, which
    is sliced only for the first two hours of the latest: `app.rollups.refresh.LIVE_GRACE`)
    is its rollup rows less the rest of the day, read from the base tables."""

    def __init__(self, engine: Engine, rule: Rule) -> None:
        self.engine, self.rule = engine, rule
        self.query = rule_query(rule, engine.dialect.name)
        self.exact = exact_filters(rule)
        self.memo: dict[tuple[datetime, datetime], Measured] = {}

    def measure(self, window: Window) -> Measured:
        key = (window.start, window.end)
        if key not in self.memo:
            with snapshot(self.engine) as conn:
                self.memo[key] = self._measure(conn, window.start, window.end)
        return self.memo[key]

    def _measure(self, conn: Connection, start: datetime, end: datetime) -> Measured:
        if self.exact is None:
            return self._base(conn, start, end)
        first, last = _utc_ceil(start), _utc_floor(end)
        sliced = sliced_in(conn, _utc_floor(start).date(), last.date() + timedelta(days=1))
        if first > last:  # within one UTC day
            parts = [self._part_day(conn, start, end, sliced)]
        else:
            whole = self._whole_days(conn, first.date(), last.date())
            if whole is None:
                return self._base(conn, start, end)
            parts = [
                self._part_day(conn, start, first, sliced),
                whole,
                self._part_day(conn, last, end, sliced),
            ]
        return _added(parts)

    def _whole_days(self, conn: Connection, since: date, until: date) -> Measured | None:
        """The whole UTC days [since, until): the rollups, but for the days (or hours) waiting
        for a rebuild (live ingest: the latest hour), from the base tables. None: the rollups
        cannot answer the rule."""
        if since >= until:
            return {}
        dirty = dirty_in(conn, since, until)
        weeks = weeks_in(conn, since, until, dirty)
        rolled = rollup_query(self.rule.dims, self.exact, since, until, stale=dirty, weeks=weeks)
        if rolled is None:
            return None
        # (The staged days are in the rollups' answer: `app.warehouse.tables_staged`.)
        parts = [self._base(conn, lo, hi) for lo, hi in dirty.unstaged().periods()]
        parts.append({_key(r, self.rule.dims): _totals(r) for r in conn.execute(rolled).mappings()})
        return _added(parts)

    def _part_day(
        self, conn: Connection, start: datetime, end: datetime, sliced: set[date]
    ) -> Measured:
        """[start, end) within one UTC day: on a sliced day (the live ones) its whole hours
        from the rollups' hour rows (but the stale hours), the minutes at either end from the
        base tables; on another day, all from the base tables."""
        if start >= end:
            return {}
        day = _utc_floor(start).date()
        lo, hi = _hour_ceil(start), _hour_floor(end)
        if day not in sliced:
            return self._most_of_day(conn, start, end, day)
        if lo >= hi:
            return self._base(conn, start, end)
        dirty = dirty_in(conn, day, day + timedelta(days=1))
        to_hour = 24 if hi.date() != day else hi.hour
        hours = (lo.hour, to_hour)
        # The day stale whole: from the base tables, unless it is staged in hour slices (then
        # its staged rows are the rollups': `app.warehouse.tables_staged`).
        if dirty.days and not (dirty.staged and staged_by_hour(conn, day)):
            return self._base(conn, start, end)
        next_day = day + timedelta(days=1)
        rolled = rollup_query(self.rule.dims, self.exact, day, next_day, stale=dirty, hours=hours)
        if rolled is None:
            return self._base(conn, start, end)
        # The minutes at either end and the stale hours in between, in one base-table query.
        spans = [(start, lo), (hi, end)]
        spans += [
            (at, at + timedelta(hours=1))
            for d, h in dirty.hours
            if lo <= (at := _midnight(d) + timedelta(hours=h)) < hi
        ]
        parts = [self._base_spans(conn, [(a, b) for a, b in spans if a < b])]
        parts.append({_key(r, self.rule.dims): _totals(r) for r in conn.execute(rolled).mappings()})
        return _added(parts)

    def _most_of_day(self, conn: Connection, start: datetime, end: datetime, day: date) -> Measured:
        """[start, end) within a day stored whole (not sliced): when that is most of the day
        and nothing of the day waits for a rebuild, the day's rollup rows less the rest of the
        day from the base tables (each request starts in one of the two), else all from the
        base tables. (A rolling `24h` window reads most of the day before the latest so.)"""
        midnight = _midnight(day)
        following = midnight + timedelta(days=1)
        if end - start <= (following - midnight) / 2:
            return self._base(conn, start, end)
        if dirty_in(conn, day, day + timedelta(days=1)):
            return self._base(conn, start, end)
        rolled = rollup_query(self.rule.dims, self.exact, day, day + timedelta(days=1))
        if rolled is None:
            return self._base(conn, start, end)
        spans = [(a, b) for a, b in ((midnight, start), (end, following)) if a < b]
        rest = self._base_spans(conn, spans)
        out: Measured = {}
        for row in conn.execute(rolled).mappings():
            key = _key(row, self.rule.dims)
            left = _totals(row) - rest.get(key, EMPTY)
            if left.requests:  # a group with no request in [start, end) is not in its answer
                out[key] = left
        return out

    def _base_spans(self, conn: Connection, spans: list[tuple[datetime, datetime]]) -> Measured:
        """The base tables' totals of the requests that started in any of `spans` (disjoint)."""
        if not spans:
            return {}
        rows = conn.execute(self.query.where(in_spans(Request.started_at, spans))).mappings().all()
        return {_key(r, self.rule.dims): _totals(r) for r in rows}

    def _base(self, conn: Connection, start: datetime, end: datetime) -> Measured:
        if start >= end:
            return {}
        query = self.query.where(Request.started_at >= start, Request.started_at < end)
        rows = conn.execute(query).mappings().all()
        return {_key(r, self.rule.dims): _totals(r) for r in rows}


def exact_filters(rule: Rule) -> dict[str, list[str]] | None:
    """The rule's filters as exact values, or None when one is a glob (base tables only)."""
    exact: dict[str, list[str]] = {}
    for dim, values in rule.config.filter_values().items():
        if any(GLOB_CHARS & set(v) for v in values):
            return None
        exact[dim] = list(values)
    return exact


def _added(parts: Iterable[Measured]) -> Measured:
    out: Measured = {}
    for part in parts:
        for group, totals in part.items():
            out[group] = out[group] + totals if group in out else totals
    return out


def _hour_floor(when: datetime) -> datetime:
    return when.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def _hour_ceil(when: datetime) -> datetime:
    floor = _hour_floor(when)
    return floor if floor == when else floor + timedelta(hours=1)


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def _utc_floor(when: datetime) -> datetime:
    return when.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def _utc_ceil(when: datetime) -> datetime:
    floor = _utc_floor(when)
    return floor if floor == when else floor + timedelta(days=1)


class BucketMeasurer:
    """Totals of [lo, hi) read once per `step` bucket; windows of whole buckets are answered
    from per-group prefix sums, anything else by `fallback`."""

    def __init__(
        self, engine: Engine, rule: Rule, lo: datetime, hi: datetime, step: timedelta
    ) -> None:
        self.size = int(step.total_seconds())
        self.lo, self.hi = _index(lo, self.size), -(-_seconds(hi) // self.size)
        self.fallback = SqlMeasurer(engine, rule)
        bucket = _bucket_expr(engine.dialect.name, self.size)
        query = rule_query(rule, engine.dialect.name).where(
            Request.started_at >= _at(self.lo * self.size),
            Request.started_at < _at(self.hi * self.size),
        )
        query = query.add_columns(bucket.label("bucket")).group_by(bucket)
        per_group: dict[GroupKey, list[tuple[int, tuple[int, ...]]]] = {}
        self.by_bucket: dict[int, list[GroupKey]] = {}
        with engine.connect() as conn:
            for row in conn.execute(query).mappings():
                key, bucket_no = _key(row, rule.dims), int(row["bucket"])
                per_group.setdefault(key, []).append((bucket_no, _totals(row).astuple()))
                self.by_bucket.setdefault(bucket_no, []).append(key)
        # Per group: its bucket numbers, and prefix sums (cumulative[i] = buckets[:i+1]).
        self.index: dict[GroupKey, tuple[list[int], list[tuple[int, ...]]]] = {}
        for key, items in per_group.items():
            items.sort(key=lambda item: item[0])
            running, cumulative = EMPTY.astuple(), []
            for _, totals in items:
                running = tuple(map(add, running, totals))
                cumulative.append(running)
            self.index[key] = ([b for b, _ in items], cumulative)

    def measure(self, window: Window) -> Measured:
        start, end = _seconds(window.start), _seconds(window.end)
        if start % self.size or end % self.size:
            return self.fallback.measure(window)
        first, last = start // self.size, end // self.size
        if first < self.lo or last > self.hi:
            return self.fallback.measure(window)
        candidates: Iterable[GroupKey] = self.index
        if last - first < len(self.index):  # short window: only the groups seen in it
            candidates = {k for b in range(first, last) for k in self.by_bucket.get(b, ())}
        out: Measured = {}
        for key in candidates:
            buckets, cumulative = self.index[key]
            i, j = bisect_left(buckets, first), bisect_left(buckets, last)
            if i == j:
                continue
            totals = (
                cumulative[j - 1]
                if i == 0
                else tuple(map(sub, cumulative[j - 1], cumulative[i - 1]))
            )
            out[key] = Totals(*totals)
        return out


def _bucket_expr(dialect: str, size: int) -> ColumnElement[Any]:
    """The bucket number of `requests.started_at`: floor(epoch seconds / size)."""
    if dialect == "sqlite":
        epoch = cast(func.strftime("%s", Request.started_at), BigInteger)
    else:
        epoch = cast(func.floor(func.extract("epoch", Request.started_at)), BigInteger)
    # Inline, so the same text appears in SELECT and GROUP BY (PostgreSQL compares the text).
    return epoch // literal_column(str(int(size)), BigInteger)


def _seconds(moment: datetime) -> int:
    return int((moment - _EPOCH).total_seconds())


def _index(moment: datetime, size: int) -> int:
    return _seconds(moment) // size


def _at(seconds: int) -> datetime:
    return _EPOCH + timedelta(seconds=seconds)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def first_request_at(engine: Engine) -> datetime | None:
    """When the warehouse's data starts (history before it is unknown, not zero)."""
    with engine.connect() as conn:
        first = conn.execute(select(func.min(Request.started_at))).scalar_one_or_none()
    if first is None:
        return None
    if isinstance(first, str):
        first = datetime.fromisoformat(first)
    return first.replace(tzinfo=UTC) if first.tzinfo is None else first.astimezone(UTC)
