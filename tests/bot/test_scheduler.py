"""The background jobs: the daily housekeeping (when it runs, what it reports), and every job's duration metric."""

from __future__ import annotations

import datetime as dt
import logging
import re
from pathlib import Path

import pytest
from sqlalchemy import Engine, update
from sqlmodel import Session, select

from bot import scheduler
from bot.config import load_settings
from bot.container import Container, build
from bot.metrics import REGISTRY
from storage import housekeeping, rhythm
from storage import repository as repo
from storage.engine import make_engine
from storage.models import InboundEvent
from storage.rhythm import OutboxItem, OutboxStatus
from tests.conftest import FixedClock
from tests.fakes.recording import RecordingPlatform

NOW = dt.datetime(2026, 11, 25, 3, 30, tzinfo=dt.UTC)


def container_on(engine: Engine) -> Container:
    settings = load_settings(environ={"DATABASE_URL": "sqlite://"}, env_file=None)
    return build(settings, platform=RecordingPlatform(), clock=FixedClock(NOW), engine=engine)


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def seed_old_rows(engine: Engine) -> None:
    with Session(engine) as db:
        for n in range(3):
            repo.claim_inbound_event(db=db, key=f"slack:event:Ev{n}", now=NOW - dt.timedelta(days=8))
        sent_at = NOW - dt.timedelta(days=31)
        rhythm.enqueue(
            db=db, dedupe_key="prompt:1:w1:dm:1", kind="prompt_dm", platform="slack", workspace_id="T1",
            destination="user:U1", payload={"text": "What went well?"}, due_at=sent_at, now=sent_at,
        )  # fmt: skip
        db.execute(update(OutboxItem).values(status=OutboxStatus.SENT, sent_at=sent_at))
        db.commit()


def test_housekeeping_reports_its_counts_to_the_log_and_the_metrics(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    seed_old_rows(engine)
    inbound_before = sample("copbot_housekeeping_deleted_total", table="inbound_event")
    outbox_before = sample("copbot_housekeeping_deleted_total", table="outbox")
    runs_before = sample("copbot_job_seconds_count", job="housekeeping")

    with caplog.at_level(logging.INFO, logger="bot.scheduler"):
        result = scheduler.run_housekeeping(container_on(engine))

    assert result is not None and result.deleted == {
        "inbound_event": 3,
        "inbox": 0,
        "inbox_effect": 0,
        "inbox_result": 0,
        "outbox": 1,
    }
    assert sample("copbot_housekeeping_deleted_total", table="inbound_event") == inbound_before + 3
    assert sample("copbot_housekeeping_deleted_total", table="outbox") == outbox_before + 1
    assert sample("copbot_job_seconds_count", job="housekeeping") == runs_before + 1
    [line] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("housekeeping")]
    assert re.fullmatch(
        r"housekeeping: deleted 3 inbound_event, 0 inbox, 0 inbox_effect and 1 outbox rows in 2 batches "
        r"\(longest write \d+ ms, [01] over 50 ms\) in \d+\.\d s",
        line,
    )


def test_a_failed_housekeeping_is_logged_timed_and_does_not_raise(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    good = make_engine("sqlite://")
    container = container_on(good)
    garbage = tmp_path / "copbot.db"
    garbage.write_bytes(b"this is not a database " * 100)
    container.engine = make_engine(f"sqlite:///{garbage}")
    runs_before = sample("copbot_job_seconds_count", job="housekeeping")

    with caplog.at_level(logging.INFO, logger="bot.scheduler"):
        assert scheduler.run_housekeeping(container) is None

    assert "housekeeping job failed" in caplog.text
    assert sample("copbot_job_seconds_count", job="housekeeping") == runs_before + 1
    container.engine.dispose()
    good.dispose()


def test_housekeeping_runs_daily_at_half_past_three_utc_and_soon_after_a_start(engine: Engine) -> None:
    before = dt.datetime.now(dt.UTC)
    jobs = scheduler.build(container_on(engine), housekeeping_first_run=dt.timedelta(minutes=2))
    after = dt.datetime.now(dt.UTC)

    assert {job.id for job in jobs.get_jobs()} == {"tick", "dispatch", "housekeeping"}
    job = jobs.get_job("housekeeping")
    assert job is not None
    assert before + dt.timedelta(minutes=2) <= job.next_run_time <= after + dt.timedelta(minutes=2)
    midday = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)
    assert job.trigger.get_next_fire_time(None, midday) == dt.datetime(2026, 11, 26, 3, 30, tzinfo=dt.UTC)


def test_tick_and_dispatch_time_themselves(engine: Engine) -> None:
    jobs = scheduler.build(container_on(engine))
    for name in ("tick", "dispatch"):
        before = sample("copbot_job_seconds_count", job=name)
        job = jobs.get_job(name)
        assert job is not None

        job.func()

        assert sample("copbot_job_seconds_count", job=name) == before + 1


def test_housekeeping_leaves_the_work_to_a_process_already_doing_it(
    file_engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    seed_old_rows(file_engine)
    container = container_on(file_engine)

    with housekeeping.exclusive(file_engine) as other_process, caplog.at_level(logging.INFO, logger="bot.scheduler"):
        assert other_process
        assert scheduler.run_housekeeping(container) is None

    assert "housekeeping: another process is running it; skipped" in caplog.text
    with Session(file_engine) as db:
        assert len(db.exec(select(InboundEvent)).all()) == 3
