"""Stories: capture "what's working" (form, message shortcut, reaction), consent, PII guard, publish, search, export.

Every capture path ends in `capture`: it validates, runs the PII guard before anything is stored or posted, then
publishes (the author saved it) or asks the message's author for consent (someone else did).
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import html
import io
import logging
import re
import zoneinfo
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from handlers import communities, consent
from handlers.communities import channel_mention, find_community, require_facilitator, require_live
from handlers.context import Context, row_id
from handlers.errors import Conflict, DomainError, FieldErrors, NotAllowed, PlatformError, UsageError
from handlers.grammar import ParsedCommand
from handlers.ports import Button, Form, FormField, Message, Reply, Section
from handlers.privacy import PiiHit, check_fields, guard, incident_pointer
from handlers.text import clip
from prompts.library import themes
from storage import repository as repo
from storage import stories as store
from storage.models import Community, Member, Role
from storage.rhythm import Reflection
from storage.stories import ConsentScope, Story, StoryContent, StorySource, StoryStatus

log = logging.getLogger(__name__)

FORM_ID = "story"
ACTION_APPROVE = "story.approve"
ACTION_APPROVE_NAMED = "story.approve_named"
ACTION_DECLINE = "story.decline"
ACTION_EDIT = "story.edit"
ACTION_WITHDRAW = "story.withdraw"
TITLE_MAX = store.TITLE_MAX
TEXT_MAX = store.TEXT_MAX
GROUP_MAX = store.GROUP_MAX
RECOGNISED_MAX = 20
# One wording whether the story does not exist or is not the person's to see, so a refusal reveals nothing.
_NO_SUCH_STORY = "There's no story {ref} that you can see."
SEARCH_LIMIT = 10
STORY_EXAMPLE = "/cop story"
EXPORT_FORMATS = ("csv", "md", "html")

LABELS: dict[str, str] = {
    "title": "Title",
    "situation": "The situation",
    "action": "What was done",
    "why_it_works": "Why it works",
    "impact": "The difference it made",
    "recognised": "People to recognise",
    "recognised_group": "Team or group to thank",
}
SCOPE_LABELS: dict[ConsentScope, str] = {
    ConsentScope.COMMUNITY: "Members of this community",
    ConsentScope.ALL_COMMUNITIES: "Everyone in every community",
    ConsentScope.SAFETY_TEAM: "Only the facilitators and patient safety team",
}
SCOPE_AUDIENCE: dict[ConsentScope, str] = {
    ConsentScope.COMMUNITY: "the members of the community",
    ConsentScope.ALL_COMMUNITIES: "everyone in every community",
    ConsentScope.SAFETY_TEAM: "only its facilitators and the patient safety team",
}
_YES = {"yes", "y", "true", "1", "on", "show"}
_USER_TOKEN = re.compile(r"<@([A-Za-z0-9._\-]+)(?:\|[^>]*)?>|@?([A-Za-z0-9._\-]{1,64})")


@dataclass(frozen=True)
class SourceMessage:
    """A chat message someone wants to save as a story, as the adapter found it (text is never logged)."""

    channel_id: str
    message_id: str
    author_user_id: str | None
    text: str
    link: str | None = None
    from_bot: bool = False


# ---------------------------------------------------------------------------------------------------------------
# Text helpers
# ---------------------------------------------------------------------------------------------------------------


def _snippet(raw: str) -> str:
    cleaned = " ".join(raw.split()).replace("*", "")
    return cleaned.replace(store.MARK_START, "*").replace(store.MARK_END, "*")


# ---------------------------------------------------------------------------------------------------------------
# The form
# ---------------------------------------------------------------------------------------------------------------


def story_form(
    ctx: Context,
    *,
    community: Community | None,
    story: Story | None = None,
    prefill: StoryContent | None = None,
    context: str = "",
    ask_community: bool = True,
    by_author: bool = True,
) -> Form:
    """The story form, pre-filled from a story being edited or a message being captured.

    `by_author` is False when someone saves another person's message: only the author decides whether their name is
    shown (they are asked when they approve), so the saver's form does not offer it."""
    content = prefill or (_content_of(story) if story is not None else StoryContent(title=""))
    fields: list[FormField] = []
    if ask_community:
        inv = ctx.invocation
        live = repo.communities(db=ctx.db, platform=inv.actor.platform, workspace_id=inv.actor.workspace_id)
        mine = {c.id for c, _ in repo.communities_of(db=ctx.db, member=ctx.actor)}
        ordered = sorted(live, key=lambda c: (c.id not in mine, c.name.casefold()))
        fields.append(
            FormField(
                "community",
                "Community",
                kind="select",
                required=True,
                initial=str(community.id) if community is not None else "",
                options=tuple((str(c.id), c.name) for c in ordered[:100]),
                hint="Which community is this story for? (its name or short name)",
            )
        )
    fields += [
        FormField("title", LABELS["title"], required=True, initial=content.title, max_length=TITLE_MAX,
                  hint="A short headline, e.g. “Safety huddles before every shift”"),
        FormField("situation", LABELS["situation"], kind="multiline", initial=content.situation, max_length=TEXT_MAX,
                  hint="What was going on? No patient details, please."),
        FormField("action", LABELS["action"], kind="multiline", required=True, initial=content.action,
                  max_length=TEXT_MAX, hint="What did you or the team do?"),
        FormField("why_it_works", LABELS["why_it_works"], kind="multiline", initial=content.why_it_works,
                  max_length=TEXT_MAX, hint="What made it work? What would someone need to try it?"),
        FormField("impact", LABELS["impact"], kind="multiline", initial=content.impact, max_length=TEXT_MAX,
                  hint="For patients, families or staff"),
        FormField("recognised", LABELS["recognised"], kind="users", initial=" ".join(content.recognised),
                  hint="Colleagues to thank (each gets a private thank-you)"),
        FormField("recognised_group", LABELS["recognised_group"], initial=content.recognised_group,
                  max_length=GROUP_MAX, hint="A team or group, e.g. the night team on ward 7"),
        FormField("themes", "Themes", kind="multiselect", initial=",".join(content.themes),
                  options=tuple((t.id, t.label) for t in themes()),
                  hint="Theme ids, separated by commas, e.g. handover, teamwork"),
        FormField("consent_scope", "Who may see it", kind="select", required=True, initial=content.consent_scope,
                  options=tuple((s.value, label) for s, label in SCOPE_LABELS.items()),
                  hint="community, all_communities or safety_team"),
    ]  # fmt: skip
    if by_author:
        fields.append(
            FormField("show_name", "Show my name", kind="checkbox", initial="yes" if content.show_name else "",
                      options=(("yes", "Show my name with the story"),), hint="yes or no")
        )  # fmt: skip
    return Form(form_id=FORM_ID, title="Share a story", fields=tuple(fields), submit_label="Save", context=context)


