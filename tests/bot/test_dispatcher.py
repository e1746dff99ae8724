"""The outbox dispatcher against a fake Slack: rate limits, leases, crashes and two processes on one database."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlmodel import Session

from bot.dispatcher import Dispatcher, RateBudget
from bot.slack.platform import SlackPlatform, make_client
from handlers import reflections
from handlers.context import CoreConfig
from handlers.ports import SystemClock
from storage import repository as repo
from storage import rhythm
from storage.engine import make_engine, migrate
from tests.fakes.slack_api import BOT_TOKEN, FakeSlack

ROOT = Path(__file__).resolve().parents[2]
NOW = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)


def seed_dm_fanout(engine: Engine, members: int, *, weeks: int = 1) -> list[str]:
    """A community of `members` who want DM prompts, and `weeks` weekly prompts due now. Returns the user ids."""
    users = [f"U{n:08d}" for n in range(members)]
    with Session(engine) as db:
        creator = repo.ensure_member(db=db, platform="slack", workspace_id="T0COPBOT", user_id=users[0], now=NOW)
        community = repo.create_community(
            db=db, platform="slack", workspace_id="T0COPBOT", slug="falls", name="Falls", purpose="",
            channel_id="C0FALLS", channel_name="cop-falls", timezone="Europe/London", creator=creator,
            now=NOW - dt.timedelta(weeks=weeks + 1),
        )  # fmt: skip
        for user in users[1:]:
            member = repo.ensure_member(db=db, platform="slack", workspace_id="T0COPBOT", user_id=user, now=NOW)
            repo.add_membership(db=db, community=community, member=member, now=NOW)
        community.prompt_weekday, community.prompt_time, community.prompt_mode = 2, "10:00", "dm"
        community.prompt_since = NOW - dt.timedelta(weeks=weeks + 1)
        db.add(community)
        db.commit()
        for week in reversed(range(weeks)):
            reflections.plan_due(db=db, now=NOW - dt.timedelta(weeks=week), config=CoreConfig())
    return users


def dm_counts(fake: FakeSlack) -> Counter[str]:
    """Messages Slack accepted, per destination (429s and errors are not deliveries)."""
    return Counter(
        str(r.params["channel"])
        for r in fake.records
        if r.method == "chat.postMessage" and r.status == 200 and (r.response or {}).get("ok")
    )


def test_rate_budget_spaces_sends() -> None:
    ticks = iter([0.0, 0.0, 0.0, 0.5, 1.0])
    budget = RateBudget(2.0, burst=1.0, monotonic=lambda: next(ticks))
    assert budget.wait_time() == 0.0
    budget.take()
    assert budget.wait_time() == pytest.approx(0.5)


def test_a_stretch_of_429s_delays_but_delivers_everything_in_order(fake_slack: FakeSlack, engine: Engine) -> None:
    users = seed_dm_fanout(engine, 6, weeks=2)
    fake_slack.rate_limit("chat.postMessage", retry_after=1, times=3)
    platform = SlackPlatform(make_client(token=BOT_TOKEN, base_url=fake_slack.url, wait_on_rate_limit=False))
    dispatcher = Dispatcher(engine=engine, platform=platform, clock=SystemClock(), workspace_rate=50, channel_rate=50)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        dispatcher.run()
        with Session(engine) as db:
            if rhythm.pending_count(db=db) == 0:
                break
        time.sleep(0.1)
    statuses = [r.status for r in fake_slack.records if r.method == "chat.postMessage"]
    assert statuses.count(429) == 3
    assert dm_counts(fake_slack) == Counter({u: 2 for u in users})
    with Session(engine) as db:
        sent = db.exec(
            rhythm.select(rhythm.OutboxItem).order_by(rhythm.col(rhythm.OutboxItem.sent_at))  # type: ignore[attr-defined]
        ).all()
    for user in users:  # the older week's prompt reached each person first
        mine = [row.occurrence_id or 0 for row in sent if row.destination == f"user:{user}"]
        assert mine == sorted(mine)


def test_a_crashed_workers_claim_is_retried_after_its_lease(fake_slack: FakeSlack, engine: Engine) -> None:
    users = seed_dm_fanout(engine, 5)
    with Session(engine) as db:
        claimed = rhythm.claim(db=db, worker="crashed", now=NOW, lease=dt.timedelta(seconds=60), limit=3)
    assert len(claimed) == 3
    platform = SlackPlatform(make_client(token=BOT_TOKEN, base_url=fake_slack.url))

    class Later:
        at = NOW

        def now(self) -> dt.datetime:
            return self.at

    clock = Later()
    dispatcher = Dispatcher(engine=engine, platform=platform, clock=clock, workspace_rate=1000, channel_rate=1000)
    assert dispatcher.run() == 2  # the crashed worker's three are still leased
    clock.at = NOW + dt.timedelta(seconds=61)
    assert dispatcher.run() == 3
    assert dm_counts(fake_slack) == Counter({u: 1 for u in users})


def test_permanent_errors_give_up_and_cancelled_members_are_skipped(fake_slack: FakeSlack, engine: Engine) -> None:
    users = seed_dm_fanout(engine, 3)
    fake_slack.fail_next("chat.postMessage", error="user_not_found")
    platform = SlackPlatform(make_client(token=BOT_TOKEN, base_url=fake_slack.url))
    dispatcher = Dispatcher(
        engine=engine, platform=platform, clock=SystemClock(), workspace_rate=1000, channel_rate=1000
    )
    assert dispatcher.run() == 2
    with Session(engine) as db:
        statuses = sorted(r.status for r in db.exec(rhythm.select(rhythm.OutboxItem)))  # type: ignore[attr-defined]
    assert statuses == ["failed", "sent", "sent"]
    assert len(users) == 3


def _worker(database_url: str, fake: FakeSlack, *, rate: float, lease: float) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.bot.outbox_worker", database_url, fake.url, str(rate), str(lease)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def test_sigkill_mid_fanout_loses_nobody_and_repeats_at_most_one(fake_slack: FakeSlack, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/copbot.db"
    engine = make_engine(url)
    migrate(engine)
    users = seed_dm_fanout(engine, 500)
    first = _worker(url, fake_slack, rate=150, lease=2)
    fake_slack.wait_for("chat.postMessage", count=150, timeout=60)
    os.kill(first.pid, signal.SIGKILL)
    first.wait(timeout=10)
    sent_before_restart = len(fake_slack.calls_to("chat.postMessage"))
    assert sent_before_restart < 500, "the worker finished before it could be killed"
    second = _worker(url, fake_slack, rate=500, lease=2)
    output = second.communicate(timeout=120)[0].decode()
    assert second.returncode == 0, output
    counts = dm_counts(fake_slack)
    assert set(counts) == set(users)
    assert sum(counts.values()) - len(users) <= 1
    engine.dispose()


@pytest.mark.postgres
def test_two_processes_on_one_postgresql_never_send_twice(fake_slack: FakeSlack, pg_engine: Engine) -> None:
    users = seed_dm_fanout(pg_engine, 300)
    schema = _schema_of(pg_engine)
    url = f"postgresql+psycopg://postgres@127.0.0.1:5432/postgres?options=-csearch_path%3D{schema}"
    workers = [_worker(url, fake_slack, rate=400, lease=30) for _ in range(2)]
    for worker in workers:
        output = worker.communicate(timeout=120)[0].decode()
        assert worker.returncode == 0, output
    counts = dm_counts(fake_slack)
    assert counts == Counter({u: 1 for u in users})
    with Session(pg_engine) as db:
        by_worker = Counter(r.claimed_by for r in db.exec(rhythm.select(rhythm.OutboxItem)))  # type: ignore[attr-defined]
    assert len(by_worker) == 2, f"both processes should have sent some: {by_worker}"


def _schema_of(engine: Engine) -> str:
    with engine.connect() as conn:
        return str(conn.exec_driver_sql("select current_schema()").scalar())
