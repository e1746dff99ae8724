"""`/cop export` on Teams: the file is offered with a file-consent card and reaches OneDrive only when allowed.

Signed activities go into the real HTTP app; the consent card goes out through the fake Bot Connector; Allow comes
back as a `fileConsent/invoke` whose upload URL points at a fake OneDrive upload session, which checks the PUTs.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
from sqlmodel import Session, select

from bot.teams import files
from storage import stories
from storage.stories import StoryContent, StorySource, StoryStatus
from storage.teams import TeamsPendingFile
from tests.bot.teams.conftest import Person, TeamsWorld
from tests.bot.teams.test_features_e2e import community, in_team, member_id, received
from tests.fakes.onedrive import FakeOneDrive


@pytest.fixture
def onedrive() -> Iterator[FakeOneDrive]:
    with FakeOneDrive() as fake:
        yield fake
        assert fake.all_violations == []


def attachments(world: TeamsWorld, person: Person, since: int) -> list[dict[str, Any]]:
    return [a for body in received(world, person, since) for a in body.get("attachments") or []]


def consent_invoke(world: TeamsWorld, person: Person, value: dict[str, Any]) -> dict[str, Any]:
    """Teams' invoke when someone answers a file-consent card in their 1:1 chat."""
    activity = world.personal_message("", person=person)
    activity.pop("text")
    activity.update(type="invoke", name=files.INVOKE, value=value)
    return activity


def pending(world: TeamsWorld) -> list[TeamsPendingFile]:
    with Session(world.engine) as db:
        return list(db.exec(select(TeamsPendingFile)))


def exported(world: TeamsWorld) -> dict[str, Any]:
    """Alice (facilitator) exports the community's stories; the consent card she gets."""
    in_team(world)
    with Session(world.engine) as db:  # one published story, so there is something to export
        falls = community(world)
        assert falls.id is not None
        stories.create_story(
            db=db, community_id=falls.id, author_member_id=member_id(world, world.alice),
            capturer_member_id=member_id(world, world.alice), content=StoryContent(title="Torch checks", action="x"),
            source=StorySource.FORM, status=StoryStatus.PUBLISHED, now=dt.datetime.now(dt.UTC),
        )  # fmt: skip
        db.commit()
    before = len(world.cloud.connector.calls)
    assert "I've sent you `stories-falls-prevention-" in world.say("export csv in:falls-prevention")
    [card] = [a for a in attachments(world, world.alice, before) if a["contentType"] == files.FILE_CONSENT]
    return card


def test_allowing_the_file_uploads_it_to_onedrive_and_shows_it(world: TeamsWorld, onedrive: FakeOneDrive) -> None:
    card = exported(world)
    assert card["name"].endswith(".csv")
    [waiting] = pending(world)
    assert card["content"]["sizeInBytes"] == len(waiting.content)
    info = onedrive.session(card["name"])
    allow = consent_invoke(
        world,
        world.alice,
        {"type": "fileUpload", "action": "accept", "context": card["content"]["acceptContext"], "uploadInfo": info},
    )

    before = len(world.cloud.connector.calls)
    assert world.post(allow).status_code == 200

    uploaded = onedrive.file(info)
    assert uploaded == waiting.content and b"title" in uploaded
    assert attachments(world, world.alice, before) == [
        {
            "contentType": files.FILE_INFO,
            "contentUrl": info["contentUrl"],
            "name": card["name"],
            "content": {"uniqueId": info["uniqueId"], "fileType": "csv"},
        }
    ]
    assert pending(world) == []  # the bytes left the database once delivered

    # The same card answered again (Teams does not, but a retry might): nothing is uploaded twice.
    before = len(world.cloud.connector.calls)
    assert world.post(allow).status_code == 200
    assert "no longer waiting" in world.replies_since(before)


def test_declining_forgets_the_file(world: TeamsWorld, onedrive: FakeOneDrive) -> None:
    card = exported(world)

    before = len(world.cloud.connector.calls)
    decline = {"type": "fileUpload", "action": "decline", "context": card["content"]["declineContext"]}
    assert world.post(consent_invoke(world, world.alice, decline)).status_code == 200

    assert "I haven't saved" in world.replies_since(before)
    assert pending(world) == []
    assert onedrive.uploads == {}


def allow(world: TeamsWorld, person: Person, card: dict[str, Any], info: dict[str, Any]) -> str:
    """`person` presses Allow on `card` and Teams hands copbot the upload session `info`; what copbot answers."""
    accept = {"type": "fileUpload", "action": "accept", "context": card["content"]["acceptContext"], "uploadInfo": info}
    before = len(world.cloud.connector.calls)
    assert world.post(consent_invoke(world, person, accept)).status_code == 200
    return world.replies_since(before)


def test_someone_else_cannot_take_the_file(world: TeamsWorld, onedrive: FakeOneDrive) -> None:
    card = exported(world)
    world.say("help", person=world.bob)  # Bob has a 1:1 chat with copbot
    info = onedrive.session(card["name"])

    assert "no longer waiting" in allow(world, world.bob, card, info)
    assert onedrive.file(info) is None
    assert len(pending(world)) == 1  # still Alice's to answer


def test_a_failed_upload_is_told_and_nothing_is_kept(world: TeamsWorld, onedrive: FakeOneDrive) -> None:
    card = exported(world)
    onedrive.faults.fail_next(403, code="accessDenied")
    info = onedrive.session(card["name"])

    assert "couldn't save" in allow(world, world.alice, card, info)
    assert onedrive.file(info) is None
    assert pending(world) == []


def test_a_file_nobody_answers_is_deleted_after_a_week(world: TeamsWorld) -> None:
    exported(world)
    world.runtime.container.run_due_work()
    assert len(pending(world)) == 1

    world.clock.advance(dt.timedelta(days=files.PENDING_FILE_DAYS, minutes=1))
    world.runtime.container.run_due_work()

    assert pending(world) == []
