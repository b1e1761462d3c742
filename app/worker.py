"""`spendguard worker`: runs every enabled registered collector on its `schedule`, the alert
rules every `alerts.interval` and right after a collector run that loaded data, and the rollup
refresh after each collector run and every minute.

One APScheduler job per collector: `every: 60s` is an interval trigger (first run at start),
`cron: "*/5 * * * *"` a crontab trigger in UTC. A job never overlaps itself
(`max_instances=1`); runs missed while one was still going, or while the process was paused,
collapse into one (`coalesce`) if not later than `MISFIRE_GRACE_SECONDS`. A failing run is
recorded (by `Collector.run`) and logged, and the worker goes on to the next.

Standby: every run holds the named lock `collector:<name>` (`app.warehouse.locks`), so with
several workers on one warehouse only one runs a given collector at a time; the others log
"standing by" and skip that run, and take over at their next scheduled run once the active
worker is gone (its lock dies with it).

Stopping: SIGTERM or SIGINT (Ctrl-C) starts no new run and waits for the running ones to
finish (a second signal only says so); each batch a collector loads commits together with its
checkpoint, so a worker killed outright (SIGKILL) rolls back its open batch, which the next run
reads again.
"""

from __future__ import annotations

import concurrent.futures
import logging
import signal
import threading
from datetime import UTC, date, datetime, timedelta
from types import FrameType
from typing import Any

from apscheduler.executors.pool import BasePoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import BaseScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import Engine

from app.durations import parse_duration
from app.settings import Schedule, Settings
from app.warehouse.engine import make_engine
from app.warehouse.locks import named_lock
from collectors import registry
from collectors.base import RunOutcome

log = logging.getLogger("spendguard.worker")

HEARTBEAT_SECONDS = 60
MISFIRE_GRACE_SECONDS = 600


JOB_THREADS = 10


class JobPool(BasePoolExecutor):  # type: ignore[misc]  # apscheduler has no type hints
    """APScheduler's thread pool executor, keeping hold of its threads so that the worker can
    wait for the running jobs without holding the scheduler's locks. (`shutdown(wait=True)`
    waits while holding them, and a job that touches the scheduler then never finishes.)"""

    def __init__(self, max_workers: int = JOB_THREADS) -> None:
        self.threads = concurrent.futures.ThreadPoolExecutor(
            max_workers, thread_name_prefix="spendguard-job"
        )
        super().__init__(self.threads)

    def join(self) -> None:
        """Wait until every job that was started has finished."""
        self.threads.shutdown(wait=True)


def run_worker(
    settings: Settings, engine: Engine | None = None, stop: threading.Event | None = None
) -> None:
    """Run the schedule until SIGTERM/SIGINT (in the main thread) or until `stop` is set;
    then start nothing new and return once the running jobs have finished."""
    engine = engine or make_engine(settings.database.url)
    stop = stop or threading.Event()
    pool = JobPool()
    scheduler = BackgroundScheduler(timezone=UTC, executors={"default": pool})
    schedule_collectors(scheduler, settings, engine)
    schedule_alerts(scheduler, settings, engine)
    schedule_rollups(scheduler, engine)
    if threading.current_thread() is threading.main_thread():
        _stop_on_signals(stop)
    scheduler.start()
    stop.wait()
    log.info("worker: stopping: no new runs; waiting for the running ones to finish")
    scheduler.shutdown(wait=False)  # returns at once; the jobs' threads are joined below
    pool.join()
    log.info("worker: stopped")


def _stop_on_signals(stop: threading.Event) -> None:
    # The handler only sets the event: the main thread does the stopping, outside of it.
    def handler(signum: int, _frame: FrameType | None) -> None:
        if stop.is_set():
            log.warning(
                "worker: signal %s again: still waiting for the running job(s); SIGKILL stops "
                "at once (the open batch then rolls back and is read again next time)",
                signum,
            )
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


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
ROLLUPS_JOB = "rollups"
# The rollups are rebuilt at least this often, whatever the collectors do: spans pushed to the
# OTLP receiver (`spendguard api`) mark hours that no collector run rebuilds, and readers take
# what is marked from the base tables (a live hour is cheap; more than six hours of a day, or a
# late span on an older day, makes them read the whole day).
ROLLUP_SECONDS = 60


