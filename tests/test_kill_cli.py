"""`spendguard kill list|add|release|approve` end to end, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine, select
from typer.testing import CliRunner, Result

from app.cli import app
from app.killswitch.model import OPERATOR, PENDING, Scope
from app.killswitch.store import add_now
from app.settings import Settings
from app.warehouse.tables import AuditEntry


def sg(tmp_path: Path, url: str, *args: str) -> Result:
    config = tmp_path / "spendguard.yaml"
    config.write_text(json.dumps({"database": {"url": url}}))
    return CliRunner().invoke(app, ["--config", str(config), *args])


def test_add_prints_the_id_last_then_list_release(
    tmp_path: Path, warehouse_url: str, engine: Engine
) -> None:
    added = sg(
        tmp_path,
        warehouse_url,
        "kill",
        "add",
        "--user",
        "u-1313",
        "--model",
        "gpt-4*",
        "--reason",
        "runaway agent loop",
        "--ttl",
        "2h",
        "--by",
        "alice",
    )
    assert added.exit_code == 0, added.output
    *_, last = added.stdout.strip().splitlines()
    switch_id = int(last)
    assert "blocks model=gpt-4* user=u-1313 until" in added.stdout

    listed = sg(tmp_path, warehouse_url, "kill", "list", "--format", "json")
    assert listed.exit_code == 0, listed.output
    [row] = json.loads(listed.stdout)
    assert (row["id"], row["state"], row["user"], row["model"]) == (
        switch_id,
        "active",
        "u-1313",
        "gpt-4*",
    )
    assert row["created_by"] == "alice" and row["reason"] == "runaway agent loop"
    expires = datetime.fromisoformat(row["expires_at"].replace("Z", "+00:00"))
    assert timedelta(minutes=119) < expires - datetime.now(UTC) <= timedelta(hours=2)
    table = sg(tmp_path, warehouse_url, "kill", "list")
    assert "u-1313" in table.stdout and "runaway agent loop" in table.stdout

    released = sg(tmp_path, warehouse_url, "kill", "release", str(switch_id), "--by", "bob")
    assert released.exit_code == 0, released.output
    assert f"kill switch {switch_id} (model=gpt-4* user=u-1313) is released" in released.stdout
    assert sg(tmp_path, warehouse_url, "kill", "list").stdout.strip() == "No open kill switches."
    everything = json.loads(
        sg(tmp_path, warehouse_url, "kill", "list", "--all", "--format", "json").stdout
    )
    assert [(r["state"], r["updated_by"]) for r in everything] == [("released", "bob")]
    with engine.connect() as conn:
        kinds = [r.kind for r in conn.execute(select(AuditEntry).order_by(AuditEntry.id))]
    assert kinds == ["kill_added", "kill_released"]

    again = sg(tmp_path, warehouse_url, "kill", "release", str(switch_id))
    assert again.exit_code == 1
    assert "is released, not active or pending_approval" in again.stderr


def test_approve_a_pending_switch(tmp_path: Path, warehouse_url: str, engine: Engine) -> None:
    pending = add_now(
        engine,
        Settings(),
        Scope(team="payments"),
        "rule asked",
        now=datetime.now(UTC),
        by="rule:team-cap",
        origin=OPERATOR,
        state=PENDING,
    )
    approved = sg(tmp_path, warehouse_url, "kill", "approve", str(pending.id))
    assert approved.exit_code == 0, approved.output
    assert "(team=payments) is active" in approved.stdout
    assert sg(tmp_path, warehouse_url, "kill", "approve", str(pending.id)).exit_code == 1
    assert sg(tmp_path, warehouse_url, "kill", "approve", "999").exit_code == 1


def test_mistakes_are_refused_with_the_fix(tmp_path: Path, warehouse_url: str) -> None:
    no_scope = sg(tmp_path, warehouse_url, "kill", "add", "--reason", "everything?")
    assert no_scope.exit_code == 2
    assert "needs a scope" in no_scope.stderr and "endpoint '*'" in no_scope.stderr
    bad_ttl = sg(
        tmp_path, warehouse_url, "kill", "add", "--user", "u", "--reason", "r", "--ttl", "2 hours"
    )
    assert bad_ttl.exit_code == 2 and "--ttl" in bad_ttl.output
    assert sg(tmp_path, warehouse_url, "kill", "add", "--user", "u").exit_code == 2  # no --reason
    assert sg(tmp_path, warehouse_url, "kill", "list", "--format", "xml").exit_code == 2
