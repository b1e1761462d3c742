"""spendguard.yaml meets the environment: `${VAR}` references (secrets never shown),
`SPENDGUARD_*` overrides of any key, and which file is read."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from app.errors import ConfigError
from app.settings import DEFAULT_DATABASE_URL, Settings, config_path, load_settings
from tests.test_settings import config_error, write

# ── ${VAR} references and secrets ──────────────────────────────────────────────────────────────


SECRET_CONFIG = """
collectors:
  openai: {enabled: true, admin_key: "${OPENAI_ADMIN_KEY}"}
notifiers:
  ops: {kind: webhook, url: "https://${HOOK_HOST}/hook", secret: "${HOOK_SECRET}"}
"""


def test_an_unset_variable_names_the_variable_the_key_and_export(tmp_path: Path) -> None:
    path = write(tmp_path, SECRET_CONFIG)
    message = config_error(path, {"HOOK_HOST": "h", "HOOK_SECRET": "s"})
    assert str(path) in message
    assert "collectors.openai.admin_key" in message
    assert "${OPENAI_ADMIN_KEY}" in message
    assert "export OPENAI_ADMIN_KEY=" in message


def test_an_unset_variable_inside_a_list_names_the_index(tmp_path: Path) -> None:
    path = write(tmp_path, 'gateways:\n  - {kind: litellm, master_key: "${LITELLM_KEY}"}\n')
    message = config_error(path)
    assert "gateways[0].master_key" in message
    assert "export LITELLM_KEY=" in message


def test_set_variables_are_expanded_and_secrets_never_shown(tmp_path: Path) -> None:
    env = {
        "OPENAI_ADMIN_KEY": "sk-admin-TOPSECRET",
        "HOOK_HOST": "hooks.internal",
        "HOOK_SECRET": "whsec_ALSOSECRET",
    }
    settings = load_settings(write(tmp_path, SECRET_CONFIG), environ=env)
    admin_key = settings.collectors.openai.admin_key
    assert isinstance(admin_key, SecretStr)
    assert admin_key.get_secret_value() == "sk-admin-TOPSECRET"
    ops = settings.notifiers["ops"]
    assert ops.url == "https://hooks.internal/hook"  # expanded inside a longer string
    assert ops.secret is not None
    assert ops.secret.get_secret_value() == "whsec_ALSOSECRET"
    for shown in (repr(settings), str(settings), repr(settings.collectors), str(ops)):
        assert "TOPSECRET" not in shown
        assert "ALSOSECRET" not in shown
    assert "TOPSECRET" not in settings.model_dump_json()


def test_references_in_comments_and_defaults_need_no_variable(tmp_path: Path) -> None:
    path = write(tmp_path, "# admin_key: ${OPENAI_ADMIN_KEY}\napi: {port: 8701}\n")
    assert load_settings(path, environ={}).api.port == 8701


# ── the environment ────────────────────────────────────────────────────────────────────────────


def test_spendguard_database_url_overrides_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "database: {url: 'sqlite:///from-file.db'}\n")
    assert load_settings(path, environ={}).database.url == "sqlite:///from-file.db"
    env = {"SPENDGUARD_DATABASE_URL": "postgresql+psycopg://sg@db/sg"}
    assert load_settings(path, environ=env).database.url == "postgresql+psycopg://sg@db/sg"
    # It also wins over the nested form, being the documented, more specific one.
    env["SPENDGUARD_DATABASE__URL"] = "sqlite:///nested.db"
    assert load_settings(path, environ=env).database.url == "postgresql+psycopg://sg@db/sg"


def test_spendguard_database_url_without_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings(environ={"SPENDGUARD_DATABASE_URL": "sqlite:///elsewhere.db"})
    assert settings.database.url == "sqlite:///elsewhere.db"


def test_any_key_can_be_overridden_from_the_environment(tmp_path: Path) -> None:
    path = write(tmp_path, "api: {host: 0.0.0.0, port: 9000}\n")
    env = {
        "SPENDGUARD_API__PORT": "9100",
        "SPENDGUARD_COLLECTORS__OPENAI__ENABLED": "true",
        "SPENDGUARD_ATTRIBUTION__USER_ATTRIBUTES": '["customer.id"]',
        "SPENDGUARD_DASHBOARD": '{"port": 8600}',
        "SPENDGUARD_WEBHOOK_SECRET": "not a setting: ignored",
    }
    settings = load_settings(path, environ=env)
    assert (settings.api.host, settings.api.port) == ("0.0.0.0", 9100)
    assert settings.collectors.openai.enabled
    assert settings.attribution.user_attributes == ["customer.id"]
    assert settings.dashboard.port == 8600


def test_a_bad_environment_override_names_the_variable(tmp_path: Path) -> None:
    path = write(tmp_path, "api: {port: 9000}\n")
    message = config_error(path, {"SPENDGUARD_API__PORT": "abc"})
    assert "api.port:" in message
    assert "SPENDGUARD_API__PORT" in message
    message = config_error(path, {"SPENDGUARD_API__PROT": "1"})
    assert "api.prot: unknown key" in message
    assert "SPENDGUARD_API__PROT" in message
    message = config_error(path, {"SPENDGUARD_ATTRIBUTION__USER_ATTRIBUTES": "[oops"})
    assert "SPENDGUARD_ATTRIBUTION__USER_ATTRIBUTES" in message
    assert "JSON" in message
    # Lists are set whole (SPENDGUARD_RULES='[…]'), not item by item.
    message = config_error(path, {"SPENDGUARD_RULES__0__METRIC": "tokens"})
    assert "rules:" in message
    assert "SPENDGUARD_RULES__0__METRIC" in message
    with_rules = write(tmp_path, "rules:\n  - {id: r, metric: cost_usd, condition: {}}\n")
    message = config_error(with_rules, {"SPENDGUARD_RULES__0__METRIC": "tokens"})
    assert "SPENDGUARD_RULES__0__METRIC" in message
    assert "as JSON in SPENDGUARD_RULES" in message


def test_a_file_error_is_not_blamed_on_the_environment(tmp_path: Path) -> None:
    path = write(tmp_path, "database: sqlite:///x.db\n")
    message = config_error(path, {"SPENDGUARD_DATABASE_URL": "sqlite:///y.db"})
    assert message.startswith(f"{path}: invalid configuration")
    assert "database: Input should be a valid dictionary" in message


def test_only_the_given_environment_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SPENDGUARD_API__PORT", "9999")
    monkeypatch.setenv("SPENDGUARD_DATABASE_URL", "sqlite:///process.db")
    monkeypatch.setenv("SPENDGUARD_CONFIG", str(tmp_path / "absent.yaml"))
    monkeypatch.chdir(tmp_path)
    hermetic = load_settings(environ={})
    assert hermetic.api.port == 8700
    assert hermetic.database.url == DEFAULT_DATABASE_URL
    assert Settings().api.port == 8700  # Settings() alone is the defaults, whatever the env
    # …and the process environment when none is given.
    with pytest.raises(ConfigError, match=r"absent\.yaml: config file not found"):
        load_settings()
    monkeypatch.delenv("SPENDGUARD_CONFIG")
    settings = load_settings()
    assert settings.api.port == 9999
    assert settings.database.url == "sqlite:///process.db"


def test_spendguard_config_chooses_the_file(tmp_path: Path) -> None:
    chosen = write(tmp_path, "api: {port: 9200}\n", "chosen.yaml")
    env = {"SPENDGUARD_CONFIG": str(chosen)}
    assert config_path(None, env) == chosen
    assert load_settings(environ=env).api.port == 9200
    # An explicit path (--config) wins over the variable.
    other = write(tmp_path, "api: {port: 9300}\n", "other.yaml")
    assert load_settings(other, environ=env).api.port == 9300


@pytest.mark.parametrize("how", ["argument", "SPENDGUARD_CONFIG"])
def test_a_missing_explicit_file_is_an_error(tmp_path: Path, how: str) -> None:
    missing = tmp_path / "nope.yaml"
    if how == "argument":
        message = config_error(missing)
    else:
        message = config_error(None, {"SPENDGUARD_CONFIG": str(missing)})
    assert str(missing) in message
    assert "not found" in message
    assert "--config" in message


def test_an_empty_spendguard_config_means_the_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert load_settings(environ={"SPENDGUARD_CONFIG": ""}) == Settings()
