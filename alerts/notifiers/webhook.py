"""Generic webhooks: a JSON POST signed per the Standard Webhooks spec.

Body: `{"type": "alert.firing" | "alert.renotify" | "alert.resolved", "timestamp": …,
"data": {…}}` (see `Alert.data`: exact decimal strings, ISO 8601 UTC). Headers: `webhook-id`
(the outbox message id, the same on every retry so receivers can deduplicate),
`webhook-timestamp` (this attempt, Unix seconds) and, with a `whsec_…` secret,
`webhook-signature` computed by the `standardwebhooks` package. Receivers verify with
`standardwebhooks.Webhook(secret).verify(body, headers)`.
"""

from __future__ import annotations

import json
from math import floor

from standardwebhooks import Webhook

from alerts.config import NotifierConfig
from alerts.messages import Alert
from alerts.notifiers.base import FAILED, Message, Notifier, Outcome, register


@register
class WebhookNotifier(Notifier):
    kind = "webhook"

    @classmethod
    def render(cls, alert: Alert) -> str:
        data = alert.data()
        payload = {"type": f"alert.{alert.kind}", "timestamp": data["at"], "data": data}
        return json.dumps(payload, ensure_ascii=False, sort_keys=True)

    @classmethod
    def problem(cls, config: NotifierConfig) -> str | None:
        if config.secret is None:
            return None
        try:
            Webhook(config.secret.get_secret_value())
        except Exception:  # the library raises bare decoding errors for a bad secret
            return "secret is not a whsec_… base64 signing secret"
        return None

    def send(self, message: Message) -> Outcome:
        headers = {
            "webhook-id": message.id,
            "webhook-timestamp": str(floor(message.timestamp.timestamp())),
        }
        if self.config.secret is not None:
            problem = self.problem(self.config)
            if problem:
                return Outcome(FAILED, detail=problem)
            signer = Webhook(self.config.secret.get_secret_value())
            headers["webhook-signature"] = signer.sign(message.id, message.timestamp, message.body)
        return self.post(message, headers)
