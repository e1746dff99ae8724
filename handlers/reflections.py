"""Reflective prompts on each community's rhythm: schedules, the tick that fills the outbox, replies, digests.

The tick (`plan_due`) is idempotent: each community gets at most one occurrence per ISO week (its key), and every
delivery has a unique outbox dedupe key, so a restart loses nothing and downtime is caught up once, not per tick.
"""

from __future__ import annotations

import datetime as dt
import logging
import zoneinfo
from zoneinfo import ZoneInfo

from sqlmodel import Session, col, select

from handlers import consent, introductions, outbox, schedule, stories
from handlers.communities import channel_mention, facilitated_community, require_live
from handlers.context import Context, CoreConfig, row_id
from handlers.errors import Conflict, UsageError
from handlers.grammar import ParsedCommand
from handlers.ports import Button, Message, Reply
from handlers.privacy import check_fields, guard
from prompts.library import Prompt, next_prompt
from prompts.library import prompts as library_prompts
from storage import repository as repo
from storage import rhythm
from storage import stories as story_storage
from storage.models import AuditEvent, Community, Member, Membership
from storage.rhythm import OutboxItem
from storage.stories import StoryContent

log = logging.getLogger(__name__)

PROMPT_KINDS = ("prompt", "prompt_dm")
DM_REPLY_WINDOW = dt.timedelta(days=7)
SCHEDULE_EXAMPLE = "/cop prompt schedule wednesday 10:00 channel Europe/London"
MODES = ("channel", "dm")
POLICIES = ("skip", "next-working-day")


# --- the prompt pool -------------------------------------------------------------------------------------------


def custom_prompt_id(row_id: int) -> str:
    """The stable id of a facilitator's prompt."""
    return f"custom-{row_id}"


def prompt_pool(db: Session, community: Community) -> list[Prompt]:
    """The library plus the community's own prompts."""
    assert community.id is not None
    own = [
        Prompt(id=custom_prompt_id(p.id or 0), text=p.text, themes=(), kind="custom", cycle=None, stage=None,
               source="custom")
        for p in rhythm.custom_prompts(db=db, community_id=community.id)
    ]  # fmt: skip
    return [*library_prompts(), *own]


def prompt_message(prompt: Prompt, community: Community, *, mode: str) -> Message:
    """The message members receive; the prompt id travels with it so every delivery can be traced."""
    where = "in this thread" if mode == "channel" else "here"
    text = (
        f"*Reflective prompt for {community.name}*\n> {prompt.text}\n"
        f"Reply {where} and your answer is kept as a reflection for the community. Please leave out anything that "
        "could identify a patient."
    )
    return Message(text=text, title=f"Reflective prompt · {community.name}")


# --- the tick ----------------------------------------------------------------------------------------------------


def plan_due(*, db: Session, now: dt.datetime, config: CoreConfig) -> int:
    """Turn every community's due prompt into an occurrence and outbox rows; returns the rows added.

    Cheap when nothing is new: this week's keys of every scheduled community are checked in one query.
    """
    live = list(
        db.exec(
            select(Community).where(
                col(Community.archived_at).is_(None),
                col(Community.prompt_weekday).is_not(None),
                col(Community.prompt_time).is_not(None),
                col(Community.prompt_paused).is_(False),
            )
        )
    )
    due: list[tuple[Community, str, dt.datetime]] = []
    for community in live:
        assert community.id is not None and community.prompt_weekday is not None and community.prompt_time
        nominal = schedule.latest_due(
            now, weekday=community.prompt_weekday, hhmm=community.prompt_time, tz=community.timezone
        )
        if community.prompt_since is not None and nominal < community.prompt_since:
            continue  # scheduled after this week's time had passed: the first prompt is next week's
        due.append((community, f"prompt:{community.id}:{schedule.week_key(nominal, community.timezone)}", nominal))
    seen = rhythm.existing_occurrence_keys(db=db, keys=[key for _, key, _ in due])
    added = 0
    for community, key, nominal in due:
        if key not in seen:
            added += _plan_community(db=db, community=community, key=key, nominal=nominal, now=now, config=config)
    db.commit()
    return added


def _plan_community(
    *, db: Session, community: Community, key: str, nominal: dt.datetime, now: dt.datetime, config: CoreConfig
) -> int:
    assert community.id is not None and community.prompt_time is not None
    due = schedule.holiday_adjusted(
        nominal, hhmm=community.prompt_time, tz=community.timezone, region=config.holidays,
        policy=community.holiday_policy,
    )  # fmt: skip
    if due is None:
        rhythm.add_occurrence(
            db=db, key=key, community_id=community.id, prompt_id="-", mode=community.prompt_mode, due_at=nominal,
            skipped=True, now=now,
        )  # fmt: skip
        return 0
    return _occur(db=db, community=community, key=key, due=due, now=now)


