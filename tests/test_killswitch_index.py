"""The decision index: globs, combined scopes, expiry at decision time, dry run and pending
switches, and how fast a decision is with a thousand switches."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from app.killswitch.index import NO_EXPIRY_RETRY_AFTER, SwitchIndex
from app.killswitch.model import ACTIVE, OPERATOR, PENDING, Scope, Switch

T0 = datetime(2026, 3, 10, 12, tzinfo=UTC)
NOW = T0.timestamp()
_ids = iter(range(1, 10**6))


def switch(
    scope: Scope, *, expires: datetime | None = None, state: str = ACTIVE, dry: bool = False
) -> Switch:
    reason = f"blocked {scope.describe()}"
    return Switch(next(_ids), scope, reason, OPERATOR, "test", state, dry, T0, expires, T0)


def index(*switches: Switch) -> SwitchIndex:
    return SwitchIndex.build(switches, version=1)


def test_an_exact_user_is_blocked_and_nobody_else() -> None:
    idx = index(switch(Scope(user="u-1313")))
    assert not idx.decide(user="u-1313", now=NOW).allow
    assert idx.decide(user="u-1", now=NOW).allow
    assert idx.decide(endpoint="/chat", now=NOW).allow  # no user given: nothing to match


@pytest.mark.parametrize(
    ("scope", "blocked", "allowed"),
    [
        (Scope(model="gpt-4*"), {"model": "gpt-4o"}, {"model": "gpt-3.5-turbo"}),
        (Scope(endpoint="/v1/chat/*"), {"endpoint": "/v1/chat/x"}, {"endpoint": "/v1/embed"}),
        (Scope(user="u-?"), {"user": "u-7"}, {"user": "u-77"}),
        (Scope(endpoint="*"), {"endpoint": "/anything"}, {"user": "u-1"}),  # endpoint unknown
        (Scope(user="u-1", model="gpt-4*"), {"user": "u-1", "model": "gpt-4o"}, {"user": "u-1"}),
        (
            Scope(user="u-1", model="gpt-4*"),
            {"user": "u-1", "model": "gpt-4"},
            {"user": "u-1", "model": "o3"},
        ),
        (
            Scope(team="pay*", model="o3"),
            {"team": "payments", "model": "o3"},
            {"team": "payments", "model": "o1"},
        ),
        (Scope(user="a\\*"), {"user": "a*"}, {"user": "ab"}),  # escaped: the character itself
        (Scope(user="[x]"), {"user": "[x]"}, {"user": "x"}),  # brackets are not special
    ],
)
def test_globs_and_combined_scopes(
    scope: Scope, blocked: dict[str, str], allowed: dict[str, str]
) -> None:
    idx = index(switch(scope))
    assert not idx.decide(**blocked, now=NOW).allow  # type: ignore[arg-type]
    assert idx.decide(**allowed, now=NOW).allow  # type: ignore[arg-type]


def test_expiry_is_checked_at_decision_time() -> None:
    s = switch(Scope(user="u-1"), expires=T0 + timedelta(minutes=10))
    idx = index(s)
    refused = idx.decide(user="u-1", now=NOW + 1)
    assert (refused.allow, refused.switch_id, refused.retry_after) == (False, s.id, 599)
    assert idx.decide(user="u-1", now=NOW + 600).allow  # expired: no sweep needed
    assert idx.counts(now=NOW + 600)["active"] == 0


def test_the_switch_that_lifts_last_is_reported() -> None:
    short = switch(Scope(user="u-1"), expires=T0 + timedelta(minutes=5))
    long = switch(Scope(model="gpt-4*"), expires=T0 + timedelta(hours=2))
    assert index(short, long).decide(user="u-1", model="gpt-4o", now=NOW).switch_id == long.id
    forever = switch(Scope(user="u-1"))
    refused = index(short, forever).decide(user="u-1", now=NOW)
    assert (refused.switch_id, refused.retry_after) == (forever.id, NO_EXPIRY_RETRY_AFTER)


def test_dry_run_and_pending_switches_never_block() -> None:
    dry = switch(Scope(user="u-1"), dry=True)
    pending = switch(Scope(user="u-2"), state=PENDING)
    idx = index(dry, pending)
    seen = idx.decide(user="u-1", now=NOW)
    assert seen.allow and seen.dry_run_ids == (dry.id,)
    assert idx.decide(user="u-2", now=NOW).allow
    assert idx.counts(now=NOW) == {"active": 0, "dry_run": 1, "pending_approval": 1}


def test_a_thousand_switches_decide_in_microseconds() -> None:
    idx = index(*(switch(Scope(user=f"u-{i}")) for i in range(1000)), switch(Scope(model="x-*")))
    start = time.perf_counter()
    for i in range(20_000):
        idx.decide(endpoint="/chat", model="gpt-4o", user=f"v-{i}", team="t")
    per_decision = (time.perf_counter() - start) / 20_000
    assert per_decision < 50e-6, f"{per_decision * 1e6:.1f} µs per decision"
    assert not idx.decide(user="u-999", now=NOW).allow
