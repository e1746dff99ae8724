"""APScheduler (in memory) runs the minute tick and the dispatcher; schedules themselves are data in the database."""

from __future__ import annotations

import logging

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from bot.container import Container

log = logging.getLogger(__name__)


def start(container: Container, *, tick_seconds: int = 60, dispatch_seconds: int = 5) -> BackgroundScheduler:
    """Start the background jobs: `tick` (due prompts into the outbox) and `dispatch` (send what is due).

    Each job runs at most once at a time and missed runs are coalesced, so a slow send never piles up ticks.
    """
    scheduler = BackgroundScheduler(timezone="UTC", job_defaults={"coalesce": True, "max_instances": 1})
    for name, seconds in (("tick", tick_seconds), ("dispatch", dispatch_seconds)):
        scheduler.add_job(
            _runner(container, name), IntervalTrigger(seconds=seconds), id=name, name=name, misfire_grace_time=None
        )
    scheduler.start()
    log.info("scheduler started: tick every %ss, dispatch every %ss", tick_seconds, dispatch_seconds)
    return scheduler


def _runner(container: Container, job: str):  # type: ignore[no-untyped-def]
    def run() -> None:
        try:
            done = container.due_jobs[job](container.clock.now())
            if done:
                log.info("%s: %s", job, done)
        except Exception:
            log.exception("%s job failed", job)

    return run
