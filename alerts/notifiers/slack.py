"""Slack incoming webhooks, Block Kit messages.

A firing says what (rule, description, severity), the scope (the group's values), the value
against the threshold, the window and the method, with a link to the dashboard filtered to the
scope. A resolution is one short context line naming the firing it closes (incoming webhooks
cannot thread, so it quotes the rule, scope and firing time instead).

Untrusted text: group values come from traces, so anyone who can send a trace writes them.
Slack mrkdwn needs `&`, `<`, `>` escaped (`&amp;`, `&lt;`, `&gt;`): without `<` no
`<!channel>`, `<@U…>` mention or `<https://…|label>` link can be formed. Values are also shown
as inline code, where Slack applies no `*bold*`/`_italic_` formatting and does not auto-link
URLs; a backtick inside a value, which would end the code span, is shown as `ˋ`.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from alerts.config import NotifierConfig
from alerts.messages import Alert
from alerts.notifiers.base import Message, Notifier, Outcome, register

MAX_VALUE = 200
ICONS = {"firing": ":rotating_light:", "renotify": ":repeat:", "resolved": ":white_check_mark:"}
SEVERITY = {"info": ":information_source:", "warning": ":warning:", "critical": ":red_circle:"}


def escape(text: str) -> str:
    """Slack's three control characters, `&` first."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def code(value: str) -> str:
    """An untrusted value as inline code: escaped, one line, bounded, no way out of the span."""
    flat = " ".join(value.split())
    if len(flat) > MAX_VALUE:
        flat = flat[: MAX_VALUE - 1] + "…"
    return f"`{escape(flat.replace('`', 'ˋ')) or ' '}`"


def scope(group: dict[str, str]) -> str:
    if not group:
        return "all traffic"
    return ", ".join(f"{dim} {code(value)}" for dim, value in group.items())


def link(url: str, label: str) -> str:
    # The URL is ours (public_url + an urlencoded query, so no `|` or `>` in it); escaped anyway.
    return f"<{escape(url)}|{escape(label)}>"


@register
class SlackNotifier(Notifier):
    kind = "slack"
    min_interval = timedelta(seconds=1)

    @classmethod
    def render(cls, alert: Alert) -> str:
        body = _resolved(alert) if alert.kind == "resolved" else _firing(alert)
        return json.dumps(body, ensure_ascii=False)

    @classmethod
    def problem(cls, config: NotifierConfig) -> str | None:
        # Checked here, not at load: the URL is a secret from the environment.
        if not config.target().startswith(("https://", "http://")):
            return "webhook_url is not an http(s):// URL (a Slack incoming webhook)"
        return None

    def send(self, message: Message) -> Outcome:
        return self.post(message, {})


def _firing(alert: Alert) -> dict[str, Any]:
    again = "still firing" if alert.kind == "renotify" else "firing"
    headline = f"{alert.rule_id} is {again}"
    comparison = "projected " if alert.compared != alert.value else ""
    core = (
        f"{comparison}{alert.shown(alert.compared)} {escape(alert.metric)} "
        f"(threshold {alert.shown(alert.threshold)})"
    )
    value_line = f"*Value:* {core} over {alert.requests:,} requests"
    lines = [
        f"{SEVERITY.get(alert.severity, '')} *{escape(alert.severity)}*"
        + (f" · {escape(alert.description)}" if alert.description else ""),
        f"*Scope:* {scope(alert.group)}",
        value_line,
        f"*Window:* {_window(alert)}",
        f"*Method:* {escape(alert.method)}",
    ]
    fallback = f"{ICONS[alert.kind]} {headline}: {scope(alert.group)}, {core}"
    return {
        "text": fallback,
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": headline[:150]}},
            {"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(lines)[:3000]}},
            {
                "type": "context",
                "elements": [
                    {"type": "mrkdwn", "text": link(alert.dashboard_url, "Open in the dashboard")}
                ],
            },
        ],
    }


def _resolved(alert: Alert) -> dict[str, Any]:
    line = (
        f"{ICONS['resolved']} *Resolved* {escape(alert.rule_id)} · {scope(alert.group)} · "
        f"now {alert.shown(alert.compared)} (threshold {alert.shown(alert.threshold)}) · "
        f"firing since {alert.firing_since:%Y-%m-%d %H:%M} UTC"
    )
    return {
        "text": line,
        "blocks": [{"type": "context", "elements": [{"type": "mrkdwn", "text": line[:3000]}]}],
    }


def _window(alert: Alert) -> str:
    w = alert.window
    return f"{escape(w.label)}, {w.start:%Y-%m-%d %H:%M} → {w.end:%Y-%m-%d %H:%M} UTC"
