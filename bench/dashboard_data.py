"""The warehouse of the dashboard benchmark (`bench/dashboard.py`): N requests over 90 days
written in bulk SQL, then the rollups built by the real refresh.

~1.5 LLM calls a request: 8 endpoints, 10 models of 4 providers and one without a price (two
self-hosted, GPU-priced), 3,000
users in 12 teams, 15% of requests without a call. Going through the real ingest would take
about an hour at 10M, so the base tables are written in bulk by SQL (a recursive CTE on SQLite,
`generate_series` on PostgreSQL), secondary indexes built after; then the rollups are built by
the real refresh code (`app.rollups.refresh`).
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import Engine, Index, func, select, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from app.rollups.dirty import mark_all  # noqa: E402
from app.rollups.refresh import refresh  # noqa: E402
from app.warehouse.engine import make_engine  # noqa: E402
from app.warehouse.tables import LlmCall, Request  # noqa: E402

DAYS = 90
END = datetime(2026, 11, 30, tzinfo=UTC)
CHUNK = 1_000_000

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
    ("vllm", "llama-3.1-8b", 0, 0),  # GPU-priced: the OpenCost pool (bench/dashboard_extras.py)
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
        # Written in bulk, not by the ingest, which marks the days it writes: marked here, so
        # that what reads the calls before the rollups are built (the true-up's reconciliation,
        # `bench.dashboard_extras`) reads them from the base tables, not from empty rollups.
        mark_all(conn)
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


PREFIX = "sg_bench"  # of the SQLite files and PostgreSQL databases: <prefix>_<N>


def sqlite_path(data_dir: Path, n: int, prefix: str = PREFIX) -> Path:
    return data_dir / f"{prefix}_{n}.db"


def drop_sqlite(data_dir: Path, n: int, prefix: str = PREFIX) -> None:
    path = sqlite_path(data_dir, n, prefix)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    for lock in data_dir.glob(f"{path.name}.*.lock"):  # app.warehouse.locks' named locks
        lock.unlink(missing_ok=True)


def sqlite_warehouse(data_dir: Path, n: int, reuse: bool, prefix: str = PREFIX) -> tuple[str, bool]:
    data_dir.mkdir(parents=True, exist_ok=True)
    path = sqlite_path(data_dir, n, prefix)
    fresh = not (reuse and path.exists())
    if fresh:
        drop_sqlite(data_dir, n, prefix)
    return f"sqlite:///{path}", fresh


def postgres_warehouse(
    admin_url: str, n: int, reuse: bool, prefix: str = PREFIX
) -> tuple[str, bool]:
    name = f"{prefix}_{n}"
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


def drop_postgres(admin_url: str, n: int, prefix: str = PREFIX) -> None:
    admin = make_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{prefix}_{n}" WITH (FORCE)'))
    admin.dispose()
