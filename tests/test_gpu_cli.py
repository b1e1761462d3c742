"""End to end through the real command line: a FOCUS export in a folder, a pool in
spendguard.yaml, traces → `collect focus` → `report gpu` and `report unit-costs`."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest

from tests.conftest import FIXTURES
from tests.gpu_fakes import csv_gz, focus_frame
from tests.test_cli import spendguard

CONFIG = """
collectors:
  focus: {enabled: true, path: "%s"}
pricing:
  overrides:
    - {provider: vllm, model: llama-3.1-70b, input_per_mtok: "0", output_per_mtok: "0"}
gpu_pools:
  - {name: llama-70b, match: {tag: {gpu-pool: llama-70b}}, models: [llama-3.1-70b]}
"""


@pytest.mark.slow
def test_a_pool_in_the_config_spreads_its_bill_over_endpoints_and_users(tmp_path: Path) -> None:
    export = tmp_path / "billing"
    folder = export / "exports" / "acme-focus" / "data" / "BILLING_PERIOD=2025-11"
    folder.mkdir(parents=True)
    noon = focus_frame().with_columns(  # the llama call of counting.json is at 12:00:01
        pl.col("ChargePeriodStart").str.replace("T00:", "T12:"),
        pl.col("ChargePeriodEnd").str.replace("T01:", "T13:"),
    )
    night = (
        focus_frame()
        .head(1)
        .with_columns(  # the same p5 at 03:00, when nobody calls
            pl.col("ChargePeriodStart").str.replace("T00:", "T03:"),
            pl.col("ChargePeriodEnd").str.replace("T01:", "T04:"),
        )
    )
    (folder / "acme-focus-00001.csv.gz").write_bytes(csv_gz(pl.concat([noon, night])))
    (tmp_path / "spendguard.yaml").write_text(CONFIG % export)
    url = f"sqlite:///{tmp_path / 'w.db'}"

    spendguard("ingest", "traces", str(FIXTURES / "otlp" / "counting.json"), url=url, cwd=tmp_path)
    collected = spendguard("collect", "focus", "--since", "2025-11-01", url=url, cwd=tmp_path)
    assert "focus: ok" in collected.stdout

    pools = json.loads(
        spendguard(
            "report", "gpu", "--since", "2025-11-01", "--format", "json", url=url, cwd=tmp_path
        ).stdout
    )
    by_pool = {p["pool"]: p for p in pools}
    llama = by_pool["llama-70b"]
    assert (llama["cost_usd"], llama["allocated_usd"], llama["idle_usd"]) == (
        "196.340200000",
        "98.170100000",
        "98.170100000",
    )
    assert (llama["hours"], llama["busy_hours"], llama["calls"]) == (2, 1, 1)
    assert by_pool["(unassigned)"]["cost_usd"] == "10.432800000"  # g6e of the embeddings tag

    users = json.loads(
        spendguard(
            "report",
            "gpu",
            "--since",
            "2025-11-01",
            "--by",
            "endpoint,user",
            "--format",
            "json",
            url=url,
            cwd=tmp_path,
        ).stdout
    )
    assert users == [
        {
            "endpoint": "/v1/search",
            "user": "u-1",
            "requests": 1,
            "calls": 1,
            "gpu_cost_usd": "98.170100000",
        }
    ]
    unit = json.loads(
        spendguard(
            "report", "unit-costs", "--by", "endpoint", "--format", "json", url=url, cwd=tmp_path
        ).stdout
    )
    search = next(r for r in unit if r["endpoint"] == "/v1/search")
    assert search["gpu_cost_usd"] == "98.170100000"
    assert Decimal(search["cost_usd"]) == Decimal(search["token_cost_usd"]) + Decimal("98.1701")

    table = spendguard("report", "gpu", "--since", "2025-11-01", url=url, cwd=tmp_path).stdout
    assert "llama-70b" in table and "98.1701" in table and "in no pool" in table
