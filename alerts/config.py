"""The `notifiers:`, `rules:` and `alerts:` sections of spendguard.yaml (pydantic models).

They live beside the code that runs them; `app.settings.models` mounts them on `Settings`.

Thresholds are money or counts and stay exact: a quoted string ("12.50") or a bare YAML number.
YAML reads a bare `12.5` as a binary float; it is converted through its shortest decimal text
(`Decimal(str(x))`), which is exactly the text written for numbers of up to 15 significant
digits, so `above: 12.5` means 12.5, not 12.4999…; quote longer numbers.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from app.durations import parse_duration

METRICS = ("cost_usd", "tokens", "requests", "cost_per_1k_requests", "unpriced_calls")
# Metrics that add up over time (a projection of a ratio such as cost per 1k makes no sense).
ADDITIVE_METRICS = frozenset({"cost_usd", "tokens", "requests", "unpriced_calls"})
MONEY_METRICS = frozenset({"cost_usd", "cost_per_1k_requests"})
CALENDAR_WINDOWS = ("day", "week", "month")
KILL = "kill"

Metric = Literal["cost_usd", "tokens", "requests", "cost_per_1k_requests", "unpriced_calls"]
Dimension = Literal["endpoint", "model", "user", "team", "provider"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _decimal(value: object) -> Decimal:
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a number")
    if isinstance(value, float):
        value = str(value)  # shortest round-trip text: the digits the YAML file showed
    try:
        parsed = Decimal(value) if isinstance(value, int | str | Decimal) else None
    except InvalidOperation:
        parsed = None
    if parsed is None:
        raise ValueError(f'{value!r} is not a decimal number (e.g. 50 or "12.50")')
    if not parsed.is_finite() or parsed < 0:
        raise ValueError(f"{value!r} must be a finite number, 0 or more")
    return parsed


Amount = Annotated[Decimal, BeforeValidator(_decimal)]


def _duration(value: str | None) -> str | None:
    if value is not None:
        parse_duration(value)
    return value


def _http_url(value: str, key: str) -> str:
    if not value.startswith(("https://", "http://")):
        raise ValueError(f"{key} must be an http(s):// URL")
    return value


class NotifierConfig(_Strict):
    """One place alerts go, named by its key under `notifiers:`."""

    # litellm: only for the destinations spendguard derives from `gateways:` (app.killswitch).
    kind: Literal["slack", "webhook", "litellm"]
    enabled: bool = True
    webhook_url: SecretStr | None = None
    url: str | None = None
    secret: SecretStr | None = None

    @model_validator(mode="after")
    def _target(self) -> NotifierConfig:
        if self.kind == "slack" and self.webhook_url is None:
            raise ValueError("a slack notifier needs 'webhook_url' (a Slack incoming webhook)")
        if self.kind in ("webhook", "litellm"):
            if self.url is None:
                raise ValueError(f"a {self.kind} notifier needs 'url'")
            _http_url(self.url, "url")
        return self

    def target(self) -> str:
        """Where messages are posted (secret for Slack: never print it)."""
        if self.webhook_url is not None and self.kind == "slack":
            return self.webhook_url.get_secret_value()
        return self.url or ""


class AnomalyConfig(_Strict):
    """Median/MAD test against the same window at the same hour of the week in past weeks."""

    sensitivity: Amount = Field(default=Decimal(3))
    weeks: int = Field(default=4, ge=2, le=12)
    min_value: Amount = Field(default=Decimal(0))

    @field_validator("sensitivity")
    @classmethod
    def _positive(cls, value: Decimal) -> Decimal:
        if value <= 0:
            raise ValueError("sensitivity must be above 0 (3 is a usual start)")
        return value


class ConditionConfig(_Strict):
    """Exactly one of `above`, `anomaly`, `forecast_above` (the condition's registry name)."""

    above: Amount | None = None
    anomaly: AnomalyConfig | None = None
    forecast_above: Amount | None = None
    run_rate: str | None = None

    _run_rate = field_validator("run_rate")(_duration)

    @model_validator(mode="after")
    def _exactly_one(self) -> ConditionConfig:
        given = [n for n in ("above", "anomaly", "forecast_above") if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError(
                "give exactly one condition: {above: N}, {anomaly: {sensitivity: 3}} or "
                f"{{forecast_above: N}} (got {', '.join(given) or 'none'})"
            )
        if self.run_rate is not None and self.forecast_above is None:
            raise ValueError("'run_rate' only goes with 'forecast_above'")
        return self

    @property
    def name(self) -> str:
        if self.above is not None:
            return "above"
        return "anomaly" if self.anomaly is not None else "forecast_above"


class RuleConfig(_Strict):
    """One rule: a metric over a window, per group, tested by a condition."""

    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    description: str = ""
    enabled: bool = True
    metric: Metric
    filter: dict[Dimension, str | list[str]] = Field(default_factory=dict)
    group_by: list[Dimension] = Field(default_factory=list)
    window: str = "day"
    timezone: str = "UTC"
    condition: ConditionConfig
    min_requests: int = Field(default=0, ge=0)
    severity: Literal["info", "warning", "critical"] = "warning"
    actions: list[str] = Field(default_factory=list)
    # What the `kill` action does: enforce, approve (pending until approved) or dry_run.
    kill_mode: Literal["enforce", "approve", "dry_run"] = "enforce"
    cooldown: str | None = None
    renotify: str | None = None

    _durations = field_validator("cooldown", "renotify")(_duration)

    @field_validator("window")
    @classmethod
    def _window(cls, value: str) -> str:
        if value in CALENDAR_WINDOWS:
            return value
        try:
            length = parse_duration(value)
        except ValueError:
            raise ValueError(
                f"{value!r} is not a window; write a rolling duration (15m, 1h, 24h) or a "
                "calendar period (day, week, month)"
            ) from None
        if length.total_seconds() < 60:
            raise ValueError(f"window {value!r} is shorter than a minute")
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"{value!r} is not an IANA time zone (e.g. UTC, Europe/Paris)"
            ) from None
        return value

    @field_validator("group_by")
    @classmethod
    def _unique_dims(cls, dims: list[str]) -> list[str]:
        if len(set(dims)) != len(dims):
            raise ValueError("a dimension is listed twice")
        return dims

    @field_validator("filter")
    @classmethod
    def _values(cls, filters: dict[str, str | list[str]]) -> dict[str, str | list[str]]:
        for dim, values in filters.items():
            items = [values] if isinstance(values, str) else values
            if not items or any(not v for v in items):
                raise ValueError(f"filter {dim!r} needs non-empty values (or globs like 'gpt-4*')")
        return filters

    @model_validator(mode="after")
    def _forecast_fits(self) -> RuleConfig:
        if self.condition.forecast_above is not None:
            if self.window not in CALENDAR_WINDOWS:
                raise ValueError(
                    f"rule {self.id!r}: forecast_above projects to the end of a calendar period: "
                    "set window to day, week or month"
                )
            if self.metric not in ADDITIVE_METRICS:
                raise ValueError(
                    f"rule {self.id!r}: forecast_above needs a metric that adds up over time "
                    f"({', '.join(sorted(ADDITIVE_METRICS))}), not {self.metric}"
                )
        return self

    @model_validator(mode="after")
    def _kill_scope(self) -> RuleConfig:
        if KILL in self.actions and "provider" in self.group_by:
            raise ValueError(
                f"rule {self.id!r}: the kill action blocks endpoints, models, users or teams; "
                "a kill switch cannot scope a provider: drop 'provider' from group_by"
            )
        return self

    def filter_values(self) -> dict[str, list[str]]:
        return {d: [v] if isinstance(v, str) else list(v) for d, v in self.filter.items()}


class AlertsConfig(_Strict):
    """How often rules are evaluated and how hard notifications are retried."""

    interval: str = "60s"
    outbox_horizon: str = "24h"
    retry_initial: str = "10s"
    retry_max: str = "1h"

    _durations = field_validator("interval", "outbox_horizon", "retry_initial", "retry_max")(
        _duration
    )


def check_rules(rules: list[RuleConfig], notifiers: dict[str, NotifierConfig]) -> None:
    """Cross-section checks: unique rule ids, and actions that name a notifier or `kill`."""
    if KILL in notifiers:
        raise ValueError(f"notifiers.{KILL}: 'kill' is the kill-switch action; rename the notifier")
    for name, notifier in notifiers.items():
        if notifier.kind == "litellm":
            raise ValueError(f"notifiers.{name}: a LiteLLM proxy is configured under gateways:")
    seen: set[str] = set()
    for i, rule in enumerate(rules):
        if rule.id in seen:
            raise ValueError(f"rules[{i}].id: rule id {rule.id!r} is used twice")
        seen.add(rule.id)
        for j, action in enumerate(rule.actions):
            if action != KILL and action not in notifiers:
                known = ", ".join([*sorted(notifiers), KILL])
                raise ValueError(
                    f"rules[{i}].actions[{j}] (rule {rule.id!r}): {action!r} is neither a "
                    f"notifier nor 'kill'; choose from {known}"
                )
