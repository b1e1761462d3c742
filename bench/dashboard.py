"""Dashboard speed on a big warehouse: every page's first paint and a filter change, on SQLite
and PostgreSQL (the target of issue 8: 10 million requests over 90 days, first paint ≤ 2 s,
filter change ≤ 1 s).

1. Builds a warehouse of N requests over 90 days (`bench/dashboard_data.py`: bulk SQL for the
   base tables), adds provider bills, two GPU pools' costs and their allocation, alert, kill
   switch and collector-run history and a spendguard.yaml with budgets and rules
   (`bench/dashboard_extras.py`: through the real collectors and code paths), then builds the
   rollups by the real refresh code, timed.
2. Runs every page through `streamlit.testing.v1.AppTest` as a browser session would: the
   first paint with empty caches (cold) and again in a new session (warm: `st.cache_data`
   hits), then a filter change (one endpoint picked in the sidebar: new queries) and back (cached).
   Each figure is the wall time of the run, with the time spent in SQL beside it. Then each
   page's own controls (split, pools, 90 days), and more changes on the Unit costs page: the
   drill-down, a user, one and two models, 90 days.
3. Again, every page's first paint and filter change with `pricing.true_up: true`; then so
   while the true-up rebuilds a past day with new factors again and again beside the pages
   (`swapping`: written together, no mark, so they keep reading the rollups); and, with
   `pricing.true_up: false`, while batches of late spans of a past day are loaded one after
   another beside the pages (`patching`: each patches the day's rows, no mark).
4. Again, with the latest hour waiting for its rebuild (live ingest: the live days are stored
   as hour slices, and the pages read that hour from the base tables and the rest from the
   rollups), and with the whole latest day waiting (changes in more than six of its hours,
   or a full rebuild): first read from the base tables, as in the seconds before the refresh
   stages it (`app.warehouse.tables_staged`), then from its staged pairs (the staging's first
   commit), then from the rollups' staged twins until its rollups are written.

    python bench/dashboard.py [--requests 10000000] [--backend sqlite|postgres|both] [--reuse]
                              [--rebuild-rollups] [--data-dir /work/bench-data]
                              [--postgres URL] [--prefix sg_bench] [--drop]
                              [--pages spend,unit_costs,…] [--reconcile-only]
                              [--passes clean,true_up,swapping,patching,live,late,paired,staged]
                              [--show-slow SECONDS]

`--reuse` keeps a warehouse already generated with the same N (SQLite file
`<data-dir>/<prefix>_<N>.db`, PostgreSQL database `<prefix>_<N>`); `--drop` deletes them at
the end. `--pages` times only those pages (the Unit costs page's extra changes only with it);
`--reconcile-only` times only the reconciliation behind the Spend page's "Estimated vs billed"
(`app.reports.reconcile.reconcile` over the last 30 and 90 days, clean and with the latest day
waiting for its rebuild), which every pass also prints first. `--passes` times only those
states (step 2 is `clean`, 3 `true_up`, `swapping` and `patching`, 4 `live`, `late`,
`paired` and `staged`).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import sqlite3
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The states timed (each every page): clean, `pricing.true_up` (and so while a true-up swaps a
# past day's rows), late spans of a past day being patched, the latest hour stale, the latest
# day stale whole (before its staging), and staged.
PASSES = ("clean", "true_up", "swapping", "patching", "live", "late", "paired", "staged")
sys.path.insert(0, str(ROOT))

from sqlalchemy import Engine, func, select, text  # noqa: E402

from app.rollups.dirty import mark_days, mark_slices  # noqa: E402
from app.rollups.refresh import LOCK, refresh  # noqa: E402
from app.rollups.staging import STEPS, Rebuild, stage_pairs, stage_twins  # noqa: E402
from app.warehouse.engine import make_engine  # noqa: E402
from app.warehouse.locks import named_lock  # noqa: E402
from app.warehouse.migrate import upgrade  # noqa: E402
from app.warehouse.tables import Base, LlmCall, Request  # noqa: E402
from app.warehouse.tables_rollup import ROLLUPS  # noqa: E402
from bench.dashboard_data import (  # noqa: E402
    DAYS,
    PREFIX,
    build_rollups,
    count_requests,
    drop_postgres,
    drop_sqlite,
    generate,
    postgres_warehouse,
    sqlite_warehouse,
)
from bench.dashboard_extras import load_extras, write_config  # noqa: E402
from bench.dashboard_late import patching  # noqa: E402
from bench.dashboard_pages import PAGES, SqlClock, time_pages, time_reconcile  # noqa: E402
from bench.dashboard_worker import swapping, worker_cycle  # noqa: E402

DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


# ── the environment ──────────────────────────────────────────────────────────────────────────


def environment(pg_url: str | None) -> str:
    import sqlalchemy
    import streamlit

    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    parts = [
        f"{os.cpu_count()} CPUs ({platform.processor() or platform.machine()})",
        f"Python {platform.python_version()}",
        f"SQLite {sqlite3.sqlite_version}",
        f"SQLAlchemy {sqlalchemy.__version__}",
        f"Streamlit {streamlit.__version__}",
        f"load average {load}",
    ]
    if pg_url:
        with contextlib.suppress(Exception):
            engine = make_engine(pg_url)
            with engine.connect() as conn:
                version = conn.execute(text("SHOW server_version")).scalar()
            engine.dispose()
            parts.insert(3, f"PostgreSQL {version}")
    return ", ".join(parts)


@contextlib.contextmanager
def workdir() -> Iterator[Path]:
    """A folder of its own for spendguard.yaml and the generated bills (the URL comes from
    SPENDGUARD_DATABASE_URL)."""
    here = Path.cwd()
    with tempfile.TemporaryDirectory() as folder:
        os.chdir(folder)
        try:
            yield Path(folder)
        finally:
            os.chdir(here)


def bench(
    backend: str,
    url: str,
    fresh: bool,
    n: int,
    rebuild: bool = False,
    pages: list[str] | None = None,
    reconcile_only: bool = False,
    passes: frozenset[str] = frozenset(PASSES),
) -> None:
    with workdir() as work:
        _bench(url, fresh, n, rebuild, work, pages, reconcile_only, passes)


def _bench(
    url: str,
    fresh: bool,
    n: int,
    rebuild: bool,
    work: Path,
    pages: list[str] | None,
    reconcile_only: bool,
    passes: frozenset[str],
) -> None:
    engine = make_engine(url)
    upgrade(engine)
    if rebuild and not fresh:  # the rollups of a reused warehouse, again (a changed schema)
        Base.metadata.create_all(engine, tables=list(ROLLUPS))
        seconds, days = build_rollups(engine)
        print(f"  rollups rebuilt: {days} days in {seconds:.1f} s", flush=True)
    if fresh or count_requests(engine) != n:
        if not fresh:
            print("  the stored warehouse has another size: generating again")
            raise SystemExit("run without --reuse")
        print(f"  generating {n:,} requests over {DAYS} days …", flush=True)
        seconds = generate(engine, n)
        print(f"  base tables written in {seconds:.0f} s", flush=True)
        config = write_config(work, n, engine, true_up=False)
        began = time.perf_counter()
        for line in load_extras(engine, config, work):
            print(f"  {line}", flush=True)
        print(f"  bills, GPU, history loaded in {time.perf_counter() - began:.0f} s", flush=True)
        seconds, days = build_rollups(engine)
        print(f"  rollups built by the refresh: {days} days in {seconds:.1f} s "
              f"({seconds / max(days, 1):.2f} s/day)", flush=True)  # fmt: skip
    else:
        config = write_config(work, n, engine, true_up=False)
        print(f"  reusing the stored warehouse ({n:,} requests)", flush=True)
    with engine.connect() as conn:
        calls = conn.execute(select(func.count()).select_from(LlmCall)).scalar_one()
    print(f"  {n:,} requests, {calls:,} LLM calls", flush=True)
    # One more day's rebuild, as the worker does after a re-price or a true-up: the latest
    # day whole (into whole-day rows).
    day, hour = _latest_hour(engine)
    with engine.begin() as conn:
        mark_days(conn, [day])
    result = refresh(engine)
    print(f"  refresh of one whole day ({day}): {result.seconds:.2f} s", flush=True)
    # Live ingest marks the hours it writes: the latest day is sliced at its first hour mark
    # (rebuilt whole, into hour slices), then only the marked hour is rebuilt.
    for what in ("the day into hour slices", "one hour of the sliced day"):
        with engine.begin() as conn:
            mark_slices(conn, [(day, hour)])
        result = refresh(engine)
        print(f"  refresh after live ingest, {what}: {result.seconds:.2f} s", flush=True)
    # What the worker marks stale after a collector run, besides what it loaded.
    for line in worker_cycle(engine, config):
        print(f"  {line}", flush=True)
    more = pages is None or "unit_costs" in pages
    if "clean" in passes:
        time_reconcile(url, "clean")
        if not reconcile_only:
            time_pages(url, "pricing.true_up: false", more, pages)
    if "true_up" in passes and not reconcile_only:
        write_config(work, n, engine, true_up=True)
        time_pages(url, "pricing.true_up: true", False, pages)
    if "swapping" in passes and not reconcile_only:
        # The true-up rebuilding a past day with new factors and writing them together, over
        # and over beside the pages: they never read that day from the base tables.
        write_config(work, n, engine, true_up=True)
        yesterday = day - timedelta(days=1)
        with swapping(engine, yesterday) as counts:
            time_pages(url, f"pricing.true_up: true, {yesterday} trued up again and again", False,
                       pages)  # fmt: skip
        print(f"  meanwhile {counts['true-ups']} true-up(s), {counts['rebuilt']} day(s) rebuilt "
              f"with their factors, {counts['marked']} marked", flush=True)  # fmt: skip
    if "patching" in passes and not reconcile_only:
        # Late spans of a past day, a batch after another, each patching the day's rows (no
        # mark) beside the pages: they never read that day from the base tables.
        write_config(work, n, engine, true_up=False)
        past = day - timedelta(days=3)
        with patching(engine, past) as done:
            time_pages(url, f"batches of late spans of {past} loaded again and again", False,
                       pages)  # fmt: skip
        print(f"  meanwhile {done['batches']:.0f} batch(es) of 200 requests, the slowest "
              f"{done['slowest']:.2f} s, {done['marked']:.0f} day(s) marked",
              flush=True)  # fmt: skip
    # Live ingest: the latest hour waits for its rebuild (another process holds the refresh
    # lock, as a worker rebuilding it would), so every page reads that hour from the base
    # tables and adds it to the rollups' other rows.
    write_config(work, n, engine, true_up=False)
    stale = {
        "live": (f"live: {day} {hour:02d}:00 waiting for its rebuild", (day, hour)),
        # A whole day stale (changes in more than six of its hours, a full rebuild): read from
        # the base tables whole until the refresh stages it (its first few seconds) …
        "late": (f"late: the whole of {day} waiting for its staging", (day, None)),
        # … then from its staged pairs (the staging's first commit) …
        "paired": (f"late: the pairs of {day} staged, waiting for its twins", (day, None)),
        # … then from the rollups' staged twins until its rollups are written.
        "staged": (f"late: the whole of {day} staged, waiting for its rollups", (day, None)),
    }
    for name, (title, mark) in stale.items():
        if name not in passes:
            continue
        with engine.begin() as conn:
            mark_slices(conn, [mark])
        with named_lock(engine, LOCK) as held:
            assert held
            job = Rebuild(day, None, sliced=True)
            if name in ("paired", "staged"):
                began = time.perf_counter()
                stage_pairs(engine, job)
                print(f"  {day}: pairs staged in {time.perf_counter() - began:.2f} s", flush=True)
            if name == "staged":  # the twins, committed one by one
                began = time.perf_counter()
                for step in STEPS:
                    stage_twins(engine, job, limit=1)
                    at = time.perf_counter() - began
                    print(f"  {day}: {', '.join(step)} staged at +{at:.2f} s", flush=True)
            time_reconcile(url, title)
            if not reconcile_only:
                time_pages(url, title, more, pages)
        result = refresh(engine)
        print(f"  then its refresh: {result.seconds:.2f} s", flush=True)
    engine.dispose()


def _latest_hour(engine: Engine) -> tuple[date, int]:
    with engine.connect() as conn:
        last = conn.execute(select(func.max(Request.started_at))).scalar_one()
    return last.date(), last.hour


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=10_000_000)
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--reuse", action="store_true", help="keep a warehouse of the same N")
    parser.add_argument("--drop", action="store_true", help="delete the warehouses at the end")
    parser.add_argument(
        "--rebuild-rollups", action="store_true", help="with --reuse: build the rollups again"
    )
    parser.add_argument("--data-dir", type=Path, default=Path("/work/bench-data"))
    parser.add_argument(
        "--postgres", default=os.environ.get("SPENDGUARD_BENCH_POSTGRES", DEFAULT_PG)
    )
    parser.add_argument("--prefix", default=PREFIX, help="of the SQLite file and database names")
    parser.add_argument("--pages", help=f"a comma list of {', '.join(PAGES)} (default: all)")
    parser.add_argument(
        "--reconcile-only", action="store_true", help="time only the estimated-vs-billed query"
    )
    parser.add_argument("--passes", help=f"a comma list of {', '.join(PASSES)} (default: all)")
    parser.add_argument(
        "--show-slow",
        type=float,
        metavar="SECONDS",
        help="print each page's SQL statements that take at least this long",
    )
    args = parser.parse_args()
    SqlClock.show_slow = args.show_slow
    pages = args.pages.split(",") if args.pages else None
    if pages and set(pages) - set(PAGES):
        parser.error(f"--pages: not a page: {', '.join(sorted(set(pages) - set(PAGES)))}")
    passes = frozenset(args.passes.split(",") if args.passes else PASSES)
    if passes - set(PASSES):
        parser.error(f"--passes: not a pass: {', '.join(sorted(passes - set(PASSES)))}")
    n = args.requests
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    print(environment(args.postgres if "postgres" in backends else None))
    for backend in backends:
        print(f"{backend}:", flush=True)
        if backend == "sqlite":
            url, fresh = sqlite_warehouse(args.data_dir, n, args.reuse, args.prefix)
        else:
            url, fresh = postgres_warehouse(args.postgres, n, args.reuse, args.prefix)
        try:
            bench(backend, url, fresh, n, args.rebuild_rollups, pages, args.reconcile_only, passes)
        finally:
            if args.drop:
                if backend == "sqlite":
                    drop_sqlite(args.data_dir, n, args.prefix)
                else:
                    drop_postgres(args.postgres, n, args.prefix)
    print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