def _occur(*, db: Session, community: Community, key: str, due: dt.datetime, now: dt.datetime) -> int:
    assert community.id is not None
    used = [p for p in rhythm.occurrence_history(db=db, community_id=community.id) if p != "-"]
    prompt = next_prompt(prompt_pool(db, community), used, seed=community.id)
    occurrence = rhythm.add_occurrence(
        db=db, key=key, community_id=community.id, prompt_id=prompt.id, mode=community.prompt_mode, due_at=due,
        skipped=False, now=now,
    )  # fmt: skip
    if occurrence is None:
        return 0
    return fan_out(db=db, community=community, occurrence=occurrence, prompt=prompt, now=now)


def fan_out(
    *, db: Session, community: Community, occurrence: rhythm.PromptOccurrence, prompt: Prompt, now: dt.datetime
) -> int:
    """Outbox rows for one occurrence: one channel post, or one DM per opted-in, un-snoozed member."""
    assert occurrence.id is not None
    payload = outbox.encode(prompt_message(prompt, community, mode=occurrence.mode))
    payload["prompt_id"] = prompt.id
    common = {
        "platform": community.platform, "workspace_id": community.workspace_id, "community_id": community.id,
        "occurrence_id": occurrence.id, "due_at": occurrence.due_at, "now": now, "payload": payload,
    }  # fmt: skip
    if occurrence.mode == "channel":
        if not community.channel_id:
            return 0
        return int(
            rhythm.enqueue(
                db=db, dedupe_key=f"{occurrence.key}:channel", kind="prompt",
                destination=f"channel:{community.channel_id}", **common,  # type: ignore[arg-type]
            )
        )  # fmt: skip
    added = 0
    for member in repo.members_of(db=db, community=community):
        if not wants_prompts(member, at=occurrence.due_at):
            continue
        added += int(
            rhythm.enqueue(
                db=db, dedupe_key=f"{occurrence.key}:dm:{member.id}", kind="prompt_dm", member_id=member.id,
                destination=f"user:{member.user_id}", **common,  # type: ignore[arg-type]
            )
        )  # fmt: skip
    return added


def wants_prompts(member: Member, *, at: dt.datetime) -> bool:
    """Opted in and not snoozed at that time."""
    return member.prompts_opt_in and (member.snoozed_until is None or member.snoozed_until <= at)


def still_wanted(*, db: Session, item: OutboxItem, now: dt.datetime) -> bool:
    """Checked just before sending: a DM prompt to someone who left, opted out or snoozed meanwhile is dropped."""
    if item.kind in introductions.KINDS:
        return introductions.still_wanted(db=db, item=item, now=now)
    if item.kind != "prompt_dm" or item.member_id is None or item.community_id is None:
        return True
    row = db.exec(
        select(Member.prompts_opt_in, Member.snoozed_until)
        .join(Membership, col(Membership.member_id) == col(Member.id))
        .join(Community, col(Community.id) == col(Membership.community_id))
        .where(
            Member.id == item.member_id,
            Membership.community_id == item.community_id,
            col(Community.archived_at).is_(None),
        )
    ).first()
    if row is None:
        return False
    opted_in, snoozed_until = row
    return bool(opted_in) and (snoozed_until is None or snoozed_until <= now)


def upcoming(*, db: Session, now: dt.datetime, config: CoreConfig) -> list[tuple[Community, dt.datetime | None]]:
    """Each live community with its next prompt time (None when unscheduled or paused), for `copbot schedule`."""
    rows = []
    for community in db.exec(select(Community).where(col(Community.archived_at).is_(None)).order_by(Community.name)):
        rows.append((community, next_prompt_at(community, now=now, config=config)))
    return rows


def next_prompt_at(community: Community, *, now: dt.datetime, config: CoreConfig) -> dt.datetime | None:
    """When the community's next scheduled prompt goes out (after bank-holiday rules), or None."""
    if community.prompt_paused or community.prompt_weekday is None or community.prompt_time is None:
        return None
    candidate = now
    for _ in range(4):  # a skipped holiday week moves us on; four tries is plenty
        nominal = schedule.next_due(
            candidate, weekday=community.prompt_weekday, hhmm=community.prompt_time, tz=community.timezone
        )
        due = schedule.holiday_adjusted(
            nominal, hhmm=community.prompt_time, tz=community.timezone, region=config.holidays,
            policy=community.holiday_policy,
        )  # fmt: skip
        if due is not None:
            return due
        candidate = nominal
    return None


