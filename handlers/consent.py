"""The one consent rule: where a story's title and text may appear, decided by its consent scope.

Every exit that shows a story (the channel card, search, `/cop story <n>`, digests, exports, reports, thank-you DMs,
the Home tab) asks `allowed(scope, audience)`, where the audience is the least trusted person who will see it:

| scope             | who may read it                          | channel card             | public digest | export |
|-------------------|------------------------------------------|--------------------------|---------------|--------|
| `all_communities` | everyone in the workspace                | its community's channel  | yes           | yes    |
| `community`       | members of its community                 | its community's channel  | yes           | yes    |
| `safety_team`     | its community's facilitators             | never: facilitators' DMs | no            | yes    |

The author always sees their own stories. Exports and reports go to facilitators only, so they hold every scope
(each row says which). A thank-you DM to a person recognised in a story names the story only when that person may
read it; otherwise it thanks them without the title.
"""

from __future__ import annotations

from enum import IntEnum

from sqlmodel import Session, select

from storage.models import Membership, Role
from storage.stories import ConsentScope, Readers, Story, StoryStatus


class Audience(IntEnum):
    """Who will see something, from the least to the most trusted (a higher audience reads everything a lower one
    can)."""

    WORKSPACE = 0  # anyone on the platform: search in another community, a person recognised who is no member
    MEMBER = 1  # members of the story's community: its channel, its public digest
    FACILITATOR = 2  # the community's facilitators: exports, reports, safety-team cards
    AUTHOR = 3  # the story's author


# The least trusted audience that may read a story of each scope.
_READERS: dict[ConsentScope, Audience] = {
    ConsentScope.ALL_COMMUNITIES: Audience.WORKSPACE,
    ConsentScope.COMMUNITY: Audience.MEMBER,
    ConsentScope.SAFETY_TEAM: Audience.FACILITATOR,
}

# Where each exit puts a story, as the audience that will see it there.
CHANNEL = Audience.MEMBER  # the community's channel (cards, digests, prompt posts)
EXPORT = Audience.FACILITATOR  # files and reports sent to a facilitator


def allowed(scope: ConsentScope | str, audience: Audience) -> bool:
    """Whether a story of `scope` may be shown to `audience`: the one rule every exit calls."""
    return audience >= _READERS[ConsentScope(scope)]


def scopes_for(audience: Audience) -> frozenset[ConsentScope]:
    """Every scope `audience` may read (for queries that filter in the database)."""
    return frozenset(scope for scope in ConsentScope if allowed(scope, audience))


def audience_of(*, db: Session, story: Story, member_id: int | None) -> Audience:
    """How the member stands to the story: its author, a facilitator or member of its community, or neither."""
    if member_id is not None and story.author_member_id == member_id:
        return Audience.AUTHOR
    if member_id is None or story.community_id is None:
        return Audience.WORKSPACE
    row = db.exec(
        select(Membership).where(Membership.community_id == story.community_id, Membership.member_id == member_id)
    ).first()
    if row is None:
        return Audience.WORKSPACE
    return Audience.FACILITATOR if row.role == Role.FACILITATOR else Audience.MEMBER


def may_see(*, db: Session, story: Story, member_id: int | None) -> bool:
    """Whether this member may see this story now: published, and within its consent scope."""
    audience = audience_of(db=db, story=story, member_id=member_id)
    if story.status != StoryStatus.PUBLISHED:
        return False
    return allowed(story.consent_scope, audience)


def readers() -> Readers:
    """The rule above in the shape storage's search applies in SQL."""
    return Readers(
        anyone=scopes_for(Audience.WORKSPACE),
        members=scopes_for(Audience.MEMBER),
        facilitators=scopes_for(Audience.FACILITATOR),
    )
