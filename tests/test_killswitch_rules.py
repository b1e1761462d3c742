"""Kill switches in the warehouse: the rule action `kill` per kill_mode, operators' changes with
who did them in the audit log, expiry, and the events pushed to gateways (a signed webhook and
LiteLLM's admin API, faked at the wire), on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, select
from standardwebhooks import Webhook

from alerts.engine import evaluate_once, run_cycle
from alerts.outbox import deliver_due
from app.killswitch.index import SwitchIndex
from app.killswitch.model import ACTIVE, EXPIRED, OPERATOR, PENDING, RELEASED, Scope
from app.killswitch.store import (
    SwitchError,
    add_now,
    approve,
    expire_due,
    list_switches,
    load_open,
    read_version,
    release,
)
from app.settings import Settings
from app.warehouse.tables import AuditEntry, OutboxItem
from tests.test_rules import DAY, add_request

SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
CAP = {
    "id": "user-daily-cap",
    "metric": "cost_usd",
    "group_by": ["user"],
    "window": "day",
    "condition": {"above": 50},
    "actions": ["kill"],
}


def index_of(engine: Engine) -> SwitchIndex:
    with engine.connect() as conn:
        return SwitchIndex.build(load_open(conn), read_version(conn))


def audit(engine: Engine) -> list[tuple[str, dict[str, Any]]]:
    with engine.connect() as conn:
        rows = conn.execute(select(AuditEntry).order_by(AuditEntry.id)).all()
    return [(r.kind, json.loads(r.detail)) for r in rows if r.kind.startswith("kill")]


def fire(engine: Engine, settings: Settings) -> None:
    add_request(engine, DAY + timedelta(hours=9), "u-1313", calls=[("gpt-4o", "60")])
    add_request(engine, DAY + timedelta(hours=9), "u-2", calls=[("gpt-4o", "5")])
    [fired] = evaluate_once(engine, settings, DAY + timedelta(hours=10))
    assert fired.group["user"] == "u-1313"


def test_enforce_trips_a_switch_for_the_group_until_the_end_of_the_window(engine: Engine) -> None:
    settings = Settings(rules=[CAP])
    fire(engine, settings)
    idx = index_of(engine)
    at = (DAY + timedelta(hours=10, minutes=5)).timestamp()
    refused = idx.decide(user="u-1313", now=at)
    assert not refused.allow
    assert refused.reason.startswith("rule user-daily-cap: cost_usd $60.00 over day")
    assert refused.retry_after == 14 * 3600 - 300  # midnight UTC: tomorrow's budget re-opens
    assert idx.decide(user="u-2", now=at).allow
    [(kind, detail)] = audit(engine)
    assert (kind, detail["by"], detail["state"]) == (
        "kill_requested",
        "rule:user-daily-cap",
        ACTIVE,
    )
    # Resolution (the next day) does not release it; expiry does, and says so.
    evaluate_once(engine, settings, DAY + timedelta(days=1, minutes=1))
    assert [s.state for s in list_switches(engine, DAY, None)] == [ACTIVE]
    [expired] = expire_due(engine, settings, DAY + timedelta(days=1, minutes=1))
    assert expired.state == EXPIRED
    assert [k for k, _ in audit(engine)] == ["kill_requested", "kill_expired"]


def test_approve_mode_waits_for_an_operator(engine: Engine) -> None:
    settings = Settings(rules=[{**CAP, "kill_mode": "approve"}])
    fire(engine, settings)
    [pending] = list_switches(engine, DAY, [PENDING])
    at = (DAY + timedelta(hours=11)).timestamp()
    assert index_of(engine).decide(user="u-1313", now=at).allow
    approve(engine, settings, pending.id, "alice (cli)", DAY + timedelta(hours=11))
    assert not index_of(engine).decide(user="u-1313", now=at).allow
    assert audit(engine)[-1][0] == "kill_approved" and audit(engine)[-1][1]["by"] == "alice (cli)"
    with pytest.raises(SwitchError, match="is active, not pending_approval"):
        approve(engine, settings, pending.id, "bob", DAY + timedelta(hours=11))


def test_dry_run_is_recorded_and_never_enforced(engine: Engine) -> None:
    settings = Settings(rules=[{**CAP, "kill_mode": "dry_run", "filter": {"model": "gpt-4*"}}])
    fire(engine, settings)
    [dry] = list_switches(engine, DAY, None)
    assert dry.dry_run and dry.scope == Scope(model="gpt-4*", user="u-1313")
    seen = index_of(engine).decide(user="u-1313", model="gpt-4o", now=DAY.timestamp() + 36001)
    assert seen.allow and seen.dry_run_ids == (dry.id,)


def test_a_rolling_window_switch_lasts_one_window(engine: Engine) -> None:
    settings = Settings(rules=[{**CAP, "window": "24h", "group_by": ["user", "model"]}])
    fire(engine, settings)
    [made] = list_switches(engine, DAY, None)
    assert made.expires_at == DAY + timedelta(hours=10 + 24)
    assert made.scope == Scope(model="gpt-4o", user="u-1313")


def test_operator_changes_are_audited_with_who_and_bump_the_version(engine: Engine) -> None:
    settings, now = Settings(), datetime.now(UTC)
    with engine.connect() as conn:
        before = read_version(conn)
    made = add_now(
        engine, settings, Scope(user="u-1"), "runaway", now=now, by="alice", origin=OPERATOR
    )
    release(engine, settings, made.id, "bob", now)
    with pytest.raises(SwitchError) as gone:
        release(engine, settings, made.id, "bob", now)
    assert gone.value.status == 409
    with pytest.raises(SwitchError) as unknown:
        release(engine, settings, 999, "bob", now)
    assert unknown.value.status == 404
    assert [(k, d["by"]) for k, d in audit(engine)] == [
        ("kill_added", "alice"),
        ("kill_released", "bob"),
    ]
    with engine.connect() as conn:
        assert read_version(conn) == before + 2
    assert list_switches(engine, now, [RELEASED])[0].updated_by == "bob"


class Gateways:
    """A signed-webhook receiver and a LiteLLM proxy admin API, at the wire."""

    def __init__(self) -> None:
        self.webhooks: list[dict[str, Any]] = []
        self.litellm: list[tuple[str, dict[str, Any], str]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.host == "hooks.test":
            headers = dict(request.headers)
            self.webhooks.append(Webhook(SECRET).verify(request.content, headers))
            return httpx.Response(204)
        self.litellm.append(
            (request.url.path, json.loads(request.content), request.headers["authorization"])
        )
        return httpx.Response(200, json={"blocked_users": []})


def test_switch_changes_are_pushed_to_webhook_and_litellm_gateways(engine: Engine) -> None:
    settings = Settings(
        gateways=[
            {"kind": "custom", "webhook_url": "https://hooks.test/sg", "webhook_secret": SECRET},
            {"kind": "litellm", "base_url": "http://litellm.test:4000", "master_key": "sk-master"},
            {"kind": "nginx"},  # asks the decision API itself: nothing to push
        ]
    )
    now, fake = datetime.now(UTC), Gateways()
    one = add_now(engine, settings, Scope(user="u-1"), "loop", now=now, by="a", origin=OPERATOR)
    team = add_now(engine, settings, Scope(team="t-9"), "team", now=now, by="a", origin=OPERATOR)
    model = add_now(engine, settings, Scope(model="o3*"), "model", now=now, by="a", origin=OPERATOR)
    again = add_now(engine, settings, Scope(user="u-1"), "twice", now=now, by="a", origin=OPERATOR)
    release(engine, settings, one.id, "b", now)  # `again` still blocks u-1: no unblock
    release(engine, settings, again.id, "b", now)
    with engine.connect() as conn:
        names = sorted({r.notifier for r in conn.execute(select(OutboxItem))})
    assert names == ["gateway:custom:webhook", "gateway:litellm:litellm"]
    done = deliver_due(engine, settings, now, transport=httpx.MockTransport(fake))
    assert {d.status for d in done} == {"delivered"} and len(done) == 12
    assert [w["type"] for w in fake.webhooks] == [
        "killswitch.tripped",
        "killswitch.tripped",
        "killswitch.tripped",
        "killswitch.tripped",
        "killswitch.released",
        "killswitch.released",
    ]
    assert fake.webhooks[4]["data"]["still_blocked_by"] == [again.id]
    assert fake.litellm == [
        ("/customer/block", {"user_ids": ["u-1"]}, "Bearer sk-master"),
        ("/team/block", {"team_id": "t-9"}, "Bearer sk-master"),
        ("/customer/block", {"user_ids": ["u-1"]}, "Bearer sk-master"),
        ("/customer/unblock", {"user_ids": ["u-1"]}, "Bearer sk-master"),
    ]
    assert model.id and team.id


def test_the_worker_cycle_expires_switches_and_tells_the_gateways(engine: Engine) -> None:
    settings = Settings(
        gateways=[
            {"kind": "custom", "webhook_url": "https://hooks.test/x", "webhook_secret": SECRET}
        ]
    )
    now, fake = datetime.now(UTC), Gateways()
    earlier = now - timedelta(minutes=3)  # signatures are checked against the real clock
    add_now(
        engine,
        settings,
        Scope(user="u-1"),
        "loop",
        now=earlier,
        by="a",
        origin=OPERATOR,
        expires_at=earlier + timedelta(minutes=2),
    )
    run_cycle(engine, settings, now, transport=httpx.MockTransport(fake))
    assert [w["type"] for w in fake.webhooks] == ["killswitch.tripped", "killswitch.expired"]