def local_text(instant: dt.datetime, tz: str) -> str:
    """A due time as people read it: 'Wed 2 Dec 10:00 (Europe/London)'."""
    local = instant.astimezone(ZoneInfo(tz))
    return f"{local:%a} {local.day} {local:%b %H:%M} ({tz})"


# --- commands ----------------------------------------------------------------------------------------------------


def prompt_command(ctx: Context, cmd: ParsedCommand) -> list[Reply]:
    """`prompt now|pause|resume|schedule|add …` (facilitators)."""
    action = cmd.args[0].lower() if cmd.args else ""
    rest = list(cmd.args[1:])
    handlers = {"schedule": _schedule, "now": _now, "pause": _pause, "resume": _resume, "add": _add}
    if action not in handlers:
        raise UsageError("Say `now`, `pause`, `resume`, `schedule` or `add`.", example=SCHEDULE_EXAMPLE)
    return handlers[action](ctx, cmd, rest)


def _schedule(ctx: Context, cmd: ParsedCommand, words: list[str]) -> list[Reply]:
    community = facilitated_community(ctx, cmd, SCHEDULE_EXAMPLE)
    if len(words) < 2:
        raise UsageError("Give a weekday and a time (24-hour).", example=SCHEDULE_EXAMPLE)
    weekday = schedule.parse_weekday(words[0])
    if weekday is None:
        raise UsageError(f"`{words[0][:20]}` isn't a weekday.", example=SCHEDULE_EXAMPLE)
    if schedule.parse_hhmm(words[1]) is None:
        raise UsageError(f"`{words[1][:20]}` isn't a time like 10:00 or 14:30.", example=SCHEDULE_EXAMPLE)
    hour, minute = schedule.parse_hhmm(words[1]) or (0, 0)
    mode, tz = community.prompt_mode, community.timezone
    for word in words[2:]:
        if word.lower() in MODES:
            mode = word.lower()
        elif "/" in word or word.upper() == "UTC":
            try:
                zoneinfo.ZoneInfo(word)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                raise UsageError(f"`{word[:40]}` isn't a time zone I know.", example=SCHEDULE_EXAMPLE) from None
            tz = word
        else:
            raise UsageError(f"`{word[:20]}` isn't `channel`, `dm` or a time zone.", example=SCHEDULE_EXAMPLE)
    policy = cmd.options.get("on_holiday", community.holiday_policy).lower()
    unknown = set(cmd.options) - {"on_holiday"}
    if policy not in POLICIES or unknown:
        raise UsageError(
            "The only option is `on-holiday=skip` or `on-holiday=next-working-day`.", example=SCHEDULE_EXAMPLE
        )
    community.prompt_weekday, community.prompt_time = weekday, f"{hour:02d}:{minute:02d}"
    community.prompt_mode, community.timezone, community.holiday_policy = mode, tz, policy
    community.prompt_paused, community.prompt_since = False, ctx.now
    ctx.db.add(community)
    repo.record_audit(
        db=ctx.db, action="prompt.schedule", now=ctx.now, actor=ctx.actor, community=community,
        detail={"weekday": weekday, "time": community.prompt_time, "mode": mode, "tz": tz, "holidays": policy},
    )  # fmt: skip
    upcoming_at = next_prompt_at(community, now=ctx.now, config=ctx.config)
    where = "in the channel" if mode == "channel" else "by direct message to each member who wants them"
    holiday = "skipped" if policy == "skip" else "moved to the next working day"
    text = (
        f"*{community.name}* gets a reflective prompt every {schedule.WEEKDAYS[weekday].title()} at "
        f"{community.prompt_time} ({tz}), {where}. On bank holidays ({ctx.config.holidays}) it is {holiday}."
    )
    if upcoming_at:
        text += f"\nNext: {local_text(upcoming_at, tz)}."
    return [Reply.private(text)]


def _now(ctx: Context, cmd: ParsedCommand, words: list[str]) -> list[Reply]:
    community = facilitated_community(ctx, cmd, "/cop prompt now in:falls-prevention")
    assert community.id is not None
    key = f"prompt:{community.id}:now:{ctx.now:%Y%m%dT%H%M}"
    added = _occur(db=ctx.db, community=community, key=key, due=ctx.now, now=ctx.now)
    repo.record_audit(db=ctx.db, action="prompt.now", now=ctx.now, actor=ctx.actor, community=community)
    if added == 0:
        raise Conflict(
            "Nothing to send: a prompt went out this minute already, or nobody in the community wants DM prompts."
        )
    who = "the channel" if community.prompt_mode == "channel" else f"{added} member(s) by DM"
    return [Reply.private(f"A reflective prompt for *{community.name}* is on its way to {who}.")]


