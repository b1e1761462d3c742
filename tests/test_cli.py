"""End to end through the real command line: `ingest traces` → `report unit-costs`."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from tests.conftest import FIXTURES
from tests.test_unit_costs import MINI_A, MINI_D, MINI_E, SONNET_A, TOTAL

REPO = Path(__file__).resolve().parents[1]


def spendguard(
    *args: str, url: str, cwd: Path, check: bool = True
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPENDGUARD_")}
    env["SPENDGUARD_DATABASE_URL"] = url
    proc = subprocess.run(
        [sys.executable, "-m", "app", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=120,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"spendguard {' '.join(args)} failed:\n{proc.stderr}")
    return proc


@pytest.mark.slow
def test_ingest_then_report_json(warehouse_url: str, tmp_path: Path) -> None:
    fixture = str(FIXTURES / "otlp" / "counting.json")
    out = spendguard("ingest", "traces", fixture, url=warehouse_url, cwd=tmp_path)
    assert "5 new requests, 5 new LLM calls" in out.stdout
    assert "1 unpriced" in out.stdout
    again = spendguard("ingest", "traces", fixture, url=warehouse_url, cwd=tmp_path)
    assert "0 new requests, 0 new LLM calls (5 already stored)" in again.stdout

    report = spendguard(
        "report",
        "unit-costs",
        "--by",
        "endpoint,model",
        "--format",
        "json",
        url=warehouse_url,
        cwd=tmp_path,
    )
    rows = json.loads(report.stdout)
    by_key = {(r["endpoint"], r["model"]): r for r in rows}
    chat_sonnet = by_key[("/v1/chat", "claude-sonnet-4-5")]
    assert chat_sonnet == {
        "endpoint": "/v1/chat",
        "model": "claude-sonnet-4-5",
        "requests": 1,
        "llm_calls": 1,
        "input_tokens": 2000,
        "output_tokens": 100,
        "token_cost_usd": "0.004800000",
        "gpu_cost_usd": "0.000000000",  # no GPU pool serves it
        "cost_usd": "0.004800000",
        "cost_per_1k_requests": "4.800000000",
        "unpriced_calls": 0,
    }
    assert Decimal(by_key[("/v1/chat", "gpt-4o-mini")]["cost_usd"]) == MINI_A
    assert Decimal(by_key[("(none)", "gpt-4o-mini")]["cost_usd"]) == MINI_D
    assert by_key[("/v1/search", "llama-3.1-70b")]["unpriced_calls"] == 1
    assert sum(Decimal(r["cost_usd"]) for r in rows) == TOTAL
    assert all(isinstance(r["cost_usd"], str) for r in rows)

    by_endpoint = json.loads(
        spendguard(
            "report",
            "unit-costs",
            "--by",
            "endpoint",
            "--format",
            "json",
            url=warehouse_url,
            cwd=tmp_path,
        ).stdout
    )
    chat = next(r for r in by_endpoint if r["endpoint"] == "/v1/chat")
    assert chat["requests"] == 2
    assert Decimal(chat["cost_per_1k_requests"]) == (MINI_A + SONNET_A) * 500

    day2 = json.loads(
        spendguard(
            "report",
            "unit-costs",
            "--by",
            "model",
            "--since",
            "2025-11-21",
            "--until",
            "2025-11-22",
            "--format",
            "json",
            url=warehouse_url,
            cwd=tmp_path,
        ).stdout
    )
    assert [(r["model"], Decimal(r["cost_usd"])) for r in day2] == [("gpt-4o-mini", MINI_E)]


def test_csv_and_table_formats(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'w.db'}"
    spendguard("ingest", "traces", str(FIXTURES / "otlp" / "counting.json"), url=url, cwd=tmp_path)
    out = spendguard(
        "report", "unit-costs", "--by", "team", "--format", "csv", url=url, cwd=tmp_path
    ).stdout
    rows = list(csv.DictReader(io.StringIO(out)))
    assert rows[0].keys() >= {"team", "requests", "cost_usd", "cost_per_1k_requests"}
    assert {r["team"] for r in rows} == {"payments", "(none)"}
    table = spendguard("report", "unit-costs", "--by", "endpoint", url=url, cwd=tmp_path).stdout
    assert "/v1/chat" in table and "cost_per_1k_requests" in table


def test_errors_go_to_stderr_with_nonzero_exit(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'w.db'}"
    bad = spendguard("report", "unit-costs", "--by", "region", url=url, cwd=tmp_path, check=False)
    assert bad.returncode != 0
    assert "unknown dimension" in bad.stderr and bad.stdout == ""
    bad_date = spendguard(
        "report",
        "unit-costs",
        "--by",
        "model",
        "--since",
        "yesterday",
        url=url,
        cwd=tmp_path,
        check=False,
    )
    assert bad_date.returncode != 0 and "YYYY-MM-DD" in bad_date.stderr

    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"resourceSpans": []}\n{not json\n')
    good = FIXTURES / "otlp" / "counting.json"
    proc = spendguard(
        "ingest", "traces", str(broken), str(good), url=url, cwd=tmp_path, check=False
    )
    assert proc.returncode == 1
    assert "1 record(s) could not be loaded and were quarantined" in proc.stderr
    assert "5 new LLM calls" in proc.stdout  # everything else is loaded
    listed = json.loads(
        spendguard("report", "quarantine", "--format", "json", url=url, cwd=tmp_path).stdout
    )
    assert [(r["source"], r["location"]) for r in listed] == [(str(broken), "line at byte 22")]
    assert "not valid JSON" in listed[0]["reason"]

    missing = spendguard(
        "ingest", "traces", str(tmp_path / "nope"), url=url, cwd=tmp_path, check=False
    )
    assert missing.returncode == 2 and missing.stderr.startswith("error:")
    unreachable = spendguard(
        "db", "upgrade", url="postgresql+psycopg://nobody@127.0.0.1:1/x", cwd=tmp_path, check=False
    )
    assert unreachable.returncode == 2
    assert "cannot connect to the warehouse" in unreachable.stderr
