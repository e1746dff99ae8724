"""Story storage and search on SQLite (FTS5) and PostgreSQL (tsvector): one function, the same answers."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, text
from sqlmodel import Session

from handlers import consent
from storage import repository as repo
from storage import stories as store
from storage.models import Community, Member, Role
from storage.stories import ConsentScope, StoryContent, StorySource, StoryStatus

NOW = dt.datetime(2026, 11, 25, 9, 30, tzinfo=dt.UTC)


class World:
    """Two communities in one workspace, one in another; alice facilitates falls, bob is a member of it."""

    def __init__(self, db: Session) -> None:
        self.db = db
        self.alice = self.member("UA")
        self.bob = self.member("UB")
        self.carol = self.member("UC")  # in no community
        self.dan = self.member("UD")  # facilitates sepsis only
        self.falls = self.community("falls", self.alice)
        self.sepsis = self.community("sepsis", self.dan)
        repo.add_membership(db=db, community=self.falls, member=self.bob, now=NOW)
        other = repo.ensure_member(db=db, platform="slack", workspace_id="T2", user_id="UZ", now=NOW)
        self.elsewhere = self.community("falls", other, workspace="T2")

    def member(self, user: str) -> Member:
        return repo.ensure_member(db=self.db, platform="slack", workspace_id="T1", user_id=user, now=NOW)

    def community(self, slug: str, creator: Member, workspace: str = "T1") -> Community:
        return repo.create_community(
            db=self.db, platform="slack", workspace_id=workspace, slug=slug, name=slug.title(), purpose="",
            channel_id=f"C-{slug}-{workspace}", channel_name=f"cop-{slug}", timezone="Europe/London", creator=creator,
            now=NOW,
        )  # fmt: skip

    def story(
        self,
        title: str,
        *,
        community: Community | None = None,
        scope: ConsentScope = ConsentScope.COMMUNITY,
        status: StoryStatus = StoryStatus.PUBLISHED,
        minutes: int = 0,
        author: Member | None = None,
        **fields: str,
    ) -> int:
        content = StoryContent(
            title=title,
            situation=fields.get("situation", ""),
            action=fields.get("action", "We tried something."),
            why_it_works=fields.get("why_it_works", ""),
            impact=fields.get("impact", ""),
            themes=tuple(t for t in fields.get("themes", "").split(",") if t),
            consent_scope=scope,
        )
        story = store.create_story(
            db=self.db, community_id=(community or self.falls).id or 0, author_member_id=(author or self.alice).id,
            capturer_member_id=(author or self.alice).id, content=content, source=StorySource.FORM, status=status,
            now=NOW + dt.timedelta(minutes=minutes),
        )  # fmt: skip
        assert story.id is not None
        return story.id

    def search(self, words: str, viewer: Member | None = None, limit: int = 10) -> list[int]:
        hits = store.search_stories(
            db=self.db, platform="slack", workspace_id="T1", viewer_member_id=(viewer or self.bob).id or 0,
            readers=consent.readers(), words=words, limit=limit,
        )  # fmt: skip
        return [h.story.id or 0 for h in hits]


@pytest.fixture
def world(any_engine: Engine) -> Iterator[World]:
    with Session(any_engine, expire_on_commit=False) as db:
        w = World(db)
        db.commit()
        yield w
        db.rollback()


def test_words_in_any_field_are_found(world: World) -> None:
    ids = {
        "title": world.story("Bedside handover"),
        "situation": world.story("A", situation="Night shift on the stroke unit"),
        "action": world.story("B", action="We laminated the insulin chart"),
        "why": world.story("C", why_it_works="Pharmacists joined the board round"),
        "impact": world.story("D", impact="Families felt listened to"),
        "themes": world.story("E", themes="infection-prevention"),
    }
    world.db.commit()
    assert world.search("handover") == [ids["title"]]
    assert world.search("stroke") == [ids["situation"]]
    assert world.search("insulin") == [ids["action"]]
    assert world.search("pharmacist") == [ids["why"]]  # stemmed: "pharmacist" finds "Pharmacists"
    assert world.search("families") == [ids["impact"]]
    assert world.search("infection") == [ids["themes"]]


def test_ranking_prefixes_and_phrases(world: World) -> None:
    body = world.story("Night checks", action="A huddle at every handover and huddle again at noon")
    title = world.story("Huddle", action="Ten minutes, standing up")
    phrase = world.story("Words", action="the safety huddle happens daily")
    reversed_words = world.story("Other", action="huddle for safety")
    world.db.commit()
    assert world.search("huddle")[0] == title  # a title match outranks a body match
    assert set(world.search("huddle")) == {body, title, phrase, reversed_words}
    assert world.search("hand*") == [body]
    assert world.search('"safety huddle"') == [phrase]
    assert world.search("\u201csafety huddle\u201d") == [phrase]  # typographic quotes, as Slack types them
    assert set(world.search("safety huddle")) == {phrase, reversed_words}  # all words, any order
    assert world.search("huddle zebra") == []


def test_snippets_mark_the_matched_words(world: World) -> None:
    world.story("Falls sensor mats", action="We check every sensor mat at the start of each shift, with a sticker.")
    world.db.commit()
    hits = store.search_stories(
        db=world.db, platform="slack", workspace_id="T1", viewer_member_id=world.bob.id or 0,
        readers=consent.readers(), words="sticker",
    )  # fmt: skip
    assert f"{store.MARK_START}sticker{store.MARK_END}" in hits[0].snippet
    assert hits[0].community_name == "Falls"


def test_results_respect_consent_scope_status_and_workspace(world: World) -> None:
    community = world.story("Visible huddle")
    everyone = world.story("All huddle", community=world.sepsis, scope=ConsentScope.ALL_COMMUNITIES, author=world.dan)
    sepsis_only = world.story("Sepsis huddle", community=world.sepsis, author=world.dan)
    safety = world.story("Safety huddle", scope=ConsentScope.SAFETY_TEAM)
    world.story("Draft huddle", status=StoryStatus.DRAFT)
    world.story("Waiting huddle", status=StoryStatus.AWAITING_AUTHOR)
    world.story("Withdrawn huddle", status=StoryStatus.WITHDRAWN)
    world.story("Other workspace huddle", community=world.elsewhere, scope=ConsentScope.ALL_COMMUNITIES)
    world.db.commit()
    assert set(world.search("huddle", world.bob)) == {community, everyone}
    assert set(world.search("huddle", world.alice)) == {community, everyone, safety}  # facilitator (and author)
    assert set(world.search("huddle", world.carol)) == {everyone}
    assert set(world.search("huddle", world.dan)) == {everyone, sepsis_only}
    assert set(world.search("", world.bob)) == {community, everyone}


def test_search_applies_exactly_the_consent_rule(world: World) -> None:
    """Every (story, viewer) pair: the SQL filter finds the story iff `handlers.consent.may_see` says so."""
    ids = [
        world.story(f"Huddle {scope.value} {n}", scope=scope, community=community, author=author)
        for n, (scope, community, author) in enumerate(
            (scope, community, author)
            for scope in ConsentScope
            for community in (world.falls, world.sepsis)
            for author in (world.alice, world.dan)
        )
    ]
    world.db.commit()
    row = repo.membership(db=world.db, community=world.falls, member=world.bob)
    assert row is not None
    repo.set_role(db=world.db, row=row, role=Role.FACILITATOR)  # bob: a second facilitator of Falls
    world.db.commit()
    for viewer in (world.alice, world.bob, world.carol, world.dan):
        found = set(world.search("huddle", viewer, limit=100))
        for story_id in ids:
            story = store.get_story(db=world.db, story_id=story_id)
            assert story is not None
            expected = consent.may_see(db=world.db, story=story, member_id=viewer.id)
            assert (story_id in found) == expected, (viewer.user_id, story.title)


def test_no_words_or_only_punctuation_gives_the_latest(world: World) -> None:
    old = world.story("Old", minutes=0)
    new = world.story("New", minutes=5)
    world.db.commit()
    assert world.search("") == [new, old]
    assert world.search("  ?!  ") == [new, old]


@pytest.mark.parametrize("words", ['"', 'huddle"', "AND", "OR NOT", "NEAR(huddle", "-huddle", "*", "col:huddle", "^x"])
def test_query_syntax_never_reaches_the_engine(world: World, words: str) -> None:
    world.story("A huddle")
    world.db.commit()
    world.search(words)  # no error: operators are read as words or ignored


def test_edits_keep_the_index_in_step(world: World) -> None:
    story_id = world.story("Bed rails", action="Rails down at night")
    world.db.commit()
    story = store.get_story(db=world.db, story_id=story_id)
    assert story is not None
    store.update_content(
        db=world.db, story=story, content=StoryContent(title="Low beds", action="Lowered beds"), now=NOW
    )
    world.db.commit()
    assert world.search("rails") == []
    assert world.search("lowered") == [story_id]
    store.set_status(db=world.db, story=story, status=StoryStatus.WITHDRAWN, now=NOW)
    world.db.commit()
    assert world.search("lowered") == []
    store.clear_content(db=world.db, story=story, now=NOW)
    world.db.delete(story)
    world.db.commit()
    assert world.search("") == []


def test_a_common_word_ranks_the_newest_matches_and_widens_for_hidden_ones(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store, "RANK_WINDOW", 5)
    visible = world.story("Huddle in falls", minutes=0)
    for i in range(12):  # newer matches the viewer may not see push the visible one out of the first window
        world.story(f"Sepsis huddle {i}", community=world.sepsis, minutes=i + 1)
    world.db.commit()
    assert world.search("huddle", world.bob) == [visible]
    assert len(world.search("huddle", world.dan)) == 10


def test_the_same_source_message_is_claimed_once(world: World) -> None:
    first, created = store.claim_source(
        db=world.db, community_id=world.falls.id, channel_id="C1", message_id="1.1", source_link=None,
        source=StorySource.REACTION, author_member_id=world.bob.id, capturer_member_id=world.alice.id, now=NOW,
    )  # fmt: skip
    again, created_again = store.claim_source(
        db=world.db, community_id=world.falls.id, channel_id="C1", message_id="1.1", source_link=None,
        source=StorySource.SHORTCUT, author_member_id=world.bob.id, capturer_member_id=world.dan.id, now=NOW,
    )  # fmt: skip
    assert (created, created_again) == (True, False) and first.id == again.id
    world.db.commit()
    count = world.db.execute(text("SELECT count(*) FROM story WHERE source_message_id = '1.1'")).scalar_one()
    assert count == 1


def test_exportable_stories_are_published_and_in_scope(world: World) -> None:
    shown = world.story("Shown")
    world.story("Hidden", status=StoryStatus.WITHDRAWN)
    safety = world.story("Safety", scope=ConsentScope.SAFETY_TEAM)
    world.db.commit()
    rows = store.exportable_stories(db=world.db, community_id=world.falls.id or 0, scopes=[ConsentScope.COMMUNITY])
    assert [s.id for s in rows] == [shown]
    rows = store.exportable_stories(db=world.db, community_id=world.falls.id or 0, scopes=list(ConsentScope))
    assert [s.id for s in rows] == [shown, safety]


def test_very_common_words_list_the_newest_matches_first_on_sqlite(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store, "COMMON_WORD_STORIES", 2)
    old_title = world.story("Huddle", minutes=0)  # would win on relevance
    hidden = world.story("Sepsis huddle", community=world.sepsis, minutes=2)
    newer = [world.story(f"Note {i}", action="a huddle", minutes=3 + i) for i in range(3)]
    world.db.commit()
    found = world.search("huddle", world.bob)
    assert hidden not in found
    if world.db.get_bind().dialect.name == "sqlite":
        assert found == [*reversed(newer), old_title]
    else:  # PostgreSQL's ts_rank has no such cost: still ranked, the title match first
        assert found[0] == old_title