def _pause(ctx: Context, cmd: ParsedCommand, words: list[str]) -> list[Reply]:
    community = facilitated_community(ctx, cmd, "/cop prompt pause in:falls-prevention")
    community.prompt_paused = True
    ctx.db.add(community)
    repo.record_audit(db=ctx.db, action="prompt.pause", now=ctx.now, actor=ctx.actor, community=community)
    return [Reply.private(f"Prompts for *{community.name}* are paused. `/cop prompt resume` starts them again.")]


def _resume(ctx: Context, cmd: ParsedCommand, words: list[str]) -> list[Reply]:
    community = facilitated_community(ctx, cmd, "/cop prompt resume in:falls-prevention")
    if community.prompt_weekday is None:
        raise UsageError("There's no schedule to resume yet.", example=SCHEDULE_EXAMPLE)
    community.prompt_paused, community.prompt_since = False, ctx.now  # missed weeks are not caught up
    ctx.db.add(community)
    repo.record_audit(db=ctx.db, action="prompt.resume", now=ctx.now, actor=ctx.actor, community=community)
    upcoming_at = next_prompt_at(community, now=ctx.now, config=ctx.config)
    when = f" Next: {local_text(upcoming_at, community.timezone)}." if upcoming_at else ""
    return [Reply.private(f"Prompts for *{community.name}* are back on.{when}")]


def _add(ctx: Context, cmd: ParsedCommand, words: list[str]) -> list[Reply]:
    community = facilitated_community(ctx, cmd, "/cop prompt add What helped you feel safe to speak up this week?")
    text = " ".join([*words, *([cmd.rest] if cmd.rest else [])]).strip()
    if not text:
        raise UsageError("Write the prompt after `add`.", example="/cop prompt add What made handover go well today?")
    if len(text) > 280:
        raise UsageError(f"Keep a prompt to 280 characters (that one is {len(text)}).")
    guard({"prompt": text}, labels={"prompt": "Prompt"})
    row = rhythm.CustomPrompt(community_id=community.id or 0, text=text, created_by=ctx.actor.id, created_at=ctx.now)
    ctx.db.add(row)
    ctx.db.flush()
    repo.record_audit(
        db=ctx.db, action="prompt.add", now=ctx.now, actor=ctx.actor, community=community,
        detail={"prompt_id": custom_prompt_id(row.id or 0)},
    )  # fmt: skip
    return [Reply.private(f"Added to *{community.name}*'s prompts as `{custom_prompt_id(row.id or 0)}`.")]


def prompts_optin(ctx: Context, cmd: ParsedCommand) -> list[Reply]:
    """`prompts on|off`: whether I receive reflective prompts by DM."""
    choice = cmd.args[0].lower() if cmd.args else ""
    if choice not in ("on", "off"):
        raise UsageError("Say `on` or `off`.", example="/cop prompts off")
    ctx.actor.prompts_opt_in = choice == "on"
    ctx.actor.updated_at = ctx.now
    ctx.db.add(ctx.actor)
    if choice == "on":
        return [Reply.private("You'll receive reflective prompts from your communities again.")]
    return [Reply.private("You won't receive reflective prompts by DM. Channel prompts still appear in the channel.")]


# --- replies -----------------------------------------------------------------------------------------------------


def capture_reply(
    ctx: Context, *, channel_id: str, message_id: str, thread_id: str | None, text: str, is_dm: bool
) -> list[Reply]:
    """A person's reply to a prompt (in its thread, or in their DM) becomes a reflection, once."""
    item: OutboxItem | None = None
    if thread_id:
        item = rhythm.sent_with_message(db=ctx.db, channel_id=channel_id, message_id=thread_id)
    if item is None and is_dm:
        item = rhythm.latest_sent_to(
            db=ctx.db, destination=f"user:{ctx.actor.user_id}", kinds=["prompt_dm"], since=ctx.now - DM_REPLY_WINDOW
        )
    if item is None or item.kind not in PROMPT_KINDS or item.occurrence_id is None or item.community_id is None:
        return []
    if not text.strip():
        return []
    community = ctx.db.get(Community, item.community_id)
    if community is None:
        return []
    hits = check_fields({"reflection": text}, labels={"reflection": "reply"})
    if hits:
        kinds = ", ".join(sorted({h.kind.replace("_", " ") for h in hits}))
        return [
            Reply.private(
                f"I didn't keep your reply as a reflection for *{community.name}*: it looks like it contains "
                f"patient-identifiable details ({kinds}). Please post it again without them."
            )
        ]
    assert ctx.actor.id is not None
    reflection = rhythm.add_reflection(
        db=ctx.db, occurrence_id=item.occurrence_id, outbox_id=item.id, community_id=item.community_id,
        member_id=ctx.actor.id, text=text.strip(), source_channel=channel_id, source_message=message_id, now=ctx.now,
    )  # fmt: skip
    if reflection is None:
        return []
    return [
        Reply(
            message=Message(
                text=f"Thank you: your reply is kept as a reflection for *{community.name}*. "
                "Would you like to turn it into a story others can learn from?",
                buttons=(Button("Turn it into a story", "reflection.promote", value=str(reflection.id)),),
            )
        )
    ]


