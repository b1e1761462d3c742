"""The LiteLLM proxy adapter: a kill switch becomes a block in LiteLLM itself.

LiteLLM keeps two blocklists spendguard can use through its admin API (authenticated with the
proxy's master key): end users (`POST /customer/block|unblock {"user_ids": [...]}`, the `user`
of an OpenAI-style request) and teams (`POST /team/block|unblock {"team_id": ...}`, every key
of the team). So a switch whose scope is exactly one user, or exactly one team, is mirrored
there; any other scope (a model, an endpoint, a glob, a user on one model) has no LiteLLM
equivalent and is enforced by the pre-call hook that asks the decision API (docs/gateways.md).

On release or expiry the block is lifted, unless another active switch still covers the same
scope (`still_blocked_by` in the event). Dry-run and pending switches are never mirrored.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from alerts.messages import Alert
from alerts.notifiers.base import DELIVERED, RETRY, Message, Notifier, Outcome, outcome_of
from app.killswitch.model import DIMENSIONS, is_glob, literal

BLOCKING = frozenset({"killswitch.tripped"})
LIFTING = frozenset({"killswitch.released", "killswitch.expired"})


def admin_calls(event: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The LiteLLM admin calls an event asks for (path, JSON body); [] when none applies."""
    data = event.get("data") or {}
    kind = event.get("type")
    if data.get("dry_run") or kind not in BLOCKING | LIFTING:
        return []
    if kind in LIFTING and data.get("still_blocked_by"):
        return []
    verb = "block" if kind in BLOCKING else "unblock"
    scope = {d: str(v) for d in DIMENSIONS if (v := data.get(d)) is not None}
    if any(is_glob(v) for v in scope.values()):
        return []
    if set(scope) == {"user"}:
        return [(f"/customer/{verb}", {"user_ids": [literal(scope["user"])]})]
    if set(scope) == {"team"}:
        return [(f"/team/{verb}", {"team_id": literal(scope["team"])})]
    return []


class LiteLLMNotifier(Notifier):
    kind = "litellm"

    @classmethod
    def render(cls, alert: Alert) -> str:
        raise TypeError("a litellm gateway receives kill-switch events, not alerts")

    def send(self, message: Message) -> Outcome:
        try:
            event = json.loads(message.body)
        except ValueError:
            return Outcome("failed", detail="the outbox item is not a kill-switch event")
        calls = admin_calls(event)
        if not calls:
            return Outcome(DELIVERED, detail="no LiteLLM equivalent for this switch or change")
        base = self.config.target().rstrip("/")
        key = self.config.secret.get_secret_value() if self.config.secret else ""
        outcome = Outcome(DELIVERED)
        for path, payload in calls:
            try:
                response = self.client.post(
                    base + path, json=payload, headers={"Authorization": f"Bearer {key}"}
                )
            except httpx.HTTPError as exc:
                return Outcome(RETRY, detail=f"{type(exc).__name__}: {exc}"[:300])
            outcome = outcome_of(response, message.timestamp)
            if outcome.status != DELIVERED:
                return outcome
        return outcome