def _content_of(story: Story) -> StoryContent:
    return StoryContent(
        title=story.title,
        situation=story.situation,
        action=story.action,
        why_it_works=story.why_it_works,
        impact=story.impact,
        recognised=tuple(story.recognised_ids),
        recognised_group=story.recognised_group,
        themes=tuple(story.theme_ids),
        consent_scope=ConsentScope(story.consent_scope),
        show_name=story.show_name,
    )


def form_for(ctx: Context, context: str) -> Form:
    """The story form a submission with this context came from (to draw it again with its errors): a new story's,
    a captured message's draft, an edit, or a reflection's; raises UsageError when that form has expired."""
    kind, _, number = context.partition(":")
    if kind == "reflection":
        reflection = ctx.db.get(Reflection, int(number)) if number.isdigit() else None
        if reflection is None or reflection.member_id != ctx.actor.id:
            raise UsageError("That form has expired; please use the button again.")
        community = _live_community(ctx, reflection.community_id)
        return story_form(ctx, community=community, context=context, ask_community=False)
    if not context:
        return story_form(ctx, community=None)
    story = _story_from_context(ctx, context)
    if story.status == StoryStatus.DRAFT:
        chosen = ctx.db.get(Community, story.community_id) if story.community_id else None
        return story_form(ctx, community=chosen, context=context, by_author=story.author_member_id == ctx.actor.id)
    _require_author(ctx, story)
    return story_form(ctx, community=None, story=story, context=context, ask_community=False)


def content_from_values(ctx: Context, values: Mapping[str, str]) -> StoryContent:
    """Read the form's values into `StoryContent`, PII guard included; raises `FieldErrors` naming every field that
    is wrong and why, so the form can be shown again with everything typed kept."""
    errors: dict[str, str] = {}
    text = {name: _clean(values.get(name) or "") for name in ("title", "situation", "action", "why_it_works",
                                                              "impact")}  # fmt: skip
    text["title"] = " ".join(text["title"].split())
    group = " ".join(_clean(values.get("recognised_group") or "").split())
    if len(group) > GROUP_MAX:
        errors["recognised_group"] = f"This is {len(group)} characters; keep it to {GROUP_MAX}."
    for name in ("title", "action"):
        if not text[name]:
            errors[name] = "This can't be empty."
    for name, value in text.items():
        limit = TITLE_MAX if name == "title" else TEXT_MAX
        if len(value) > limit:
            errors[name] = f"This is {len(value)} characters; keep it to {limit}."
    nobody: tuple[str, ...] = ()
    recognised = _field(errors, "recognised", lambda: _people(ctx, values.get("recognised") or ""), nobody)
    chosen = _field(errors, "themes", lambda: _themes(values.get("themes") or ""), nobody)
    scope = _field(errors, "consent_scope", lambda: _scope(values.get("consent_scope") or ""), ConsentScope.COMMUNITY)
    content = StoryContent(
        title=text["title"],
        situation=text["situation"],
        action=text["action"],
        why_it_works=text["why_it_works"],
        impact=text["impact"],
        recognised=recognised,
        recognised_group=group,
        themes=chosen,
        consent_scope=scope,
        show_name=(values.get("show_name") or "").strip().lower() in _YES,
    )
    # What was typed is guarded, whether or not it could be read: `@9000069939` is an NHS number, not a stranger.
    typed = {**_guarded_fields(content), "recognised": re.sub(r"[<@>|]", " ", values.get("recognised") or "")}
    for hit in check_fields(typed, labels=LABELS):
        errors[hit.field] = ( f"This looks like it contains {PiiHit(hit.kind, 0, 0).describe()}. Please remove "
                            "patient-identifiable details.")  # fmt: skip
    if errors:
        raise FieldErrors(errors, labels={**LABELS, **_OTHER_LABELS})
    return content


_OTHER_LABELS = {"themes": "Themes", "consent_scope": "Who may see it", "community": "Community"}
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _clean(raw: str) -> str:
    """Typed text as stored: trimmed, with control characters (NUL, escape sequences) removed."""
    return _CONTROL.sub("", raw).strip()


_T = TypeVar("_T")


def _field(errors: dict[str, str], name: str, read: Callable[[], _T], fallback: _T) -> _T:
    """Read one field, noting its problem under its name instead of stopping at the first."""
    try:
        return read()
    except UsageError as exc:
        errors[name] = exc.message
        return fallback


def _people(ctx: Context, raw: str) -> tuple[str, ...]:
    """The people a story recognises: platform mentions (what the pickers submit), or the ids of known members.

    A bare word is a person only when it is a member's platform id: "the night team on ward 7" is not six people
    (a team is thanked in its own field)."""
    people: list[str] = []
    inv = ctx.invocation
    for word in raw.replace(",", " ").split():
        m = _USER_TOKEN.fullmatch(word)
        user_id = (m.group(1) or m.group(2)) if m is not None else None
        known = m is not None and m.group(1) is not None
        if user_id is not None and not known:
            known = (
                repo.get_member(
                    db=ctx.db, platform=inv.actor.platform, workspace_id=inv.actor.workspace_id, user_id=user_id
                )
                is not None
            )
        if user_id is None or not known:
            raise UsageError(f"`{clip(word, 30)}` isn't someone I know. Choose people in the picker; to thank a "
                             f"team, name it under “{LABELS['recognised_group']}”.")  # fmt: skip
        people.append(user_id)
    people = list(dict.fromkeys(people))
    if len(people) > RECOGNISED_MAX:
        raise UsageError(f"Recognise at most {RECOGNISED_MAX} people in one story.")
    return tuple(people)


def _themes(raw: str) -> tuple[str, ...]:
    known = {t.id: t.id for t in themes()} | {t.label.casefold(): t.id for t in themes()}
    chosen: list[str] = []
    for part in raw.split(","):
        word = part.strip()
        if not word:
            continue
        theme = known.get(word) or known.get(word.casefold()) or known.get(word.casefold().replace(" ", "-"))
        if theme is None:
            listing = ", ".join(t.id for t in themes())
            raise UsageError(f"`{clip(word, 30)}` isn't a theme. Themes: {listing}.", example="handover, teamwork")
        chosen.append(theme)
    return tuple(dict.fromkeys(chosen))


