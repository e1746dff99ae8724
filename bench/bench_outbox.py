"""Rhythm figures: a DM prompt fanned out to 5,000 members against a rate-limited fake Slack, and tick cost."""

from __future__ import annotations

import datetime as dt
import tempfile
import time
from collections import Counter
from pathlib import Path

from sqlmodel import Session

from bench.common import Figure, median
from bot.dispatcher import Dispatcher
from bot.slack.platform import SlackPlatform, make_client
from handlers import reflections
from handlers.context import CoreConfig
from handlers.ports import SystemClock
from storage import repository as repo
from storage import rhythm
from storage.engine import make_engine, migrate
from tests.fakes.slack_api import BOT_TOKEN, FakeSlack
from tests.fakes.slack_manifest import declared

NOW = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)


def _seed(engine: object, *, communities: int, members_each: int, mode: str) -> None:
    from sqlalchemy import Engine

    assert isinstance(engine, Engine)
    with Session(engine) as db:
        for c in range(communities):
            creator = repo.ensure_member(
                db=db, platform="slack", workspace_id="T0COPBOT", user_id=f"U{c:04d}C", now=NOW
            )
            community = repo.create_community(
                db=db, platform="slack", workspace_id="T0COPBOT", slug=f"c{c}", name=f"Community {c}", purpose="",
                channel_id=f"C{c:08d}", channel_name=f"cop-c{c}", timezone="Europe/London", creator=creator,
                now=NOW - dt.timedelta(days=30),
            )  # fmt: skip
            for n in range(members_each - 1):
                member = repo.ensure_member(
                    db=db, platform="slack", workspace_id="T0COPBOT", user_id=f"U{c:04d}{n:05d}", now=NOW
                )
                repo.add_membership(db=db, community=community, member=member, now=NOW)
            community.prompt_weekday, community.prompt_time, community.prompt_mode = 2, "10:00", mode
            community.prompt_since = NOW - dt.timedelta(days=30)
            db.add(community)
        db.commit()


def fan_out(members: int, rate: float) -> list[Figure]:
    with tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(f"sqlite:///{Path(tmp) / 'bench.db'}")
        migrate(engine)
        _seed(engine, communities=1, members_each=members, mode="dm")
        with Session(engine) as db:
            queued = reflections.plan_due(db=db, now=NOW, config=CoreConfig())
        fake = FakeSlack(scopes=set(declared().bot_scopes))
        with fake:
            fake.enforce_rate("chat.postMessage", per_second=rate)
            platform = SlackPlatform(make_client(token=BOT_TOKEN, base_url=fake.url, wait_on_rate_limit=False))
            dispatcher = Dispatcher(
                engine=engine, platform=platform, clock=SystemClock(), workspace_rate=rate * 0.98, workspace_burst=1,
                channel_rate=1.0,
            )  # fmt: skip
            started = time.perf_counter()
            while True:
                dispatcher.run()
                with Session(engine) as db:
                    if rhythm.pending_count(db=db) == 0:
                        break
                time.sleep(0.05)
            elapsed = time.perf_counter() - started
            delivered = Counter(
                str(r.params["channel"])
                for r in fake.records
                if r.method == "chat.postMessage" and r.status == 200 and (r.response or {}).get("ok")
            )
            throttled = sum(1 for r in fake.records if r.method == "chat.postMessage" and r.status == 429)
        engine.dispose()
    minimum = queued / rate
    lost = queued - len(delivered)
    duplicates = sum(delivered.values()) - len(delivered)
    efficiency = 100 * minimum / elapsed
    return [
        Figure(
            "outbox",
            f"DM fan-out to {queued:,} members at {rate:g}/s: total time",
            elapsed,
            "s",
            note=f"theoretical minimum {minimum:.1f} s; {throttled} answered 429",
        ),
        Figure("outbox", "fan-out efficiency (minimum / actual)", efficiency, "%", ">= 90%", efficiency >= 90),
        Figure("outbox", "members who got nothing", lost, "members", "0", lost == 0),
        Figure("outbox", "members who got it twice", duplicates, "members", "0", duplicates == 0),
    ]


def tick_cost(communities: int) -> list[Figure]:
    with tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(f"sqlite:///{Path(tmp) / 'bench.db'}")
        migrate(engine)
        _seed(engine, communities=communities, members_each=2, mode="channel")
        samples = []
        first = None
        for minute in range(12):
            at = NOW + dt.timedelta(minutes=minute)
            started = time.perf_counter()
            with Session(engine) as db:
                made = reflections.plan_due(db=db, now=at, config=CoreConfig())
            samples.append(time.perf_counter() - started)
            first = made if first is None else first
        engine.dispose()
    return [
        Figure("outbox", f"tick with {communities:,} communities, first (makes {first} rows)", samples[0] * 1000, "ms"),
        Figure(
            "outbox",
            f"tick with {communities:,} communities, steady state (median)",
            median(samples[1:]) * 1000,
            "ms",
            note="nothing new to plan: idempotent re-check",
        ),
    ]


def run(*, quick: bool) -> list[Figure]:
    return [*fan_out(500 if quick else 5000, 50.0), *tick_cost(100 if quick else 1000)]
