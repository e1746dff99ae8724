"""Story tables and storage functions: stories, their full-text search (SQLite FTS5 | PostgreSQL tsvector), captures.

The search index is not a SQLModel table: migration 0003_stories creates it (an FTS5 external-content table kept in
step by triggers on SQLite; a generated `tsvector` column with a GIN index on PostgreSQL), and `include_object` keeps
it out of the models-versus-migrations comparison.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

from sqlalchemy import Column, ForeignKey, Index, Integer, UniqueConstraint, text
from sqlmodel import Field, Session, SQLModel, col, select

from storage.models import Community, Role
from storage.repository import insert_or_ignore
from storage.types import UTCDateTime

TITLE_MAX = 150
TEXT_MAX = 3000  # Slack's plain_text_input limit
RECOGNISED_MAX = 2000
GROUP_MAX = 200
THEMES_MAX = 500
TEXT_FIELDS = ("title", "situation", "action", "why_it_works", "impact")


class StoryStatus(StrEnum):
    """Where a story is in its life."""

    DRAFT = "draft"  # a capture was started (a form is open); no text is stored yet
    AWAITING_AUTHOR = "awaiting_author"  # captured from someone else's message: waits for the author's consent
    PUBLISHED = "published"
    WITHDRAWN = "withdrawn"  # withdrawn by the author or a facilitator, or declined by the author


class ConsentScope(StrEnum):
    """Who may see a published story."""

    COMMUNITY = "community"  # members of its community
    ALL_COMMUNITIES = "all_communities"  # everyone in the workspace
    SAFETY_TEAM = "safety_team"  # the community's facilitators (who pass it to the patient safety team)


class StorySource(StrEnum):
    """How a story was captured."""

    FORM = "form"
    SHORTCUT = "shortcut"
    REACTION = "reaction"
    REPLY = "reply"
    CONSOLE = "console"


class Story(SQLModel, table=True):
    """A "what's working" story, Learning-from-Excellence shaped. The author is private unless `show_name`."""

    __tablename__ = "story"
    __table_args__ = (
        UniqueConstraint("source_channel_id", "source_message_id", name="uq_story_source"),
        Index("ix_story_status_published", "status", "published_at"),
        Index("ix_story_community_status", "community_id", "status"),
    )

    id: int | None = Field(default=None, primary_key=True)
    # None only while a draft from a message shortcut waits for its form (the form names the community).
    community_id: int | None = Field(
        default=None, sa_column=Column(Integer, ForeignKey("community.id", ondelete="CASCADE"), nullable=True)
    )
    author_member_id: int | None = Field(
        default=None,
        sa_column=Column(Integer, ForeignKey("member.id", ondelete="SET NULL"), nullable=True, index=True),
    )
    capturer_member_id: int | None = Field(
        default=None, sa_column=Column(Integer, ForeignKey("member.id", ondelete="SET NULL"), nullable=True)
    )
    title: str = Field(default="", max_length=TITLE_MAX)
    situation: str = Field(default="", max_length=TEXT_MAX)
    action: str = Field(default="", max_length=TEXT_MAX)
    why_it_works: str = Field(default="", max_length=TEXT_MAX)
    impact: str = Field(default="", max_length=TEXT_MAX)
    recognised: str = Field(default="", max_length=RECOGNISED_MAX)  # platform user ids, comma-separated
    recognised_group: str = Field(default="", max_length=GROUP_MAX)  # a team or group thanked, as typed
    themes: str = Field(default="", max_length=THEMES_MAX)  # theme ids from prompts/themes.toml, comma-separated
    consent_scope: str = Field(default=ConsentScope.COMMUNITY, max_length=16)
    show_name: bool = Field(default=False)
    source: str = Field(default=StorySource.FORM, max_length=16)
    source_link: str | None = Field(default=None, max_length=500)
    source_channel_id: str | None = Field(default=None, max_length=128)
    source_message_id: str | None = Field(default=None, max_length=64)
    status: str = Field(default=StoryStatus.DRAFT, max_length=16)
    card_channel_id: str | None = Field(default=None, max_length=128)
    card_message_id: str | None = Field(default=None, max_length=64)
    created_at: dt.datetime = Field(sa_type=UTCDateTime)
    updated_at: dt.datetime = Field(sa_type=UTCDateTime)
    published_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    withdrawn_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)

    @property
    def recognised_ids(self) -> list[str]:
        """The recognised people's platform user ids."""
        return [u for u in self.recognised.split(",") if u]

    @property
    def theme_ids(self) -> list[str]:
        """The story's theme ids."""
        return [t for t in self.themes.split(",") if t]


