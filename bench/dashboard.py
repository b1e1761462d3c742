"""Dashboard speed on a big warehouse: every page's first paint and a filter change, on SQLite
and PostgreSQL (the target of issue 8: 10 million requests over 90 days, first paint ≤ 2 s,
filter change ≤ 1 s).

1. Builds a warehouse of N requests over 90 days (~1.5 LLM calls each: 8 endpoints, 10 models
   of 4 providers and one without a price, 3,000 users in 12 teams, 15% of requests without a
   call). Going through the real ingest would take about an hour at 10M, so the base tables
   are written in bulk by SQL (a recursive CTE on SQLite, `generate_series` on PostgreSQL),
   secondary indexes built after; then the rollups are built by the real refresh code
   (`app.rollups.refresh`), timed.
2. Runs every page through `streamlit.testing.v1.AppTest` as a browser session would: the
   first paint with empty caches (cold) and again in a new session (warm: `st.cache_data`
   hits), then a filter change (one endpoint picked in the sidebar: new queries) and back (cached).
   Each figure is the wall time of the run, with the time spent in SQL beside it. Then more
   changes on the Unit costs page: the drill-down, a user, one and two models, 90 days.

    python bench/dashboard.py [--requests 10000000] [--backend sqlite|postgres|both] [--reuse]
                              [--rebuild-rollups] [--data-dir /work/bench-data]
                              [--postgres URL] [--name sg_bench] [--drop]

`--reuse` keeps a warehouse already generated with the same N (SQLite file
`<data-dir>/<name>_<N>.db`, PostgreSQL database `<name>_<N>`); `--drop` deletes them at
the end. `--name` keeps benches that share a machine (or a PostgreSQL) apart.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import platform
import sqlite3
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import Engine, Index, event, func, select, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from app.rollups.dirty import mark_all  # noqa: E402
from app.rollups.refresh import refresh  # noqa: E402
from app.warehouse.engine import make_engine  # noqa: E402
from app.warehouse.migrate import upgrade  # noqa: E402
from app.warehouse.tables import Base, LlmCall, Request  # noqa: E402
from app.warehouse.tables_rollup import ROLLUPS  # noqa: E402

DAYS = 90
END = datetime(2026, 11, 30, tzinfo=UTC)
CHUNK = 1_000_000
ENTRY = ROOT / "streamlit_app.py"
PAGES = ["overview", "unit_costs", "spend", "gpu", "alerts", "collectors"]
DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"

# Per bucket of 100: the endpoint. The last one makes no LLM call (a health check).
ENDPOINTS = [
    (30, "/v1/chat"),
    (50, "/v1/search"),
    (65, "/v1/summarize"),
    (77, "/v1/agent"),
    (87, "/v1/embed"),
    (93, "/v1/classify"),
    (97, "/v1/translate"),
    (100, "/healthz"),
]
# Per bucket of 10: provider, model, nano-USD per input token, per output token (None: unpriced).
MODELS = [
    ("openai", "gpt-4o-mini", 150, 600),
    ("openai", "gpt-4o-mini", 150, 600),
    ("openai", "gpt-4o-mini", 150, 600),
    ("openai", "gpt-4o", 2500, 10000),
    ("anthropic", "claude-sonnet-4-5", 3000, 15000),
    ("anthropic", "claude-sonnet-4-5", 3000, 15000),
    ("anthropic", "claude-haiku-4-5", 1000, 5000),
    ("vllm", "llama-3.1-70b", 0, 0),
    ("openai", "text-embedding-3-small", 20, 0),
    ("acme", "mystery-model", None, None),
]


SQLITE_SEQ = (
    "WITH RECURSIVE seq(i) AS (SELECT :lo UNION ALL SELECT i + 1 FROM seq WHERE i + 1 < :hi)"
)


def _case(expr: str, pairs: list[tuple[str, str]]) -> str:
    whens = " ".join(f"WHEN {cond} THEN {value}" for cond, value in pairs)
    return f"CASE {whens} END"


def _endpoint(e: str) -> str:
    pairs = []
    for bound, name in ENDPOINTS:
        pairs.append((f"{e} < {bound}", f"'{name}'"))
    return _case(e, pairs)


def _model_field(m: str, field: int) -> str:
    pairs = []
    for i, row in enumerate(MODELS):
        value = row[field]
        pairs.append((f"{m} = {i}", "NULL" if value is None else repr(value).replace('"', "'")))
    return _case(m, pairs)


def _request_sql(dialect: str) -> str:
    """INSERT … SELECT of the requests lo ≤ i < hi (named parameters :lo, :hi, :n, :t0)."""
    span = DAYS * 86400
    user = "((i * 2654435761) % 3000)"
    e = "((i * 40503 / 7) % 100)"
    if dialect == "sqlite":
        seq = SQLITE_SEQ
        source = "seq"
        trace = "printf('%032x', i)"
        span_id = "printf('%016x', i)"
        at = f"strftime('%Y-%m-%d %H:%M:%S', :t0 + i * {span} / :n, 'unixepoch') || '.000000'"
        now = "strftime('%Y-%m-%d %H:%M:%S', 'now') || '.000000'"
        user_text = f"'u-' || {user}"
        team_text = f"'team-' || ({user} % 12)"
    else:
        seq = ""
        source = "generate_series(CAST(:lo AS bigint), CAST(:hi AS bigint) - 1) AS s(i)"
        trace = "lpad(to_hex(i), 32, '0')"
        span_id = "lpad(to_hex(i), 16, '0')"
        at = f"(to_timestamp(:t0 + i * {span} / :n) AT TIME ZONE 'UTC')"
        now = "(now() AT TIME ZONE 'UTC')"
        user_text = f"'u-' || {user}::text"
        team_text = f"'team-' || ({user} % 12)::text"
    return f"""{seq}
