"""Ingest throughput and memory: N synthetic spans as OTLP JSON Lines → SQLite and PostgreSQL.

About 40% of the spans are LLM calls (current GenAI semantic conventions, several models, some
cache reads), the rest server roots and internal spans, in Collector file-exporter shape (one
`TracesData` per line, calls written before their roots as a batch processor would). Prints
spans/s per backend and peak memory, with the environment (CPUs, versions, machine load).

Memory counts every process of the ingest: the writer and its decode workers. Two figures: the
peak of their summed RSS, sampled every 20 ms from /proc, and an upper bound that cannot miss a
short peak (the writer's peak RSS + jobs × the largest worker's peak RSS, from getrusage). RSS
counts pages a forked worker shares with the writer in both, so both figures overstate.

    python bench/ingest.py [--spans 1000000] [--jobs N] [--postgres URL] [--skip-postgres]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

SPANS_PER_LINE = 1000
LINES_PER_FILE = 50
MODELS = [
    ("openai", "gpt-4o-mini", "gpt-4o-mini-2024-07-18"),
    ("openai", "gpt-4o", "gpt-4o-2024-08-06"),
    ("openai", "text-embedding-3-small", None),
    ("anthropic", "claude-sonnet-4-5", None),
    ("anthropic", "claude-haiku-4-5", None),
]
ROUTES = ["/v1/chat", "/v1/search", "/v1/summarize", "/v1/agent/run", "/v1/profile"]
BASE_NS = 1_763_600_000 * 10**9  # 2025-11-20


def _attr(key: str, value: str | int) -> dict[str, object]:
    if isinstance(value, int):
        return {"key": key, "value": {"intValue": str(value)}}
    return {"key": key, "value": {"stringValue": value}}


def _trace(rng: random.Random, n: int) -> list[dict[str, object]]:
    """One request: a server root, 2 LLM calls and 2 internal spans on average (40% calls)."""
    trace_id = f"{rng.getrandbits(128):032x}"
    root_id = f"{rng.getrandbits(64):016x}"
    start = BASE_NS + n * 50_000_000
    spans: list[dict[str, object]] = []
    for _ in range(rng.choice([1, 2, 2, 3])):
        provider, model, snapshot = rng.choice(MODELS)
        inp = rng.randint(50, 4000)
        attrs = [
            _attr(
                "gen_ai.operation.name", "chat" if snapshot or "claude" in model else "embeddings"
            ),
            _attr("gen_ai.provider.name", provider),
            _attr("gen_ai.request.model", model),
            _attr("gen_ai.usage.input_tokens", inp),
            _attr("gen_ai.usage.output_tokens", 0 if "embedding" in model else rng.randint(5, 800)),
        ]
        if snapshot:
            attrs.append(_attr("gen_ai.response.model", snapshot))
        if rng.random() < 0.3:
            attrs.append(_attr("gen_ai.usage.cache_read.input_tokens", inp // 2))
        spans.append(
            {
                "traceId": trace_id,
                "spanId": f"{rng.getrandbits(64):016x}",
                "parentSpanId": root_id,
                "name": f"chat {model}",
                "kind": 3,
                "startTimeUnixNano": str(start + 1_000_000),
                "endTimeUnixNano": str(start + 900_000_000),
                "attributes": attrs,
            }
        )
    for _ in range(5 - len(spans) - 1):
        spans.append(
            {
                "traceId": trace_id,
                "spanId": f"{rng.getrandbits(64):016x}",
                "parentSpanId": root_id,
                "name": "db.query",
                "kind": 1,
                "startTimeUnixNano": str(start + 500_000),
                "endTimeUnixNano": str(start + 600_000),
                "attributes": [_attr("db.system", "postgresql")],
            }
        )
    spans.append(
        {
            "traceId": trace_id,
            "spanId": root_id,
            "name": "POST",
            "kind": 2,
            "startTimeUnixNano": str(start),
            "endTimeUnixNano": str(start + 1_000_000_000),
            "attributes": [
                _attr("http.route", rng.choice(ROUTES)),
                _attr("http.request.method", "POST"),
                _attr("enduser.id", f"u-{int(rng.paretovariate(1.2)) % 5000}"),
                _attr("http.response.status_code", 200),
            ],
        }
    )
    return spans


def generate(folder: Path, total: int, seed: int = 1) -> tuple[int, int]:
    rng = random.Random(seed)
    written = calls = 0
    file_no = 0
    n = 0
    while written < total:
        with (folder / f"traces-{file_no:04d}.jsonl").open("w") as out:
            for _ in range(LINES_PER_FILE):
                if written >= total:
                    break
                line: list[dict[str, object]] = []
                while len(line) < SPANS_PER_LINE and written + len(line) < total:
                    line.extend(_trace(rng, n))
                    n += 1
                calls += sum(1 for s in line if s["kind"] == 3)
                doc = {
                    "resourceSpans": [
                        {
                            "resource": {"attributes": [_attr("service.name", "bench")]},
                            "scopeSpans": [{"scope": {"name": "bench"}, "spans": line}],
                        }
                    ]
                }
                out.write(json.dumps(doc, separators=(",", ":")) + "\n")
                written += len(line)
        file_no += 1
    return written, calls


def ingest(url: str, folder: Path, jobs: int | None) -> None:
    """Run in a child process so peak RSS is the ingest's own."""
    from app.ingest import default_jobs, ingest_paths
    from app.settings import Settings
    from app.warehouse.engine import make_engine
    from app.warehouse.migrate import upgrade

    engine = make_engine(url)
    upgrade(engine)
    t0 = time.perf_counter()
    result = ingest_paths(engine, Settings(), [folder], jobs=jobs)
    dt = time.perf_counter() - t0
    own = resource.getrusage(resource.RUSAGE_SELF)  # the ingest's, before the refresh below
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    # What `spendguard ingest` does next: add the loaded days up into the daily rollups.
    from app.rollups.refresh import refresh

    t1 = time.perf_counter()
    refresh(engine)
    rollup_s = time.perf_counter() - t1
    workers = default_jobs() if jobs is None else jobs
    print(
        json.dumps(
            {
                "seconds": dt,
                "rollup_s": rollup_s,
                "spans": result.spans,
                "calls": result.calls_new,
                "requests": result.requests_new,
                "quarantined": result.quarantined,
                "writer_rss_mb": own.ru_maxrss / 1024,
                "worker_rss_mb": children.ru_maxrss / 1024,
                "workers": workers if workers > 1 else 0,
                "cpu_writer_s": own.ru_utime + own.ru_stime,
                "cpu_workers_s": children.ru_utime + children.ru_stime,
            }
        )
    )