def _scope(raw: str) -> ConsentScope:
    word = raw.strip().casefold().replace(" ", "_").replace("-", "_")
    if not word:
        return ConsentScope.COMMUNITY
    for scope, label in SCOPE_LABELS.items():
        if word in (scope.value, label.casefold().replace(" ", "_")):
            return scope
    raise UsageError("Choose community, all_communities or safety_team.", example="all_communities")


def _guarded_fields(content: StoryContent) -> dict[str, str]:
    return {
        "title": content.title,
        "situation": content.situation,
        "action": content.action,
        "why_it_works": content.why_it_works,
        "impact": content.impact,
        # The people field is read as platform ids, but it is typed text too: `@9000069939` is an NHS number.
        "recognised": " ".join(content.recognised),
        "recognised_group": content.recognised_group,
    }


def _guard(content: StoryContent) -> None:
    """The PII guard over every text field; raises PiiFound naming the field and the kind (never the value)."""
    guard(_guarded_fields(content), labels=LABELS)


def _pointer(ctx: Context, content: StoryContent) -> str | None:
    whole = "\n".join((content.title, content.situation, content.action, content.why_it_works, content.impact))
    return incident_pointer(whole, incident_url=ctx.config.incident_url)


# ---------------------------------------------------------------------------------------------------------------
# The one core function every capture path ends in
# ---------------------------------------------------------------------------------------------------------------


def capture(
    ctx: Context,
    *,
    community: Community,
    content: StoryContent,
    author: Member,
    source: StorySource,
    story: Story | None = None,
) -> list[Reply]:
    """Save a story: PII guard first, then publish (the author saved it) or ask the author's consent (someone else
    did). `story` is the claimed draft of a captured message; None for a story typed into the form."""
    require_live(community)
    _guard(content)
    assert community.id is not None and author.id is not None
    if author.id != ctx.actor.id or source == StorySource.REACTION:
        # Only the author decides whether their name is shown: they choose when they approve.
        content = dataclasses.replace(content, show_name=False)
    if story is None:
        story = store.create_story(
            db=ctx.db,
            community_id=community.id,
            author_member_id=author.id,
            capturer_member_id=ctx.actor.id,
            content=content,
            source=source,
            status=StoryStatus.DRAFT,
            now=ctx.now,
        )
    else:
        story.community_id = community.id
        story.capturer_member_id = ctx.actor.id
        store.update_content(db=ctx.db, story=story, content=content, now=ctx.now)
    pointer = _pointer(ctx, content)
    if author.id == ctx.actor.id and source != StorySource.REACTION:
        return publish(ctx, story=story, community=community, author=author, pointer=pointer)
    store.set_status(db=ctx.db, story=story, status=StoryStatus.AWAITING_AUTHOR, now=ctx.now)
    _ask_author(ctx, story=story, community=community, author=author)
    if author.id == ctx.actor.id:
        text = "I've sent you a private message to check the story before it's shared."
    else:
        text = (
            f"Thank you. I've asked <@{author.user_id}> to approve the story (#{story.id}); nothing is shared "
            "unless they do."
        )
    return [Reply.private(text + (f"\n{pointer}" if pointer else ""))]


def _ask_author(ctx: Context, *, story: Story, community: Community, author: Member) -> None:
    card = story_card(story, community=community, author=author)
    where = f" in <#{story.source_channel_id}>" if story.source_channel_id else ""
    who = "You" if author.id == ctx.actor.id else f"<@{ctx.actor.user_id}>"
    intro = (
        f"{who} would like to save your message{where} as a story for *{community.name}*, seen by "
        f"{SCOPE_AUDIENCE[ConsentScope(story.consent_scope)]}. Nothing is shared unless you approve. "
        "*Approve* shares it without your name; *Approve with my name* shows that it is yours. *Edit* lets you "
        "change the text and who may see it."
    )
    message = Message(
        text=f"May we share your story? {intro}",
        title="May we share your story?",
        sections=(Section(intro), *card.sections),
        buttons=(
            Button("Approve", ACTION_APPROVE, value=str(story.id), style="primary"),
            Button("Approve with my name", ACTION_APPROVE_NAMED, value=str(story.id)),
            Button("Edit", ACTION_EDIT, value=str(story.id)),
            Button("Decline", ACTION_DECLINE, value=str(story.id), style="danger"),
        ),
    )
    ctx.platform.send_dm(user_id=author.user_id, message=message)


def publish(
    ctx: Context, *, story: Story, community: Community, author: Member, pointer: str | None = None
) -> list[Reply]:
    """Publish where its consent scope allows: the card in the community's channel (a `safety_team` story goes to
    the facilitators privately instead), a thank-you to each person recognised, buttons for the author."""
    require_live(community)
    store.set_status(db=ctx.db, story=story, status=StoryStatus.PUBLISHED, now=ctx.now)
    card = story_card(story, community=community, author=author)
    if consent.allowed(story.consent_scope, consent.CHANNEL):
        if community.channel_id:
            message_id = ctx.platform.post(channel_id=community.channel_id, message=card)
            store.set_card(db=ctx.db, story=story, channel_id=community.channel_id, message_id=message_id)
        where = channel_mention(community) if community.channel_id else f"*{community.name}*"
        shared = f"is shared in {where}"
    else:
        _send_facilitators(ctx, community=community, card=card, except_member=author)
        shared = f"is shared privately with the facilitators of *{community.name}*"
    unthanked = _thank_recognised(ctx, story=story, community=community, author=author)
    lines = [f"Your story *{story.title}* (#{story.id}) {shared}. Thank you!"]
    if unthanked:
        lines.append("I couldn't send a thank-you to " + ", ".join(f"<@{u}>" for u in unthanked) + ".")
    if pointer:
        lines.append(pointer)
    buttons = (
        Button("Edit", ACTION_EDIT, value=str(story.id)),
        Button("Withdraw", ACTION_WITHDRAW, value=str(story.id), style="danger"),
    )
    return [Reply(message=Message(text="\n".join(lines), buttons=buttons))]


def _send_facilitators(ctx: Context, *, community: Community, card: Message, except_member: Member) -> None:
    """A story meant for the safety team only: each facilitator gets the card privately."""
    for facilitator in repo.facilitators(db=ctx.db, community=community):
        if facilitator.id == except_member.id:
            continue
        note = Section(f"_Shared only with the facilitators of {community.name}: please don't post it in the channel._")
        private = dataclasses.replace(card, sections=(*card.sections, note))
        try:
            ctx.platform.send_dm(user_id=facilitator.user_id, message=private)
        except PlatformError:
            log.info("could not send a safety-team story to a facilitator of community %s", community.id)


