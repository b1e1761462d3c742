"""Notifiers: Slack Block Kit with untrusted text escaped, Standard Webhooks signatures checked
by the `standardwebhooks` library at a real local receiver, and the HTTP outcome mapping."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, select
from standardwebhooks import Webhook

from alerts.config import NotifierConfig
from alerts.engine import evaluate_once
from alerts.messages import Alert
from alerts.notifiers import NOTIFIERS, Message, notifier_problems
from alerts.notifiers.base import retry_after
from alerts.notifiers.slack import SlackNotifier
from alerts.notifiers.webhook import WebhookNotifier
from alerts.outbox import deliver_due
from alerts.windows import Window
from app.settings import Settings
from app.warehouse.tables import OutboxItem
from tests.test_outbox import SECRET, FakeEndpoint
from tests.test_rules import add_request

NOW = datetime(2026, 3, 10, 18, tzinfo=UTC)
INJECTIONS = [
    "<!channel>",
    "<!here|here>",
    "<@U024BE7LH>",
    "<https://evil.example|click here>",
    "Tom & Jerry <b>",
    "*bold* _it_ ~strike~",
    "`code` escape",
    "line\nbreak <!everyone>",
]


def alert(group: dict[str, str], kind: str = "firing") -> Alert:
    return Alert(
        kind=kind, rule_id="user-daily-cap", description="No user spends > $50 a day",
        severity="critical", metric="cost_usd", group=group, value=Decimal("85.59"),
        compared=Decimal("85.59"), threshold=Decimal(50), method="above $50.00",
        window=Window(NOW.replace(hour=0), NOW, NOW.replace(hour=0) + timedelta(days=1), "day"),
        requests=93, at=NOW, firing_since=NOW - timedelta(hours=2),
        dashboard_url="http://localhost:8501/?user=x&since=2026-03-10",
    )  # fmt: skip


def mrkdwn_texts(body: dict[str, Any]) -> list[str]:
    texts = [body["text"]]
    for block in body["blocks"]:
        if block.get("text", {}).get("type") == "mrkdwn":
            texts.append(block["text"]["text"])
        texts += [e["text"] for e in block.get("elements", []) if e.get("type") == "mrkdwn"]
    return texts


@pytest.mark.parametrize("kind", ["firing", "resolved"])
@pytest.mark.parametrize("user", INJECTIONS)
def test_untrusted_values_cannot_mention_link_or_format_in_slack(user: str, kind: str) -> None:
    body = json.loads(SlackNotifier.render(alert({"user": user}, kind)))
    ours = "<http://localhost:8501/?user=x&amp;since=2026-03-10|Open in the dashboard>"
    scopes = []
    for text in mrkdwn_texts(body):
        # The only control sequence left is our own dashboard link.
        assert re.findall(r"<[^>]*>", text) in ([], [ours])
        scopes += re.findall(r"user `([^`]*)`", text)  # the value: one inline code span
    assert scopes
    for shown in scopes:
        assert "<" not in shown
        assert ">" not in shown
        assert "\n" not in shown
        assert "&" not in re.sub(r"&(amp|lt|gt);", "", shown)
    if "&" in user:
        assert "Tom &amp; Jerry &lt;b&gt;" in json.dumps(body)


def test_a_firing_message_has_what_scope_value_window_and_a_dashboard_link() -> None:
    body = json.loads(SlackNotifier.render(alert({"user": "u-1313"})))
    assert body["blocks"][0] == {
        "type": "header",
        "text": {"type": "plain_text", "text": "user-daily-cap is firing"},
    }
    facts = body["blocks"][1]["text"]["text"]
    assert "*Scope:* user `u-1313`" in facts
    assert "*Value:* $85.59 cost_usd (threshold $50.00) over 93 requests" in facts
    assert "*Window:* day, 2026-03-10 00:00 → 2026-03-10 18:00 UTC" in facts
    assert "Open in the dashboard" in body["blocks"][2]["elements"][0]["text"]
    resolved = json.loads(SlackNotifier.render(alert({"user": "u-1313"}, "resolved")))
    assert [b["type"] for b in resolved["blocks"]] == ["context"]  # short, one line
    assert "firing since 2026-03-10 16:00 UTC" in resolved["text"]


def test_injection_in_traced_user_ids_is_escaped_end_to_end(engine: Engine) -> None:
    evil = "<!channel> <https://evil.example|click> & *bold*"
    add_request(engine, NOW - timedelta(hours=1), evil, calls=[("gpt-4o", "60")])
    settings = Settings(
        notifiers={"ops": {"kind": "slack", "webhook_url": "https://hooks.slack.test/x"}},
        rules=[{"id": "cap", "metric": "cost_usd", "group_by": ["user"], "window": "day",
                "condition": {"above": 50}, "actions": ["ops"]}],
    )  # fmt: skip
    [fired] = evaluate_once(engine, settings, NOW)
    assert fired.group == {"user": evil}  # stored as it came
    with engine.connect() as conn:
        body = json.loads(conn.execute(select(OutboxItem.body)).scalar_one())
    assert "user `&lt;!channel&gt; &lt;https://evil.example|click&gt; &amp; *bold*`" in body["text"]
    assert "<!channel>" not in json.dumps(body)


def test_webhooks_are_signed_per_standard_webhooks_and_verify(sqlite_engine: Engine) -> None:
    fake = FakeEndpoint()
    server = fake.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        now = datetime.now(UTC).replace(microsecond=0)  # verify() checks the timestamp's age
        add_request(sqlite_engine, now - timedelta(minutes=5), "u-9", calls=[("gpt-4o", "12.5")])
        settings = Settings(
            notifiers={"hook": {"kind": "webhook", "url": f"{base}/in", "secret": SECRET}},
            rules=[{"id": "cap", "metric": "cost_usd", "group_by": ["user"], "window": "1h",
                    "condition": {"above": "12.25"}, "actions": ["hook"]}],
        )  # fmt: skip
        evaluate_once(sqlite_engine, settings, now)
        [delivery] = deliver_due(sqlite_engine, settings, now)
        assert delivery.status == "delivered"
    finally:
        server.shutdown()
        server.server_close()
    [request] = fake.received
    payload = Webhook(SECRET).verify(request.body, request.headers)
    assert request.headers["webhook-id"] == delivery.message_id
    assert payload["type"] == "alert.firing"
    data = payload["data"]
    assert (data["rule"], data["group"], data["status"]) == ("cap", {"user": "u-9"}, "firing")
    assert (data["value"], data["threshold"]) == ("12.500000000", "12.25")  # exact strings
    with pytest.raises(Exception, match="signature"):
        Webhook("whsec_" + "A" * 32).verify(request.body, request.headers)


def send_with(response: httpx.Response | Exception) -> Any:
    def handler(request: httpx.Request) -> httpx.Response:
        if isinstance(response, Exception):
            raise response
        return response

    config = NotifierConfig(kind="webhook", url="https://hooks.test/x")
    with httpx.Client(transport=httpx.MockTransport(handler)) as client:
        return WebhookNotifier("w", config, client).send(Message("msg_1", "{}", 1, NOW))


@pytest.mark.parametrize(
    ("response", "status", "wait"),
    [
        (httpx.Response(200), "delivered", None),
        (httpx.Response(204), "delivered", None),
        (httpx.Response(429, headers={"Retry-After": "7"}), "retry", timedelta(seconds=7)),
        (httpx.Response(503), "retry", None),
        (httpx.Response(408), "retry", None),
        (httpx.Response(410), "gone", None),
        (httpx.Response(400, text="invalid_blocks"), "failed", None),
        (httpx.ConnectError("refused"), "retry", None),
    ],
)
def test_http_outcomes(response: httpx.Response | Exception, status: str, wait: Any) -> None:
    outcome = send_with(response)
    assert (outcome.status, outcome.retry_after) == (status, wait)


def test_retry_after_as_seconds_or_http_date() -> None:
    assert retry_after("120", NOW) == timedelta(minutes=2)
    assert retry_after("Tue, 10 Mar 2026 18:01:30 GMT", NOW) == timedelta(seconds=90)
    assert retry_after("soon", NOW) is None
    assert retry_after(None, NOW) is None


def test_the_registry_and_what_rules_check_reports() -> None:
    assert set(NOTIFIERS) == {"slack", "webhook"}
    settings = Settings(
        notifiers={
            "s": {"kind": "slack", "webhook_url": "hooks.slack.com/no-scheme"},
            "w": {"kind": "webhook", "url": "https://x", "secret": "whsec_!"},
            "off": {"kind": "webhook", "url": "https://x", "enabled": False},
        },
        rules=[{"id": "r", "metric": "requests", "condition": {"above": 1}, "actions": ["off"]}],
    )
    problems = notifier_problems(settings)
    assert any(p.startswith("notifiers.s: webhook_url is not an http(s)") for p in problems)
    assert any(p.startswith("notifiers.w: secret is not a whsec_") for p in problems)
    assert any("'off' has enabled: false" in p for p in problems)
