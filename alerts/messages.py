"""What a notification says, before any notifier renders it: the `Alert`.

Built from a transition and its rule. Group values (users, endpoints, models…) come from traces
and are untrusted: they stay plain data here; each notifier escapes them for its own format.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

from alerts.conditions import format_value
from alerts.rules import Rule
from alerts.state import Transition
from alerts.windows import Window


@dataclass(frozen=True, slots=True)
class Alert:
    kind: str  # firing, renotify, resolved
    rule_id: str
    description: str
    severity: str
    metric: str
    group: dict[str, str]
    value: Decimal | None
    compared: Decimal | None
    threshold: Decimal | None
    method: str
    window: Window
    requests: int
    at: datetime
    firing_since: datetime
    dashboard_url: str

    def shown(self, value: Decimal | None) -> str:
        return format_value(self.metric, value)

    def data(self) -> dict[str, Any]:
        """The JSON form (webhook payloads): exact decimal strings, ISO 8601 UTC times."""
        return {
            "rule": self.rule_id,
            "status": self.kind,
            "description": self.description,
            "severity": self.severity,
            "metric": self.metric,
            "group": self.group,
            "value": _exact(self.value),
            "compared": _exact(self.compared),
            "threshold": _exact(self.threshold),
            "method": self.method,
            "window": {
                "label": self.window.label,
                "start": _iso(self.window.start),
                "end": _iso(self.window.end),
            },
            "requests": self.requests,
            "at": _iso(self.at),
            "firing_since": _iso(self.firing_since),
            "dashboard_url": self.dashboard_url,
        }


def build_alert(t: Transition, rule: Rule, public_url: str) -> Alert:
    verdict, window = t.judgement.verdict, t.judgement.window
    return Alert(
        kind=t.kind,
        rule_id=t.rule_id,
        description=rule.config.description,
        severity=t.severity,
        metric=t.metric,
        group=t.group,
        value=verdict.value,
        compared=verdict.compared,
        threshold=verdict.threshold,
        method=verdict.method,
        window=window,
        requests=t.judgement.requests,
        at=t.at,
        firing_since=t.firing_since,
        dashboard_url=dashboard_link(public_url, t.group, window),
    )


def dashboard_link(public_url: str, group: dict[str, str], window: Window) -> str:
    """The dashboard filtered to the alert's scope and days (values URL-encoded)."""
    last_day = (window.end - timedelta(microseconds=1)).date()
    until = max(last_day, window.start.date()) + timedelta(days=1)  # exclusive, as everywhere
    params = {**group, "since": f"{window.start:%Y-%m-%d}", "until": f"{until:%Y-%m-%d}"}
    return f"{public_url.rstrip('/')}/?{urlencode(params)}"


def _exact(value: Decimal | None) -> str | None:
    return None if value is None else f"{value:f}"


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")