def promote(ctx: Context, value: str) -> list[Reply]:
    """The "Turn it into a story" button: the story form, pre-filled from the reflection (its author only)."""
    number = row_id(value)
    reflection = ctx.db.get(rhythm.Reflection, number) if number is not None else None
    if reflection is None or reflection.member_id != ctx.actor.id:
        raise UsageError("Only the person who wrote a reflection can turn it into a story.")
    if reflection.promoted_story_id is not None:
        return [Reply.private(f"That reflection is already story #{reflection.promoted_story_id}.")]
    community = ctx.db.get(Community, reflection.community_id)
    if community is None:
        raise UsageError("That community no longer exists.")
    require_live(community)
    first = reflection.text.splitlines()[0] if reflection.text else ""
    title = first[:77] + "…" if len(first) > 80 else first
    prefill = StoryContent(title=title, action=reflection.text)
    form = stories.story_form(
        ctx, community=community, prefill=prefill, context=f"reflection:{reflection.id}", ask_community=False
    )
    return [Reply(form=form)]


# --- digest ------------------------------------------------------------------------------------------------------


def digest(ctx: Context, cmd: ParsedCommand) -> list[Reply]:
    """`digest`: post what's new in the community (stories, how many reflected, the next prompt) to its channel."""
    community = facilitated_community(ctx, cmd, "/cop digest in:falls-prevention")
    assert community.id is not None
    since = last_digest_at(ctx.db, community) or ctx.now - dt.timedelta(days=7)
    message = digest_message(ctx.db, community, since=since, now=ctx.now, config=ctx.config)
    if community.channel_id:
        ctx.platform.post(channel_id=community.channel_id, message=message)
    repo.record_audit(
        db=ctx.db, action="digest.post", now=ctx.now, actor=ctx.actor, community=community,
        detail={"since": since.isoformat()},
    )  # fmt: skip
    return [Reply.private(f"Posted a digest in {channel_mention(community)}.")]


def last_digest_at(db: Session, community: Community) -> dt.datetime | None:
    """When the community's last digest was posted."""
    row = db.exec(
        select(AuditEvent)
        .where(AuditEvent.community_id == community.id, AuditEvent.action == "digest.post")
        .order_by(col(AuditEvent.at).desc())
    ).first()
    return row.at if row else None


def digest_message(
    db: Session, community: Community, *, since: dt.datetime, now: dt.datetime, config: CoreConfig
) -> Message:
    """The digest's content: counts and titles only, never reflection text."""
    assert community.id is not None
    reflections = rhythm.reflections_since(db=db, community_id=community.id, since=since)
    people = len({r.member_id for r in reflections})
    lines = [
        f"*What's been happening in {community.name}* since {since.astimezone(ZoneInfo(community.timezone)):%d %b}"
    ]
    lines.append(f"• {len(reflections)} reflection(s) from {people} member(s) — thank you for taking the time.")
    for title in _new_story_titles(db, community, since):
        lines.append(f"• New story: {title}")
    upcoming_at = next_prompt_at(community, now=now, config=config)
    if upcoming_at:
        lines.append(f"• Next reflective prompt: {local_text(upcoming_at, community.timezone)}.")
    lines.append("Share what's working with `/cop story`.")
    return Message(text="\n".join(lines), title=f"Digest · {community.name}")


def _new_story_titles(db: Session, community: Community, since: dt.datetime) -> list[str]:
    assert community.id is not None
    # The digest is posted in the channel: only titles its members may read (never `safety_team` ones).
    scopes = consent.scopes_for(consent.CHANNEL)
    return story_storage.published_titles_since(db=db, community_id=community.id, since=since, scopes=scopes)
