"""Community management: create, list, join, leave, profile, facilitators, archive; and community lookup."""

from __future__ import annotations

import datetime as dt
import difflib
import logging
import re
import unicodedata
import zoneinfo
from collections.abc import Callable, Mapping

from handlers.context import Context
from handlers.errors import Conflict, FieldErrors, NotAllowed, PlatformError, UnknownCommunity, UsageError
from handlers.grammar import ParsedCommand
from handlers.ports import Button, ChannelRef, Form, FormField, Message, Reply, Section
from handlers.privacy import PiiHit, check_fields, guard
from handlers.text import clip
from prompts import copy
from storage import repository as repo
from storage.models import Community, Member, Role

CHANNEL_PREFIX = "cop-"
# A reserved name whose channel isn't recorded after this long was left by a create that stopped part-way.
RESERVATION_LEASE = dt.timedelta(minutes=2)
_BEING_CREATED = "*{name}* is being created right now. Try `/cop list` in a minute."
CHANNEL_MAX = 80  # Slack's limit for channel names
SLUG_MAX = CHANNEL_MAX - len(CHANNEL_PREFIX)
NAME_MAX = 200
PURPOSE_MAX = 250  # Slack's limit for a channel purpose or topic
PROFILE_FIELD_MAX = 100
log = logging.getLogger(__name__)

PROFILE_KEYS = {"profession": "profession", "organisation": "organisation", "organization": "organisation"}
PROFILE_KEYS |= {"org": "organisation", "timezone": "timezone", "tz": "timezone"}
CREATE_EXAMPLE = "/cop create Falls prevention | Sharing what works on our wards"


def slugify(name: str, *, limit: int | None = SLUG_MAX) -> str:
    """A channel-safe slug (Slack rules: lower case, digits, `-`), at most `limit` characters; may be empty."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")
    return slug if limit is None else slug[:limit].rstrip("-")


def channel_mention(community: Community) -> str:
    """The neutral mention of a community's channel (or its name when it has none)."""
    return f"<#{community.channel_id}>" if community.channel_id else f"#{community.channel_name}"


# --- lookup ----------------------------------------------------------------------------------------------------


def find_community(ctx: Context, ref: str) -> Community | None:
    """A community by channel id, slug, name or channel name (case-insensitive), or None."""
    inv = ctx.invocation
    everyone = repo.communities(
        db=ctx.db, platform=inv.actor.platform, workspace_id=inv.actor.workspace_id, include_archived=True
    )
    wanted = ref.strip().lstrip("#").strip()
    folded = wanted.casefold()
    slug = slugify(wanted.removeprefix(CHANNEL_PREFIX))
    tests: list[Callable[[Community], bool]] = [
        lambda c: c.channel_id == wanted,
        lambda c: c.slug == wanted,
        lambda c: c.name.casefold() == folded,
        lambda c: c.channel_name == wanted,
        lambda c: bool(slug) and c.slug == slug,
    ]
    for test in tests:
        live = [c for c in everyone if test(c) and c.archived_at is None]
        found = live or [c for c in everyone if test(c)]
        if found:
            return found[0]
    return None


def resolve_community(
    ctx: Context, cmd: ParsedCommand, *, words: str | None = None, example: str, use_channel: bool = True
) -> Community:
    """The community a command is about: a channel mention, `in:<name>`, the given words, or the current channel."""
    ref = cmd.channels[0] if cmd.channels else cmd.community or (words.strip() if words else None)
    if ref:
        community = find_community(ctx, ref)
        if community is None:
            raise UnknownCommunity(_unknown_message(ctx, ref), example=example)
        return community
    channel_id = ctx.invocation.channel_id
    if use_channel and channel_id:
        inv = ctx.invocation
        here = repo.community_by_channel(
            db=ctx.db, platform=inv.actor.platform, workspace_id=inv.actor.workspace_id, channel_id=channel_id
        )
        if here is not None:
            return here
    raise UsageError("Which community? Name it, or run the command in the community's channel.", example=example)


