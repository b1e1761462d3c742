"""Decision API on loopback: decisions/s, p50/p99 latency, and the time to kill.

Runs `spendguard api` (the production command: one process, access log on) in a subprocess on
a fresh SQLite warehouse with 1,000 active kill switches (900 users, 50 teams, 30 model globs,
20 endpoint globs) and asks about 100,000 distinct users:

1. throughput: `wrk` (if installed; apt-get install wrk) with keep-alive connections, else a
   closed-loop Python client;
2. latency at a fixed 2,000 decisions/s: an open-loop Python client (latency measured from
   each request's scheduled time, so queueing counts);
3. time to kill: spans pushed over a budget (POST /v1/traces) until the decision API says 403.

Usage: python bench/decision.py [--seconds 10] [--rate 2000] [--connections 32]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import platform
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import uvicorn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.auth.tokens import create_token
from app.killswitch.model import OPERATOR, Scope
from app.killswitch.store import add
from app.settings import Settings
from app.warehouse.engine import make_engine
from app.warehouse.migrate import upgrade
from tests.killswitch_support import free_port, spend_export

USERS = 100_000
RULES = [
    {
        "id": "user-daily-cap",
        "metric": "cost_usd",
        "group_by": ["user"],
        "window": "day",
        "condition": {"above": 10},
        "actions": ["kill"],
    }
]
PRICING = {"overrides": [{"model": "runaway-model", "input_per_mtok": "1000000"}]}


def scopes() -> list[Scope]:
    return (
        [Scope(user=f"u-{i}") for i in range(900)]
        + [Scope(team=f"t-blocked-{i}") for i in range(50)]
        + [Scope(model=f"ft:old-{i}-*") for i in range(30)]
        + [Scope(endpoint=f"/internal/{i}/*") for i in range(20)]
    )


def setup(workdir: Path) -> tuple[Path, dict[str, str]]:
    url = f"sqlite:///{workdir / 'warehouse.db'}"
    config = workdir / "spendguard.yaml"
    config.write_text(json.dumps({"database": {"url": url}, "rules": RULES, "pricing": PRICING}))
    engine = make_engine(url)
    upgrade(engine)
    now = datetime.now(UTC)
    with engine.begin() as conn:
        for scope in scopes():
            add(conn, Settings(), scope, "bench", now=now, by="bench", origin=OPERATOR)
    tokens = {s: create_token(engine, s, f"bench-{s}")[1] for s in ("decision", "ingest")}
    engine.dispose()
    return config, tokens


def path_for(n: int) -> str:
    user = f"u-{n % USERS}"
    return f"/v1/decision?endpoint=/v1/chat/completions&model=gpt-4o&user={user}&team=t-{n % 50}"


async def ask(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, raw: bytes) -> int:
    writer.write(raw)
    head = await reader.readuntil(b"\r\n\r\n")
    length = int(re.search(rb"content-length: (\d+)", head, re.IGNORECASE).group(1))  # type: ignore[union-attr]
    await reader.readexactly(length)
    return int(head[9:12])


def request_bytes(port: int, token: str, n: int) -> bytes:
    return (
        f"GET {path_for(n)} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Authorization: Bearer {token}\r\n\r\n"
    ).encode()


async def fixed_rate(
    port: int, token: str, rate: int, seconds: float, conns: int
) -> tuple[list[float], int]:
    """Open loop: request i is sent at start + i/rate on the next free connection. Latency is
    counted from the send; sends more than 5 ms late (the server holding every connection, or
    the client itself) are counted too, so queueing cannot hide."""
    total, latencies, late = int(rate * seconds), [], 0
    start = time.perf_counter() + 0.2
    counter = iter(range(total))

    async def worker() -> None:
        nonlocal late
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for i in counter:
            due = start + i / rate
            if (wait := due - time.perf_counter()) > 0:
                await asyncio.sleep(wait)
            sent = time.perf_counter()
            late += sent - due > 0.005
            await ask(reader, writer, request_bytes(port, token, random.randrange(USERS)))
            latencies.append(time.perf_counter() - sent)
        writer.close()
        await writer.wait_closed()

    await asyncio.gather(*(worker() for _ in range(conns)))
    return latencies, late


async def closed_loop(port: int, token: str, seconds: float, conns: int) -> tuple[int, list[float]]:
    stop, latencies = time.perf_counter() + seconds, []

    async def worker() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while (t0 := time.perf_counter()) < stop:
            await ask(reader, writer, request_bytes(port, token, random.randrange(USERS)))
            latencies.append(time.perf_counter() - t0)
        writer.close()
        await writer.wait_closed()

    await asyncio.gather(*(worker() for _ in range(conns)))
    return len(latencies), latencies


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def run_wrk(workdir: Path, port: int, token: str, seconds: int, conns: int) -> str:
    script = workdir / "decision.lua"
    script.write_text(
        "local n = 0\nrequest = function()\n  n = n + math.random(1, 7)\n"
        f'  local user = "u-" .. (n % {USERS})\n'
        '  return wrk.format("GET", "/v1/decision?endpoint=/v1/chat/completions&model=gpt-4o'
        '&user=" .. user .. "&team=t-" .. (n % 50), '
        f'{{["Authorization"] = "Bearer {token}"}})\nend\n'
    )
    command = ["wrk", "-t2", f"-c{conns}", f"-d{seconds}s", "--latency", "-s", str(script)]
    out = subprocess.run(
        [*command, f"http://127.0.0.1:{port}"], capture_output=True, text=True, check=True
    ).stdout

    def found(pattern: str) -> str:
        match = re.search(pattern, out)
        return match.group(1) if match else "?"

    rps = float(found(r"Requests/sec:\s+([\d.]+)"))
    p50, p99 = found(r"50%\s+([\d.]+\w+)"), found(r"99%\s+([\d.]+\w+)")
    refused = found(r"Non-2xx or 3xx responses: (\d+)")
    return (
        f"{rps:,.0f} decisions/s, p50 {p50}, p99 {p99} (wrk -t2 -c{conns}, {seconds}s; "
        f"403s: {refused})"
    )


def time_to_kill(base: str, tokens: dict[str, str], user: str) -> float:
    """From the push whose spans cross the budget to the first 403 for that user, while other
    users' spans keep arriving (so the kill rules' once-a-second debounce is in play)."""
    ingest = {"Authorization": f"Bearer {tokens['ingest']}"}
    gateway = {"Authorization": f"Bearer {tokens['decision']}"}
    with httpx.Client(base_url=base, timeout=10) as http:
        http.post("/v1/traces", json=spend_export(user, "runaway-model", 5), headers=ingest)
        time.sleep(random.uniform(0.1, 1.5))
        start = time.perf_counter()
        http.post("/v1/traces", json=spend_export(user, "runaway-model", 20), headers=ingest)
        while http.get("/v1/decision", params={"user": user}, headers=gateway).status_code != 403:
            if time.perf_counter() - start > 30:
                raise SystemExit("time to kill: no 403 within 30 s")
            time.sleep(0.005)
        return time.perf_counter() - start


def background_spend(base: str, token: str, stop: threading.Event) -> None:
    """Ordinary traffic: one small export every 100 ms from other users."""
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=base, timeout=10) as http:
        n = 0
        while not stop.wait(0.1):
            n += 1
            http.post(
                "/v1/traces", json=spend_export(f"u-{n}", "runaway-model", 1), headers=headers
            )


def environment() -> str:
    lines = Path("/proc/cpuinfo").read_text().splitlines()
    cpus = [ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")]
    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    wrk = "Python client"
    if shutil.which("wrk"):
        version = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout
        wrk = version.split("[")[0].strip()
    return (
        f"{platform.system()} {platform.release()}, {cpus[0] if cpus else platform.processor()}, "
        f"{os.cpu_count()} CPUs; Python {platform.python_version()}, uvicorn "
        f"{uvicorn.__version__} ({http}, {loop} loop), one `spendguard api` process (access log "
        f"on), SQLite warehouse, loopback; load generator on the same machine: {wrk}"
    )


def measure(workdir: Path, port: int, tokens: dict[str, str], args: argparse.Namespace) -> None:
    base, token = f"http://127.0.0.1:{port}", tokens["decision"]
    print(f"setup: {len(scopes())} active switches, decisions over {USERS:,} users")
    if shutil.which("wrk"):
        print("throughput: " + run_wrk(workdir, port, token, args.seconds, args.connections))
    else:
        count, lat = asyncio.run(closed_loop(port, token, args.seconds, args.connections))
        print(
            f"throughput: {count / args.seconds:,.0f} decisions/s, p50 {pct(lat, 0.5):.2f} ms, "
            f"p99 {pct(lat, 0.99):.2f} ms (Python client, {args.connections} connections)"
        )
    lat, late = asyncio.run(fixed_rate(port, token, args.rate, args.seconds, 16))
    print(
        f"at {args.rate:,}/s for {args.seconds}s: p50 {pct(lat, 0.5):.2f} ms, p99 "
        f"{pct(lat, 0.99):.2f} ms, max {max(lat) * 1000:.1f} ms ({len(lat):,} decisions, "
        f"{late} sent over 5 ms late)"
    )
    stop = threading.Event()
    traffic = threading.Thread(target=background_spend, args=(base, tokens["ingest"], stop))
    traffic.start()
    try:
        kills = [time_to_kill(base, tokens, f"runaway-{i}") for i in range(5)]
    finally:
        stop.set()
        traffic.join()
    print(
        "time to kill (the push crossing the budget → the first 403; other spans arriving every "
        f"100 ms): {', '.join(f'{k:.3f}' for k in kills)} s; max {max(kills):.3f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rate", type=int, default=2000)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    print(f"environment: {environment()}")
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        config, tokens = setup(workdir)
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("SPENDGUARD_")}
        command = [sys.executable, "-m", "app", "--config", str(config), "api", "--port", str(port)]
        with (workdir / "api.log").open("w") as log:
            api = subprocess.Popen(command, env=env, stdout=log, stderr=log)
        try:
            for _ in range(300):
                try:
                    httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                    break
                except httpx.TransportError:
                    time.sleep(0.1)
            measure(workdir, port, tokens, args)
        finally:
            api.terminate()
            api.wait(timeout=30)


if __name__ == "__main__":
    main()