def _thank_recognised(ctx: Context, *, story: Story, community: Community, author: Member) -> list[str]:
    """A private thank-you to each person the story recognises; it names the story only if they may read it.

    Returns the people who could not be thanked (the story stands; the author hears who)."""
    unthanked: list[str] = []
    credit = f"<@{author.user_id}>" if story.show_name else "A colleague"
    inv = ctx.invocation
    for user_id in story.recognised_ids:
        if user_id == author.user_id:
            continue
        person = repo.get_member(
            db=ctx.db, platform=inv.actor.platform, workspace_id=inv.actor.workspace_id, user_id=user_id
        )
        audience = consent.audience_of(db=ctx.db, story=story, member_id=person.id if person else None)
        if consent.allowed(story.consent_scope, audience):
            text = (
                f"{credit} recognised you in a story shared in *{community.name}*: *{story.title}*. "
                "Thank you for what you do."
            )
        else:
            text = (
                f"{credit} recognised you in a story shared privately with the facilitators of *{community.name}*. "
                "Thank you for what you do."
            )
        try:
            ctx.platform.send_dm(user_id=user_id, message=Message(text=text))
        except PlatformError:
            unthanked.append(user_id)
    return unthanked


def story_card(story: Story, *, community: Community, author: Member | None) -> Message:
    """The story as a card: headline, the four parts, themes, the people recognised, the author if they chose."""
    parts = [
        ("The situation", story.situation),
        ("What was done", story.action),
        ("Why it works", story.why_it_works),
        ("The difference it made", story.impact),
    ]
    sections = [Section(f"_A “what's working” story from {community.name}_")]
    sections += [Section(f"*{label}*\n{value}") for label, value in parts if value]
    labels = {t.id: t.label for t in themes()}
    fields: list[tuple[str, str]] = []
    if story.theme_ids:
        fields.append(("Themes", ", ".join(labels.get(t, t) for t in story.theme_ids)))
    thanked = [f"<@{u}>" for u in story.recognised_ids] + ([story.recognised_group] if story.recognised_group else [])
    if thanked:
        fields.append(("Recognising", ", ".join(thanked)))
    fields.append(("Shared by", f"<@{author.user_id}>" if story.show_name and author is not None else "a colleague"))
    fields.append(("Community", community.name))
    sections.append(Section("", fields=tuple(fields)))
    footer = f"Story #{story.id}"
    if story.source_link:
        footer += f" · original message: {story.source_link}"
    sections.append(Section(f"_{footer}_"))
    summary = f"New story: {story.title} — {clip(story.action, 200)}"
    return Message(text=summary, title=clip(story.title, 150), sections=tuple(sections))


# ---------------------------------------------------------------------------------------------------------------
# Capture paths: the command and its form, the message shortcut, the reaction
# ---------------------------------------------------------------------------------------------------------------


def story_command(ctx: Context, cmd: ParsedCommand) -> list[Reply]:
    """`story` opens the form; `story <id>` shows one; `story edit <id>` and `story withdraw <id>` for the author."""
    words = [w.lower() for w in cmd.args]
    if not words:
        community = _community_here(ctx)
        return [Reply(form=story_form(ctx, community=community))]
    if words[0] in ("edit", "withdraw"):
        if len(words) != 2:
            raise UsageError(f"Say which story to {words[0]}.", example=f"/cop story {words[0]} 12")
        story = _story_by_ref(ctx, words[1])
        return edit(ctx, story) if words[0] == "edit" else withdraw(ctx, story)
    if len(words) == 1 and words[0].lstrip("#").isdigit():
        return show(ctx, _story_by_ref(ctx, words[0]))
    raise UsageError(
        "`/cop story` opens the story form. To change one of yours: `/cop story edit <number>` or "
        "`/cop story withdraw <number>`.",
        example="/cop story edit 12",
    )


def _community_here(ctx: Context) -> Community | None:
    here = communities.community_in_channel(ctx)
    return here if here is not None and here.archived_at is None else None


def _story_by_ref(ctx: Context, ref: str) -> Story:
    number = ref.lstrip("#")
    found = row_id(number)
    story = store.get_story(db=ctx.db, story_id=found) if found is not None else None
    if story is None or not _same_workspace(ctx, story):
        raise UsageError(_NO_SUCH_STORY.format(ref="#" + clip(number, 20)), example="/cop stories")
    return story


def _same_workspace(ctx: Context, story: Story) -> bool:
    if story.community_id is None:
        author = ctx.db.get(Member, story.capturer_member_id) if story.capturer_member_id else None
        return author is not None and author.workspace_id == ctx.invocation.actor.workspace_id
    community = ctx.db.get(Community, story.community_id)
    inv = ctx.invocation
    return community is not None and (community.platform, community.workspace_id) == (
        inv.actor.platform,
        inv.actor.workspace_id,
    )


def validate_form(ctx: Context, values: dict[str, str]) -> None:
    """Every check of the story form that needs no platform call, raising `FieldErrors` keyed by field: a platform
    that can keep the form open (a Slack modal, a Teams dialog) shows them under the fields, before anything is
    stored or posted."""
    _read_form(ctx, values)


def _read_form(ctx: Context, values: dict[str, str]) -> tuple[StoryContent, Community | None, Story | None]:
    """The form's content, the community chosen in it (when the form asks) and the story it edits (if any)."""
    context = ctx.invocation.extra.get("context", "")
    errors: dict[str, str] = {}
    content = StoryContent(title="")
    try:
        content = content_from_values(ctx, values)
    except FieldErrors as exc:
        errors.update(exc.errors)
    story = None
    if context and not context.startswith("reflection:"):
        story = _story_from_context(ctx, context)  # an expired form is not a field's fault: its own reply
    community = None
    if not context or (story is not None and story.status == StoryStatus.DRAFT):
        fallback = str(story.community_id or "") if story is not None else ""
        try:
            community = _chosen_community(ctx, values.get("community") or fallback)
        except DomainError as exc:
            errors["community"] = exc.message
    if errors:
        raise FieldErrors(errors, labels={**LABELS, **_OTHER_LABELS})
    return content, community, story