def _unknown_message(ctx: Context, ref: str) -> str:
    inv = ctx.invocation
    live = repo.communities(db=ctx.db, platform=inv.actor.platform, workspace_id=inv.actor.workspace_id)
    names = {c.name: c for c in live} | {c.slug: c for c in live}
    close = difflib.get_close_matches(ref.casefold(), [n.casefold() for n in names], n=3, cutoff=0.5)
    by_folded = {n.casefold(): c for n, c in names.items()}
    suggestions = list(dict.fromkeys(by_folded[n].name for n in close))
    shown = clip(ref, 60)
    if suggestions:
        return (
            f"I can't find a community called “{shown}”. Did you mean: "
            + ", ".join(f"*{s}*" for s in suggestions)
            + "?"
        )
    if live:
        listing = ", ".join(f"*{c.name}*" for c in live[:10])
        return f"I can't find a community called “{shown}”. Communities here: {listing}."
    return f"I can't find a community called “{shown}”. " + copy.text("no_communities")


# --- permissions -----------------------------------------------------------------------------------------------


def require_creator(ctx: Context) -> None:
    """Raise NotAllowed unless COPBOT_CREATORS is empty or lists the caller."""
    creators = ctx.config.creators
    if creators and ctx.actor.user_id not in creators:
        who = ", ".join(f"<@{c}>" for c in sorted(creators))
        raise NotAllowed(
            f"Only these people can create communities here: {who}. Ask one of them, or ask whoever runs copbot "
            "to add you to COPBOT_CREATORS."
        )


def require_facilitator(ctx: Context, community: Community) -> None:
    """Raise NotAllowed (naming the facilitators) unless the caller facilitates `community`."""
    row = repo.membership(db=ctx.db, community=community, member=ctx.actor)
    if row is not None and row.role == Role.FACILITATOR:
        return
    people = repo.facilitators(db=ctx.db, community=community)
    who = ", ".join(f"<@{m.user_id}>" for m in people) or "nobody at the moment"
    raise NotAllowed(f"Only facilitators of *{community.name}* can do that. Its facilitators: {who}.")


def require_live(community: Community) -> None:
    """Raise Conflict when the community is archived."""
    if community.archived_at is not None:
        raise Conflict(f"*{community.name}* has been archived, so it can't be changed or joined.")


# --- commands --------------------------------------------------------------------------------------------------


def _reserve_and_make_channel(ctx: Context, *, slug: str, name: str, purpose: str) -> tuple[Community, ChannelRef]:
    """The community's row first, then its channel: the one side effect that must never be orphaned or doubled.

    The name is reserved (committed) before the platform is asked, so two creates of one name can't both make a
    channel. If making the channel fails, the reservation is dropped. If the process stopped after the channel was
    made but before it was recorded, the next create of that name (the same request retried by an inbox worker, the
    same person's next try, or anyone's after `RESERVATION_LEASE`) finds the reservation and adopts the channel
    copbot made (`find_channel`) instead of making `cop-…-2`. What follows (invite, welcome) is best effort."""
    inv = ctx.invocation
    community: Community | None = None
    for existing in repo.communities(
        db=ctx.db, platform=inv.actor.platform, workspace_id=inv.actor.workspace_id, include_archived=True,
        include_reserved=True,
    ):  # fmt: skip
        if existing.slug != slug and existing.name.casefold() != name.casefold():
            continue
        stopped = ctx.now - existing.created_at >= RESERVATION_LEASE or existing.created_by == ctx.actor.id
        if existing.channel_id is None and existing.slug == slug and stopped:
            # An earlier create stopped part-way: finish it. Its lease ran out, or it was this person's own (a
            # person's requests run one at a time, so theirs is not still running: it is being retried).
            community = existing
            break
        if existing.channel_id is None:
            raise Conflict(_BEING_CREATED.format(name=existing.name))
        state = " (archived)" if existing.archived_at else ""
        raise Conflict(
            f"There is already a community called *{existing.name}*{state} ({channel_mention(existing)}). "
            "Choose another name, or join it.",
            example=f"/cop join {existing.slug}",
        )
    resumed = community is not None
    if community is None:
        community = repo.reserve_community(
            db=ctx.db, platform=inv.actor.platform, workspace_id=inv.actor.workspace_id, slug=slug, name=name,
            purpose=purpose, timezone=ctx.config.timezone, creator=ctx.actor, now=ctx.now,
        )  # fmt: skip
        if community is None:  # a concurrent create of the same name won
            raise Conflict(_BEING_CREATED.format(name=name))
        ctx.db.commit()
    else:
        community.name, community.purpose = name, purpose
    channel_name = CHANNEL_PREFIX + slug
    try:
        found = ctx.platform.find_channel(name=channel_name) if resumed else None
        channel = found or ctx.platform.create_channel(
            name=channel_name, topic=purpose or name, purpose=purpose or f"Community of practice: {name}"
        )
    except PlatformError:
        repo.drop_reservation(db=ctx.db, community=community)
        ctx.db.commit()
        raise
    repo.open_community(db=ctx.db, community=community, channel_id=channel.id, channel_name=channel.name)
    ctx.db.commit()
    return community, channel