def _tree_rss_kb(pid: int) -> int:
    """Summed VmRSS of a process and its descendants (Linux /proc), 0 if gone."""
    total = 0
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            status = Path(f"/proc/{p}/status").read_text()
            total += next(
                (int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS")),
                0,
            )
            for task in Path(f"/proc/{p}/task").iterdir():
                todo.extend(int(c) for c in (task / "children").read_text().split())
        except (OSError, ValueError):
            continue
    return total


def _postgres_cpu_s() -> float | None:
    """CPU seconds used so far by every `postgres` process on this machine (a local server's
    backends, WAL writer, checkpointer…), from /proc; None if none is visible."""
    ticks = os.sysconf("SC_CLK_TCK")
    total, seen = 0, False
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        name, rest = text[text.index("(") + 1 : text.rindex(")")], text[text.rindex(")") + 2 :]
        if name.startswith("postgres"):
            fields = rest.split()
            # utime, stime, and cutime, cstime: the exited backends' time, added to the
            # postmaster's when it reaps them (a living process's is only in its own).
            total += sum(int(f) for f in fields[11:15])
            seen = True
    return total / ticks if seen else None


def run_child(url: str, folder: Path, label: str, jobs: int | None) -> None:
    load_before = os.getloadavg()
    server_before = _postgres_cpu_s() if label == "postgresql" else None
    args = [sys.executable, __file__, "--child", url, str(folder)]
    if jobs is not None:
        args += ["--jobs", str(jobs)]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = [0]

    def sample() -> None:
        while proc.poll() is None:
            peak[0] = max(peak[0], _tree_rss_kb(proc.pid))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = proc.communicate()
    sampler.join()
    if proc.returncode:
        sys.exit(f"{label}: ingest failed ({proc.returncode}):\n{err}")
    r = json.loads(out.strip().splitlines()[-1])
    server_after = _postgres_cpu_s() if server_before is not None else None
    server = (
        f", PostgreSQL server {server_after - server_before:.1f} "
        "(its local processes, the rollup refresh included)"
        if server_before is not None and server_after is not None
        else ""
    )
    bound = r["writer_rss_mb"] + r["workers"] * r["worker_rss_mb"]
    print(
        f"{label:>10}: {r['spans']:,} spans in {r['seconds']:.1f} s = "
        f"{r['spans'] / r['seconds']:,.0f} spans/s ({r['calls']:,} calls, {r['requests']:,} "
        f"requests, {r['workers']} decode workers); peak RSS of all its processes: "
        f"{peak[0] / 1024:.0f} MB sampled, {bound:.0f} MB upper bound (writer "
        f"{r['writer_rss_mb']:.0f} MB, largest worker {r['worker_rss_mb']:.0f} MB); CPU s: "
        f"writer {r['cpu_writer_s']:.1f}, workers {r['cpu_workers_s']:.1f}{server}; load average "
        f"before {load_before[0]:.2f}, after {os.getloadavg()[0]:.2f}; then the daily rollups "
        f"of the loaded days (`spendguard ingest` does it) took {r['rollup_s']:.1f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--spans", type=int, default=1_000_000)
    parser.add_argument(
        "--postgres",
        default=os.environ.get(
            "SPENDGUARD_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
        ),
    )
    parser.add_argument("--skip-postgres", action="store_true")
    parser.add_argument(
        "--jobs", type=int, default=None, help="decode workers (default: spendguard's)"
    )
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        ingest(args.child[0], Path(args.child[1]), args.jobs)
        return
    import sqlalchemy

    load = os.getloadavg()
    print(
        f"python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} CPUs "
        f"(usable: {len(os.sched_getaffinity(0))}), SQLAlchemy {sqlalchemy.__version__}, "
        f"SQLite {sqlite3.sqlite_version}; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "spans"
        folder.mkdir()
        t0 = time.perf_counter()
        spans, calls = generate(folder, args.spans)
        size = sum(f.stat().st_size for f in folder.iterdir()) / 1e6
        print(
            f"generated {spans:,} spans ({calls / spans:.0%} LLM calls), {size:.0f} MB of "
            f"JSON Lines in {time.perf_counter() - t0:.1f} s"
        )
        run_child(f"sqlite:///{Path(tmp) / 'bench.db'}", folder, "sqlite", args.jobs)
        if args.skip_postgres:
            return
        from sqlalchemy import text
        from sqlalchemy.engine import make_url

        from app.warehouse.engine import make_engine

        schema = f"sg_bench_{uuid.uuid4().hex[:8]}"
        admin = make_engine(args.postgres)
        with admin.begin() as conn:
            version = conn.execute(text("show server_version")).scalar_one()
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        print(f"PostgreSQL {version} at {make_url(args.postgres).host}")
        try:
            url = make_url(args.postgres).update_query_dict({"options": f"-csearch_path={schema}"})
            run_child(url.render_as_string(hide_password=False), folder, "postgresql", args.jobs)
        finally:
            with admin.begin() as conn:
                conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))


if __name__ == "__main__":
    main()