@dataclass(frozen=True)
class StoryContent:
    """What a person wrote: the text fields and their choices (validated and PII-checked by the caller)."""

    title: str
    situation: str = ""
    action: str = ""
    why_it_works: str = ""
    impact: str = ""
    recognised: tuple[str, ...] = ()
    recognised_group: str = ""
    themes: tuple[str, ...] = ()
    consent_scope: ConsentScope = ConsentScope.COMMUNITY
    show_name: bool = False


@dataclass(frozen=True)
class StoryHit:
    """One search result: the story, its community's name and a short snippet (`⟦…⟧` marks matched words)."""

    story: Story
    community_name: str
    snippet: str
    rank: float


# ---------------------------------------------------------------------------------------------------------------
# The search index (created by migration 0003_stories; named here so drift checks and queries agree on it).
# Its SQL below is assembled only from this module's constants (S608); every value is a bound parameter.
# ---------------------------------------------------------------------------------------------------------------

FTS_TABLE = "story_fts"
PG_VECTOR_COLUMN = "search_vector"
PG_SEARCH_INDEX = "ix_story_search_vector"
MARK_START, MARK_END = "\u27e6", "\u27e7"  # ⟦ ⟧: never typed by people, so a snippet's marks are unambiguous

_SEARCH_TABLES = frozenset({FTS_TABLE, *(f"{FTS_TABLE}_{s}" for s in ("data", "idx", "docsize", "config", "content"))})