def create(ctx: Context, cmd: ParsedCommand) -> list[Reply]:
    """`create <name> [| <purpose>]`: make the channel, welcome people, make the caller its facilitator."""
    require_creator(ctx)
    if cmd.users or cmd.channels or cmd.options:
        raise UsageError("A community name is plain words (no mentions or key=value).", example=CREATE_EXAMPLE)
    name = " ".join(cmd.words.split())
    purpose = " ".join((cmd.rest or "").split())
    if not name:
        raise UsageError("Give the new community a name.", example=CREATE_EXAMPLE)
    if len(name) > NAME_MAX:
        raise UsageError(f"That name is {len(name)} characters; keep it to {NAME_MAX}.", example=CREATE_EXAMPLE)
    if len(purpose) > PURPOSE_MAX:
        raise UsageError(
            f"That purpose is {len(purpose)} characters; keep it to {PURPOSE_MAX}.", example=CREATE_EXAMPLE
        )
    # Before anything is made: a name becomes a channel everyone sees, so it must hold nothing identifiable.
    guard({"name": name, "purpose": purpose}, labels={"name": "community name", "purpose": "purpose"})
    slug = slugify(name)
    if not slug:
        raise UsageError(
            "A community name needs at least one letter or digit (it becomes the channel name).",
            example=CREATE_EXAMPLE,
        )
    community, channel = _reserve_and_make_channel(ctx, slug=slug, name=name, purpose=purpose)
    purpose_line = f"_{purpose}_\n" if purpose else ""
    welcome = copy.text("welcome", name=name, purpose_line=purpose_line, creator=ctx.actor.user_id)
    ingredients = copy.text("ingredients", domain=purpose or name, emoji=ctx.config.story_emoji)
    problems: list[str] = []
    try:
        ctx.platform.invite(channel_id=channel.id, user_ids=[ctx.actor.user_id])
    except PlatformError as exc:
        log.info("create: invite failed (%s)", exc.code)
        problems.append(f"I couldn't add you to the channel ({exc.message}) Join it from the channel list.")
    try:
        ctx.platform.post(
            channel_id=channel.id,
            message=Message(text=welcome, title=name, sections=(Section(welcome), Section(ingredients))),
        )
    except PlatformError as exc:
        log.info("create: welcome not posted (%s)", exc.code)
        problems.append(f"I couldn't post the welcome in the channel ({exc.message}) The community is made.")
    repo.record_audit(
        db=ctx.db,
        action="community.create",
        now=ctx.now,
        actor=ctx.actor,
        community=community,
        detail={"slug": slug, "channel_id": channel.id},
    )
    lines = [f"Created *{name}* with the channel `{channel.name}` (<#{channel.id}>). You're its facilitator."]
    if len(slugify(name, limit=None)) > SLUG_MAX:
        lines.append(f"The channel name was shortened to the {CHANNEL_MAX}-character limit.")
    if channel.name != CHANNEL_PREFIX + slug:
        lines.append(f"`{CHANNEL_PREFIX + slug}` was taken, so the channel is `{channel.name}`.")
    lines.append(f"People join with `/cop join {slug}`; add a co-facilitator with `/cop facilitator add @name`.")
    return [Reply.private("\n".join([*lines, *problems]))]


