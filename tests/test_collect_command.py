"""`spendguard collect [NAME…] [--since D]` and `spendguard collect --status`, in process."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from tests.test_collect_traces import lines


def cli(tmp_path: Path, url: str, yaml_text: str, *args: str) -> Any:
    from typer.testing import CliRunner

    from app.cli import app

    config = tmp_path / "spendguard.yaml"
    config.write_text(f'database: {{url: "{url}"}}\n{yaml_text}')
    return CliRunner().invoke(app, ["--config", str(config), *args])


def test_collect_command_runs_once_then_reports_status(warehouse_url: str, tmp_path: Path) -> None:
    folder = tmp_path / "otelcol"
    folder.mkdir()
    (folder / "traces.jsonl").write_bytes(lines(1, 2))
    sources = f"collectors:\n  traces:\n    sources:\n      - {{kind: folder, path: {folder}}}\n"

    ran = cli(tmp_path, warehouse_url, sources, "collect")
    assert ran.exit_code == 0, ran.output
    assert "traces: ok, 1 source(s), 2 rows (2 new llm calls, 0 unpriced calls)" in ran.output
    again = cli(tmp_path, warehouse_url, sources, "collect", "traces", "--since", "2020-01-01")
    assert again.exit_code == 0 and "2 rows (0 new llm calls" in again.output

    status = cli(tmp_path, warehouse_url, sources, "collect", "--status", "--format", "json")
    assert status.exit_code == 0, status.output
    runs = json.loads(status.output)
    assert [(r["collector"], r["status"], r["rows"]) for r in runs] == [
        ("traces", "ok", 2),
        ("traces", "ok", 2),
    ]
    assert runs[0]["window_start"] == "2025-11-20T10:00:01Z"
    assert set(runs[0]) >= {"started_at", "finished_at", "rejected", "window_end", "error"}


def test_collect_command_fails_when_a_run_fails(warehouse_url: str, tmp_path: Path) -> None:
    sources = "collectors:\n  traces:\n    sources:\n      - {kind: folder, path: /nonexistent}\n"
    failed = cli(tmp_path, warehouse_url, sources, "collect")
    assert failed.exit_code == 1
    assert "traces: failed" in failed.output
    assert "collectors.traces.sources[0].path" in failed.output
    unknown = cli(tmp_path, warehouse_url, sources, "collect", "nope")
    assert unknown.exit_code == 2 and "available:" in unknown.output
    assert all(name in unknown.output for name in ("anthropic", "openai", "traces"))


def test_collect_command_with_nothing_configured(sqlite_engine: Engine, tmp_path: Path) -> None:
    url = str(sqlite_engine.url)
    done = cli(tmp_path, url, "", "collect")
    assert done.exit_code == 0 and "traces: nothing to do, no sources configured" in done.output
    assert cli(tmp_path, url, "", "collect", "--status").output == "Nothing in this range.\n"
