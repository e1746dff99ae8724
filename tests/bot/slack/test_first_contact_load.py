"""Fifty new members' first contact at once through the real Slack app: signed `member_joined_channel` events and
first `/cop` commands, all released together, against the fake Slack Web API; on a SQLite file and on PostgreSQL."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping

import pytest
from slack_bolt import App
from sqlalchemy import Engine, func
from sqlmodel import Session, col, select

from bot.slack.app import SlackDeps, build_app
from bot.slack.platform import SlackPlatform, make_client
from handlers.app import SORRY, CopBot
from handlers.context import CoreConfig
from handlers.ports import Actor, Invocation, Reply
from storage.models import Member, Membership
from tests.bot.slack.test_slack_app import command, dispatch
from tests.bot.slack.workers import worker_running
from tests.conftest import FixedClock
from tests.fakes import slack_signing as signing
from tests.fakes.slack_api import BOT_TOKEN, FakeSlack

PEOPLE = 50
WAIT = 30.0  # seconds: reached only when something hangs


@pytest.fixture(params=["sqlite-file", "postgresql"])
def engine(request: pytest.FixtureRequest) -> Engine:
    """Bolt runs listeners on worker threads, each with its own connection: a SQLite file, or PostgreSQL."""
    chosen: Engine = request.getfixturevalue("file_engine" if request.param == "sqlite-file" else "pg_engine")
    return chosen


class WatchedBot(CopBot):
    """The core unchanged, noting each first contact it has finished (Bolt's lazy listeners run after the ack)."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.finished = threading.Condition()
        self.answers: list[tuple[str, list[Reply]]] = []

    def _note(self, user_id: str, replies: list[Reply]) -> list[Reply]:
        with self.finished:
            self.answers.append((user_id, replies))
            self.finished.notify_all()
        return replies

    def member_joined(self, *, actor: Actor, channel_id: str) -> list[Reply]:
        return self._note(actor.user_id, super().member_joined(actor=actor, channel_id=channel_id))

    def handle_command(self, invocation: Invocation) -> list[Reply]:
        return self._note(invocation.actor.user_id, super().handle_command(invocation))

    def wait_for(self, count: int) -> None:
        with self.finished:
            assert self.finished.wait_for(lambda: len(self.answers) >= count, timeout=WAIT), len(self.answers)


def _text(body: Mapping[str, object]) -> str:
    return f"{body.get('text', '')} {body.get('blocks', '')}"


def test_fifty_new_members_join_and_command_at_once_over_slack(
    fake_slack: FakeSlack, engine: Engine, clock: FixedClock, caplog: pytest.LogCaptureFixture
) -> None:
    client = make_client(token=BOT_TOKEN, base_url=fake_slack.url)
    bot = WatchedBot(engine=engine, platform=SlackPlatform(client), clock=clock, config=CoreConfig())
    app: App = build_app(
        deps=SlackDeps(bot=bot, engine=engine, clock=clock), client=client, signing_secret=signing.SIGNING_SECRET
    )
    with worker_running(bot=bot, client=client, engine=engine, clock=clock):
        assert "Created *Falls prevention*" in command(app, fake_slack, "create Falls prevention")
        bot.wait_for(1)
        channel = fake_slack.channel_named("cop-falls-prevention")
        assert channel is not None

        people = [f"U0NEW{n:02d}" for n in range(PEOPLE)]
        for person in people:
            fake_slack.add_user(person, name=person.lower())
        commands = {
            p: "profile profession=Nurse" if n % 2 == 0 else "join falls-prevention" for n, p in enumerate(people)
        }

        def joined(person: str) -> signing.SignedRequest:
            return signing.signed_event(
                signing.event_callback("member_joined_channel", user=person, channel=channel.id)
            )

        def asked(person: str) -> signing.SignedRequest:
            return signing.signed_slash_command(
                commands[person], user_id=person, user_name=person.lower(), response_url=fake_slack.response_url(person)
            )

        requests = [request for person in people for request in (joined(person), asked(person))]
        barrier = threading.Barrier(len(requests), timeout=WAIT)
        statuses: list[int] = []

        def send(request: signing.SignedRequest) -> Callable[[], None]:
            def run() -> None:
                barrier.wait()
                statuses.append(dispatch(app, request).status)

            return run

        threads = [threading.Thread(target=send(request)) for request in requests]
        caplog.clear()
        with caplog.at_level(logging.ERROR):
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(WAIT)
            bot.wait_for(1 + len(requests))
            responses = fake_slack.wait_for_responses(1 + PEOPLE, timeout=WAIT)

        assert statuses == [200] * len(requests), "every request acknowledged"
        errors = [f"{r.name}: {r.getMessage()}" for r in caplog.records if r.levelno >= logging.ERROR]
        assert errors == []
        assert all(
            SORRY not in _text({"text": r.message.text}) for _, replies in bot.answers for r in replies if r.message
        )
        answered = {str(r["path"]).rsplit("/", 1)[-1]: _text(r) for r in responses[1:]}
        assert sorted(answered) == sorted(people), "each first command answered on its own response_url"
        for person in people:
            expected = "Your profile is saved" if "profile" in commands[person] else "Falls prevention"
            assert expected in answered[person] and SORRY not in answered[person], (person, answered[person])
        dms = [c for c in fake_slack.calls_to("chat.postMessage") if str(c.get("channel", "")) in set(people)]
        assert all(SORRY not in _text(dm) for dm in dms)

        with Session(engine) as db:
            rows = db.exec(
                select(Member.user_id, func.count()).where(col(Member.user_id).in_(people)).group_by(Member.user_id)
            ).all()
            assert dict(rows) == dict.fromkeys(people, 1), "exactly one member row per person"
            nurses = db.exec(select(Member.user_id).where(Member.profession == "Nurse")).all()
            assert sorted(nurses) == sorted(p for p in people if "profile" in commands[p]), "every profile saved"
            memberships = db.exec(
                select(Member.user_id, func.count())
                .join(Membership, col(Membership.member_id) == col(Member.id))
                .where(col(Member.user_id).in_(people))
                .group_by(Member.user_id)
            ).all()
            assert dict(memberships) == dict.fromkeys(people, 1), "one membership each"