def list_communities(ctx: Context, cmd: ParsedCommand) -> list[Reply]:
    """`list`: every live community with its purpose, member count and channel."""
    inv = ctx.invocation
    live = repo.communities(db=ctx.db, platform=inv.actor.platform, workspace_id=inv.actor.workspace_id)
    if not live:
        return [Reply.private(copy.text("no_communities"))]
    counts = repo.member_counts(db=ctx.db, community_ids=[c.id for c in live if c.id is not None])
    mine = {c.id for c, _ in repo.communities_of(db=ctx.db, member=ctx.actor)}
    sections = []
    for c in live:
        n = counts.get(c.id or 0, 0)
        people = f"{n} member" + ("" if n == 1 else "s")
        badge = " · you're a member" if c.id in mine else ""
        purpose = f" — {c.purpose}" if c.purpose else ""
        sections.append(Section(f"*{c.name}*{purpose}\n{channel_mention(c)} · {people}{badge}"))
    text = "\n".join(s.text.replace("\n", " · ") for s in sections)
    return [
        Reply(
            message=Message(
                text=f"Communities ({len(live)}):\n{text}",
                title=f"Communities ({len(live)})",
                sections=tuple(sections),
            )
        )
    ]


def join(ctx: Context, cmd: ParsedCommand) -> list[Reply]:
    """`join <community>`: become a member and be added to its channel."""
    example = "/cop join falls-prevention"
    if not (cmd.args or cmd.channels or cmd.community):
        raise UsageError("Which community would you like to join? See them all with `/cop list`.", example=example)
    community = resolve_community(ctx, cmd, words=cmd.words, example=example, use_channel=False)
    require_live(community)
    if repo.membership(db=ctx.db, community=community, member=ctx.actor) is not None:
        return [Reply.private(f"You're already a member of *{community.name}* ({channel_mention(community)}).")]
    repo.add_membership(db=ctx.db, community=community, member=ctx.actor, now=ctx.now)
    if community.channel_id:
        ctx.platform.invite(channel_id=community.channel_id, user_ids=[ctx.actor.user_id])
    part = f" ({channel_mention(community)})" if community.channel_id else ""
    return [Reply.private(copy.text("joined", name=community.name, channel_part=part))]


def leave(ctx: Context, cmd: ParsedCommand) -> list[Reply]:
    """`leave [<community>]`: stop being a member (the last facilitator must hand over first)."""
    example = "/cop leave falls-prevention"
    community = resolve_community(ctx, cmd, words=cmd.words, example=example)
    row = repo.membership(db=ctx.db, community=community, member=ctx.actor)
    if row is None:
        return [Reply.private(f"You're not a member of *{community.name}*, so there's nothing to leave.")]
    if row.role == Role.FACILITATOR:
        others = [m for m in repo.members_of(db=ctx.db, community=community) if m.id != ctx.actor.id]
        helpers = [f for f in repo.facilitators(db=ctx.db, community=community) if f.id != ctx.actor.id]
        if others and not helpers:
            raise Conflict(
                f"You're the only facilitator of *{community.name}*. Hand over first, or archive it.",
                example=f"/cop facilitator add @name in:{community.slug}",
            )
    repo.remove_membership(db=ctx.db, community=community, member=ctx.actor)
    if community.channel_id and community.archived_at is None:
        ctx.platform.remove(channel_id=community.channel_id, user_id=ctx.actor.user_id)
    return [Reply.private(f"You've left *{community.name}*. Rejoin any time with `/cop join {community.slug}`.")]