INSERT INTO requests (trace_id, started_at, root_span_id, root_key, endpoint, service,
    duration_ms, user_id, user_key, team, team_key, updated_at)
SELECT {trace}, {at}, {span_id}, '0', {_endpoint(e)}, 'app', 50 + i % 900,
    {user_text}, '0', {team_text}, '0', {now}
FROM {source}"""


def _call_sql(dialect: str, k: int) -> str:
    """INSERT … SELECT of the k-th call (0 or 1) of the requests lo ≤ i < hi that make one:
    85% make a first call, 65% a second."""
    span = DAYS * 86400
    e = "((i * 40503 / 7) % 100)"
    m = f"(((i * 31 + {k * 17}) / 7) % 10)"
    tokens_in = f"(100 + (i * 37 + {k * 11}) % 4000)"
    tokens_out = f"(10 + (i * 53 + {k}) % 800)"
    has_call = "(i % 20) >= 3" if k == 0 else "(i % 20) >= 3 AND (i % 20) < 16"
    has_call += f" AND {e} < 97"
    pin, pout = _model_field(m, 2), _model_field(m, 3)
    cost = f"({pin}) * {tokens_in} + ({pout}) * {tokens_out}"
    if dialect == "sqlite":
        seq = SQLITE_SEQ
        source = "seq"
        trace = "printf('%032x', i)"
        span_id = f"printf('%016x', i * 2 + {k + 1})"
        at = f"strftime('%Y-%m-%d %H:%M:%S', :t0 + i * {span} / :n + {k}, 'unixepoch') || '.000000'"
        now = "strftime('%Y-%m-%d %H:%M:%S', 'now') || '.000000'"
    else:
        seq = ""
        source = "generate_series(CAST(:lo AS bigint), CAST(:hi AS bigint) - 1) AS s(i)"
        trace = "lpad(to_hex(i), 32, '0')"
        span_id = f"lpad(to_hex(i * 2 + {k + 1}), 16, '0')"
        at = f"(to_timestamp(:t0 + i * {span} / :n + {k}) AT TIME ZONE 'UTC')"
        now = "(now() AT TIME ZONE 'UTC')"
    return f"""{seq}
INSERT INTO llm_calls (trace_id, span_id, started_at, duration_ms, provider, model,
    response_model, priced_model, operation, family, input_tokens, cache_read_tokens,
    cache_write_tokens, output_tokens, reasoning_tokens, cost_nanousd, price_source, ingested_at)
SELECT {trace}, {span_id}, {at}, 200 + (i * 7) % 5000, {_model_field(m, 0)}, {_model_field(m, 1)},
    NULL, {_model_field(m, 1)}, 'chat', 'otel-genai', {tokens_in}, 0, 0, {tokens_out}, 0,
    {cost}, 'catalog', {now}
