"""Named locks (app/warehouse/locks.py): one holder at a time across connections, threads and
processes, on SQLite and on PostgreSQL; a holder that dies loses its lock."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text

from app.settings import Settings
from app.warehouse.engine import make_engine
from app.warehouse.locks import advisory_key, named_lock, waiting_lock
from app.worker import run_collector
from collectors import registry
from collectors.base import RunOutcome

REPO = Path(__file__).resolve().parents[1]
WAIT = 20  # seconds: an upper bound on waits for events, never a sleep


class BlockingCollector:
    """A collector whose run waits until released, counting its runs."""

    name = "opencost"

    def __init__(self, rows: int = 0) -> None:
        self.started = threading.Event()
        self.release = threading.Event()
        self.runs = 0
        self.rows = rows
        self.lock = threading.Lock()

    def run(self, engine: Engine, settings: Settings, **_: Any) -> RunOutcome:
        with self.lock:
            self.runs += 1
        self.started.set()
        assert self.release.wait(WAIT), "the test never released the run"
        return RunOutcome(self.name, 0, rows_loaded=self.rows)

    # What the worker's scheduling asks of a collector.
    def has_sources(self, settings: Settings) -> bool:
        return True

    def schedule(self, settings: Settings) -> Any:
        from app.settings import Schedule

        return Schedule(every="1s")


def test_one_holder_at_a_time(engine: Engine) -> None:
    with named_lock(engine, "collector:traces") as first:
        assert first
        with named_lock(engine, "collector:traces") as second:
            assert not second
        with named_lock(engine, "collector:openai") as other:
            assert other  # another name is another lock
    with named_lock(engine, "collector:traces") as again:
        assert again  # released when the block ended


def test_a_lock_is_released_when_the_block_raises(engine: Engine) -> None:
    def crash() -> None:
        with named_lock(engine, "x") as held:
            assert held
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        crash()
    with named_lock(engine, "x") as held:
        assert held


def test_a_waiting_lock_waits_for_the_holder_and_gives_up_after_its_time(engine: Engine) -> None:
    """`waiting_lock` gets a lock released while it waits; it yields False when the lock stays
    held past its time."""
    released = threading.Event()

    def hold(seconds: float) -> None:
        with named_lock(engine, "wait-test") as held:
            assert held
            taken.set()
            released.wait(seconds)

    taken = threading.Event()
    holder = threading.Thread(target=hold, args=(0.4,))
    holder.start()
    assert taken.wait(5)
    with waiting_lock(engine, "wait-test", 10, every=0.05) as held:
        assert held  # after the holder let go, about 0.4 s later
    holder.join()

    taken.clear()
    holder = threading.Thread(target=hold, args=(10,))
    holder.start()
    assert taken.wait(5)
    with waiting_lock(engine, "wait-test", 0.2, every=0.05) as held:
        assert not held
    released.set()
    holder.join()


def test_an_in_memory_database_locks_within_the_process() -> None:
    memory = make_engine("sqlite://")
    with named_lock(memory, "x") as first, named_lock(memory, "x") as second:
        assert (first, second) == (True, False)
    memory.dispose()


def test_keys_differ_by_schema_and_name() -> None:
    keys = {advisory_key(s, n) for s in ("public", "sg_a") for n in ("a", "b")}
    assert len(keys) == 4
    assert all(-(2**63) <= k < 2**63 for k in keys)


def test_two_workers_never_run_one_collector_at_once(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    fake = BlockingCollector()
    monkeypatch.setattr(registry, "get", lambda name: fake)
    settings = Settings()
    active = threading.Thread(target=run_collector, args=("opencost", engine, settings))
    active.start()
    try:
        assert fake.started.wait(WAIT)
        with caplog.at_level(logging.INFO, logger="spendguard.worker"):
            run_collector("opencost", engine, settings)  # the standby: returns at once
        assert "opencost is running in another worker; standing by" in caplog.text
        assert fake.runs == 1
    finally:
        fake.release.set()
        active.join(WAIT)
    assert not active.is_alive()
    fake.release.set()
    run_collector("opencost", engine, settings)  # the lock is free again: it runs
    assert fake.runs == 2


HOLDER = """
import sys
from app.warehouse.engine import make_engine
from app.warehouse.locks import named_lock
with named_lock(make_engine(sys.argv[1]), "collector:traces") as held:
    print("held" if held else "busy", flush=True)
    sys.stdin.read()  # until killed
"""


def wait_until_free(engine: Engine, name: str) -> None:
    """PostgreSQL ends a dead client's session asynchronously: wait for its lock on the
    server side (a blocking advisory lock, bounded by lock_timeout), then let it go."""
    if engine.dialect.name != "postgresql":
        return  # the kernel dropped the flock when the process died
    with engine.connect() as conn:
        schema = conn.execute(text("SELECT current_schema()")).scalar_one()
        key = advisory_key(str(schema), name)
        conn.execute(text(f"SET lock_timeout = '{WAIT}s'"))
        conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": key})
        conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
        conn.rollback()


def test_a_crashed_holder_loses_its_lock(engine: Engine, warehouse_url: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, warehouse_url],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
        with named_lock(engine, "collector:traces") as held:
            assert not held  # another process has it
        holder.send_signal(signal.SIGKILL)  # a crash: no unlock, no clean close
        holder.wait(WAIT)
        wait_until_free(engine, "collector:traces")
        with named_lock(engine, "collector:traces") as held:
            assert held
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait(WAIT)
        for stream in (holder.stdin, holder.stdout):
            if stream is not None:
                stream.close()
