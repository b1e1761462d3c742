"""`spendguard worker`: runs the scheduled collectors with APScheduler.

Collectors register their jobs here as they land (traces, billing, GPU costs); until then the
worker starts, logs what it would run, and waits for SIGTERM/Ctrl-C to stop cleanly.
"""

from __future__ import annotations

import logging
import signal
from types import FrameType

from apscheduler.schedulers.blocking import BlockingScheduler

from app.settings import Settings

log = logging.getLogger("spendguard.worker")

HEARTBEAT_SECONDS = 60


def run_worker(settings: Settings) -> None:
    scheduler = BlockingScheduler(
        timezone="UTC", job_defaults={"coalesce": True, "max_instances": 1}
    )
    scheduler.add_job(_heartbeat, "interval", seconds=HEARTBEAT_SECONDS, id="heartbeat")

    def stop(signum: int, _frame: FrameType | None) -> None:
        log.info("worker: signal %s, stopping after the running job", signum)
        scheduler.shutdown(wait=True)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    enabled = [name for name, cfg in settings.collectors if getattr(cfg, "enabled", False)]
    log.info(
        "worker: started; collectors enabled in config: %s (scheduled collection lands "
        "with the collector issues)",
        ", ".join(enabled) or "none",
    )
    scheduler.start()


def _heartbeat() -> None:
    log.debug("worker: alive")