FROM {source} WHERE {has_call}"""


def _secondary_indexes() -> list[Index]:
    indexes: list[Index] = []
    for table in (Request.__table__, LlmCall.__table__):
        indexes.extend(table.indexes)  # type: ignore[attr-defined]
    return indexes


def generate(engine: Engine, n: int) -> float:
    """Write N requests and their calls in bulk; returns the seconds it took."""
    started = time.perf_counter()
    dialect = engine.dialect.name
    t0 = int(END.timestamp()) - DAYS * 86400
    with engine.begin() as conn:
        for index in _secondary_indexes():
            conn.execute(text(f"DROP INDEX IF EXISTS {index.name}"))
    for lo in range(0, n, CHUNK):
        hi = min(n, lo + CHUNK)
        params = {"lo": lo, "hi": hi, "n": n, "t0": t0}
        with engine.begin() as conn:
            conn.execute(text(_request_sql(dialect)), params)
            conn.execute(text(_call_sql(dialect, 0)), params)
            conn.execute(text(_call_sql(dialect, 1)), params)
        print(f"  {hi:,} requests written ({time.perf_counter() - started:.0f} s)", flush=True)
    with engine.begin() as conn:
        for index in _secondary_indexes():
            index.create(conn)
    with engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT")
        conn.execute(text("VACUUM ANALYZE" if dialect == "postgresql" else "ANALYZE"))
    return time.perf_counter() - started


def build_rollups(engine: Engine) -> tuple[float, int]:
    with engine.begin() as conn:
        mark_all(conn)
    result = refresh(engine)
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT")
            conn.execute(text("ANALYZE"))
    return result.seconds, result.days


def count_requests(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(Request)).scalar_one())


# ── the warehouses ───────────────────────────────────────────────────────────────────────────


def sqlite_warehouse(data_dir: Path, name: str, reuse: bool) -> tuple[str, bool]:
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / f"{name}.db"
    fresh = not (reuse and path.exists())
    if fresh:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
    return f"sqlite:///{path}", fresh


def postgres_warehouse(admin_url: str, name: str, reuse: bool) -> tuple[str, bool]:
    admin = make_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        exists = conn.execute(
            text("SELECT 1 FROM pg_database WHERE datname = :d"), {"d": name}
        ).first()
        fresh = not (reuse and exists)
        if fresh:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    return url, fresh


def drop_postgres(admin_url: str, name: str) -> None:
    admin = make_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


# ── timing the pages ─────────────────────────────────────────────────────────────────────────


class SqlClock:
    """Seconds spent in SQL statements (every engine), between `reset` calls."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.statements = 0
        self._started: dict[int, float] = {}
        event.listen(Engine, "before_cursor_execute", self._before)
        event.listen(Engine, "after_cursor_execute", self._after)

    def _before(self, conn: Any, cursor: Any, *args: Any) -> None:
        self._started[id(cursor)] = time.perf_counter()

    def _after(self, conn: Any, cursor: Any, *args: Any) -> None:
        began = self._started.pop(id(cursor), None)
        if began is not None:
            self.seconds += time.perf_counter() - began
            self.statements += 1

    def reset(self) -> None:
        self.seconds, self.statements = 0.0, 0


def time_pages(url: str) -> list[dict[str, Any]]:
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    from app.dashboard.filters import filter_key

    os.environ["SPENDGUARD_DATABASE_URL"] = url
    for name in ("streamlit", "streamlit.runtime"):  # "no runtime", "missing ScriptRunContext"
        logging.getLogger(name).setLevel(logging.ERROR)
    clock = SqlClock()
    results = []

    def run(at: AppTest) -> tuple[float, float, int]:
        clock.reset()
        began = time.perf_counter()
        at.run()
        wall = time.perf_counter() - began
        if at.exception:
            raise RuntimeError([e.value for e in at.exception])
        return wall, clock.seconds, clock.statements

    def session(page: str) -> AppTest:
        at = AppTest.from_file(str(ENTRY), default_timeout=300)
        if page != "overview":
            at.switch_page(f"app/dashboard/pages/{page}.py")
        return at

    # A running dashboard has imported its modules (Plotly, Polars, the pages') before anyone
    # opens a page: one run first, so the first page timed does not pay for the imports.
    run(session("collectors"))
    for page in PAGES:
        st.cache_data.clear()
        st.cache_resource.clear()
        at = session(page)
        cold = run(at)
        warm = run(session(page))
        endpoint = at.sidebar.multiselect(key=filter_key("endpoint"))
        options = [o for o in endpoint.options if o != "/v1/chat"]
        endpoint.set_value([options[0] if options else "/v1/chat"])
        change = run(at)
        at.sidebar.multiselect(key=filter_key("endpoint")).set_value([])
        back = run(at)
        results.append({"page": page, "cold": cold, "warm": warm, "change": change, "back": back})
        print(
            f"  {page:<11} first paint cold {_fig(cold)}  warm {_fig(warm)}   "
            f"filter change {_fig(change)}  back (cached) {_fig(back)}",
            flush=True,
        )
    more_changes(run, session)
    return results