def schedule_rollups(scheduler: BaseScheduler, engine: Engine) -> None:
    """Rebuild the stale rollups every ROLLUP_SECONDS (first run at start); a run that finds
    another refresh going (a collector's, the dashboard's) returns at once."""
    _every(scheduler, ROLLUP_SECONDS, ROLLUPS_JOB, "rebuild stale rollups", _refresh_rollups,
           engine, "schedule")  # fmt: skip


def _every(
    scheduler: BaseScheduler, seconds: float, job_id: str, name: str, func: Any, *args: Any
) -> None:
    """A job every `seconds`, first run now, never overlapping itself."""
    scheduler.add_job(
        func,
        IntervalTrigger(seconds=seconds, timezone=UTC),
        args=list(args),
        id=job_id,
        name=name,
        max_instances=1,
        coalesce=True,
        misfire_grace_time=MISFIRE_GRACE_SECONDS,
        replace_existing=True,
        next_run_time=datetime.now(UTC),
    )


def schedule_alerts(scheduler: BaseScheduler, settings: Settings, engine: Engine) -> bool:
    """Evaluate the rules and deliver the outbox every `alerts.interval` (first run at start)."""
    if not any(rule.enabled for rule in settings.rules):
        log.info("worker: no alert rule enabled; alerts are not evaluated")
        return False
    every = parse_duration(settings.alerts.interval).total_seconds()
    _every(scheduler, every, ALERTS_JOB, "evaluate alert rules and deliver", run_alerts, engine,
           settings)  # fmt: skip
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
    """One scheduled run, unless another worker is running this collector now (this one then
    stands by). Never raises: the scheduler thread and the other jobs go on."""
    try:
        with named_lock(engine, f"collector:{name}") as held:
            if not held:
                log.info("worker: %s is running in another worker; standing by", name)
                return
            outcome = registry.get(name).run(engine, settings)
            if outcome.ok and settings.pricing.true_up:
                _refresh_true_up(engine, name, outcome)
            if outcome.ok and settings.gpu_pools:
                _refresh_gpu(engine, name, settings)
            _refresh_rollups(engine, name)
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


def _refresh_true_up(engine: Engine, name: str, outcome: RunOutcome) -> None:
    """After a billing collector's run: the true-up factors of the days it re-read."""
    from app.trueup import BILLING_COLLECTORS, refresh_true_up

    if name not in BILLING_COLLECTORS or outcome.window_start is None:
        return
    since: date = outcome.window_start.date()
    until = (outcome.window_end or outcome.window_start).date() + timedelta(days=1)
    try:
        result = refresh_true_up(engine, name, since, until)
    except Exception:
        log.exception("worker: %s: true-up refresh failed; reports keep the last factors", name)
        return
    if result.busy:
        log.info("worker: %s: a true-up refresh is already running; skipped", name)
    else:
        log.info(
            "worker: %s: true-up refreshed, %d model-day(s), %d day(s) changed, "
            "%d day(s) of rollups rebuilt with them",
            name,
            result.model_days,
            len(result.changed_days),
            len(result.rebuilt_days),
        )


def _refresh_gpu(engine: Engine, name: str, settings: Settings) -> None:
    """After any collector run: allocate the GPU pool-hours whose calls or bills changed."""
    from app.gpu.allocate import refresh_stale

    try:
        result = refresh_stale(engine, settings)
    except Exception:
        log.exception("worker: %s: GPU allocation failed; reports keep the last one", name)
        return
    if result is not None and not result.busy:
        log.info("worker: %s: GPU allocation refreshed, %d day(s)", name, result.days)


def _refresh_rollups(engine: Engine, name: str) -> None:
    """After any collector run (a failed one may have loaded batches): the days it touched; and
    on its own schedule (`schedule_rollups`). Never raises."""
    from app.rollups.refresh import refresh

    try:
        result = refresh(engine)
    except Exception:
        log.exception("worker: %s: rollup refresh failed; reports read the base tables", name)
        return
    if result.days:
        log.info("worker: %s: rollups of %d day(s) rebuilt", name, result.days)


def _heartbeat() -> None:
    log.debug("worker: alive")
