"""The alerting commands end to end: `rules check`, `rules backtest` on the demo's runaway user,
`alerts run` delivering to a local Slack fake, `alerts outbox` and `audit`."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine
from typer.testing import CliRunner, Result

from app.cli import app
from app.demo.load import load_demo
from app.settings import Settings
from app.warehouse.engine import make_engine
from app.warehouse.migrate import upgrade
from tests.test_outbox import FakeEndpoint
from tests.test_rules import add_request

DEMO_END = datetime(2026, 3, 5, tzinfo=UTC)


def write_config(
    tmp_path: Path, url: str, slack: str = "https://hooks.slack.test/x", **extra: Any
) -> Path:
    config = {
        "database": {"url": url},
        "notifiers": {"finops-slack": {"kind": "slack", "webhook_url": slack}},
        "rules": [
            {"id": "user-daily-cap", "description": "No user spends more than $50 a day",
             "metric": "cost_usd", "group_by": ["user"], "window": "day",
             "condition": {"above": 50}, "severity": "critical",
             "actions": ["finops-slack", "kill"], "cooldown": "1h", "renotify": "6h"},
        ],
        **extra,
    }  # fmt: skip
    path = tmp_path / "spendguard.yaml"
    path.write_text(json.dumps(config))  # JSON is YAML
    return path


def sg(config: Path, *args: str) -> Result:
    return CliRunner().invoke(app, ["--config", str(config), *args])


def test_rules_check_lists_the_rules_and_refuses_a_bad_config(tmp_path: Path) -> None:
    good = write_config(tmp_path, f"sqlite:///{tmp_path / 'w.db'}")
    result = sg(good, "rules", "check")
    assert result.exit_code == 0, result.output
    assert (
        "on  user-daily-cap: cost_usd per user over day: above $50.00 [critical]" in result.stdout
    )
    assert "1 rule(s) valid (1 enabled), 1 notifier(s)." in result.stdout

    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "rules:\n  - {id: r, metric: cost_usd, condition: {above: 1}, actions: [pager]}\n"
    )
    result = sg(bad, "rules", "check")
    assert result.exit_code == 1
    assert "rules[0].actions[0] (rule 'r'): 'pager' is neither a notifier nor 'kill'" in (
        result.stderr
    )


@pytest.mark.slow
def test_backtest_on_the_demo_lists_the_runaway_user_firing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    engine = make_engine(url)
    upgrade(engine)
    load_demo(engine, Settings(), days=3, seed=7, out_dir=tmp_path / "demo", end=DEMO_END)
    engine.dispose()
    config = write_config(tmp_path, url)

    result = sg(config, "rules", "backtest", "--since", "2026-03-02", "--until", "2026-03-05",
                "--format", "json")  # fmt: skip
    assert result.exit_code == 0, result.output
    events = json.loads(result.stdout)
    firings = [e for e in events if e["event"] == "firing"]
    assert firings, events
    assert {e["group"]["user"] for e in firings} == {"u-1313"}
    first = firings[0]
    assert first["rule"] == "user-daily-cap"
    assert first["at"].startswith("2026-03-03")  # the runaway starts 42 h before the end
    assert float(first["value"]) > 50
    assert first["threshold"] == "50"
    assert "nothing was sent" in result.stderr

    table = sg(config, "rules", "backtest", "--since", "2026-03-02", "--until", "2026-03-05")
    assert table.exit_code == 0, table.output
    assert "user=u-1313" in table.stdout
    assert "firing" in table.stdout


def test_alerts_run_delivers_to_slack_then_outbox_and_audit_show_it(
    warehouse_url: str, engine: Engine, tmp_path: Path
) -> None:
    fake = FakeEndpoint()
    server = fake.start()
    try:
        now = datetime.now(UTC)
        add_request(engine, now - timedelta(minutes=1), "u-1313", calls=[("gpt-4o", "75")])
        slack = f"http://127.0.0.1:{server.server_address[1]}/services/T/B/X"
        config = write_config(tmp_path, warehouse_url, slack=slack)
        result = sg(config, "alerts", "run")
        assert result.exit_code == 0, result.output
        again = sg(config, "alerts", "run")  # still above: no second message
    finally:
        server.shutdown()
        server.server_close()
    assert "user-daily-cap [user=u-1313] firing (notify): cost_usd $75.00 vs $50.00" in (
        result.stdout
    )
    assert "→ finops-slack: delivered HTTP 200 (attempt 1)" in result.stdout
    assert "0 transition(s), 0 delivery attempt(s)" in again.stdout
    [message] = fake.accepted
    assert "user-daily-cap is firing" in message.body

    outbox = sg(config, "alerts", "outbox", "--format", "json")
    assert outbox.exit_code == 0, outbox.output
    [item] = json.loads(outbox.stdout)
    assert (item["notifier"], item["status"], item["attempts"]) == ("finops-slack", "delivered", 1)
    assert sg(config, "alerts", "outbox").stdout.count("delivered") == 1

    today = now.strftime("%Y-%m-%d")
    audit = sg(config, "audit", "--since", today, "--format", "json")
    assert audit.exit_code == 0, audit.output
    kinds = [e["kind"] for e in json.loads(audit.stdout)]
    assert kinds == ["rule_added", "firing", "kill_requested", "notification_delivered"]
    assert "kill_requested" in sg(config, "audit").stdout


def test_the_outbox_raises_a_notice_for_an_endpoint_gone(
    sqlite_engine: Engine, tmp_path: Path
) -> None:
    fake = FakeEndpoint(script=[(410, {})])
    server = fake.start()
    try:
        add_request(sqlite_engine, datetime.now(UTC) - timedelta(minutes=1), calls=[("x", "99")])
        url = str(sqlite_engine.url)
        config = write_config(tmp_path, url, slack=f"http://127.0.0.1:{server.server_address[1]}/")
        assert sg(config, "alerts", "run").exit_code == 0
    finally:
        server.shutdown()
        server.server_close()
    result = sg(config, "alerts", "outbox")
    assert result.exit_code == 0, result.output
    assert "gone" in result.stdout
    assert "notice: notifier 'finops-slack' is disabled since" in result.stderr
    assert "410 Gone" in result.stderr