GPT, HAIKU = "gpt-4o", "claude-haiku-4-5"


def more_changes(run: Any, session: Any) -> None:
    """Other changes on the Unit costs page, each uncached, one after the other."""
    from app.dashboard.filters import filter_key

    at = session("unit_costs")
    run(at)

    def sidebar(dim: str, values: list[str]) -> Any:
        return at.sidebar.multiselect(key=filter_key(dim)).set_value(values)

    def drill(key: str, value: str) -> Any:
        return at.selectbox(key=key).set_value(value)

    steps = [
        ("drill-down: endpoint /v1/chat", lambda: drill("drill_endpoint", "/v1/chat")),
        ("drill-down: model gpt-4o (users × model)", lambda: drill("drill_model", "gpt-4o")),
        ("sidebar: user u-17", lambda: sidebar("user", ["u-17"])),
        ("sidebar: no user, model gpt-4o", lambda: (sidebar("user", []), sidebar("model", [GPT]))),
        ("sidebar: models gpt-4o, claude-haiku-4-5", lambda: sidebar("model", [GPT, HAIKU])),
        ("sidebar: period Last 90 days", lambda: drill("period", "Last 90 days")),
        ("sidebar: no model (90 days)", lambda: sidebar("model", [])),
    ]  # fmt: skip
    for label, step in steps:
        step()
        print(f"  unit_costs  {label:<45} {_fig(run(at))}", flush=True)


def _fig(measure: tuple[float, float, int]) -> str:
    wall, sql, statements = measure
    return f"{wall:5.2f} s (SQL {sql:4.2f} s/{statements:3d})"


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
def workdir() -> Iterator[None]:
    """A folder without spendguard.yaml: the URL comes from SPENDGUARD_DATABASE_URL."""
    here = Path.cwd()
    with tempfile.TemporaryDirectory() as folder:
        os.chdir(folder)
        try:
            yield
        finally:
            os.chdir(here)


def bench(backend: str, url: str, fresh: bool, n: int, rebuild: bool = False) -> None:
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
        seconds, days = build_rollups(engine)
        print(f"  rollups built by the refresh: {days} days in {seconds:.1f} s "
              f"({seconds / max(days, 1):.2f} s/day)", flush=True)  # fmt: skip
    else:
        print(f"  reusing the stored warehouse ({n:,} requests)", flush=True)
    with engine.connect() as conn:
        calls = conn.execute(select(func.count()).select_from(LlmCall)).scalar_one()
    print(f"  {n:,} requests, {calls:,} LLM calls", flush=True)
    # One more day's rebuild, as the worker does after a collector run: the latest day.
    day = _latest_day(engine)
    with engine.begin() as conn:
        from app.rollups.dirty import mark_days

        mark_days(conn, [day])
    result = refresh(engine)
    print(f"  refresh of one day ({day}) after a run: {result.seconds:.2f} s", flush=True)
    engine.dispose()
    with workdir():
        time_pages(url)


def _latest_day(engine: Engine) -> date:
    with engine.connect() as conn:
        last = conn.execute(select(func.max(Request.started_at))).scalar_one()
    return last.date()  # type: ignore[no-any-return]


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
    parser.add_argument("--name", default="sg_bench", help="the warehouses' name before _<N>")
    args = parser.parse_args()
    n = args.requests
    name = f"{args.name}_{n}"
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    print(environment(args.postgres if "postgres" in backends else None))
    for backend in backends:
        print(f"{backend}:", flush=True)
        if backend == "sqlite":
            url, fresh = sqlite_warehouse(args.data_dir, name, args.reuse)
        else:
            url, fresh = postgres_warehouse(args.postgres, name, args.reuse)
        try:
            bench(backend, url, fresh, n, args.rebuild_rollups)
        finally:
            if args.drop:
                if backend == "sqlite":
                    for suffix in ("", "-wal", "-shm"):
                        Path(f"{args.data_dir}/{name}.db{suffix}").unlink(missing_ok=True)
                else:
                    drop_postgres(args.postgres, name)
    print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
