"""What a switch change sends to the gateways: one JSON event per change, through the outbox.

    {"type": "killswitch.tripped" | "killswitch.dry_run" | "killswitch.pending_approval"
             | "killswitch.released" | "killswitch.expired",
     "timestamp": "…Z",
     "data": {"id", "endpoint", "model", "user", "team", "reason", "origin", "created_by",
              "rule_id", "state", "dry_run", "created_at", "expires_at", "updated_at",
              "updated_by", "still_blocked_by": [ids]}}

`killswitch.tripped` is sent when a switch starts blocking (added in enforce mode, or approved).
`still_blocked_by` lists the other active switches with the same scope, so a receiver does not
lift a block that another switch still holds. Webhook gateways get the body as is, signed per
Standard Webhooks (`webhook-id` stable across retries); LiteLLM gets admin calls derived from it.
Items of one scope are delivered in order (one outbox `alert_key` per scope).
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime

from sqlalchemy import Connection

from alerts.outbox import enqueue
from app.killswitch.destinations import gateway_destinations
from app.killswitch.model import PENDING, Switch
from app.settings import Settings

_AUDIT_TO_EVENT = {
    "kill_approved": "killswitch.tripped",
    "kill_released": "killswitch.released",
    "kill_expired": "killswitch.expired",
}


def event_type(audit_kind: str, switch: Switch) -> str:
    if audit_kind in _AUDIT_TO_EVENT:
        return _AUDIT_TO_EVENT[audit_kind]
    if switch.state == PENDING:
        return "killswitch.pending_approval"
    return "killswitch.dry_run" if switch.dry_run else "killswitch.tripped"


def event_body(switch: Switch, audit_kind: str, now: datetime, others: list[int]) -> str:
    data = switch.to_json(now)
    data["still_blocked_by"] = others
    stamp = now.isoformat().replace("+00:00", "Z")
    payload = {"type": event_type(audit_kind, switch), "timestamp": stamp, "data": data}
    return json.dumps(payload, ensure_ascii=False, sort_keys=True)


def scope_key(switch: Switch) -> str:
    text = json.dumps(switch.scope.items(), ensure_ascii=False)
    return "kill:" + hashlib.sha256(text.encode()).hexdigest()[:40]


def enqueue_change(
    conn: Connection,
    settings: Settings,
    switch: Switch,
    audit_kind: str,
    now: datetime,
    others: list[int],
) -> list[str]:
    """Queue the change for every enabled gateway destination; returns their names."""
    targets = [n for n, c in gateway_destinations(settings.gateways).items() if c.enabled]
    if not targets:
        return []
    body = event_body(switch, audit_kind, now, others)
    for name in targets:
        enqueue(conn, name, scope_key(switch), None, body, now)
    return targets