def include_object(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
    """Alembic `include_object` hook: the search index lives only in the migration, not in the models."""
    if type_ == "table" and name in _SEARCH_TABLES:
        return False
    if type_ == "column" and name == PG_VECTOR_COLUMN:
        return False
    return not (type_ == "index" and name == PG_SEARCH_INDEX)


def rebuild_search_index(db: Session) -> None:
    """Re-read every story into the index (SQLite FTS5 'rebuild'; PostgreSQL's generated column keeps itself)."""
    if _dialect(db) == "sqlite":
        db.execute(text("INSERT INTO story_fts(story_fts) VALUES ('rebuild')"))


# ---------------------------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------------------------


def _apply(story: Story, content: StoryContent) -> None:
    story.title = content.title
    story.situation = content.situation
    story.action = content.action
    story.why_it_works = content.why_it_works
    story.impact = content.impact
    story.recognised = ",".join(dict.fromkeys(content.recognised))
    story.recognised_group = content.recognised_group
    story.themes = ",".join(dict.fromkeys(content.themes))
    story.consent_scope = content.consent_scope
    story.show_name = content.show_name


def create_story(
    *,
    db: Session,
    community_id: int,
    author_member_id: int | None,
    capturer_member_id: int | None,
    content: StoryContent,
    source: StorySource,
    status: StoryStatus,
    now: dt.datetime,
) -> Story:
    """A new story with no source message (the `/cop story` form)."""
    story = Story(
        community_id=community_id,
        author_member_id=author_member_id,
        capturer_member_id=capturer_member_id,
        source=source,
        status=status,
        created_at=now,
        updated_at=now,
    )
    _apply(story, content)
    if status == StoryStatus.PUBLISHED:
        story.published_at = now
    db.add(story)
    db.flush()
    return story


def story_by_source(*, db: Session, channel_id: str, message_id: str) -> Story | None:
    """The story captured from this message, if any."""
    return db.exec(
        select(Story).where(Story.source_channel_id == channel_id, Story.source_message_id == message_id)
    ).first()


def claim_source(
    *,
    db: Session,
    community_id: int | None,
    channel_id: str,
    message_id: str,
    source_link: str | None,
    source: StorySource,
    author_member_id: int | None,
    capturer_member_id: int | None,
    now: dt.datetime,
) -> tuple[Story, bool]:
    """The one story for a source message: (existing, False), or a new text-less draft and True.

    Two captures of the same message (a retry, two reactions, two processes) meet at the unique constraint: an
    insert-or-ignore, so the loser reads the winner's row and the caller's transaction carries on.
    """
    existing = story_by_source(db=db, channel_id=channel_id, message_id=message_id)
    if existing is not None:
        return existing, False
    story = Story(
        community_id=community_id,
        author_member_id=author_member_id,
        capturer_member_id=capturer_member_id,
        source=source,
        source_link=source_link,
        source_channel_id=channel_id,
        source_message_id=message_id,
        status=StoryStatus.DRAFT,
        created_at=now,
        updated_at=now,
    )
    created = insert_or_ignore(db=db, row=story, keys=("source_channel_id", "source_message_id"))
    claimed = story_by_source(db=db, channel_id=channel_id, message_id=message_id)
    if claimed is None:  # only an erasure committed between the two statements gets here
        raise LookupError("the story was deleted while being captured")
    return claimed, created


def get_story(*, db: Session, story_id: int) -> Story | None:
    """The story with this id, if any."""
    return db.get(Story, story_id)


def update_content(*, db: Session, story: Story, content: StoryContent, now: dt.datetime) -> Story:
    """Replace what the story says (and the author's choices)."""
    _apply(story, content)
    story.updated_at = now
    db.add(story)
    db.flush()
    return story


def set_status(*, db: Session, story: Story, status: StoryStatus, now: dt.datetime) -> Story:
    """Move the story to `status`, stamping when it was published or withdrawn."""
    story.status = status
    story.updated_at = now
    if status == StoryStatus.PUBLISHED and story.published_at is None:
        story.published_at = now
    if status == StoryStatus.WITHDRAWN:
        story.withdrawn_at = now
    db.add(story)
    db.flush()
    return story


def clear_content(*, db: Session, story: Story, now: dt.datetime) -> Story:
    """Forget what the story says (an author declined it): the row stays so the message isn't offered again."""
    _apply(story, StoryContent(title=""))
    story.updated_at = now
    db.add(story)
    db.flush()
    return story


def set_card(*, db: Session, story: Story, channel_id: str, message_id: str) -> Story:
    """Remember where the story's card was posted."""
    story.card_channel_id = channel_id
    story.card_message_id = message_id
    db.add(story)
    return story


def clear_card(*, db: Session, story: Story) -> Story:
    """Forget the posted card (it was replaced by a short line), so a later change of scope posts a new one."""
    story.card_channel_id = None
    story.card_message_id = None
    db.add(story)
    return story


# ---------------------------------------------------------------------------------------------------------------
# Reading: visibility, latest, search, export
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Readers:
    """Which consent scopes each kind of viewer may read: decided by `handlers.consent`, applied here in SQL."""

    anyone: frozenset[ConsentScope]  # anyone in the workspace
    members: frozenset[ConsentScope]  # members of the story's community
    facilitators: frozenset[ConsentScope]  # facilitators of the story's community


def _scope_list(scopes: frozenset[ConsentScope]) -> str:
    # The values are the enum's own constants, never user input, so they can be written into the statement.
    return ", ".join(f"'{ConsentScope(s).value}'" for s in sorted(scopes)) or "NULL"


def _visible_sql(readers: Readers) -> str:
    """The WHERE clause of "published stories this viewer may see" (the author always sees their own)."""
    return f"""
    s.status = 'published' AND c.platform = :platform AND c.workspace_id = :workspace_id AND (
        s.consent_scope IN ({_scope_list(readers.anyone)})
        OR s.author_member_id = :viewer
        OR (s.consent_scope IN ({_scope_list(readers.members)})
            AND s.community_id IN (SELECT community_id FROM membership WHERE member_id = :viewer))
        OR (s.consent_scope IN ({_scope_list(readers.facilitators)})
            AND s.community_id IN (SELECT community_id FROM membership WHERE member_id = :viewer AND role = :fac))
    )"""  # noqa: S608 (only the enum's constants are interpolated, see _scope_list)


@dataclass(frozen=True)
class QueryTerm:
    """One part of a search: a word, a prefix (`hand*`) or a quoted phrase."""

    kind: Literal["word", "prefix", "phrase"]
    words: tuple[str, ...]


_QUERY_PART = re.compile(r'"([^"]*)"?|(\S+)')
_WORD = re.compile(r"\w+", re.UNICODE)
MAX_TERMS = 12
RANK_WINDOW = 1000  # the newest matches ranked by relevance when a search matches more stories than this
COMMON_WORD_STORIES = 10_000  # SQLite: a word in more stories than this makes a search list newest first


def parse_query(words: str) -> list[QueryTerm]:
    """Split what a person typed into words, prefixes and "phrases"; punctuation and operators are ignored."""
    terms: list[QueryTerm] = []
    normalised = words.replace("\u201c", '"').replace("\u201d", '"')
    for m in _QUERY_PART.finditer(normalised):
        if m.group(1) is not None:
            parts = tuple(w.lower() for w in _WORD.findall(m.group(1)))
            if len(parts) == 1:
                terms.append(QueryTerm("word", parts))
            elif parts:
                terms.append(QueryTerm("phrase", parts))
            continue
        raw = m.group(2)
        prefix = raw.endswith("*")
        parts = tuple(w.lower() for w in _WORD.findall(raw))
        if not parts:
            continue
        if len(parts) > 1:  # "e-obs", "o'clock": the tokenizer splits them, so match them as a phrase
            terms.append(QueryTerm("phrase", parts))
        elif prefix:
            terms.append(QueryTerm("prefix", parts))
        else:
            terms.append(QueryTerm("word", parts))
    return terms[:MAX_TERMS]


def _fts5_words(terms: Sequence[QueryTerm]) -> list[str]:
    """Each word of the search as its own FTS5 query (a prefix keeps its `*`)."""
    return [f'"{w}"*' if t.kind == "prefix" else f'"{w}"' for t in terms for w in t.words]


def _count_sqlite(db: Session, query: str, *, cap: int) -> int:
    """How many stories match, counting no further than cap + 1 (cheap: no ranking)."""
    return int(
        db.execute(
            text("SELECT count(*) FROM (SELECT rowid FROM story_fts WHERE story_fts MATCH :q LIMIT :n)"),
            {"q": query, "n": cap + 1},
        ).scalar_one()
    )


def _common_sqlite(db: Session, word: str) -> bool:
    return _count_sqlite(db, word, cap=COMMON_WORD_STORIES) > COMMON_WORD_STORIES


def _fts5_query(terms: Sequence[QueryTerm]) -> str:
    parts = []
    for term in terms:
        quoted = '"' + " ".join(term.words) + '"'
        parts.append(quoted + "*" if term.kind == "prefix" else quoted)
    return " ".join(parts)  # implicit AND


def _params(platform: str, workspace_id: str, viewer_member_id: int) -> dict[str, Any]:
    return {"platform": platform, "workspace_id": workspace_id, "viewer": viewer_member_id, "fac": Role.FACILITATOR}


def latest_stories(
    *, db: Session, platform: str, workspace_id: str, viewer_member_id: int, readers: Readers, limit: int = 10
) -> list[StoryHit]:
    """The newest published stories the viewer may see."""
    rows = db.execute(
        text(
            "SELECT s.id, c.name FROM story s JOIN community c ON c.id = s.community_id "  # noqa: S608
            f"WHERE {_visible_sql(readers)} ORDER BY s.published_at DESC, s.id DESC LIMIT :limit"
        ),
        {**_params(platform, workspace_id, viewer_member_id), "limit": limit},
    ).all()
    return _hits(db, [(int(r[0]), str(r[1]), 0.0) for r in rows])


def search_stories(
    *,
    db: Session,
    platform: str,
    workspace_id: str,
    viewer_member_id: int,
    readers: Readers,
    words: str,
    limit: int = 10,
) -> list[StoryHit]:
    """Ranked full-text search over every text field of the stories the viewer may see; no words = the latest.

    Words must all match (stemmed: "handovers" finds "handover"); `hand*` matches a prefix; "a phrase" matches in
    order. SQLite uses FTS5 with bm25 (title weighted highest); PostgreSQL uses the weighted `tsvector` and ts_rank.
    """
    terms = parse_query(words)
    if not terms:
        return latest_stories(
            db=db,
            platform=platform,
            workspace_id=workspace_id,
            viewer_member_id=viewer_member_id,
            readers=readers,
            limit=limit,
        )
    params = _params(platform, workspace_id, viewer_member_id)
    if _dialect(db) == "postgresql":
        return _search_postgresql(db, terms, params, readers, limit)
    return _search_sqlite(db, terms, params, readers, limit)


def _search_sqlite(
    db: Session, terms: Sequence[QueryTerm], params: dict[str, Any], readers: Readers, limit: int
) -> list[StoryHit]:
    visible = _visible_sql(readers)
    query = _fts5_query(terms)
    if any(_common_sqlite(db, word) for word in _fts5_words(terms)):
        # bm25 first counts every story holding each word (its IDF): for a word in most of a million stories that
        # alone takes 40-150 ms. Relevance among so many is mostly noise, so these searches list newest first,
        # streaming from the index until enough visible stories are found.
        newest = db.execute(
            text(
                "SELECT s.id, c.name FROM story_fts f JOIN story s ON s.id = f.rowid "  # noqa: S608
                "JOIN community c ON c.id = s.community_id "
                f"WHERE story_fts MATCH :q AND {visible} ORDER BY f.rowid DESC LIMIT :limit"
            ),
            {**params, "q": query, "limit": limit},
        ).all()
        return _hits(db, [(int(r[0]), str(r[1]), 0.0) for r in newest], terms=terms)
    # Every word is in at most COMMON_WORD_STORIES stories, so bm25 is cheap per story; rank the newest
    # RANK_WINDOW matches (all of them, usually) and widen when the visibility filter leaves too few.
    window: int | None = RANK_WINDOW
    rows: list[Any] = []
    while True:
        inner = "SELECT rowid, rank FROM story_fts WHERE story_fts MATCH :q ORDER BY rowid DESC"
        values: dict[str, Any] = {**params, "q": query, "limit": limit}
        if window is not None:
            inner += " LIMIT :window"
            values["window"] = window
        statement = text(
            f"SELECT s.id, c.name, f.rank FROM ({inner}) f JOIN story s ON s.id = f.rowid "  # noqa: S608
            "JOIN community c ON c.id = s.community_id "
            f"WHERE {visible} ORDER BY f.rank, s.id DESC LIMIT :limit"
        )
        rows = list(db.execute(statement, values).all())
        if len(rows) >= limit or window is None:
            break
        if _count_sqlite(db, query, cap=window) <= window:
            break
        window = window * 10 if window < 100_000 else None
    # bm25 is lower-is-better; report higher-is-better like PostgreSQL.
    return _hits(db, [(int(r[0]), str(r[1]), -float(r[2])) for r in rows], terms=terms)


def _search_postgresql(
    db: Session, terms: Sequence[QueryTerm], params: dict[str, Any], readers: Readers, limit: int
) -> list[StoryHit]:
    visible = _visible_sql(readers)
    parts: list[str] = []
    values: dict[str, Any] = {**params, "limit": limit}
    for i, term in enumerate(terms):
        key = f"t{i}"
        if term.kind == "phrase":
            parts.append(f"phraseto_tsquery('english', :{key})")
            values[key] = " ".join(term.words)
        elif term.kind == "prefix":
            # The word goes through the dictionary (so "nursing*" and "nurse*" both find "nurses") then ':*'.
            parts.append(f"to_tsquery('english', :{key} || ':*')")
            values[key] = term.words[0]
        else:
            parts.append(f"plainto_tsquery('english', :{key})")
            values[key] = term.words[0]
    tsquery = "(" + " && ".join(parts) + ")"
    # As on SQLite: rank the newest RANK_WINDOW matches, widening when the visibility filter leaves too few.
    # Plan each search for its own words: a generic plan (psycopg prepares repeated statements) cannot know that
    # "check" is in every story and "endoscopy" in few, and picks the wrong index for one of them.
    db.execute(text("SET LOCAL plan_cache_mode = force_custom_plan"))
    window: int | None = RANK_WINDOW
    rows: list[Any] = []
    while True:
        bounded = " LIMIT :window" if window is not None else ""
        values["window"] = window
        # The query is written inline (not in a CTE) so the planner sees the words: a rare word goes through the
        # GIN index, a common one walks the primary key backwards and stops at the window.
        statement = text(
            f"WITH matches AS MATERIALIZED (SELECT s.id, ts_rank(s.search_vector, {tsquery}) AS rank FROM story s "  # noqa: S608
            f"WHERE s.search_vector @@ {tsquery} ORDER BY s.id DESC{bounded}) "
            "SELECT m.id, c.name, m.rank FROM matches m JOIN story s ON s.id = m.id "
            "JOIN community c ON c.id = s.community_id "
            f"WHERE {visible} ORDER BY m.rank DESC, m.id DESC LIMIT :limit"
        )
        rows = list(db.execute(statement, values).all())
        if len(rows) >= limit or window is None:
            break
        matched = db.execute(
            text(f"SELECT count(*) FROM (SELECT 1 FROM story WHERE search_vector @@ ({tsquery}) LIMIT :n) m"),  # noqa: S608
            {**values, "n": window + 1},
        ).scalar_one()
        if int(matched) <= window:
            break
        window = window * 10 if window < 100_000 else None
    if not rows and all(t.kind == "word" for t in terms):
        # Only stop words ("the", "and"): nothing to search for, so show the latest instead of nothing.
        probe = db.execute(text(f"SELECT numnode({tsquery})"), values).scalar_one()
        if int(probe) == 0:
            return latest_stories(
                db=db,
                platform=params["platform"],
                workspace_id=params["workspace_id"],
                viewer_member_id=params["viewer"],
                readers=readers,
                limit=limit,
            )
    return _hits(db, [(int(r[0]), str(r[1]), float(r[2])) for r in rows], terms=terms)


def _hits(db: Session, rows: Sequence[tuple[int, str, float]], *, terms: Sequence[QueryTerm] = ()) -> list[StoryHit]:
    if not rows:
        return []
    ids = [r[0] for r in rows]
    stories = {s.id: s for s in db.exec(select(Story).where(col(Story.id).in_(ids)))}
    hits = []
    for story_id, community_name, rank in rows:
        story = stories.get(story_id)
        if story is not None:
            hits.append(StoryHit(story, community_name, snippet(story, terms), rank))
    return hits


SNIPPET_CHARS = 110


def _highlighter(terms: Sequence[QueryTerm]) -> re.Pattern[str] | None:
    """One pattern for the searched words, close to the engines' stemming: the word or its stem, or the prefix."""
    parts: list[str] = []
    for term in terms:
        for wanted in term.words:
            if term.kind == "prefix" or len(wanted) < 4:
                parts.append(re.escape(wanted) + (r"\w*" if term.kind == "prefix" else r"\b"))
            else:
                parts.append(re.escape(wanted[: max(4, len(wanted) - 2)]) + r"\w*")
    return re.compile(r"\b(?:" + "|".join(parts) + ")", re.IGNORECASE) if parts else None


def snippet(story: Story, terms: Sequence[QueryTerm]) -> str:
    """A short extract of the first field that matches (the title last), matched words between MARK_START/MARK_END.

    Made here rather than by FTS5's snippet() or PostgreSQL's ts_headline so both backends give the same extract,
    and because both of those re-read the document (a millisecond or more per result on a large table).
    """
    fields = [f for f in (story.situation, story.action, story.why_it_works, story.impact, story.title) if f]
    if not fields:
        return ""
    pattern = _highlighter(terms)
    best, at = fields[0], 0
    if pattern is not None:
        for field in fields:
            found = pattern.search(field)
            if found is not None:
                best, at = field, found.start()
                break
    start = max(0, best.rfind(" ", 0, max(0, at - SNIPPET_CHARS // 3)) + 1) if at > SNIPPET_CHARS // 3 else 0
    end = len(best) if len(best) - start <= SNIPPET_CHARS else best.rfind(" ", start, start + SNIPPET_CHARS)
    end = end if end > start else min(len(best), start + SNIPPET_CHARS)
    extract = best[start:end]
    if pattern is not None:
        extract = pattern.sub(lambda m: f"{MARK_START}{m.group()}{MARK_END}", extract)
    return ("…" if start > 0 else "") + extract + ("…" if end < len(best) else "")


def exportable_stories(*, db: Session, community_id: int, scopes: Collection[ConsentScope]) -> list[Story]:
    """The community's published stories whose consent scope is one of `scopes`, oldest first."""
    return list(
        db.exec(
            select(Story)
            .where(
                Story.community_id == community_id,
                Story.status == StoryStatus.PUBLISHED,
                col(Story.consent_scope).in_([str(s) for s in scopes]),
            )
            .order_by(col(Story.published_at), col(Story.id))
        )
    )


def published_titles_since(
    *, db: Session, community_id: int, since: dt.datetime, scopes: Collection[ConsentScope]
) -> list[str]:
    """Titles of the community's stories of `scopes` published since a time, oldest first (for digests)."""
    rows = db.exec(
        select(Story.title)
        .where(
            Story.community_id == community_id,
            Story.status == StoryStatus.PUBLISHED,
            col(Story.consent_scope).in_([str(s) for s in scopes]),
            col(Story.published_at) >= since,
        )
        .order_by(col(Story.published_at), col(Story.id))
    )
    return [str(title) for title in rows]


def stories_by_author(*, db: Session, author_member_id: int) -> list[Story]:
    """Every story the member is the author of (any status), newest first."""
    return list(db.exec(select(Story).where(Story.author_member_id == author_member_id).order_by(col(Story.id).desc())))


def community_names(*, db: Session, community_ids: Collection[int]) -> dict[int, str]:
    """Community names by id."""
    if not community_ids:
        return {}
    rows = db.exec(select(Community.id, Community.name).where(col(Community.id).in_(list(community_ids))))
    return {int(i): n for i, n in rows if i is not None}


def _dialect(db: Session) -> str:
    return db.get_bind().dialect.name
