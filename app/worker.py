"""`spendguard worker`: runs every enabled registered collector on its `schedule`, and the
alert rules every `alerts.interval` and right after a collector run that loaded data.

One APScheduler job per collector: `every: 60s` is an interval trigger (first run at start),
`cron: "*/5 * * * *"` a crontab trigger in UTC. A job never overlaps itself
(`max_instances=1`); runs missed while one was still going, or while the process was paused,
collapse into one (`coalesce`) if not later than `MISFIRE_GRACE_SECONDS`. A failing run is
recorded (by `Collector.run`) and logged, and the worker goes on to the next.
"""

from __future__ import annotations

import logging
import signal
from datetime import UTC, datetime
from types import FrameType

from apscheduler.schedulers.base import BaseScheduler
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import Engine

from app.durations import parse_duration
from app.settings import Schedule, Settings
from app.warehouse.engine import make_engine
from collectors import registry

log = logging.getLogger("spendguard.worker")

HEARTBEAT_SECONDS = 60
MISFIRE_GRACE_SECONDS = 600


def run_worker(settings: Settings, engine: Engine | None = None) -> None:
    scheduler = BlockingScheduler(timezone=UTC)
    engine = engine or make_engine(settings.database.url)
    schedule_collectors(scheduler, settings, engine)
    schedule_alerts(scheduler, settings, engine)

    def stop(signum: int, _frame: FrameType | None) -> None:
        log.info("worker: signal %s, stopping after the running jobs", signum)
        scheduler.shutdown(wait=True)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    scheduler.start()


def schedule_collectors(scheduler: BaseScheduler, settings: Settings, engine: Engine) -> list[str]:
    """Add the heartbeat and one job per enabled collector; returns the collectors' names."""
    scheduler.add_job(_heartbeat, "interval", seconds=HEARTBEAT_SECONDS, id="heartbeat")
    names = []
    for collector in registry.enabled(settings):
        if not collector.has_sources(settings):
            log.info("worker: %s is enabled but has no sources configured", collector.name)
            continue
        schedule = collector.schedule(settings)
        first = {"next_run_time": datetime.now(UTC)} if schedule.every else {}
        scheduler.add_job(
            run_collector,
            trigger_for(schedule),
            args=[collector.name, engine, settings, scheduler],
            id=f"collector:{collector.name}",
            name=f"collect {collector.name}",
            max_instances=1,
            coalesce=True,
            misfire_grace_time=MISFIRE_GRACE_SECONDS,
            replace_existing=True,
            **first,
        )
        names.append(collector.name)
        log.info("worker: %s scheduled %s", collector.name, describe(schedule))
    for name in registry.not_available(settings):
        log.warning(
            "worker: collectors.%s is enabled but that collector is not available in this "
            "version; it is not scheduled",
            name,
        )
    if not names:
        log.info("worker: no collector enabled; only the heartbeat runs")
    return names


def trigger_for(schedule: Schedule) -> BaseTrigger:
    if schedule.every is not None:
        return IntervalTrigger(seconds=parse_duration(schedule.every).total_seconds(), timezone=UTC)
    assert schedule.cron is not None  # Schedule allows exactly one of the two
    return CronTrigger.from_crontab(schedule.cron, timezone=UTC)


def describe(schedule: Schedule) -> str:
    return f"every {schedule.every}" if schedule.every else f"on cron {schedule.cron!r} (UTC)"


ALERTS_JOB = "alerts"


def schedule_alerts(scheduler: BaseScheduler, settings: Settings, engine: Engine) -> bool:
    """Evaluate the rules and deliver the outbox every `alerts.interval` (first run at start)."""
    if not any(rule.enabled for rule in settings.rules):
        log.info("worker: no alert rule enabled; alerts are not evaluated")
        return False
    every = parse_duration(settings.alerts.interval).total_seconds()
    scheduler.add_job(
        run_alerts,
        IntervalTrigger(seconds=every, timezone=UTC),
        args=[engine, settings],
        id=ALERTS_JOB,
        name="evaluate alert rules and deliver",
        max_instances=1,
        coalesce=True,
        misfire_grace_time=MISFIRE_GRACE_SECONDS,
        replace_existing=True,
        next_run_time=datetime.now(UTC),
    )
    log.info("worker: alert rules evaluated every %s", settings.alerts.interval)
    return True


def run_alerts(engine: Engine, settings: Settings) -> None:
    """One alerts cycle. Never raises: a failing cycle is logged and the next one tries again."""
    from alerts.engine import run_cycle

    try:
        cycle = run_cycle(engine, settings)
    except Exception:
        log.exception("worker: alerts cycle failed; retrying at the next interval")
        return
    log.info(
        "worker: alerts cycle: %d transition(s), %d delivery attempt(s)",
        len(cycle.transitions),
        len(cycle.deliveries),
    )


def run_collector(
    name: str, engine: Engine, settings: Settings, scheduler: BaseScheduler | None = None
) -> None:
    """One scheduled run. Never raises: the scheduler thread and the other jobs go on."""
    try:
        outcome = registry.get(name).run(engine, settings)
    except Exception:
        # Not even recorded (the warehouse unreachable?): the log is all there is.
        log.exception("worker: %s run could not start or be recorded", name)
        return
    if outcome.ok:
        log.info(
            "worker: %s ok, %d rows, %d rejected",
            name,
            outcome.rows_loaded,
            outcome.rows_rejected,
        )
        if outcome.rows_loaded and scheduler is not None and scheduler.get_job(ALERTS_JOB):
            # New data: evaluate the rules now rather than at the next interval.
            scheduler.modify_job(ALERTS_JOB, next_run_time=datetime.now(UTC))
    else:
        log.error("worker: %s failed (run %d): %s", name, outcome.run_id, outcome.error)


def _heartbeat() -> None:
    log.debug("worker: alive")
