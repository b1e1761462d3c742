"""`spendguard worker`: one job per enabled collector, on its schedule, never overlapping."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import Engine, select

from app.settings import Settings
from app.warehouse.engine import make_engine
from app.warehouse.tables import CollectorRun
from app.worker import (
    ALERTS_JOB,
    MISFIRE_GRACE_SECONDS,
    ROLLUP_SECONDS,
    ROLLUPS_JOB,
    run_alerts,
    run_collector,
    schedule_alerts,
    schedule_collectors,
    schedule_rollups,
)
from tests.test_collect_traces import lines, trace_ids


def traces_settings(schedule: dict[str, str], path: Path, **more: Any) -> Settings:
    traces = {"schedule": schedule, "sources": [{"kind": "folder", "path": str(path)}]}
    return Settings(collectors={"traces": traces, **more})  # type: ignore[arg-type]


def jobs(settings: Settings, engine: Engine) -> dict[str, Any]:
    scheduler = BackgroundScheduler(timezone="UTC")  # never started: the jobs are inspected
    schedule_collectors(scheduler, settings, engine)
    return {job.id: job for job in scheduler.get_jobs()}


def test_an_interval_schedule(sqlite_engine: Engine, tmp_path: Path) -> None:
    found = jobs(traces_settings({"every": "90s"}, tmp_path), sqlite_engine)
    assert set(found) == {"heartbeat", "collector:traces"}
    job = found["collector:traces"]
    assert isinstance(job.trigger, IntervalTrigger)
    assert job.trigger.interval == timedelta(seconds=90)
    assert (job.max_instances, job.coalesce) == (1, True)
    assert job.misfire_grace_time == MISFIRE_GRACE_SECONDS
    assert job.next_run_time is not None  # an interval collector runs once at start


def test_a_cron_schedule(sqlite_engine: Engine, tmp_path: Path) -> None:
    found = jobs(traces_settings({"cron": "*/5 2-4 * * mon-fri"}, tmp_path), sqlite_engine)
    trigger = found["collector:traces"].trigger
    assert isinstance(trigger, CronTrigger)
    fields = {f.name: str(f) for f in trigger.fields}
    assert (fields["minute"], fields["hour"], fields["day_of_week"]) == ("*/5", "2-4", "mon-fri")
    assert str(trigger.timezone) == "UTC"


def test_disabled_and_unavailable_collectors_are_not_scheduled(
    sqlite_engine: Engine,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from collectors import registry

    # Every section has its collector now; take one away to stand for "not in this version".
    monkeypatch.delitem(registry._REGISTRY, "opencost")
    settings = Settings(
        collectors={"traces": {"enabled": False}, "opencost": {"enabled": True}}  # type: ignore[arg-type]
    )
    with caplog.at_level(logging.WARNING, logger="spendguard.worker"):
        assert set(jobs(settings, sqlite_engine)) == {"heartbeat"}
    assert "collectors.opencost is enabled but that collector is not available" in caplog.text


def test_a_job_runs_the_collector_and_records_the_run(engine: Engine, tmp_path: Path) -> None:
    (tmp_path / "traces.jsonl").write_bytes(lines(1, 2))
    job = jobs(traces_settings({"every": "60s"}, tmp_path), engine)["collector:traces"]
    job.func(*job.args, **job.kwargs)
    assert trace_ids(engine) == {1, 2}
    with engine.connect() as conn:
        assert conn.execute(select(CollectorRun.status, CollectorRun.rows_loaded)).one() == (
            "ok",
            2,
        )


def test_a_failing_run_is_recorded_and_logged_and_the_worker_goes_on(
    sqlite_engine: Engine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = traces_settings({"every": "60s"}, tmp_path / "missing")
    with caplog.at_level(logging.ERROR, logger="spendguard.worker"):
        run_collector("traces", sqlite_engine, settings)  # does not raise
    assert "traces failed" in caplog.text and "sources[0].path" in caplog.text
    with sqlite_engine.connect() as conn:
        status, error = conn.execute(select(CollectorRun.status, CollectorRun.error)).one()
    assert status == "failed" and "does not exist" in error


def test_an_unreachable_warehouse_is_logged_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    unmigrated = make_engine(f"sqlite:///{tmp_path / 'empty.db'}")  # no tables at all
    with caplog.at_level(logging.ERROR, logger="spendguard.worker"):
        run_collector("traces", unmigrated, traces_settings({"every": "60s"}, tmp_path))
    assert "could not start or be recorded" in caplog.text
    unmigrated.dispose()


def test_a_collector_without_sources_is_not_scheduled(sqlite_engine: Engine) -> None:
    assert set(jobs(Settings(), sqlite_engine)) == {"heartbeat"}  # traces: enabled, no sources


RULE = {
    "id": "user-daily-cap",
    "metric": "cost_usd",
    "group_by": ["user"],
    "window": "day",
    "condition": {"above": 50},
}


def test_alert_rules_are_evaluated_on_an_interval(sqlite_engine: Engine) -> None:
    scheduler = BackgroundScheduler(timezone="UTC")
    settings = Settings(rules=[RULE], alerts={"interval": "45s"})  # type: ignore[list-item,arg-type]
    assert schedule_alerts(scheduler, settings, sqlite_engine)
    job = scheduler.get_job(ALERTS_JOB)
    assert isinstance(job.trigger, IntervalTrigger)
    assert job.trigger.interval == timedelta(seconds=45)
    assert (job.max_instances, job.coalesce) == (1, True)
    assert not schedule_alerts(BackgroundScheduler(timezone="UTC"), Settings(), sqlite_engine)


def test_a_collector_run_that_loaded_data_evaluates_the_rules_now(
    sqlite_engine: Engine, tmp_path: Path
) -> None:
    (tmp_path / "traces.jsonl").write_bytes(lines(1, 2))
    settings = traces_settings({"every": "60s"}, tmp_path).model_copy(
        update={"rules": Settings(rules=[RULE]).rules}  # type: ignore[list-item]
    )
    scheduler = BackgroundScheduler(timezone="UTC")
    schedule_alerts(scheduler, settings, sqlite_engine)
    later = datetime.now(UTC) + timedelta(hours=1)
    scheduler.modify_job(ALERTS_JOB, next_run_time=later)
    run_collector("traces", sqlite_engine, settings, scheduler)
    assert scheduler.get_job(ALERTS_JOB).next_run_time < later


def test_an_alerts_cycle_never_raises(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    unmigrated = make_engine(f"sqlite:///{tmp_path / 'empty.db'}")
    with caplog.at_level(logging.ERROR, logger="spendguard.worker"):
        run_alerts(unmigrated, Settings(rules=[RULE]))  # type: ignore[list-item]
    assert "alerts cycle failed" in caplog.text
    unmigrated.dispose()


def test_the_rollups_are_rebuilt_every_minute_whatever_the_collectors(
    sqlite_engine: Engine,
) -> None:
    """Spans pushed to the receiver mark hours that no collector run rebuilds."""
    from app.rollups.refresh import dirty_days
    from tests.test_rollups import T0, _facts, _load

    scheduler = BackgroundScheduler(timezone="UTC")
    schedule_rollups(scheduler, sqlite_engine)
    job = scheduler.get_job(ROLLUPS_JOB)
    assert isinstance(job.trigger, IntervalTrigger)
    assert job.trigger.interval == timedelta(seconds=ROLLUP_SECONDS)
    assert (job.max_instances, job.coalesce, job.next_run_time is not None) == (1, True, True)
    _load(sqlite_engine, [_facts("a" * 32, T0, True, "/chat", "u1")], [], False)
    with sqlite_engine.connect() as conn:
        assert dirty_days(conn) == [T0.date()]
    job.func(*job.args)
    with sqlite_engine.connect() as conn:
        assert dirty_days(conn) == []
