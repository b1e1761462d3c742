"""spendguard.yaml + environment → Settings, and the errors a bad config gets at start."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.errors import ConfigError
from app.settings import DEFAULT_DATABASE_URL, Settings, config_path, load_settings

REPO = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, text: str, name: str = "spendguard.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def config_error(path: Path | None, environ: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ={} if environ is None else environ)
    return str(caught.value)


# ── no file, empty file ────────────────────────────────────────────────────────────────────────


def test_no_file_at_all_means_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no ./spendguard.yaml here
    settings = load_settings(environ={})
    assert settings.database.url == DEFAULT_DATABASE_URL == "sqlite:///spendguard.db"
    assert settings.api.host == "127.0.0.1"
    assert settings.api.port == 8700
    assert settings.dashboard.port == 8501
    assert settings.collectors.traces.enabled
    assert settings.collectors.traces.schedule.every == "60s"
    assert not settings.collectors.openai.enabled
    assert settings.attribution.user_attributes == [
        "enduser.id",
        "user.id",
        "app.user.id",
        "llm.user",
    ]
    assert settings.rules == []
    assert settings.notifiers == {}
    assert settings == Settings()


def test_default_file_is_read_from_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "api: {port: 9100}\n")
    assert config_path(environ={}) == Path("spendguard.yaml")
    assert load_settings(environ={}).api.port == 9100


@pytest.mark.parametrize("text", ["", "\n", "# only a comment\n", "---\n"])
def test_an_empty_file_means_defaults(tmp_path: Path, text: str) -> None:
    assert load_settings(write(tmp_path, text), environ={}) == Settings()


def test_values_from_the_file(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
database: {url: "postgresql+psycopg://sg@db:5432/spendguard"}
collectors:
  traces:
    schedule: {cron: "*/5 * * * *"}
    sources:
      - {kind: folder, path: /var/lib/otelcol/traces}
      - {kind: s3, bucket: acme-otel, prefix: traces/}
attribution:
  user_teams: {1042: payments}
api: {host: 0.0.0.0, port: 9000}
""",
    )
    settings = load_settings(path, environ={})
    assert settings.database.url == "postgresql+psycopg://sg@db:5432/spendguard"
    assert settings.collectors.traces.schedule.cron == "*/5 * * * *"
    folder, s3 = settings.collectors.traces.sources
    assert folder.kind == "folder"
    assert str(folder.path) == "/var/lib/otelcol/traces"
    assert s3.kind == "s3"
    assert s3.bucket == "acme-otel"
    assert s3.region == "us-east-1"
    # A numeric YAML key is a user id like any other.
    assert settings.attribution.user_teams == {"1042": "payments"}
    assert (settings.api.host, settings.api.port) == ("0.0.0.0", 9000)


# ── wrong keys and wrong types: file, key path and fix ─────────────────────────────────────────


@pytest.mark.parametrize(
    ("text", "key_path"),
    [
        ("databse:\n  url: sqlite:///x.db\n", "databse"),
        ("database: {url: x, pool: 5}\n", "database.pool"),
        ("collectors:\n  openai: {admin_kye: x}\n", "collectors.openai.admin_kye"),
        (
            "collectors:\n  traces:\n    sources:\n      - {kind: s3, bucket: b, prefx: p}\n",
            "collectors.traces.sources[0].prefx",
        ),
        (
            "rules:\n  - {id: r, metric: cost_usd, condition: {above: 1}, windw: day}\n",
            "rules[0].windw",
        ),
        (
            "notifiers:\n  Ops: {kind: slack, webhook_url: x, channel: '#ops'}\n",
            "notifiers.Ops.channel",
        ),
    ],
)
def test_an_unknown_key_names_file_key_path_and_fix(
    tmp_path: Path, text: str, key_path: str
) -> None:
    path = write(tmp_path, text, "my-config.yaml")
    message = config_error(path)
    assert str(path) in message
    assert f"{key_path}: unknown key" in message
    assert "check its spelling" in message
    assert "spendguard.example.yaml" in message
    assert message.count("unknown key") == 1  # one mistake, one line


@pytest.mark.parametrize(
    ("text", "key_path", "what"),
    [
        ("api:\n  port: abc\n", "api.port", "valid integer"),
        ("api:\n  port: 70000\n", "api.port", "65535"),
        ("database: sqlite:///x.db\n", "database", "dictionary"),
        (
            "rules:\n  - {id: r, metric: dollars, condition: {above: 1}}\n",
            "rules[0].metric",
            "'cost_usd'",
        ),
        ("rules:\n  - {id: r, metric: cost_usd}\n", "rules[0].condition", "Field required"),
        (
            "rules:\n  - {id: a, metric: cost_usd, condition: {}}\n"
            "  - {id: b, metric: cost_usd, condition: {}, group_by: [region]}\n",
            "rules[1].group_by[0]",
            "'endpoint'",
        ),
        (
            "collectors:\n  traces:\n    sources:\n      - {kind: folder}\n",
            "collectors.traces.sources[0].path",
            "Field required",
        ),
        (
            "collectors:\n  traces:\n    sources:\n      - {kind: ftp, path: /x}\n",
            "collectors.traces.sources[0].kind",
            "'folder', 's3'",
        ),
        ("collectors:\n  openai: {lookback_days: -1}\n", "collectors.openai.lookback_days", "0"),
        ("notifiers:\n  Ops: {kind: slack}\n", "notifiers.Ops", "webhook_url"),
        ("attribution:\n  user_teams: {U1: [a, b]}\n", "attribution.user_teams.U1", "string"),
        ("dashboard: {auth: basic}\n", "dashboard.auth", "'none'"),
    ],
)
def test_a_wrong_value_names_file_key_path_and_what_is_expected(
    tmp_path: Path, text: str, key_path: str, what: str
) -> None:
    path = write(tmp_path, text)
    message = config_error(path)
    assert str(path) in message
    line = next(line for line in message.splitlines() if line.strip().startswith(key_path + ":"))
    assert what in line
    assert "spendguard.example.yaml" in line


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    message = config_error(write(tmp_path, "api: {port: abc}\ndashboard: {prot: 1}\n"))
    assert "2 problem(s)" in message
    assert "api.port:" in message
    assert "dashboard.prot: unknown key" in message


