"""Ingest throughput: demo OTLP files → warehouse, on SQLite and (if reachable) PostgreSQL.

Prints spans/s, LLM calls/s and requests/s for a cold load and for a re-load of the same files
(everything already stored), with the environment. Usage:
    python bench/ingest_throughput.py [--days 7] [--rate 1500] [--postgres URL]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy
from sqlalchemy import text
from sqlalchemy.engine import make_url

from app.demo import generate_demo
from app.demo.load import demo_settings
from app.ingest import ingest_paths
from app.settings import Settings
from app.warehouse.engine import make_engine
from app.warehouse.migrate import upgrade

END = datetime(2025, 11, 21, tzinfo=UTC)


def run(url: str, files: list[Path], label: str) -> None:
    engine = make_engine(url)
    upgrade(engine)
    settings = demo_settings(Settings())
    for phase in ("cold load", "re-load (all duplicates)"):
        t0 = time.perf_counter()
        result = ingest_paths(engine, settings, files)
        dt = time.perf_counter() - t0
        print(
            f"{label:>10} {phase:<26} {dt:7.2f} s  {result.spans / dt:9.0f} spans/s  "
            f"{(result.calls_new + result.calls_duplicate) / dt:8.0f} calls/s  "
            f"{result.requests_new / dt:7.0f} new requests/s"
        )
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--rate", type=int, default=1500, help="requests per day")
    parser.add_argument(
        "--postgres",
        default=os.environ.get(
            "SPENDGUARD_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
        ),
    )
    args = parser.parse_args()
    print(
        f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} cores, "
        f"SQLAlchemy {sqlalchemy.__version__}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        summary = generate_demo(
            Path(tmp) / "files", days=args.days, seed=7, end=END, requests_per_day=args.rate
        )
        size = sum(f.stat().st_size for f in summary.files) / 1e6
        print(
            f"demo: {args.days} days, {summary.requests} requests, {summary.llm_calls} calls, "
            f"{summary.spans} spans, {size:.1f} MB in {len(summary.files)} files "
            f"(generated in {time.perf_counter() - t0:.1f} s)"
        )
        files = list(summary.files)
        run(f"sqlite:///{Path(tmp) / 'bench.db'}", files, "sqlite")
        schema = f"sg_bench_{uuid.uuid4().hex[:8]}"
        admin = make_engine(args.postgres)
        try:
            with admin.begin() as conn:
                conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        except sqlalchemy.exc.OperationalError as exc:
            print(f"postgresql: skipped ({str(exc).splitlines()[0]})")
            return
        try:
            url = make_url(args.postgres).update_query_dict({"options": f"-csearch_path={schema}"})
            run(url.render_as_string(hide_password=False), files, "postgresql")
        finally:
            with admin.begin() as conn:
                conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))


if __name__ == "__main__":
    main()