def submit_form(ctx: Context, values: dict[str, str]) -> list[Reply]:
    """The story form was submitted: a new story, a captured message's draft, or an edit by the author."""
    context = ctx.invocation.extra.get("context", "")
    content, community, story = _read_form(ctx, values)
    if context.startswith("reflection:"):
        return _from_reflection(ctx, context, content)
    if story is None:
        assert community is not None
        return capture(ctx, community=community, content=content, author=ctx.actor, source=_form_source(ctx))
    if story.status == StoryStatus.DRAFT:
        # A captured message's draft: the form was opened by the message shortcut.
        assert community is not None
        author = ctx.db.get(Member, story.author_member_id) if story.author_member_id else None
        if author is None:
            raise UsageError("That form has expired; please use the shortcut again.")
        return capture(
            ctx, community=community, content=content, author=author, source=StorySource(story.source), story=story
        )
    # An edit of an existing story: only its author.
    _require_author(ctx, story)
    if story.status == StoryStatus.WITHDRAWN:
        raise Conflict("That story has been withdrawn, so it can't be edited.")
    assert story.community_id is not None
    community = _live_community(ctx, story.community_id)
    _guard(content)
    store.update_content(db=ctx.db, story=story, content=content, now=ctx.now)
    pointer = _pointer(ctx, content)
    if story.status == StoryStatus.AWAITING_AUTHOR:
        return publish(ctx, story=story, community=community, author=ctx.actor, pointer=pointer)
    followed = _refresh_card(ctx, story, community=community, author=ctx.actor)
    text = f"Story #{story.id} is updated; search and exports show the new version. {followed}".rstrip()
    return [Reply.private(text + (f"\n{pointer}" if pointer else ""))]


def _from_reflection(ctx: Context, context: str, content: StoryContent) -> list[Reply]:
    """A reflection's author saved the pre-filled form: a story from a reply, linked back to the reflection."""
    number = context.partition(":")[2]
    reflection = ctx.db.get(Reflection, int(number)) if number.isdigit() else None
    if reflection is None or reflection.member_id != ctx.actor.id:
        raise UsageError("That form has expired; please use the button again.")
    community = _live_community(ctx, reflection.community_id)
    replies = capture(ctx, community=community, content=content, author=ctx.actor, source=StorySource.REPLY)
    made = store.stories_by_author(db=ctx.db, author_member_id=ctx.actor.id or 0)
    if made:
        reflection.promoted_story_id = made[0].id  # newest first: the one just made
        ctx.db.add(reflection)
    return replies


def _form_source(ctx: Context) -> StorySource:
    return StorySource.CONSOLE if ctx.invocation.actor.platform == "console" else StorySource.FORM


def _story_from_context(ctx: Context, context: str) -> Story:
    kind, _, number = context.partition(":")
    story = store.get_story(db=ctx.db, story_id=int(number)) if kind == "story" and number.isdigit() else None
    if story is None or not _same_workspace(ctx, story):
        raise UsageError("That form has expired; please open it again.", example=STORY_EXAMPLE)
    if story.status == StoryStatus.DRAFT and ctx.actor.id not in (story.capturer_member_id, story.author_member_id):
        raise UsageError("That form has expired; please open it again.", example=STORY_EXAMPLE)
    return story


def _chosen_community(ctx: Context, ref: str) -> Community:
    ref = ref.strip()
    if not ref:
        raise UsageError("Choose the community the story is for.", example=STORY_EXAMPLE)
    community: Community | None = None
    if ref.isdigit():
        community = ctx.db.get(Community, int(ref))
        inv = ctx.invocation
        if community is not None and (community.platform, community.workspace_id) != (
            inv.actor.platform,
            inv.actor.workspace_id,
        ):
            community = None
    if community is None:
        community = find_community(ctx, ref)
    if community is None:
        raise UsageError(
            f"I can't find a community called “{clip(ref, 60)}”. See them with `/cop list`.", example=STORY_EXAMPLE
        )
    require_live(community)
    return community


def _live_community(ctx: Context, community_id: int) -> Community:
    community = ctx.db.get(Community, community_id)
    if community is None:
        raise UsageError("That story's community no longer exists.")
    require_live(community)
    return community


def prefill_from(message: SourceMessage) -> StoryContent:
    """A draft from a chat message: its first line as the title, the whole text as "what was done"."""
    text = message.text.strip()
    first = text.splitlines()[0] if text else ""
    first = re.split(r"(?<=[.!?])\s", first, maxsplit=1)[0]
    plain = re.sub(
        r"<([@#])([A-Za-z0-9._:\-]+)(?:\|([^>]*))?>", lambda m: m.group(1) + (m.group(3) or m.group(2)), first
    )
    title = clip(" ".join(plain.split()).rstrip(".!?;: ") or "A story from the channel", 80)
    people = tuple(dict.fromkeys(m for m in re.findall(r"<@([A-Za-z0-9._\-]+)(?:\|[^>]*)?>", text)))
    return StoryContent(title=title, action=clip(text, TEXT_MAX), recognised=people[:RECOGNISED_MAX])


def _author_of(ctx: Context, message: SourceMessage) -> Member:
    if message.from_bot or not message.author_user_id:
        raise UsageError("That message is from a bot; only people's messages can become stories.")
    inv = ctx.invocation
    return repo.ensure_member(
        db=ctx.db,
        platform=inv.actor.platform,
        workspace_id=inv.actor.workspace_id,
        user_id=message.author_user_id,
        now=ctx.now,
    )


def _already(story: Story) -> str | None:
    if story.status == StoryStatus.PUBLISHED:
        return f"That message is already a story (#{story.id})."
    if story.status == StoryStatus.AWAITING_AUTHOR:
        return f"That message is already waiting for its author to approve it as a story (#{story.id})."
    if story.status == StoryStatus.WITHDRAWN:
        return "The author has withdrawn or declined the story from that message, so I won't ask them again."
    return None


def shortcut(ctx: Context, message: SourceMessage) -> list[Reply]:
    """The message shortcut "Save as a story": the form, pre-filled from the message (nothing stored but ids)."""
    author = _author_of(ctx, message)
    if not message.text.strip():
        raise UsageError("That message has no text to save as a story.")
    community = communities.community_in_channel(ctx)  # preselected in its own channel; elsewhere the form asks
    if community is not None:
        require_live(community)
    story = _claim(ctx, message, community=community, author=author, source=StorySource.SHORTCUT)
    done = _already(story)
    if done is not None:
        return [Reply.private(done)]
    prefill = prefill_from(message)
    form = story_form(
        ctx, community=community, prefill=prefill, context=f"story:{story.id}", by_author=author.id == ctx.actor.id
    )
    return [Reply(form=form)]


def _claim(
    ctx: Context, message: SourceMessage, *, community: Community | None, author: Member, source: StorySource
) -> Story:
    """The one story row for this message (a text-less draft when it is new)."""
    story, _created = store.claim_source(
        db=ctx.db,
        community_id=community.id if community is not None else None,
        channel_id=message.channel_id,
        message_id=message.message_id,
        source_link=message.link,
        source=source,
        author_member_id=author.id,
        capturer_member_id=ctx.actor.id,
        now=ctx.now,
    )
    return story