def profile_form(member: Member) -> Form:
    """The profile form, filled with what the member has told us so far."""
    return Form(
        form_id="profile",
        title="Your profile",
        submit_label="Save",
        fields=(
            FormField(
                "profession",
                "Profession",
                initial=member.profession or "",
                max_length=PROFILE_FIELD_MAX,
                hint="e.g. Staff nurse, Pharmacist, Physiotherapist, Consultant, Healthcare assistant",
            ),
            FormField(
                "organisation",
                "Organisation",
                initial=member.organisation or "",
                max_length=PROFILE_FIELD_MAX,
                hint="Your trust, practice or organisation",
            ),
            FormField(
                "timezone",
                "Time zone",
                initial=member.timezone or "",
                max_length=64,
                hint="An IANA time zone such as Europe/London; leave empty for the community's",
            ),
        ),
    )


def profile(ctx: Context, cmd: ParsedCommand) -> list[Reply]:
    """`profile [profession=…] [organisation=…] [timezone=…]`: set profile fields, or open the form."""
    if not cmd.options and not cmd.args:
        return [Reply(form=profile_form(ctx.actor))]
    return save_profile(ctx, cmd.options, stray=cmd.args)


def save_profile(ctx: Context, values: dict[str, str], *, stray: tuple[str, ...] = ()) -> list[Reply]:
    """Validate and store profile values (from the command or the form); reply with the profile."""
    example = '/cop profile profession="Staff nurse" organisation="Example NHS Trust" timezone=Europe/London'
    if stray:
        raise UsageError(
            f"`{clip(' '.join(stray), 40)}` isn't a `key=value` option. Profile takes profession, organisation "
            "and timezone.",
            example=example,
        )
    for key in values:
        if key not in PROFILE_KEYS:
            raise UsageError(
                f"`{clip(key, 30)}` isn't a profile field. Use profession, organisation or timezone.",
                example=example,
            )
    changes = profile_changes(values)
    repo.update_profile(db=ctx.db, member=ctx.actor, changes=changes, now=ctx.now)
    m = ctx.actor
    fields = (
        ("Profession", m.profession or "—"),
        ("Organisation", m.organisation or "—"),
        ("Time zone", m.timezone or f"community default ({ctx.config.timezone})"),
    )
    text = "Your profile is saved: " + "; ".join(f"{k}: {v}" for k, v in fields) + "."
    return [Reply(message=Message(text=text, title="Profile saved", sections=(Section("", fields=fields),)))]


def validate_profile(ctx: Context, values: dict[str, str]) -> None:
    """The profile form's checks, raising `FieldErrors` keyed by field (for forms that stay open)."""
    profile_changes(values)


def profile_changes(values: Mapping[str, str]) -> dict[str, str | None]:
    """Profile values read and checked (length, time zone, PII guard: profiles are shown to introduction partners);
    raises `FieldErrors` naming every field that is wrong, so a time-zone typo keeps the profession typed."""
    changes: dict[str, str | None] = {}
    errors: dict[str, str] = {}
    for key, raw in values.items():
        field = PROFILE_KEYS.get(key)
        if field is None:
            continue
        value = " ".join(raw.split())
        if len(value) > PROFILE_FIELD_MAX:
            errors[field] = f"Keep it to {PROFILE_FIELD_MAX} characters."
            continue
        if field == "timezone" and value:
            try:
                value = _valid_timezone(value)
            except UsageError as exc:
                errors[field] = exc.message
                continue
        changes[field] = value or None
    for hit in check_fields({k: v or "" for k, v in changes.items()}):
        errors.setdefault(hit.field, f"This looks like it contains {PiiHit(hit.kind, 0, 0).describe()}. Please "
                                     "leave out identifiable details.")  # fmt: skip
    if errors:
        raise FieldErrors(errors, labels={"profession": "Profession", "organisation": "Organisation",
                                          "timezone": "Time zone"})  # fmt: skip
    return changes


