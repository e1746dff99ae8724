"""APScheduler (in memory) runs the minute tick, the dispatcher and the daily housekeeping; schedules themselves are
data in the database."""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from bot.container import Container
from bot.metrics import HOUSEKEEPING_DELETED, JOB_SECONDS
from storage import housekeeping

log = logging.getLogger(__name__)

HOUSEKEEPING_AT = (3, 30)  # UTC: the quietest hour in a UK trust
HOUSEKEEPING_FIRST_RUN = dt.timedelta(minutes=1)  # after a start, so a restarted bot catches up without waiting a day


def start(
    container: Container,
    *,
    tick_seconds: int = 60,
    dispatch_seconds: int = 5,
    housekeeping_first_run: dt.timedelta = HOUSEKEEPING_FIRST_RUN,
) -> BackgroundScheduler:
    """Start the background jobs (see `build`)."""
    scheduler = build(
        container,
        tick_seconds=tick_seconds,
        dispatch_seconds=dispatch_seconds,
        housekeeping_first_run=housekeeping_first_run,
    )
    scheduler.start()
    hour, minute = HOUSEKEEPING_AT
    log.info(
        "scheduler started: tick every %ss, dispatch every %ss, housekeeping daily at %02d:%02d UTC",
        tick_seconds, dispatch_seconds, hour, minute,
    )  # fmt: skip
    return scheduler


def build(
    container: Container,
    *,
    tick_seconds: int = 60,
    dispatch_seconds: int = 5,
    housekeeping_first_run: dt.timedelta = HOUSEKEEPING_FIRST_RUN,
) -> BackgroundScheduler:
    """The background jobs, not yet started: `tick` (due prompts into the outbox), `dispatch` (send what is due)
    and `housekeeping` (daily at 03:30 UTC, and once `housekeeping_first_run` after the start).

    Each job runs at most once at a time and missed runs are coalesced, so a slow send never piles up ticks.
    """
    scheduler = BackgroundScheduler(timezone="UTC", job_defaults={"coalesce": True, "max_instances": 1})
    for name, seconds in (("tick", tick_seconds), ("dispatch", dispatch_seconds)):
        scheduler.add_job(
            _runner(container, name), IntervalTrigger(seconds=seconds), id=name, name=name, misfire_grace_time=None
        )
    hour, minute = HOUSEKEEPING_AT
    scheduler.add_job(
        lambda: run_housekeeping(container),
        CronTrigger(hour=hour, minute=minute, timezone="UTC"),
        id="housekeeping",
        name="housekeeping",
        misfire_grace_time=None,
        # One job for both, so the first run and a 03:30 run can never overlap (max_instances).
        next_run_time=dt.datetime.now(dt.UTC) + housekeeping_first_run,
    )
    return scheduler


def run_housekeeping(container: Container) -> housekeeping.PurgeResult | None:
    """Purge what is no longer needed; counts (never contents) to the log and the metrics.

    None if it failed, or if another process is purging the same database (every process runs this job; one does
    the work).
    """
    started = time.perf_counter()
    try:
        with housekeeping.exclusive(container.engine) as mine:
            if not mine:
                log.info("housekeeping: another process is running it; skipped")
                return None
            result = housekeeping.purge(engine=container.engine, now=container.clock.now())
    except Exception:
        log.exception("housekeeping job failed")
        return None
    finally:
        JOB_SECONDS.labels(job="housekeeping").observe(time.perf_counter() - started)
    deleted = result.deleted
    for table, count in deleted.items():
        HOUSEKEEPING_DELETED.labels(table=table).inc(count)
    log.info(
        "housekeeping: deleted %d inbound_event, %d inbox, %d inbox_effect and %d outbox rows in %d batches "
        "(longest write %.0f ms, %d over %.0f ms) in %.1f s",
        deleted["inbound_event"], deleted["inbox"], deleted["inbox_effect"], deleted["outbox"], len(result.batches),
        result.longest_write_s * 1000, result.over_budget, result.budget_s * 1000, time.perf_counter() - started,
    )  # fmt: skip
    return result


def _runner(container: Container, job: str) -> Callable[[], None]:
    # Not timed here: `tick` (bot/container.py) and `dispatch` (bot/dispatcher.py) time themselves, so the console's
    # `:advance` counts too.
    def run() -> None:
        try:
            done = container.due_jobs[job](container.clock.now())
            if done:
                log.info("%s: %s", job, done)
        except Exception:
            log.exception("%s job failed", job)

    return run