def reaction(ctx: Context, message: SourceMessage, emoji: str) -> list[Reply]:
    """A reaction on a message: with the story emoji in a community's channel, ask the author to approve a draft."""
    if emoji.split("::")[0].strip(":") != ctx.config.story_emoji:
        return []
    community = communities.community_in_channel(ctx)
    if community is None:
        raise UsageError(
            f"Reacting with :{ctx.config.story_emoji}: saves stories only in a community's channel. "
            "Elsewhere use the *Save as a story* shortcut or `/cop story`."
        )
    require_live(community)
    author = _author_of(ctx, message)
    if not message.text.strip():
        raise UsageError("That message has no text to save as a story.")
    existing = store.story_by_source(db=ctx.db, channel_id=message.channel_id, message_id=message.message_id)
    if existing is not None and (done := _already(existing)) is not None:
        return [Reply.private(done)]
    content = prefill_from(message)
    _guard(content)  # before the draft row exists: nothing of a refused message is stored
    story = _claim(ctx, message, community=community, author=author, source=StorySource.REACTION)
    done = _already(story)
    if done is not None:
        return [Reply.private(done)]
    story.source = StorySource.REACTION
    return capture(ctx, community=community, content=content, author=author, source=StorySource.REACTION, story=story)


# ---------------------------------------------------------------------------------------------------------------
# The author's consent, edits and withdrawal
# ---------------------------------------------------------------------------------------------------------------


def _story_for_action(ctx: Context, value: str) -> Story:
    number = row_id(value)
    story = store.get_story(db=ctx.db, story_id=number) if number is not None else None
    if story is None or not _same_workspace(ctx, story):
        raise UsageError("That story no longer exists.")
    return story


def _require_author(ctx: Context, story: Story) -> None:
    if story.author_member_id != ctx.actor.id:
        raise NotAllowed("Only the story's author can do that.")


def approve(ctx: Context, value: str) -> list[Reply]:
    """The author approved a captured story: publish it without their name."""
    return _approve(ctx, value, show_name=False)


def approve_named(ctx: Context, value: str) -> list[Reply]:
    """The author approved a captured story and chose to show that it is theirs."""
    return _approve(ctx, value, show_name=True)


def _approve(ctx: Context, value: str, *, show_name: bool) -> list[Reply]:
    story = _story_for_action(ctx, value)
    _require_author(ctx, story)
    if story.status != StoryStatus.AWAITING_AUTHOR:
        return [Reply.private(_already(story) or "That story is no longer waiting for you.")]
    assert story.community_id is not None
    community = _live_community(ctx, story.community_id)
    store.update_content(db=ctx.db, story=story, content=dataclasses.replace(_content_of(story), show_name=show_name),
                         now=ctx.now)  # fmt: skip
    replies = publish(
        ctx, story=story, community=community, author=ctx.actor, pointer=_pointer(ctx, _content_of(story))
    )
    _tell_capturer(ctx, story, f"<@{ctx.actor.user_id}> approved the story you saved: *{story.title}*.")
    return replies


def decline(ctx: Context, value: str) -> list[Reply]:
    """The author declined: nothing is published and the captured text is discarded."""
    story = _story_for_action(ctx, value)
    _require_author(ctx, story)
    if story.status != StoryStatus.AWAITING_AUTHOR:
        return [Reply.private(_already(story) or "That story is no longer waiting for you.")]
    store.set_status(db=ctx.db, story=story, status=StoryStatus.WITHDRAWN, now=ctx.now)
    store.clear_content(db=ctx.db, story=story, now=ctx.now)
    _tell_capturer(ctx, story, "The author chose not to share the message you saved as a story. Thank you anyway!")
    return [Reply.private("Declined: nothing was shared and the text I had copied is deleted.")]


def _tell_capturer(ctx: Context, story: Story, text: str) -> None:
    if not story.capturer_member_id or story.capturer_member_id == ctx.actor.id:
        return
    capturer = ctx.db.get(Member, story.capturer_member_id)
    if capturer is None:
        return
    try:
        ctx.platform.send_dm(user_id=capturer.user_id, message=Message(text=text))
    except PlatformError:
        log.info("could not tell the capturer of story %s", story.id)


def edit_action(ctx: Context, value: str) -> list[Reply]:
    """The Edit button: the form, filled with the story."""
    return edit(ctx, _story_for_action(ctx, value))


def edit(ctx: Context, story: Story) -> list[Reply]:
    """Open the form on one of the author's stories."""
    _require_author(ctx, story)
    if story.status == StoryStatus.WITHDRAWN:
        raise Conflict("That story has been withdrawn, so it can't be edited.")
    return [Reply(form=story_form(ctx, community=None, story=story, context=f"story:{story.id}", ask_community=False))]


def withdraw_action(ctx: Context, value: str) -> list[Reply]:
    """The Withdraw button."""
    return withdraw(ctx, _story_for_action(ctx, value))


def withdraw(ctx: Context, story: Story) -> list[Reply]:
    """Withdraw a story (its author, or a facilitator of its community): gone from search and exports."""
    if story.author_member_id != ctx.actor.id:
        community = ctx.db.get(Community, story.community_id) if story.community_id else None
        if community is None:
            raise NotAllowed("Only the story's author can do that.")
        row = repo.membership(db=ctx.db, community=community, member=ctx.actor)
        if row is None or row.role != Role.FACILITATOR:
            raise NotAllowed("Only the story's author or its community's facilitators can withdraw it.")
    if story.status == StoryStatus.WITHDRAWN:
        return [Reply.private(f"Story #{story.id} is already withdrawn.")]
    by_author = story.author_member_id == ctx.actor.id
    was_published = story.status == StoryStatus.PUBLISHED
    store.set_status(db=ctx.db, story=story, status=StoryStatus.WITHDRAWN, now=ctx.now)
    community = ctx.db.get(Community, story.community_id) if story.community_id else None
    repo.record_audit(
        db=ctx.db,
        action="story.withdraw",
        now=ctx.now,
        actor=ctx.actor,
        community=community,
        detail={"story_id": story.id, "by_author": by_author},
    )
    had_card = bool(story.card_message_id)
    _replace_card(ctx, story, "_This story was withdrawn by its author._" if by_author else
                  "_This story was withdrawn by a facilitator._")  # fmt: skip
    author = ctx.db.get(Member, story.author_member_id) if story.author_member_id else None
    if not by_author and author is not None and was_published:
        where = f" from *{community.name}*" if community is not None else ""
        try:
            ctx.platform.send_dm(
                user_id=author.user_id,
                message=Message(
                    text=f"<@{ctx.actor.user_id}>, a facilitator, withdrew your story *{story.title}* (#{story.id})"
                    f"{where}. It no longer appears in the channel, search or exports. If you'd like to know why, "
                    "message them."
                ),
            )
        except PlatformError:
            log.info("could not tell the author of story %s about its withdrawal", story.id)
    card_note = " Its card in the channel now says it was withdrawn." if had_card else ""
    told = " Its author has been told privately." if not by_author and author is not None and was_published else ""
    return [
        Reply.private(f"Story #{story.id} is withdrawn: it no longer appears in search or exports.{card_note}{told}")
    ]