def _valid_timezone(value: str) -> str:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        close = difflib.get_close_matches(value, sorted(zoneinfo.available_timezones()), n=1, cutoff=0.6)
        hint = f" Did you mean `{close[0]}`?" if close else ""
        raise UsageError(
            f"`{clip(value, 40)}` isn't a time zone I know.{hint} Use an IANA name.",
            example="/cop profile timezone=Europe/London",
        ) from None
    return value


def facilitator(ctx: Context, cmd: ParsedCommand) -> list[Reply]:
    """`facilitator add|remove <@user>`: share or hand back the facilitator role."""
    example = "/cop facilitator add @name in:falls-prevention"
    action = cmd.args[0].lower() if cmd.args else ""
    if action not in ("add", "remove") or not cmd.users:
        raise UsageError("Say `add` or `remove` and mention the person.", example=example)
    community = resolve_community(ctx, cmd, words=" ".join(cmd.args[1:]) or None, example=example)
    require_live(community)
    require_facilitator(ctx, community)
    inv = ctx.invocation
    replies: list[Reply] = []
    for user_id in cmd.users:
        target = repo.ensure_member(
            db=ctx.db,
            platform=inv.actor.platform,
            workspace_id=inv.actor.workspace_id,
            user_id=user_id,
            now=ctx.now,
        )
        if action == "add":
            repo.add_membership(db=ctx.db, community=community, member=target, role=Role.FACILITATOR, now=ctx.now)
            if community.channel_id:
                ctx.platform.invite(channel_id=community.channel_id, user_ids=[user_id])
            replies.append(Reply.private(f"<@{user_id}> is now a facilitator of *{community.name}*."))
            if target.id != ctx.actor.id:
                ctx.platform.send_dm(
                    user_id=user_id,
                    message=Message(
                        text=f"<@{ctx.actor.user_id}> made you a facilitator of *{community.name}*. "
                        "See what you can do with `/cop help facilitator`."
                    ),
                )
        else:
            row = repo.membership(db=ctx.db, community=community, member=target)
            if row is None or row.role != Role.FACILITATOR:
                replies.append(Reply.private(f"<@{user_id}> isn't a facilitator of *{community.name}*."))
                continue
            if len(repo.facilitators(db=ctx.db, community=community)) == 1:
                raise Conflict(
                    f"<@{user_id}> is the only facilitator of *{community.name}*; add another one first.",
                    example=f"/cop facilitator add @name in:{community.slug}",
                )
            repo.set_role(db=ctx.db, row=row, role=Role.MEMBER)
            replies.append(Reply.private(f"<@{user_id}> is no longer a facilitator of *{community.name}*."))
        repo.record_audit(
            db=ctx.db,
            action=f"facilitator.{action}",
            now=ctx.now,
            actor=ctx.actor,
            community=community,
            target=target,
        )
    return replies


def archive(ctx: Context, cmd: ParsedCommand) -> list[Reply]:
    """`archive [<community>] [confirm]`: archive the community and its channel, after a confirmation."""
    words = [w for w in cmd.args if w.lower() != "confirm"]
    confirmed = len(words) != len(cmd.args)
    example = "/cop archive falls-prevention confirm"
    community = resolve_community(ctx, cmd, words=" ".join(words) or None, example=example)
    require_facilitator(ctx, community)
    if community.archived_at is not None:
        return [Reply.private(f"*{community.name}* is already archived.")]
    if not confirmed:
        return [
            Reply(
                message=Message(
                    text=f"Archive *{community.name}*? Its channel will be archived and it will stop receiving "
                    "prompts and introductions. Its stories stay. To go ahead: "
                    f"`/cop archive {community.slug} confirm`",
                    buttons=(Button("Archive it", "community.archive", value=str(community.id), style="danger"),),
                )
            )
        ]
    return archive_confirmed(ctx, community)


