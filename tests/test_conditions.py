"""Conditions on synthetic series with known answers: above, anomaly (median/MAD of the same
hour of the week), forecast_above (straight-line projection), the registry; and the inputs they
rest on: exact thresholds and calendar windows on the wall clock of a time zone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import yaml

from alerts.conditions import CONDITIONS, Condition, Series, build_condition, format_value
from alerts.config import ConditionConfig, RuleConfig
from alerts.evaluate import judge
from alerts.metrics import Measured, Totals
from alerts.rules import compile_rule
from alerts.windows import Window, WindowSpec

NOW = datetime(2026, 3, 11, 0, 0, tzinfo=UTC)  # a Wednesday
DAY = datetime(2026, 3, 10, tzinfo=UTC)  # a Tuesday


def condition(metric: str = "cost_usd", **config: object) -> Condition:
    return build_condition(ConditionConfig.model_validate(config), metric)


def series(*values: str | None, windows: tuple[Window, ...] | None = None) -> Series:
    default = Window(NOW - timedelta(hours=1), NOW, NOW, "1h")
    return Series(
        windows or (default,) * len(values),
        tuple(None if v is None else Decimal(v) for v in values),
    )


def test_the_registry_holds_the_built_in_conditions() -> None:
    assert set(CONDITIONS) == {"above", "anomaly", "forecast_above"}
    assert type(condition(above=1)).__name__ == "Above"


def test_above_is_strict_and_ignores_missing_values() -> None:
    above = condition(above="50")
    assert above.evaluate(series("50.000000001")).breached
    assert not above.evaluate(series("50")).breached
    assert not above.evaluate(series(None)).breached


# ── anomaly ───────────────────────────────────────────────────────────────────────────────────


def test_anomaly_known_answer_and_a_past_spike_does_not_move_the_median() -> None:
    # History: median 100, |deviations| 0, 20, 20, 0, 200 → MAD 20, scale 1.4826 × 20 = 29.652;
    # threshold = 100 + 3 × 29.652 = 188.956. The 300 spike would drag a mean/stddev test along.
    anomaly = condition(anomaly={"sensitivity": 3, "weeks": 5})
    history = ("100", "120", "80", "100", "300")
    low = anomaly.evaluate(series("188.95", *history))
    assert not low.breached
    assert low.threshold == Decimal("188.956")
    high = anomaly.evaluate(series("189", *history))
    assert high.breached
    assert "median $100.00" in high.method
    assert "MAD $20.00" in high.method
    assert "5 past weeks" in high.method


def test_a_steady_history_uses_ten_percent_of_the_median_as_scale() -> None:
    anomaly = condition(anomaly={"sensitivity": 3, "weeks": 4})
    verdict = anomaly.evaluate(series("130.5", "100", "100", "100", "100"))
    assert verdict.threshold == Decimal("130")  # 100 + 3 × max(0, 10)
    assert verdict.breached


def test_anomaly_needs_two_past_weeks_and_respects_min_value() -> None:
    anomaly = condition(anomaly={"sensitivity": 3, "min_value": "5"})
    thin = anomaly.evaluate(series("1000", "1", None, None, None))
    assert not thin.breached
    assert "1 past weeks with data, needs 2" in thin.method
    # From nothing to $4: far above the history, but below the noise floor.
    assert not anomaly.evaluate(series("4", "0", "0", "0", "0")).breached
    assert anomaly.evaluate(series("6", "0", "0", "0", "0")).breached


class WeeklyRhythm:
    """Synthetic spend per hour: $10 on weekday working hours, $1 otherwise, every week."""

    def __init__(self, spike_at: datetime | None = None, spike: int = 0) -> None:
        self.spike_at, self.spike = spike_at, spike

    def hourly(self, hour: datetime) -> int:
        busy = hour.weekday() < 5 and 9 <= hour.hour < 18
        extra = self.spike if hour == self.spike_at else 0
        return (10 if busy else 1) + extra

    def measure(self, window: Window) -> Measured:
        total, hour = 0, window.start
        while hour < window.end:
            total += self.hourly(hour)
            hour += timedelta(hours=1)
        return {(): Totals(requests=100, cost_nanousd=total * 10**9)}


def test_the_weekly_rhythm_is_not_an_anomaly_but_a_weekend_surge_is() -> None:
    rule = compile_rule(
        RuleConfig(
            id="r", metric="cost_usd", window="1h", condition={"anomaly": {"sensitivity": 3}}
        )
    )
    start = datetime(2026, 1, 1, tzinfo=UTC)
    monday_10h = datetime(2026, 3, 9, 11, tzinfo=UTC)  # the hour 10:00–11:00 of a Monday
    # Monday morning jumps from $1 (Sunday night) to $10: usual for this hour of the week.
    assert not judge(rule, WeeklyRhythm(), monday_10h, start)[()].verdict.breached
    # The same $10 on a Saturday morning is 10 × what that hour usually costs.
    saturday_10h = datetime(2026, 3, 14, 11, tzinfo=UTC)
    surge = WeeklyRhythm(spike_at=datetime(2026, 3, 14, 10, tzinfo=UTC), spike=9)
    verdict = judge(rule, surge, saturday_10h, start)[()].verdict
    assert verdict.breached
    assert verdict.value == Decimal(10)
    # History before the warehouse's first data is unknown, not zero: no verdict yet.
    late_start = saturday_10h - timedelta(days=8)
    assert not judge(rule, surge, saturday_10h, late_start)[()].verdict.breached


# ── thresholds and windows ─────────────────────────────────────────────────────────────────────


@pytest.mark.parametrize(
    ("written", "value"),
    [("50", Decimal(50)), ("12.5", Decimal("12.5")), ('"12.50"', Decimal("12.50"))],
)
def test_thresholds_are_exact_decimals(written: str, value: Decimal) -> None:
    raw = yaml.safe_load(f"{{id: r, metric: cost_usd, condition: {{above: {written}}}}}")
    assert RuleConfig.model_validate(raw).condition.above == value


def test_calendar_windows_follow_the_wall_clock_of_the_zone() -> None:
    paris = WindowSpec.parse("day", "Europe/Paris")
    # 29 March 2026: clocks go forward in Paris, the day has 23 hours.
    w = paris.at(datetime(2026, 3, 29, 12, tzinfo=UTC))
    assert w.start == datetime(2026, 3, 28, 23, tzinfo=UTC)
    assert w.period_end - w.start == timedelta(hours=23)
    week = WindowSpec.parse("week").at(DAY + timedelta(hours=5))
    assert week.start == datetime(2026, 3, 9, tzinfo=UTC)  # the Monday
    month = WindowSpec.parse("month").at(DAY)
    assert (month.start, month.period_end) == (
        datetime(2026, 3, 1, tzinfo=UTC),
        datetime(2026, 4, 1, tzinfo=UTC),
    )
    # The same hour of the week, a week earlier, on the Paris wall clock across the change.
    hour = WindowSpec.parse("1h", "Europe/Paris")
    now = datetime(2026, 3, 30, 9, tzinfo=UTC)  # 11:00 in Paris (summer time)
    back = hour.shift_back(hour.at(now), 1)
    assert back.end == datetime(2026, 3, 23, 10, tzinfo=UTC)  # 11:00 in Paris (winter time)


# ── forecast ──────────────────────────────────────────────────────────────────────────────────


def month_windows(now: datetime, run_rate: str | None = None) -> tuple[Window, ...]:
    cfg: dict[str, object] = {"forecast_above": 300}
    if run_rate:
        cfg["run_rate"] = run_rate
    forecast = condition(**cfg)
    spec = WindowSpec.parse("month")
    return tuple(forecast.windows(spec.at(now), spec))


def test_forecast_projects_the_month_to_date_rate_in_a_straight_line() -> None:
    # 10 days of March gone, $100 so far: $10/day × 21 days left + $100 = $310.
    forecast = condition(forecast_above=300)
    windows = month_windows(NOW)
    verdict = forecast.evaluate(series("100", "100", windows=windows))
    assert verdict.compared == Decimal(310)
    assert verdict.breached
    assert "straight-line projection of the month-to-date rate" in verdict.method
    at_310 = condition(forecast_above=310).evaluate(series("100", "100", windows=windows))
    assert not at_310.breached


def test_forecast_with_a_run_rate_uses_the_recent_rate() -> None:
    forecast = condition(forecast_above=500, run_rate="24h")
    windows = month_windows(NOW, "24h")
    assert windows[1].length == timedelta(hours=24)
    # $20 in the last day: $100 + $20 × 21 = $520.
    verdict = forecast.evaluate(series("100", "20", windows=windows))
    assert verdict.compared == Decimal(520)
    assert verdict.breached
    assert "rate of the last 24h" in verdict.method


def test_forecast_waits_for_a_twenty_fourth_of_the_period() -> None:
    early = datetime(2026, 3, 2, 6, tzinfo=UTC)  # 30 h into a 744 h month: 31 h needed
    verdict = condition(forecast_above=1).evaluate(
        series("1000", "1000", windows=month_windows(early))
    )
    assert not verdict.breached
    assert "too early" in verdict.method


def test_values_are_shown_rounded_only_for_display() -> None:
    assert format_value("cost_usd", Decimal("85.590990150")) == "$85.59"
    assert format_value("cost_per_1k_requests", Decimal("0.004213")) == "$0.0042"
    assert format_value("tokens", Decimal(1234567)) == "1,234,567"
    assert format_value("requests", None) == "n/a"


@pytest.mark.parametrize("bad", [{"above": 1, "anomaly": {}}, {}, {"above": 1, "run_rate": "1h"}])
def test_a_condition_is_exactly_one_of_the_registered_kinds(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=r"condition|run_rate"):
        ConditionConfig.model_validate(bad)
