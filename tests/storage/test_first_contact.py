"""Fifty new members' first contact at once, through the core: every get-or-create is an insert-or-ignore then read.

Each person's `member_joined_channel` event and their first `/cop` command arrive together (a `Barrier` releases
all of them at the same instant), on a SQLite file (WAL, several connections, as in production) and on PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import pytest
from sqlalchemy import Engine, func
from sqlmodel import Session, col, select

from handlers.app import SORRY, CopBot
from handlers.context import CoreConfig
from handlers.ports import Actor, Invocation, Reply
from storage import intros, rhythm
from storage import repository as repo
from storage import stories as story_store
from storage.models import Community, Member, Membership
from tests.conftest import FixedClock
from tests.fakes.recording import RecordingPlatform

PEOPLE = 50
WAIT = 30  # seconds: only reached when something hangs, so a hang fails instead of blocking the run
T = TypeVar("T")


@pytest.fixture(params=["sqlite-file", "postgresql"])
def shared_engine(request: pytest.FixtureRequest) -> Engine:
    """A database that several threads use through their own connections: a SQLite file or PostgreSQL."""
    chosen: Engine = request.getfixturevalue("file_engine" if request.param == "sqlite-file" else "pg_engine")
    return chosen


def _actor(user_id: str) -> Actor:
    return Actor(platform="test", workspace_id="T1", user_id=user_id, display_name=user_id.title())


def _together(calls: Sequence[Callable[[], T]]) -> list[T]:
    """Run every call on its own thread, all released at once by one barrier; their results in order."""
    barrier = threading.Barrier(len(calls), timeout=WAIT)

    def run(call: Callable[[], T]) -> T:
        barrier.wait()
        return call()

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        futures = [pool.submit(run, call) for call in calls]
        return [future.result(timeout=WAIT) for future in futures]


def _texts(replies: list[Reply]) -> list[str]:
    return [r.message.text for r in replies if r.message is not None]


def test_fifty_new_members_join_and_command_at_once(
    shared_engine: Engine, clock: FixedClock, caplog: pytest.LogCaptureFixture
) -> None:
    platform = RecordingPlatform()
    bot = CopBot(engine=shared_engine, platform=platform, clock=clock, config=CoreConfig())
    created = bot.handle_command(Invocation(actor=_actor("fac"), text="/cop create Falls prevention"))
    assert "Created *Falls prevention*" in " ".join(_texts(created))
    [channel_id] = platform.channels

    people = [f"new{n:02d}" for n in range(PEOPLE)]
    # Half of them first ask to set their profile, half to join by name; every one of them also joins the channel.
    commands = {
        person: "/cop profile profession=Nurse" if n % 2 == 0 else "/cop join falls-prevention"
        for n, person in enumerate(people)
    }

    def joins(person: str) -> Callable[[], list[Reply]]:
        return lambda: bot.member_joined(actor=_actor(person), channel_id=channel_id)

    def asks(person: str) -> Callable[[], list[Reply]]:
        return lambda: bot.handle_command(Invocation(actor=_actor(person), text=commands[person]))

    calls = [call for person in people for call in (joins(person), asks(person))]

    caplog.clear()
    with caplog.at_level(logging.ERROR):
        started = dt.datetime.now(dt.UTC)
        results = _together(calls)
        took = dt.datetime.now(dt.UTC) - started

    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], [f"{r.name}: {r.getMessage()}" for r in errors]
    event_replies, command_replies = results[0::2], results[1::2]
    answers = [_texts(replies) for replies in command_replies]
    assert len(answers) == PEOPLE and all(answers), "every first command gets an answer"
    everything = [text for replies in results for text in _texts(replies)]
    assert SORRY not in everything
    for person, answer in zip(people, answers, strict=True):
        expected = "Your profile is saved" if "profile" in commands[person] else "Falls prevention"
        assert expected in " ".join(answer), (person, answer)
    # The welcome arrives once per person: from the event, or (when the command won) the command said it.
    assert sum(1 for replies in event_replies if _texts(replies)) <= PEOPLE
    assert took < dt.timedelta(seconds=10)

    with Session(shared_engine) as db:
        rows = db.exec(
            select(Member.user_id, func.count()).where(col(Member.user_id).startswith("new")).group_by(Member.user_id)
        ).all()
        assert dict(rows) == dict.fromkeys(people, 1), "exactly one member row per person"
        saved = db.exec(select(Member.user_id).where(Member.profession == "Nurse")).all()
        assert sorted(saved) == sorted(p for p in people if "profile" in commands[p]), "every profile saved"
        community = db.exec(select(Community)).one()
        in_community = db.exec(
            select(Member.user_id, func.count())
            .join(Membership, col(Membership.member_id) == col(Member.id))
            .where(Membership.community_id == community.id)
            .group_by(Member.user_id)
        ).all()
        assert dict(in_community) == {"fac": 1, **dict.fromkeys(people, 1)}, "one membership each"


# --- the other get-or-creates, each raced by several sessions --------------------------------------------------------


@pytest.fixture
def community_id(shared_engine: Engine, clock: FixedClock) -> Iterator[int]:
    with Session(shared_engine, expire_on_commit=False) as db:
        founder = repo.ensure_member(db=db, platform="test", workspace_id="T1", user_id="fac", now=clock.now())
        community = repo.create_community(
            db=db, platform="test", workspace_id="T1", slug="falls", name="Falls", purpose="", channel_id="C1",
            channel_name="cop-falls", timezone="Europe/London", creator=founder, now=clock.now(),
        )  # fmt: skip
        db.commit()
        assert community.id is not None
        yield community.id


RACERS = 8


def _race(engine: Engine, work: Callable[[Session], T]) -> list[T]:
    """`work` in RACERS sessions at once, each committing its own transaction; what each returned."""

    def unit() -> T:
        with Session(engine, expire_on_commit=False) as db:
            result = work(db)
            db.commit()
            return result

    return _together([unit] * RACERS)


def test_racing_memberships_make_one_row(shared_engine: Engine, community_id: int, clock: FixedClock) -> None:
    def work(db: Session) -> int | None:
        member = repo.ensure_member(db=db, platform="test", workspace_id="T1", user_id="zoe", now=clock.now())
        community = db.get(Community, community_id)
        assert community is not None
        return repo.add_membership(db=db, community=community, member=member, now=clock.now()).id

    ids = _race(shared_engine, work)
    assert len(set(ids)) == 1 and None not in ids, "every racer reads the one membership"
    with Session(shared_engine) as db:
        assert len(db.exec(select(Membership).where(Membership.community_id == community_id)).all()) == 2


def test_an_outer_transaction_survives_an_ignored_insert(shared_engine: Engine, clock: FixedClock) -> None:
    # On PostgreSQL a failed INSERT would abort the whole transaction; ON CONFLICT DO NOTHING must not.
    with Session(shared_engine) as db:
        repo.ensure_member(db=db, platform="test", workspace_id="T1", user_id="ann", now=clock.now())
        db.commit()
    with Session(shared_engine) as db:
        repo.record_audit(db=db, action="before", now=clock.now())
        db.flush()
        again = repo.ensure_member(db=db, platform="test", workspace_id="T1", user_id="ann", now=clock.now())
        assert again.id is not None
        fresh = repo.ensure_member(db=db, platform="test", workspace_id="T1", user_id="bea", now=clock.now())
        assert fresh.id is not None and fresh.id != again.id
        assert len(repo.audit_events(db=db)) == 1, "the work before the ignored insert is still there"
        db.rollback()  # the outer transaction decides: nothing of it stays, not even the new member
        assert db.exec(select(Member).where(Member.user_id == "bea")).first() is None


def test_a_captured_story_goes_when_its_transaction_is_rolled_back(
    shared_engine: Engine, community_id: int, clock: FixedClock
) -> None:
    # The capture used to run in a SAVEPOINT; on pysqlite, with no write before it, its RELEASE committed for good.
    with Session(shared_engine) as db:
        _story, created = story_store.claim_source(
            db=db, community_id=community_id, channel_id="C1", message_id="1700000000.000300", source_link=None,
            source=story_store.StorySource.REACTION, author_member_id=None, capturer_member_id=None, now=clock.now(),
        )  # fmt: skip
        assert created
        db.rollback()
    with Session(shared_engine) as db:
        assert story_store.story_by_source(db=db, channel_id="C1", message_id="1700000000.000300") is None


def test_inserts_that_were_ignored_say_so(shared_engine: Engine, clock: FixedClock) -> None:
    # The answer comes from the database's row count, which SQLAlchemy drops for INSERTs unless asked to keep it.
    now = clock.now()
    with Session(shared_engine) as db:
        assert [repo.claim_inbound_event(db=db, key="slack:Ev1", now=now) for _ in range(2)] == [True, False]
        queued = [
            rhythm.enqueue(
                db=db,
                dedupe_key="dm:1",
                kind="dm",
                platform="test",
                workspace_id="T1",
                destination="user:U1",
                payload={"text": "hello"},
                due_at=now,
                now=now,
            )
            for _ in range(2)
        ]
        assert queued == [True, False]
        db.commit()


def test_racing_story_captures_share_one_draft(shared_engine: Engine, community_id: int, clock: FixedClock) -> None:
    def work(db: Session) -> tuple[int | None, bool]:
        story, created = story_store.claim_source(
            db=db, community_id=community_id, channel_id="C1", message_id="1700000000.000100", source_link=None,
            source=story_store.StorySource.REACTION, author_member_id=None, capturer_member_id=None, now=clock.now(),
        )  # fmt: skip
        return (story.id, created)

    results = _race(shared_engine, work)
    assert len({story_id for story_id, _ in results}) == 1
    assert sum(1 for _, created in results if created) == 1


def test_racing_rounds_occurrences_skips_and_reflections(
    shared_engine: Engine, community_id: int, clock: FixedClock
) -> None:
    now = clock.now()

    def round_work(db: Session) -> int | None:
        row = intros.add_round(
            db=db, key="intro:falls:1", community_id=community_id, due_at=now, followup_at=now, now=now
        )
        return row.id if row else None

    rounds = _race(shared_engine, round_work)
    assert len([r for r in rounds if r is not None]) == 1, "one racer makes the round, the others get None"

    def occurrence_work(db: Session) -> int | None:
        row = rhythm.add_occurrence(
            db=db, key="prompt:falls:2026-W48", community_id=community_id, prompt_id="p1", mode="channel", due_at=now,
            skipped=False, now=now,
        )  # fmt: skip
        return row.id if row else None

    occurrences = _race(shared_engine, occurrence_work)
    [occurrence_id] = [o for o in occurrences if o is not None]
    [round_id] = [r for r in rounds if r is not None]

    with Session(shared_engine) as db:
        member = repo.ensure_member(db=db, platform="test", workspace_id="T1", user_id="fac", now=now)
        member_id = member.id
        db.commit()
    assert isinstance(member_id, int) and isinstance(round_id, int) and isinstance(occurrence_id, int)

    skips = _race(shared_engine, lambda db: intros.skip(db=db, round_id=round_id, member_id=member_id, now=now))
    assert sorted(skips) == [False] * (RACERS - 1) + [True]

    def enrol(db: Session) -> None:
        intros.set_enrolment(db=db, community_id=community_id, member_id=member_id, choice="out", now=now)

    _race(shared_engine, enrol)
    with Session(shared_engine) as db:
        assert intros.enrolments(db=db, community_id=community_id) == {member_id: "out"}

    def reflect(db: Session) -> int | None:
        row = rhythm.add_reflection(
            db=db, occurrence_id=occurrence_id, outbox_id=None, community_id=community_id, member_id=member_id,
            text="Handover at the bedside", source_channel="C1", source_message="1700000000.000200", now=now,
        )  # fmt: skip
        return row.id if row else None

    reflections = _race(shared_engine, reflect)
    assert len([r for r in reflections if r is not None]) == 1
