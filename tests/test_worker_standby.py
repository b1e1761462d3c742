"""The worker driven for real: a collector scheduled every second, two workers on one warehouse
(one runs, the other stands by), and a stop that waits for the running batch. Waits are on
events with a timeout, never sleeps."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from apscheduler.events import EVENT_JOB_EXECUTED, JobExecutionEvent
from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import Engine, select

from app.settings import Settings
from app.warehouse.tables import CollectorRun
from app.worker import JobPool, run_worker, schedule_collectors
from collectors import registry
from tests.test_collect_traces import lines, trace_ids
from tests.test_locks import WAIT, BlockingCollector
from tests.test_worker import RULE, traces_settings

REPO = Path(__file__).resolve().parents[1]


class LogEvent(logging.Handler):
    """Sets an event when a record containing `text` is logged."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text
        self.seen = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.seen.set()


@pytest.fixture
def worker_log() -> Any:
    logger = logging.getLogger("spendguard.worker")
    handlers: list[LogEvent] = []

    def watch(text: str) -> LogEvent:
        handler = LogEvent(text)
        logger.addHandler(handler)
        handlers.append(handler)
        return handler

    level = logger.level
    logger.setLevel(logging.INFO)
    yield watch
    logger.setLevel(level)
    for handler in handlers:
        logger.removeHandler(handler)


def new_scheduler() -> tuple[BackgroundScheduler, JobPool]:
    pool = JobPool()
    return BackgroundScheduler(timezone="UTC", executors={"default": pool}), pool


def stop(scheduler: BackgroundScheduler, pool: JobPool) -> None:
    """As the worker stops: no new runs, then wait for the running ones (no lock held)."""
    scheduler.shutdown(wait=False)
    pool.join()


def fake_collector(monkeypatch: pytest.MonkeyPatch, fake: BlockingCollector) -> None:
    monkeypatch.setattr(registry, "enabled", lambda settings: [fake])
    monkeypatch.setattr(registry, "get", lambda name: fake)


def test_a_collector_runs_every_second(engine: Engine, tmp_path: Path) -> None:
    (tmp_path / "traces.jsonl").write_bytes(lines(1, 2))
    scheduler, pool = new_scheduler()
    schedule_collectors(scheduler, traces_settings({"every": "1s"}, tmp_path), engine)
    runs, twice = [], threading.Event()

    def executed(event: JobExecutionEvent) -> None:
        if event.job_id == "collector:traces":
            runs.append(event.scheduled_run_time)
            if len(runs) >= 2:
                twice.set()

    scheduler.add_listener(executed, EVENT_JOB_EXECUTED)
    scheduler.start()
    try:
        assert twice.wait(WAIT), "the collector did not run twice"
    finally:
        stop(scheduler, pool)
    assert trace_ids(engine) == {1, 2}
    with engine.connect() as conn:
        statuses = conn.execute(
            select(CollectorRun.status, CollectorRun.rows_loaded).order_by(CollectorRun.id)
        ).all()
    assert len(statuses) >= 2
    assert statuses[0] == ("ok", 2) and all(s == ("ok", 0) for s in statuses[1:])


def test_two_workers_one_runs_the_other_stands_by(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, worker_log: Any
) -> None:
    fake = BlockingCollector()
    fake_collector(monkeypatch, fake)
    standby = worker_log("standing by")
    workers = [new_scheduler() for _ in range(2)]
    for scheduler, _pool in workers:
        schedule_collectors(scheduler, Settings(), engine)  # opencost every 1s, first run now
        scheduler.start()
    try:
        assert fake.started.wait(WAIT)
        assert standby.seen.wait(WAIT), "no worker stood by"
        assert fake.runs == 1
    finally:
        fake.release.set()
        for scheduler, pool in workers:
            stop(scheduler, pool)


def test_a_stop_waits_for_the_running_batch(
    sqlite_engine: Engine, monkeypatch: pytest.MonkeyPatch, worker_log: Any
) -> None:
    # The run loaded rows and alert rules are on: the job then looks up the alerts job in the
    # scheduler, which used to deadlock against a shutdown waiting with the scheduler's locks.
    fake = BlockingCollector(rows=3)
    fake_collector(monkeypatch, fake)
    stopping, halt, returned = worker_log("worker: stopping"), threading.Event(), threading.Event()
    finished_first: list[bool] = []
    real_run = fake.run

    def run(engine: Engine, settings: Settings, **kw: Any) -> Any:
        outcome = real_run(engine, settings, **kw)
        finished_first.append(not returned.is_set())
        return outcome

    fake.run = run  # type: ignore[method-assign]
    settings = Settings(rules=[RULE])  # type: ignore[list-item]

    def serve() -> None:
        run_worker(settings, sqlite_engine, halt)
        returned.set()

    worker = threading.Thread(target=serve)
    worker.start()
    try:
        assert fake.started.wait(WAIT)
        halt.set()
        assert stopping.seen.wait(WAIT)
        assert not returned.is_set()  # still waiting for the running run
    finally:
        fake.release.set()
        worker.join(WAIT)
    assert not worker.is_alive(), "the worker did not stop"
    assert finished_first == [True]  # the run finished before the worker returned
    assert fake.runs == 1  # and no new run started after the stop


@pytest.mark.slow
def test_sigterm_stops_the_worker_process(warehouse_url: str, tmp_path: Path) -> None:
    (tmp_path / "traces").mkdir()
    (tmp_path / "traces" / "t.jsonl").write_bytes(lines(1, 2))
    config = tmp_path / "spendguard.yaml"
    source = {"kind": "folder", "path": str(tmp_path / "traces")}
    traces = {"schedule": {"every": "1h"}, "sources": [source]}
    config.write_text(
        json.dumps({"database": {"url": warehouse_url}, "collectors": {"traces": traces}}),
        encoding="utf-8",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPENDGUARD_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "app", "--config", str(config), "worker"],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env=env,
        cwd=REPO,
    )
    seen: list[str] = []
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            seen.append(line)
            if "worker: traces ok" in line:
                break
        proc.send_signal(signal.SIGTERM)
        _, rest = proc.communicate(timeout=WAIT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(WAIT)
    output = "".join(seen) + rest
    assert "worker: traces ok, 2 rows" in output
    assert proc.returncode == 0, output
    assert "worker: stopping" in output and "worker: stopped" in output
