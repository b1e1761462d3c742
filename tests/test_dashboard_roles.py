"""Dashboard roles: a viewer cannot release a switch, an operator can and the audit log says
who; `dashboard.auth: oidc` asks to sign in and maps emails or groups to roles; `auth: none`
serves localhost only. Data as in tests/test_dashboard_pages.py.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine

from alerts.audit import read as read_audit
from app.dashboard import actions
from app.dashboard.auth import Identity, identity_from_claims, role_for
from app.killswitch.model import PENDING
from app.killswitch.store import list_switches
from app.settings import DashboardConfig, Settings, load_settings
from app.warehouse.engine import make_engine
from tests.test_dashboard_pages import (
    load,
    open_page,
    settings_for,
    write_config,
)


def _pending_id(engine: Engine) -> int:
    [switch] = [s for s in list_switches(engine, datetime.now(UTC)) if s.state == PENDING]
    return switch.id


def test_a_viewer_sees_disabled_buttons_and_cannot_release(
    page_env: Path, sqlite_engine: Engine
) -> None:
    load(sqlite_engine)
    url = sqlite_engine.url.render_as_string(hide_password=False)
    write_config(page_env, url, local_role="viewer")

    at = open_page("alerts")

    switch_buttons = [b for b in at.button if b.key and b.key.startswith(("release_", "approve_"))]
    assert switch_buttons and all(b.disabled for b in switch_buttons)
    assert "You are a viewer" in " ".join(c.value for c in at.caption)
    # The action refuses a viewer whatever the page does.
    viewer = Identity("local user", "viewer")
    switch_id = _pending_id(sqlite_engine)
    with pytest.raises(actions.NotAllowed, match="only operators may release"):
        actions.release_switch(sqlite_engine, settings_for(url), viewer, switch_id)
    with pytest.raises(actions.NotAllowed, match="only operators may approve"):
        actions.approve_switch(sqlite_engine, settings_for(url), viewer, switch_id)
    with pytest.raises(actions.NotAllowed, match="only operators may run collectors"):
        actions.run_collector_now(sqlite_engine, settings_for(url), viewer, "traces")
    assert _pending_id(sqlite_engine) == switch_id  # unchanged


def test_an_operator_approves_then_releases_and_the_audit_log_says_who(
    page_env: Path, warehouse_url: str
) -> None:
    engine = make_engine(warehouse_url)
    load(engine)
    switch_id = _pending_id(engine)
    write_config(page_env, warehouse_url, auth="oidc", operators=["group:sre"])
    ops = {"is_logged_in": True, "email": "Ops@Example.com", "groups": ["sre"]}

    at = open_page("alerts", user=ops)
    at.button(key=f"approve_{switch_id}").click().run()
    assert not at.exception, [e.value for e in at.exception]
    at.button(key=f"confirm_approve_{switch_id}").click().run()
    assert [s.value for s in at.success] == [
        f"Kill switch #{switch_id} approved by Ops@Example.com."
    ]
    at.button(key=f"release_{switch_id}").click().run()
    at.button(key=f"confirm_release_{switch_id}").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert f"release_{switch_id}" not in {b.key for b in at.button}

    entries = [e for e in read_audit(engine) if e.detail.get("switch_id") == switch_id]
    assert [(e.kind, e.detail["by"]) for e in entries] == [
        ("kill_requested", "user-daily-cap"),
        ("kill_approved", "Ops@Example.com (dashboard)"),
        ("kill_released", "Ops@Example.com (dashboard)"),
    ]
    engine.dispose()


def test_cancel_leaves_the_switch_alone(page_env: Path, sqlite_engine: Engine) -> None:
    load(sqlite_engine)
    switch_id = _pending_id(sqlite_engine)
    write_config(page_env, sqlite_engine.url.render_as_string(hide_password=False))
    at = open_page("alerts")
    at.button(key=f"release_{switch_id}").click().run()
    at.button(key=f"cancel_release_{switch_id}").click().run()
    assert not at.exception
    assert f"confirm_release_{switch_id}" not in {b.key for b in at.button}
    assert _pending_id(sqlite_engine) == switch_id


def test_oidc_asks_to_sign_in_and_refuses_strangers(page_env: Path, sqlite_engine: Engine) -> None:
    load(sqlite_engine)
    url = sqlite_engine.url.render_as_string(hide_password=False)
    write_config(page_env, url, auth="oidc", viewers=["boss@example.com"])

    at = open_page("overview", user={"is_logged_in": False})
    assert [b.label for b in at.button] == ["Sign in"]
    assert not at.metric

    at = open_page("overview", user={"is_logged_in": True, "email": "eve@example.com"})
    assert "may not view this dashboard" in at.error[0].value
    assert not at.metric

    at = open_page(
        "alerts", user={"is_logged_in": True, "email": "boss@example.com"}, since="2025-11-20"
    )
    switch_buttons = [b for b in at.button if b.key and b.key.startswith(("release_", "approve_"))]
    assert switch_buttons and all(b.disabled for b in switch_buttons)


def test_oidc_without_a_provider_says_what_to_configure(
    page_env: Path, sqlite_engine: Engine
) -> None:
    write_config(page_env, sqlite_engine.url.render_as_string(hide_password=False), auth="oidc")
    at = open_page("overview")
    assert "secrets.toml" in at.error[0].value
    assert not at.button


def test_role_mapping() -> None:
    config = DashboardConfig(
        auth="oidc", operators=["Lead@Example.com", "group:SRE"], viewers=["group:finance"]
    )
    assert role_for("lead@example.com", [], config) == "operator"
    assert role_for("x@example.com", ["sre"], config) == "operator"
    assert role_for("x@example.com", ["finance"], config) == "viewer"
    assert role_for("x@example.com", ["other"], config) is None
    assert role_for(None, [], DashboardConfig(auth="oidc")) == "viewer"  # viewers: [] = all
    claims = {"email": "x@example.com", "roles": "sre"}
    with_claim = DashboardConfig(auth="oidc", operators=["group:sre"], groups_claim="roles")
    assert identity_from_claims(claims, with_claim) == Identity("x@example.com", "operator")


def test_auth_none_serves_localhost_only(tmp_path: Path) -> None:
    from app.cli.processes import _dashboard_argv, dashboard_address

    assert dashboard_address(Settings()) == "127.0.0.1"
    assert dashboard_address(Settings(dashboard={"auth": "none", "host": "0.0.0.0"})) == (
        "127.0.0.1"
    )
    assert dashboard_address(Settings(dashboard={"auth": "oidc", "host": "10.0.0.5"})) == (
        "10.0.0.5"
    )
    argv = _dashboard_argv(8501, "127.0.0.1")
    assert argv[argv.index("--server.address") + 1] == "127.0.0.1"
    assert argv[argv.index("--server.fileWatcherType") + 1] == "none"
    assert load_settings(write_config(tmp_path, "sqlite://")).dashboard.local_role == "operator"
