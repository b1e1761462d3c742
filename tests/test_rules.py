"""Rules: validation that names the rule and key, the state machine, and the live engine on
hand-made data with a fake clock (`now` passed in), on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event, insert, select

from alerts.backtest import backtest
from alerts.config import RuleConfig
from alerts.engine import _record, evaluate_once
from alerts.rules import compile_rule
from alerts.state import FIRING, RENOTIFY, RESOLVED, advance
from app.errors import ConfigError
from app.money import usd_to_nanos
from app.settings import Settings, load_settings
from app.warehouse.tables import AlertState, AlertTransition, AuditEntry, LlmCall, OutboxItem
from app.warehouse.tables import Request as RequestRow

DAY = datetime(2026, 3, 10, tzinfo=UTC)  # a Tuesday
_ids = iter(range(1, 10**6))


def add_request(
    engine: Engine,
    at: datetime,
    user: str = "u-1",
    *,
    endpoint: str = "/v1/chat",
    team: str | None = None,
    calls: Sequence[tuple[str, str | None]] = (("gpt-4o", "1"),),
) -> None:
    """One request at `at` with LLM calls (model, cost in USD or None for unpriced), and its
    hour marked for the rollups in the same transaction, as every writer does."""
    from app.rollups.dirty import mark_slices

    n = next(_ids)
    trace = f"{n:032x}"
    with engine.begin() as conn:
        conn.execute(
            insert(RequestRow).values(
                trace_id=trace, started_at=at, root_key="r", endpoint=endpoint,
                user_id=user, team=team, updated_at=at,
            )
        )  # fmt: skip
        for i, (model, cost) in enumerate(calls):
            conn.execute(
                insert(LlmCall).values(
                    trace_id=trace, span_id=f"{n:012x}{i:04x}", started_at=at, provider="openai",
                    model=model, family="otel-genai", input_tokens=100, output_tokens=10,
                    cost_nanousd=None if cost is None else usd_to_nanos(Decimal(cost)),
                    price_source="test", ingested_at=at,
                )
            )  # fmt: skip
        utc = at.astimezone(UTC)
        mark_slices(conn, [(utc.date(), utc.hour)])


def settings_with(*rules: dict[str, Any], **extra: Any) -> Settings:
    notifiers = {"ops": {"kind": "slack", "webhook_url": "https://hooks.slack.test/x"}}
    return Settings(notifiers=notifiers, rules=list(rules), **extra)


CAP = {
    "id": "user-daily-cap",
    "metric": "cost_usd",
    "group_by": ["user"],
    "window": "day",
    "condition": {"above": 50},
    "actions": ["ops", "kill"],
}


# ── validation ────────────────────────────────────────────────────────────────────────────────


def config_error(tmp_path: Path, text: str) -> str:
    path = tmp_path / "spendguard.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ={})
    return str(caught.value)


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ("{id: r, metric: cost_usd, condition: {above: true}}", "rules[0].condition.above"),
        ("{id: r, metric: cost_usd, condition: {above: -1}}", "0 or more"),
        ("{id: r, metric: cost_usd, condition: {above: 1}, window: fortnight}", "rules[0].window"),
        ("{id: r, metric: cost_usd, condition: {above: 1}, timezone: Mars/Olympus}", "IANA"),
        ("{id: r, metric: cost_usd, condition: {above: 1}, actions: [ops, pager]}", "actions[1]"),
        ("{id: r, metric: cost_usd, condition: {forecast_above: 1}, window: 1h}", "calendar"),
        ("{id: r, metric: cost_per_1k_requests, condition: {forecast_above: 1}}", "adds up"),
        ("{id: 'bad id!', metric: cost_usd, condition: {above: 1}}", "rules[0].id"),
        ("{id: r, metric: cost_usd, condition: {anomaly: {sensitivity: 0}}}", "above 0"),
    ],
)
def test_a_bad_rule_names_the_rule_and_key(tmp_path: Path, rule: str, expected: str) -> None:
    text = f"notifiers:\n  ops: {{kind: slack, webhook_url: 'https://x'}}\nrules:\n  - {rule}\n"
    message = config_error(tmp_path, text)
    assert expected in message
    if "actions" in expected:
        assert "rule 'r'" in message
        assert "'pager' is neither a notifier nor 'kill'" in message


def test_duplicate_rule_ids_are_refused(tmp_path: Path) -> None:
    rule = "{id: r, metric: cost_usd, condition: {above: 1}}"
    assert "rule id 'r' is used twice" in config_error(
        tmp_path, f"rules:\n  - {rule}\n  - {rule}\n"
    )


# ── the state machine ─────────────────────────────────────────────────────────────────────────


def test_ok_firing_dedupe_renotify_resolved() -> None:
    t0, hour = DAY, timedelta(hours=1)
    fired = advance(None, True, t0, None, timedelta(hours=6))
    assert fired is not None
    assert (fired.kind, fired.notify) == (FIRING, True)
    assert advance(fired.state, True, t0 + hour, None, timedelta(hours=6)) is None  # dedupe
    again = advance(fired.state, True, t0 + 6 * hour, None, timedelta(hours=6))
    assert again is not None
    assert (again.kind, again.notify) == (RENOTIFY, True)
    resolved = advance(again.state, False, t0 + 7 * hour, None, None)
    assert resolved is not None
    assert (resolved.kind, resolved.notify, resolved.state.status) == (RESOLVED, True, RESOLVED)
    assert advance(resolved.state, False, t0 + 8 * hour, None, None) is None


def test_cooldown_silences_a_flapping_group_then_tells_once_it_is_over() -> None:
    cooldown, t0 = timedelta(hours=1), DAY
    first = advance(None, True, t0, cooldown, None)
    assert first is not None
    resolved = advance(first.state, False, t0 + timedelta(minutes=10), cooldown, None)
    assert resolved is not None
    refire = advance(resolved.state, True, t0 + timedelta(minutes=20), cooldown, None)
    assert refire is not None
    assert (refire.kind, refire.notify) == (FIRING, False)  # recorded, silenced
    quiet = advance(refire.state, False, t0 + timedelta(minutes=30), cooldown, None)
    assert quiet is not None
    assert (quiet.kind, quiet.notify) == (RESOLVED, False)  # its resolution too
    refire = advance(quiet.state, True, t0 + timedelta(minutes=40), cooldown, None)
    assert refire is not None
    late = advance(refire.state, True, t0 + timedelta(minutes=61), cooldown, None)
    assert late is not None
    assert (late.kind, late.notify) == (RENOTIFY, True)


# ── the live engine, fake clock ───────────────────────────────────────────────────────────────


def rows(engine: Engine, table: Any) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(select(table)).all())


def test_a_daily_cap_fires_once_then_resolves_with_the_values_stored(engine: Engine) -> None:
    settings = settings_with(CAP)
    add_request(engine, DAY + timedelta(hours=9), calls=[("gpt-4o", "30")])
    add_request(engine, DAY + timedelta(hours=9), "u-2", calls=[("gpt-4o", "40")])
    assert evaluate_once(engine, settings, DAY + timedelta(hours=9, minutes=30)) == []
    add_request(engine, DAY + timedelta(hours=10), calls=[("gpt-4o", "25.5"), ("o3", None)])

    [fired] = evaluate_once(engine, settings, DAY + timedelta(hours=10, minutes=1))
    assert (fired.rule_id, fired.group, fired.kind, fired.notify) == (
        "user-daily-cap", {"user": "u-1"}, FIRING, True,
    )  # fmt: skip
    assert fired.judgement.verdict.value == Decimal("55.5")
    assert fired.judgement.requests == 2
    assert fired.judgement.window.start == DAY
    # Evaluated again: still above, nothing new (dedupe).
    assert evaluate_once(engine, settings, DAY + timedelta(hours=11)) == []
    # The next day the cap starts from zero: resolved.
    [resolved] = evaluate_once(engine, settings, DAY + timedelta(days=1, minutes=1))
    assert (resolved.kind, resolved.group) == (RESOLVED, {"user": "u-1"})
    assert resolved.firing_since == DAY + timedelta(hours=10, minutes=1)

    history = rows(engine, AlertTransition)
    assert [(h.kind, h.delivery, h.value, h.threshold, h.requests) for h in history] == [
        (FIRING, "notify", "55.500000000", "50", 2),
        (RESOLVED, "notify", "0.000000000", "50", 0),
    ]
    assert history[0].method == "above $50.00"
    assert (history[0].window_start, history[0].window_end) == (DAY, fired.at)
    assert json.loads(history[0].actions) == ["ops", "kill"]
    [state] = rows(engine, AlertState)
    assert (state.status, state.version) == (RESOLVED, 2)
    outbox = rows(engine, OutboxItem)
    assert [o.notifier for o in outbox] == ["ops", "ops"]  # firing and resolution, for Slack
    kinds = [a.kind for a in rows(engine, AuditEntry)]
    assert kinds == ["rule_added", FIRING, "kill_requested", RESOLVED]


def test_an_evaluator_that_lost_the_race_records_nothing(engine: Engine) -> None:
    settings = settings_with(CAP)
    rule = compile_rule(RuleConfig.model_validate(CAP))
    add_request(engine, DAY + timedelta(hours=1), calls=[("gpt-4o", "60")])
    [fired] = evaluate_once(engine, settings, DAY + timedelta(hours=2))
    # A second evaluator decided the same transition from the same (empty) state.
    step = advance(None, True, fired.at, None, None)
    assert step is not None
    assert _record(engine, settings, rule, fired, step) is False
    assert len(rows(engine, AlertTransition)) == 1
    assert len(rows(engine, OutboxItem)) == 1


def test_filters_with_globs_and_min_requests(engine: Engine) -> None:
    rule = {
        "id": "gpt4-spend", "metric": "cost_usd", "group_by": ["model"], "window": "1h",
        "filter": {"model": "gpt-4*"}, "condition": {"above": 5}, "min_requests": 2,
    }  # fmt: skip
    at = DAY + timedelta(minutes=10)
    add_request(engine, at, calls=[("gpt-4o", "6")])
    add_request(engine, at, calls=[("GPT-4o", "9"), ("claude-x", "9")])  # other case: no match
    now = DAY + timedelta(minutes=30)
    assert evaluate_once(engine, settings_with(rule), now) == []  # 1 request < min_requests
    add_request(engine, at, calls=[("gpt-4.1", "1")])
    add_request(engine, at, calls=[("gpt-4o", "0.5")])
    fired = evaluate_once(engine, settings_with(rule), now)
    assert [(t.group, t.judgement.verdict.value) for t in fired] == [
        ({"model": "gpt-4o"}, Decimal("6.5"))
    ]


def test_rule_changes_are_audited_by_configuration_hash(sqlite_engine: Engine) -> None:
    evaluate_once(sqlite_engine, settings_with(CAP), DAY)
    evaluate_once(sqlite_engine, settings_with(CAP), DAY)  # unchanged: nothing
    evaluate_once(sqlite_engine, settings_with({**CAP, "condition": {"above": 60}}), DAY)
    evaluate_once(sqlite_engine, settings_with(), DAY)
    entries = [(a.kind, a.rule_id) for a in rows(sqlite_engine, AuditEntry)]
    assert entries == [
        ("rule_added", "user-daily-cap"),
        ("rule_changed", "user-daily-cap"),
        ("rule_removed", "user-daily-cap"),
    ]


def test_evaluation_reads_only_bounded_windows(sqlite_engine: Engine) -> None:
    """Incremental: every query on requests is bounded below on the indexed started_at."""
    rules = [
        CAP,
        {**CAP, "id": "anomaly", "window": "1h", "condition": {"anomaly": {}}},
        {**CAP, "id": "forecast", "window": "month", "condition": {"forecast_above": 9}},
    ]
    add_request(sqlite_engine, DAY, calls=[("gpt-4o", "1")])
    statements: list[str] = []

    def capture(*args: Any) -> None:
        statements.append(args[2])

    event.listen(sqlite_engine, "before_cursor_execute", capture)
    evaluate_once(sqlite_engine, settings_with(*rules), DAY + timedelta(hours=1))
    event.remove(sqlite_engine, "before_cursor_execute", capture)
    on_requests = [s for s in statements if re.search(r"FROM requests\b", s)]
    assert len(on_requests) >= 3
    for sql in on_requests:
        is_min = "min(requests.started_at)" in sql  # the data start: one index lookup
        assert is_min or "requests.started_at >= ?" in sql, sql


def test_the_backtest_agrees_with_the_live_engine(engine: Engine) -> None:
    rules = [
        {**CAP, "cooldown": "2h", "renotify": "3h"},
        {"id": "hourly", "metric": "requests", "window": "2h", "condition": {"above": 2}},
    ]
    for hour, user, cost in [(1, "u-1", "30"), (2, "u-1", "30"), (3, "u-2", "80"), (5, "u-1", "1")]:
        for _ in range(2):
            add_request(engine, DAY + timedelta(hours=hour, minutes=20), user,
                        calls=[("gpt-4o", cost)])  # fmt: skip
    add_request(engine, DAY + timedelta(days=1, hours=2), "u-1", calls=[("gpt-4o", "99")])
    settings = settings_with(*rules)
    end = DAY + timedelta(days=2)
    replayed = backtest(engine, settings, DAY, end)
    live = []
    moment = DAY
    while moment <= end:
        live.extend(evaluate_once(engine, settings, moment))
        moment += timedelta(hours=1)

    def key(ts: Sequence[Any]) -> list[tuple[Any, ...]]:
        return sorted(
            (t.at, t.rule_id, tuple(t.group.items()), t.kind, t.notify, t.judgement.verdict.value)
            for t in ts
        )

    assert key(replayed) == key(live)
    assert {t.kind for t in replayed} == {FIRING, RESOLVED, RENOTIFY}