def _replace_card(ctx: Context, story: Story, line: str) -> None:
    """Replace the story's posted card with a short line (withdrawn, or no longer meant for the channel)."""
    if not (story.card_channel_id and story.card_message_id):
        return
    try:
        ctx.platform.update_message(
            channel_id=story.card_channel_id, message_id=story.card_message_id, message=Message(text=line)
        )
    except PlatformError:
        log.info("could not replace the card of story %s", story.id)
    store.clear_card(db=ctx.db, story=story)


def _refresh_card(ctx: Context, story: Story, *, community: Community, author: Member) -> str:
    """After an edit, keep the channel in step with the story and its scope; returns what happened, for the
    author."""
    in_channel = consent.allowed(story.consent_scope, consent.CHANNEL)
    card = story_card(story, community=community, author=author)
    if story.card_channel_id and story.card_message_id:
        if not in_channel:
            _replace_card(ctx, story, "_This story is now shared only with the community's facilitators._")
            _send_facilitators(ctx, community=community, card=card, except_member=author)
            return "Its card in the channel is taken down and the facilitators have the new version privately."
        try:
            ctx.platform.update_message(
                channel_id=story.card_channel_id, message_id=story.card_message_id, message=card
            )
        except PlatformError:
            log.info("could not update the card of story %s", story.id)
            return "I couldn't update its card in the channel; it may have been deleted."
        return "Its card in the channel shows the new version."
    if in_channel and community.channel_id:
        message_id = ctx.platform.post(channel_id=community.channel_id, message=card)
        store.set_card(db=ctx.db, story=story, channel_id=community.channel_id, message_id=message_id)
        return f"It is now shared in {channel_mention(community)}."
    if not in_channel:
        _send_facilitators(ctx, community=community, card=card, except_member=author)
        return "The facilitators have the new version privately."
    return ""


def show(ctx: Context, story: Story) -> list[Reply]:
    """`story <id>`: the card, if the person may see it."""
    if not consent.may_see(db=ctx.db, story=story, member_id=ctx.actor.id) or story.community_id is None:
        raise UsageError(_NO_SUCH_STORY.format(ref=f"#{story.id}"), example="/cop stories")
    community = ctx.db.get(Community, story.community_id)
    assert community is not None
    author = ctx.db.get(Member, story.author_member_id) if story.author_member_id else None
    return [Reply(message=story_card(story, community=community, author=author))]


# ---------------------------------------------------------------------------------------------------------------
# Search
# ---------------------------------------------------------------------------------------------------------------


def search(ctx: Context, cmd: ParsedCommand) -> list[Reply]:
    """`stories [words…]`: ranked search with snippets over the stories the person may see; no words = latest."""
    words = " ".join([*cmd.args, *(f"{k}={v}" for k, v in cmd.options.items())])
    if cmd.rest:
        words += " " + cmd.rest
    words = clip(words.strip(), 200)
    inv = ctx.invocation
    assert ctx.actor.id is not None
    hits = store.search_stories(
        db=ctx.db,
        platform=inv.actor.platform,
        workspace_id=inv.actor.workspace_id,
        viewer_member_id=ctx.actor.id,
        readers=consent.readers(),
        words=words,
        limit=SEARCH_LIMIT,
    )
    searching = bool(store.parse_query(words))
    if not hits:
        if searching:
            return [
                Reply.private(
                    f"No stories match “{words}”. Try fewer words, or a prefix like `hand*`.",
                )
            ]
        return [Reply.private("There are no stories you can see yet. Share one with `/cop story`.")]
    heading = f"Stories matching “{words}”" if searching else "The latest stories"
    sections = [Section(f"*{heading}*")]
    for hit in hits:
        story = hit.story
        when = story.published_at.strftime("%-d %b %Y") if story.published_at else ""
        body = _snippet(hit.snippet) if hit.snippet else clip(" ".join(story.action.split()), 160)
        sections.append(Section(f"*#{story.id} {story.title}* — {hit.community_name} · {when}\n{body}"))
    sections.append(Section("_See one in full with `/cop story <number>`._"))
    text = "\n".join(s.text for s in sections)
    return [Reply(message=Message(text=text, title=heading, sections=tuple(sections)))]


# ---------------------------------------------------------------------------------------------------------------
# Export (facilitators)
# ---------------------------------------------------------------------------------------------------------------


_FORMAT_ALIASES = {"csv": "csv", "md": "md", "markdown": "md", "html": "html", "htm": "html"}


def export(ctx: Context, cmd: ParsedCommand) -> list[Reply]:
    """`export [csv|md|html] [in:<community>]`: the community's published stories, as a file sent privately."""
    example = "/cop export csv in:falls-prevention"
    formats = ", ".join(f"`{f}`" for f in EXPORT_FORMATS)
    if len(cmd.args) > 1:
        raise UsageError(f"Give at most one format ({formats}) and the community as `in:<community>`.",
                         example=example)  # fmt: skip
    fmt = "csv"
    if cmd.args:
        word = cmd.args[0].lower().lstrip(".")
        if word not in _FORMAT_ALIASES:
            hint = ""
            if cmd.community is None and not cmd.channels and find_community(ctx, cmd.args[0]) is not None:
                hint = f" To name a community use `in:`, e.g. `/cop export csv in:{clip(cmd.args[0], 40)}`."
            raise UsageError(f"`{clip(cmd.args[0], 20)}` isn't an export format. Formats: {formats}.{hint}",
                             example=example)  # fmt: skip
        fmt = _FORMAT_ALIASES[word]
    community = communities.resolve_community(ctx, cmd, example=example)
    require_facilitator(ctx, community)
    assert community.id is not None
    rows = store.exportable_stories(db=ctx.db, community_id=community.id, scopes=consent.scopes_for(consent.EXPORT))
    if not rows:
        return [Reply.private(f"*{community.name}* has no published stories yet, so there is nothing to export. "
                              "Stories shared with `/cop story` will appear here.")]  # fmt: skip
    people, authors = _names(ctx, rows)
    content = render_export(fmt, rows, community=community, people=people, authors=authors, now=ctx.now)
    event = repo.record_audit(
        db=ctx.db,
        action="story.export",
        now=ctx.now,
        actor=ctx.actor,
        community=community,
        detail={"format": fmt, "count": len(rows)},
    )
    ctx.db.flush()  # the audit event's id makes the file name unique, even for two exports in one second
    filename = f"stories-{community.slug}-{ctx.now:%Y%m%d-%H%M%S}-{event.id}.{fmt}"
    ctx.platform.upload_file(
        user_id=ctx.actor.user_id, filename=filename, content=content, title=f"Stories of {community.name}"
    )
    return [
        Reply.private(
            f"I've sent you `{filename}` privately: {_count(len(rows))} of *{community.name}*, published. "
            "Withdrawn stories and ones still waiting for their author are left out; each row says who may see it."
        )
    ]


