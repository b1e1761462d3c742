"""Where outbox items can go: the configured notifiers plus one or two destinations per gateway.

A gateway `<name>` (see `gateway_names`) becomes `gateway:<name>:webhook` (its `webhook_url`:
the generic JSON event, signed per Standard Webhooks with `webhook_secret`) and, for LiteLLM,
`gateway:<name>:litellm` (its admin API, called with the master key). The outbox delivers these
like any notifier: at least once, with backoff, `Retry-After` and the 410 rule. The LiteLLM
sender is not in the notifier registry (it cannot be configured under `notifiers:`); the outbox
finds senders with `sender_class`.
"""

from __future__ import annotations

from alerts.config import NotifierConfig
from alerts.notifiers import NOTIFIERS, Notifier
from app.killswitch.config import GatewayConfig, gateway_names
from app.killswitch.litellm import LiteLLMNotifier
from app.settings import Settings

PREFIX = "gateway:"
GATEWAY_SENDERS: dict[str, type[Notifier]] = {"litellm": LiteLLMNotifier}


def sender_class(kind: str) -> type[Notifier]:
    """What sends an outbox item of a destination's kind: a notifier, or a gateway adapter."""
    return GATEWAY_SENDERS.get(kind) or NOTIFIERS[kind]


def gateway_destinations(gateways: list[GatewayConfig]) -> dict[str, NotifierConfig]:
    out: dict[str, NotifierConfig] = {}
    for name, gateway in zip(gateway_names(gateways), gateways, strict=True):
        if gateway.webhook_url is not None:
            out[f"{PREFIX}{name}:webhook"] = NotifierConfig(
                kind="webhook",
                enabled=gateway.enabled,
                url=gateway.webhook_url,
                secret=gateway.webhook_secret,
            )
        if gateway.kind == "litellm":
            out[f"{PREFIX}{name}:litellm"] = NotifierConfig(
                kind="litellm", enabled=gateway.enabled, url=gateway.base_url,
                secret=gateway.master_key,
            )  # fmt: skip
    return out


def destinations(settings: Settings) -> dict[str, NotifierConfig]:
    """Every outbox destination by name: notifiers, then gateways."""
    return {**settings.notifiers, **gateway_destinations(settings.gateways)}
