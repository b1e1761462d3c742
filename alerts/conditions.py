"""Rule conditions: `evaluate(series) → verdict`, registered by name like any extension.

A condition says which windows it needs (`windows(current, spec)`, the judged window first);
the engine measures the rule's metric in each, per group, and hands the values over as a
`Series`. Built-ins:

- `above`: the window's value is above a threshold.
- `anomaly`: the value is above median + sensitivity × scale of the same window at the same
  hour of the week over the past N weeks (same day of the month for `month` windows), where
  scale = 1.4826 × MAD (the median absolute deviation, scaled to a standard deviation for
  normal data), at least 10 % of the median. Robust: one past spike does not move the median,
  and comparing like hours of like weekdays absorbs the weekly rhythm.
- `forecast_above`: a straight-line projection to the end of the calendar period,
  value so far + (rate over the basis) × time left, is above a threshold. The basis is the
  period so far, or the last `run_rate` of it.

Values are `Decimal` (USD for money metrics): no floats anywhere.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from functools import cached_property
from typing import ClassVar

from alerts.config import MONEY_METRICS, AnomalyConfig, ConditionConfig
from alerts.windows import Window, WindowSpec
from app.durations import parse_duration

MAD_TO_SIGMA = Decimal("1.4826")
MIN_SCALE_OF_MEDIAN = Decimal("0.1")
MIN_HISTORY = 2
NANO = Decimal("1e-9")
_MICRO = timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class Series:
    """One group's metric in each window the condition asked for (None: no value there —
    no requests for a ratio, or history from before the warehouse's first request)."""

    windows: tuple[Window, ...]
    values: tuple[Decimal | None, ...]


@dataclass(frozen=True, slots=True)
class Verdict:
    """`compared` (the value, or its projection) against `threshold`; `method` says how."""

    breached: bool
    value: Decimal | None
    compared: Decimal | None
    threshold: Decimal | None
    method: str


class Condition(ABC):
    name: ClassVar[str]

    def __init__(self, config: ConditionConfig, metric: str) -> None:
        self.config = config
        self.metric = metric

    @abstractmethod
    def windows(self, current: Window, spec: WindowSpec) -> list[Window]:
        """The windows `evaluate` needs, `current` first."""

    @abstractmethod
    def evaluate(self, series: Series) -> Verdict: ...

    @abstractmethod
    def summary(self) -> str:
        """The condition in a few words, for `rules check`."""

    def fmt(self, value: Decimal | None) -> str:
        return format_value(self.metric, value)


CONDITIONS: dict[str, type[Condition]] = {}


def register(cls: type[Condition]) -> type[Condition]:
    CONDITIONS[cls.name] = cls
    return cls


def build_condition(config: ConditionConfig, metric: str) -> Condition:
    return CONDITIONS[config.name](config, metric)


@register
class Above(Condition):
    name = "above"

    @property
    def threshold(self) -> Decimal:
        assert self.config.above is not None
        return self.config.above

    def windows(self, current: Window, spec: WindowSpec) -> list[Window]:
        return [current]

    def evaluate(self, series: Series) -> Verdict:
        value = series.values[0]
        breached = value is not None and value > self.threshold
        return Verdict(breached, value, value, self.threshold, self.text)

    @cached_property
    def text(self) -> str:
        return self.summary()

    def summary(self) -> str:
        return f"above {self.fmt(self.threshold)}"


@register
class Anomaly(Condition):
    name = "anomaly"

    def windows(self, current: Window, spec: WindowSpec) -> list[Window]:
        weeks = self.settings.weeks
        return [current, *(spec.shift_back(current, k) for k in range(1, weeks + 1))]

    @property
    def settings(self) -> AnomalyConfig:
        assert self.config.anomaly is not None
        return self.config.anomaly

    def evaluate(self, series: Series) -> Verdict:
        value, cfg = series.values[0], self.settings
        history = [v for v in series.values[1:] if v is not None]
        season = "month" if series.windows[0].label == "month" else "week"
        if value is None or len(history) < MIN_HISTORY:
            method = (
                f"anomaly: {len(history)} past {season}s with data, needs {MIN_HISTORY}"
                if value is not None
                else "anomaly: no value"
            )
            return Verdict(False, value, value, None, method)
        mid = median(history)
        mad = median([abs(v - mid) for v in history])
        scale = max(MAD_TO_SIGMA * mad, MIN_SCALE_OF_MEDIAN * mid)
        threshold = (mid + cfg.sensitivity * scale).quantize(NANO)
        breached = value > threshold and value >= cfg.min_value
        method = (
            f"anomaly (median/MAD of the same window in {len(history)} past {season}s): "
            f"median {self.fmt(mid)}, MAD {self.fmt(mad)}, threshold median + "
            f"{cfg.sensitivity} × {self.fmt(scale)}"
        )
        return Verdict(breached, value, value, threshold, method)

    def summary(self) -> str:
        cfg = self.settings
        floor = f", at least {self.fmt(cfg.min_value)}" if cfg.min_value else ""
        return (
            f"anomaly above median + {cfg.sensitivity} × MAD-scale of the same window "
            f"over {cfg.weeks} past weeks{floor}"
        )


@register
class ForecastAbove(Condition):
    name = "forecast_above"

    @property
    def threshold(self) -> Decimal:
        assert self.config.forecast_above is not None
        return self.config.forecast_above

    def windows(self, current: Window, spec: WindowSpec) -> list[Window]:
        if self.config.run_rate is None:
            return [current, current]
        start = max(current.start, current.end - parse_duration(self.config.run_rate))
        return [current, Window(start, current.end, current.period_end, current.label)]

    def method(self, label: str) -> str:
        if self.config.run_rate is None:
            return f"straight-line projection of the {label}-to-date rate"
        return f"projection at the rate of the last {self.config.run_rate}"

    def evaluate(self, series: Series) -> Verdict:
        current, basis = series.windows[0], series.windows[1]
        so_far = series.values[0] or Decimal(0)
        method = self.method(current.label)
        if current.length < (current.period_end - current.start) / 24 or basis.length < _MICRO:
            return Verdict(False, so_far, None, self.threshold, f"{method}: too early to project")
        rate = (series.values[1] or Decimal(0)) / Decimal(basis.length // _MICRO)
        projected = so_far + rate * Decimal((current.period_end - current.end) // _MICRO)
        projected = projected.quantize(NANO)
        ends = f"{current.period_end:%Y-%m-%d %H:%M} UTC"
        method = f"{method}: {self.fmt(so_far)} so far → {self.fmt(projected)} by {ends}"
        return Verdict(projected > self.threshold, so_far, projected, self.threshold, method)

    def summary(self) -> str:
        return f"forecast above {self.fmt(self.threshold)} ({self.method('period')})"


def median(values: Sequence[Decimal]) -> Decimal:
    ordered = sorted(values)
    mid = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[mid]
    return (ordered[mid - 1] + ordered[mid]) / 2


def format_value(metric: str, value: Decimal | None) -> str:
    """A value for people: money rounded for display ($85.59, $0.0042), counts with commas."""
    if value is None:
        return "n/a"
    if metric in MONEY_METRICS:
        places = "0.01" if abs(value) >= 1 or value == 0 else "0.0001"
        return f"${value.quantize(Decimal(places)):,}"
    if value == value.to_integral_value():
        return f"{int(value):,}"
    return f"{value.quantize(Decimal('0.01')):,}"


def window_text(window: Window) -> str:
    return f"{window.label} {_short(window.start)} → {_short(window.end)} UTC"


def _short(moment: datetime) -> str:
    return f"{moment:%Y-%m-%d %H:%M}"