def archive_confirmed(ctx: Context, community: Community) -> list[Reply]:
    """Archive after confirmation (from the `confirm` word or the button)."""
    require_facilitator(ctx, community)
    if community.archived_at is not None:
        return [Reply.private(f"*{community.name}* is already archived.")]
    if community.channel_id:
        ctx.platform.post(
            channel_id=community.channel_id,
            message=Message(
                text=f"<@{ctx.actor.user_id}> has archived *{community.name}*. Thank you all for what you shared."
            ),
        )
        ctx.platform.archive_channel(channel_id=community.channel_id)
    repo.archive_community(db=ctx.db, community=community, now=ctx.now)
    repo.record_audit(db=ctx.db, action="community.archive", now=ctx.now, actor=ctx.actor, community=community)
    return [Reply.private(f"Archived *{community.name}*.")]


# --- platform membership events and the home view ---------------------------------------------------------------


def community_in_channel(ctx: Context, channel_id: str | None = None) -> Community | None:
    """The community whose channel this is (default: where the command was run), archived or not."""
    channel_id = channel_id or ctx.invocation.channel_id
    if not channel_id:
        return None
    inv = ctx.invocation
    return repo.community_by_channel(
        db=ctx.db, platform=inv.actor.platform, workspace_id=inv.actor.workspace_id, channel_id=channel_id
    )


def facilitated_community(ctx: Context, cmd: ParsedCommand, example: str) -> Community:
    """The live community a facilitator command is about; raises unless the caller facilitates it."""
    community = resolve_community(ctx, cmd, example=example)
    require_live(community)
    require_facilitator(ctx, community)
    return community


def member_joined(ctx: Context, channel_id: str) -> list[Reply]:
    """Someone joined a community's channel on the platform: make them a member and welcome them privately."""
    community = community_in_channel(ctx, channel_id)
    if community is None or community.archived_at is not None:
        return []
    if repo.membership(db=ctx.db, community=community, member=ctx.actor) is not None:
        return []
    repo.add_membership(db=ctx.db, community=community, member=ctx.actor, now=ctx.now)
    text = copy.text("joined", name=community.name, channel_part=f" ({channel_mention(community)})")
    buttons = () if ctx.actor.profession else (Button("Fill in my profile", "profile.open", style="primary"),)
    return [Reply(message=Message(text=text, buttons=buttons))]


def member_left(ctx: Context, channel_id: str) -> list[Reply]:
    """Someone left a community's channel on the platform: end their membership (facilitators keep theirs)."""
    community = community_in_channel(ctx, channel_id)
    if community is None:
        return []
    row = repo.membership(db=ctx.db, community=community, member=ctx.actor)
    if row is not None and row.role != Role.FACILITATOR:
        repo.remove_membership(db=ctx.db, community=community, member=ctx.actor)
    return []


def home(ctx: Context) -> list[Reply]:
    """The person's home view: their communities, their opt-ins and, for facilitators, shortcuts."""
    mine = repo.communities_of(db=ctx.db, member=ctx.actor)
    m = ctx.actor
    sections = [
        Section(
            "*Your communities*\n"
            + (
                "\n".join(
                    f"• *{c.name}* {channel_mention(c)}" + (" — you facilitate" if row.role == Role.FACILITATOR else "")
                    for c, row in mine
                )
                or "None yet. See them all with `/cop list` and join with `/cop join <community>`."
            )
        ),
        Section(
            "*Your profile and choices*",
            fields=(
                ("Profession", m.profession or "—"),
                ("Organisation", m.organisation or "—"),
                ("Reflective prompts", "on" if m.prompts_opt_in else "off"),
                ("Introductions", "on" if m.intros_opt_in else "off"),
            ),
        ),
    ]
    if any(row.role == Role.FACILITATOR for _, row in mine):
        sections.append(
            Section("*Facilitator shortcuts*\n`/cop facilitator add @name` · `/cop archive` · `/cop help` for the rest")
        )
    text = "\n".join(s.text for s in sections)
    return [
        Reply(
            message=Message(
                text=text,
                title="copbot",
                sections=tuple(sections),
                buttons=(Button("Edit my profile", "profile.open"),),
            )
        )
    ]