def _names(ctx: Context, rows: Sequence[Story]) -> tuple[dict[str, str], dict[int, str]]:
    """Display names for an export, so the file shows names, not markup: by platform id for the people recognised
    and mentioned in the text, and by member id for the authors who chose to be named."""
    inv = ctx.invocation
    ids: set[str] = set()
    for s in rows:
        ids.update(s.recognised_ids)
        for part in (s.title, s.situation, s.action, s.why_it_works, s.impact):
            ids.update(m.group(1) for m in _MENTION.finditer(part))
    people: dict[str, str] = {}
    for user_id in sorted(ids):
        member = repo.get_member(db=ctx.db, platform=inv.actor.platform, workspace_id=inv.actor.workspace_id,
                                 user_id=user_id)  # fmt: skip
        people[user_id] = member.display_name if member is not None and member.display_name else user_id
    authors: dict[int, str] = {}
    for member_id in {s.author_member_id for s in rows if s.show_name and s.author_member_id}:
        author = ctx.db.get(Member, member_id)
        if author is not None:
            authors[member_id] = author.display_name or author.user_id
    return people, authors


_MENTION = re.compile(r"<@([A-Za-z0-9._\-]+)(?:\|([^>]*))?>")
_CHANNEL_MENTION = re.compile(r"<#([A-Za-z0-9._:\-]+)(?:\|([^>]*))?>")


def _plain(text: str, people: Mapping[str, str]) -> str:
    """Neutral markup made readable for a file: mentions become @names and #channels."""
    text = _MENTION.sub(lambda m: "@" + (people.get(m.group(1)) or m.group(2) or m.group(1)), text)
    return _CHANNEL_MENTION.sub(lambda m: "#" + (m.group(2) or m.group(1)), text)


_CSV_COLUMNS = (
    "id", "title", "situation", "what_was_done", "why_it_works", "impact", "themes", "recognised", "shared_by",
    "who_may_see", "source", "original_message", "published",
)  # fmt: skip


def render_export(
    fmt: str,
    rows: Sequence[Story],
    *,
    community: Community,
    people: Mapping[str, str],
    authors: Mapping[int, str],
    now: dt.datetime,
) -> bytes:
    """The export file's bytes (UTF-8) in `fmt`: csv, md or html. `people` maps platform ids to display names,
    `authors` member ids to the names of authors who chose to be named (only those stories show one)."""
    zone = zoneinfo.ZoneInfo(community.timezone)
    labels = {t.id: t.label for t in themes()}
    records = []
    for s in rows:
        records.append(
            {
                "id": str(s.id),
                "title": _plain(s.title, people),
                "situation": _plain(s.situation, people),
                "what_was_done": _plain(s.action, people),
                "why_it_works": _plain(s.why_it_works, people),
                "impact": _plain(s.impact, people),
                "themes": ", ".join(labels.get(t, t) for t in s.theme_ids),
                "recognised": ", ".join(
                    ["@" + people.get(u, u) for u in s.recognised_ids] + [s.recognised_group] * bool(s.recognised_group)
                ),
                "shared_by": authors.get(s.author_member_id or 0, "") if s.show_name else "",
                "who_may_see": s.consent_scope,
                "source": s.source,
                "original_message": s.source_link or "",
                "published": s.published_at.astimezone(zone).strftime("%Y-%m-%d %H:%M") if s.published_at else "",
            }
        )
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=_CSV_COLUMNS)
        writer.writeheader()
        for record in records:
            writer.writerow({k: _csv_cell(v) for k, v in record.items()})
        return buffer.getvalue().encode("utf-8-sig")  # the BOM makes Excel read UTF-8
    heading = f"Stories of {community.name}"
    made = now.astimezone(zone).strftime("%d %B %Y %H:%M")
    if fmt == "md":
        lines = [f"# {_md(heading)}", "", f"Exported {made}. {_count(len(records))}.", ""]
        for r in records:
            lines += [f"## #{r['id']} {_md(r['title'])}", ""]
            for key, label in _PARTS:
                if r[key]:
                    lines += [f"**{label}**", "", _md(r[key]), ""]
            meta = [f"Who may see it: {r['who_may_see']}", f"Published: {r['published']}"]
            meta += [f"Themes: {_md(r['themes'])}"] if r["themes"] else []
            meta += [f"Shared by: {_md(r['shared_by'])}"] if r["shared_by"] else []
            meta += [f"Original message: {r['original_message']}"] if r["original_message"] else []
            lines += [f"- {m}" for m in meta] + [""]
        return "\n".join(lines).encode("utf-8")
    e = html.escape
    body = [f"<h1>{e(heading)}</h1>", f"<p>Exported {e(made)}. {_count(len(records))}.</p>"]
    for r in records:
        body.append(f"<article><h2>#{e(r['id'])} {e(r['title'])}</h2>")
        for key, label in _PARTS:
            if r[key]:
                body.append(f"<h3>{e(label)}</h3><p>{e(r[key]).replace(chr(10), '<br>')}</p>")
        facts = [("Who may see it", r["who_may_see"]), ("Published", r["published"]), ("Themes", r["themes"]),
                 ("Shared by", r["shared_by"]), ("Original message", r["original_message"])]  # fmt: skip
        body.append("<ul>" + "".join(f"<li>{e(k)}: {e(v)}</li>" for k, v in facts if v) + "</ul></article>")
    document = (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{e(heading)}</title></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )
    return document.encode("utf-8")


_PARTS = (
    ("situation", "The situation"),
    ("what_was_done", "What was done"),
    ("why_it_works", "Why it works"),
    ("impact", "The difference it made"),
)


def _count(n: int) -> str:
    return f"{n} {'story' if n == 1 else 'stories'}"


def _csv_cell(value: str) -> str:
    # A cell starting with = + - @ is a formula to a spreadsheet; a leading apostrophe keeps it text.
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def _md(value: str) -> str:
    return value.replace("<", "&lt;").replace(">", "&gt;")
