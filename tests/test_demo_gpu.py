"""The demo's GPU pool: a FOCUS export and a Cost Explorer answer in the real formats, loaded
through the focus and aws_ce collectors, allocated to the demo's llama calls, idle at night."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from sqlalchemy import Engine, func, select

from app.demo import DEMO_PRICE_OVERRIDES, DEMO_USER_TEAMS, write_demo_files
from app.demo.gpu import CREDIT, HOURLY, load_demo_gpu
from app.gpu.report import allocation_rows, pool_rows
from app.ingest import ingest_paths
from app.settings import Settings
from app.warehouse.tables_gpu import GpuCost, GpuPoolHour

END = datetime(2025, 11, 22, 12, tzinfo=UTC)


def test_the_demo_bills_its_gpu_pool_and_allocates_it(
    sqlite_engine: Engine, tmp_path: Path
) -> None:
    files = write_demo_files(tmp_path / "demo", days=3, seed=3, end=END, requests_per_day=300)
    settings = Settings(
        pricing={"overrides": DEMO_PRICE_OVERRIDES},  # type: ignore[arg-type]
        attribution={"user_teams": DEMO_USER_TEAMS},  # type: ignore[arg-type]
    )
    assert ingest_paths(sqlite_engine, settings, files).ok
    start = END - timedelta(days=3)
    line = load_demo_gpu(sqlite_engine, Settings(), start=start, end=END, out_dir=tmp_path / "demo")
    assert "GPU pool llama-70b" in line

    # The export is in the Data Exports layout, gzip CSV with the FOCUS columns.
    [export] = (tmp_path / "demo" / "billing").rglob("*.csv.gz")
    assert "exports/demo-focus/data/BILLING_PERIOD=2025-11" in export.as_posix()
    assert gzip.decompress(export.read_bytes()).startswith(b"BilledCost,EffectiveCost,")

    with sqlite_engine.connect() as conn:
        sources = dict(
            conn.execute(select(GpuCost.source, func.count()).group_by(GpuCost.source)).all()
        )
        estimated = conn.execute(select(func.count()).where(GpuCost.estimated)).scalar_one()
        hours = conn.execute(
            select(
                GpuPoolHour.hour,
                GpuPoolHour.source,
                GpuPoolHour.idle_nanousd,
                GpuPoolHour.cost_nanousd,
            )
        ).all()
    assert sources["focus"] > 24 and sources["aws_ce"] >= 3 and estimated == 1
    [pool] = pool_rows(sqlite_engine)
    assert pool.pool == "llama-70b" and pool.sources == "aws_ce,focus"
    # Every hour of the window once (FOCUS, then Cost Explorer for the days the export lacks),
    # and the tagged credit as a negative line.
    assert pool.cost_nanousd == int((HOURLY * 72 + CREDIT) * 10**9)
    assert pool.credits_nanousd == int(CREDIT * 10**9)
    assert pool.allocated_nanousd + pool.idle_nanousd == pool.cost_nanousd
    assert 0 < pool.allocated_nanousd < pool.cost_nanousd
    night = sum(i for h, _s, i, _c in hours if h.hour < 6) / sum(
        c for h, _s, _i, c in hours if h.hour < 6
    )
    day = sum(i for h, _s, i, _c in hours if 12 <= h.hour < 18) / sum(
        c for h, _s, _i, c in hours if 12 <= h.hour < 18
    )
    assert night > 0.8 and day < night  # idle at night

    by_endpoint = allocation_rows(sqlite_engine, ["endpoint"])
    assert by_endpoint and sum(r.gpu_cost_nanousd for r in by_endpoint) == pool.allocated_nanousd
    assert Decimal(pool.allocated_nanousd) > 0