# ── schedules ──────────────────────────────────────────────────────────────────────────────────


@pytest.mark.parametrize(
    ("schedule", "key_path", "what"),
    [
        ("{every: 5 minutes}", "collectors.openai.schedule.every", "e.g. 60s, 15m"),
        ("{every: 0s}", "collectors.openai.schedule.every", "not a duration"),
        ("{every: 5m, cron: '*/5 * * * *'}", "collectors.openai.schedule", "exactly one"),
        ("{}", "collectors.openai.schedule", "exactly one"),
        ("{cron: '*/5 * *'}", "collectors.openai.schedule.cron", "5 fields"),
        ("{at: noon}", "collectors.openai.schedule.at", "unknown key"),
    ],
)
def test_a_bad_schedule_is_refused(tmp_path: Path, schedule: str, key_path: str, what: str) -> None:
    message = config_error(write(tmp_path, f"collectors:\n  openai:\n    schedule: {schedule}\n"))
    assert any(
        line.strip().startswith(f"{key_path}:") and what in line for line in message.splitlines()
    ), message


@pytest.mark.parametrize("every", ["90s", "15m", "2h", "1d", "1w"])
def test_good_schedules(tmp_path: Path, every: str) -> None:
    path = write(tmp_path, f"collectors:\n  anthropic:\n    schedule: {{every: {every}}}\n")
    assert load_settings(path, environ={}).collectors.anthropic.schedule.every == every


# ── pricing overrides: money is decimal ────────────────────────────────────────────────────────


@pytest.mark.parametrize(
    ("price", "what"),
    [
        ('"abc"', "not a decimal number"),
        ('"-1"', "non-negative"),
        ('"NaN"', "finite"),
        ("0.30", 'quoted decimal string, e.g. "0.30"'),  # a YAML float: refused, not rounded
        ("[1]", "quoted decimal string"),
    ],
)
def test_a_non_decimal_price_is_refused(tmp_path: Path, price: str, what: str) -> None:
    path = write(
        tmp_path,
        f"pricing:\n  overrides:\n    - {{model: m, input_per_mtok: {price}}}\n",
    )
    message = config_error(path)
    assert "pricing.overrides[0].input_per_mtok:" in message
    assert what in message


def test_prices_are_kept_as_exact_decimal_strings(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "pricing:\n  overrides:\n"
        '    - {provider: openai, model: "ft:*", input_per_mtok: "0.30", output_per_mtok: 2,\n'
        '       cache_read_per_mtok: "0.000000001"}\n',
    )
    (override,) = load_settings(path, environ={}).pricing.overrides
    assert override.input_per_mtok == "0.30"
    assert override.output_per_mtok == "2"  # a whole number is exact even unquoted
    assert override.cache_read_per_mtok == "0.000000001"
    assert override.cache_write_per_mtok is None


# ── files that are not a config at all ─────────────────────────────────────────────────────────


def test_invalid_yaml_names_the_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "api:\n  port: [8700\ndashboard: {}\n")
    message = config_error(path)
    assert message.startswith(f"{path}: not valid YAML")
    assert "line " in message
    assert "Fix" in message


def test_a_duplicate_key_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "api: {port: 1}\ndashboard: {}\napi: {port: 2}\n")
    message = config_error(path)
    assert str(path) in message
    assert "duplicate key 'api'" in message
    assert "line 3" in message


@pytest.mark.parametrize(
    ("text", "kind"), [("- database\n- api\n", "list"), ("just text\n", "str"), ("3\n", "int")]
)
def test_the_top_level_must_be_a_mapping(tmp_path: Path, text: str, kind: str) -> None:
    path = write(tmp_path, text)
    message = config_error(path)
    assert str(path) in message
    assert "top level must be a mapping" in message
    assert f"got {kind}" in message


def test_a_directory_is_not_a_config_file(tmp_path: Path) -> None:
    message = config_error(tmp_path)
    assert str(tmp_path) in message
    assert "cannot read" in message


# ── the CLI refuses a bad config at start ──────────────────────────────────────────────────────


@pytest.mark.slow
def test_the_cli_refuses_a_bad_config_at_start(tmp_path: Path) -> None:
    bad = write(tmp_path, "collectors:\n  openai:\n    admin_kye: x\n", "bad.yaml")
    warehouse = tmp_path / "warehouse.db"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPENDGUARD_")}
    env["SPENDGUARD_DATABASE_URL"] = f"sqlite:///{warehouse}"
    proc = subprocess.run(
        [sys.executable, "-m", "app", "--config", str(bad), "db", "upgrade"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode != 0
    assert proc.stderr.startswith("error:"), proc.stderr
    assert str(bad) in proc.stderr
    assert "collectors.openai.admin_kye" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not warehouse.exists()  # refused before touching the warehouse
