"""Peer introductions across boundaries: enrolment, rounds on a schedule, follow-ups and their figures.

A round (scheduled, or `/cop intros run`) goes like this, every send through the outbox with a unique dedupe key:

1. the day before a scheduled round, each person taking part gets a notice with a "Skip this round" button;
2. at the round's time the people taking part *then* are matched by `handlers.matching` (so someone who left,
   snoozed or skipped after the notice is not matched); each group gets ONE message in a group conversation with
   copbot (`ChatPlatform.send_group_dm`: a Slack group DM), with every profile and a conversation starter, where
   the conversation can start. A platform that can't open one (Teams: a bot cannot create group chats) answers
   `unsupported`, and the dispatcher queues each person's own introduction instead (`split_group`), which names
   their partners and, in `Message.chat_with`, invites a chat with them (Teams adds its deep link). Anyone left
   without a partner gets a kind note, and each facilitator gets the round's figures;
3. half-way through the round (`every * 7 // 2` days later, 3 days for a one-off run) each person is asked "Did you
   meet?" with Yes / Not yet / No buttons; the last answer counts, and pressing the same button again changes
   nothing.

"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from sqlmodel import Session, col, select

from handlers import matching, outbox, schedule
from handlers.communities import (
    community_in_channel,
    facilitated_community,
    resolve_community,
)
from handlers.context import Context, CoreConfig, row_id
from handlers.errors import Conflict, NotAllowed, UsageError
from handlers.grammar import ParsedCommand
from handlers.matching import Candidate, Match, RoundFigures
from handlers.ports import Button, Message, Reply, Section
from prompts.library import Starter, pick_starter, starters
from storage import intros, rhythm
from storage import repository as repo
from storage.intros import IntroGroupMember, IntroRound
from storage.models import Community, Member
from storage.rhythm import OutboxItem

log = logging.getLogger(__name__)

GROUP_KIND = "intro_group"
KINDS = ("intro_notice", GROUP_KIND, "intro", "intro_followup", "intro_unpaired", "intro_figures")
_DESTINATION_MAX = 140  # the outbox's column
EVERY = (1, 2, 4)
INTRO_TIME = "10:00"  # local time of a scheduled round, in the community's time zone
NOTICE_AHEAD = dt.timedelta(days=1)
RUN_FOLLOWUP = dt.timedelta(days=3)
MAX_SNOOZE_WEEKS = 12
ENROLMENTS = ("opt-in", "opt-out")
SCHEDULE_EXAMPLE = "/cop intros schedule every 2 weeks monday"
ANSWERS = {"yes": "Yes", "not_yet": "Not yet", "no": "No"}
ANSWER_REPLIES = {
    "yes": "Wonderful, thank you for telling me. I hope it was a good conversation.",
    "not_yet": "No rush: there's still time this round. A short call counts.",
    "no": "Thanks for letting me know. There'll be someone new to meet next round.",
}


# --- who takes part ----------------------------------------------------------------------------------------------


def takes_part(member: Member, community: Community, *, choice: str | None, at: dt.datetime) -> bool:
    """Intros on, not snoozed at `at`, and in for this community (their own choice, else its enrolment default)."""
    if not member.intros_opt_in:
        return False
    if member.snoozed_until is not None and member.snoozed_until > at:
        return False
    if choice is not None:
        return choice == "in"
    return community.intro_enrolment == "opt-out"


def participants(db: Session, community: Community, *, at: dt.datetime, round_id: int | None = None) -> list[Member]:
    """The community's members who take part in a round at `at` (minus those who skipped that round)."""
    assert community.id is not None
    choices = intros.enrolments(db=db, community_id=community.id)
    skips = intros.skipped(db=db, round_id=round_id) if round_id is not None else set()
    return [
        m
        for m in repo.members_of(db=db, community=community)
        if m.id not in skips and takes_part(m, community, choice=choices.get(m.id or 0), at=at)
    ]


# --- the schedule -------------------------------------------------------------------------------------------------


def first_round_at(community: Community) -> dt.datetime | None:
    """The first scheduled round: the round weekday at INTRO_TIME, at or after the schedule was set."""
    if community.intro_every_weeks is None or community.intro_weekday is None or community.intro_since is None:
        return None
    return schedule.next_due(
        community.intro_since - dt.timedelta(microseconds=1), weekday=community.intro_weekday, hhmm=INTRO_TIME,
        tz=community.timezone,
    )  # fmt: skip


def round_due(community: Community, *, at: dt.datetime) -> dt.datetime | None:
    """The latest scheduled round time at or before `at` (every N weeks from the first), or None."""
    first = first_round_at(community)
    if first is None or community.intro_every_weeks is None or community.intro_weekday is None:
        return None
    tz = ZoneInfo(community.timezone)
    first_day = first.astimezone(tz).date()
    candidate = schedule.latest_due(at, weekday=community.intro_weekday, hhmm=INTRO_TIME, tz=community.timezone)
    for _ in range(community.intro_every_weeks):
        day = candidate.astimezone(tz).date()
        if day < first_day:
            return None
        if (day - first_day).days % (7 * community.intro_every_weeks) == 0:
            return candidate
        candidate = schedule.local_instant(day - dt.timedelta(days=7), INTRO_TIME, community.timezone)
    return None


def next_round_at(community: Community, *, now: dt.datetime) -> dt.datetime | None:
    """When the community's next scheduled round is matched (None when unscheduled)."""
    if community.intro_every_weeks is None:
        return None
    first = first_round_at(community)
    if first is not None and first > now:
        return first
    latest = round_due(community, at=now)
    if latest is None:
        return first
    local = latest.astimezone(ZoneInfo(community.timezone)).date()
    step = dt.timedelta(days=7 * community.intro_every_weeks)
    return schedule.local_instant(local + step, INTRO_TIME, community.timezone)


def followup_delay(community: Community) -> dt.timedelta:
    """How long after the introductions the "Did you meet?" follow-up goes: half the round."""
    if community.intro_every_weeks is None:
        return RUN_FOLLOWUP
    return dt.timedelta(days=7 * community.intro_every_weeks // 2)


# --- the tick -----------------------------------------------------------------------------------------------------


def plan_due(*, db: Session, now: dt.datetime, config: CoreConfig) -> int:
    """Send the day-before notices and match the rounds that are due; returns the outbox rows added. Idempotent."""
    live = db.exec(
        select(Community).where(col(Community.archived_at).is_(None), col(Community.intro_every_weeks).is_not(None))
    )
    added = 0
    for community in list(live):
        assert community.id is not None
        upcoming = round_due(community, at=now + NOTICE_AHEAD)
        if upcoming is None:
            continue
        key = f"intro:{community.id}:{schedule.week_key(upcoming, community.timezone)}"
        row = intros.round_by_key(db=db, key=key)
        if row is None:
            row = intros.add_round(
                db=db, key=key, community_id=community.id, due_at=upcoming,
                followup_at=upcoming + followup_delay(community), now=now,
            )  # fmt: skip
            if row is None:
                continue
            if now < upcoming:
                added += _notices(db, community, row, now=now)
        if row.status == "planned" and now >= row.due_at:
            added += run_round(db=db, community=community, row=row, now=now)
    db.commit()
    return added


def _enqueue(
    db: Session, community: Community, *, key: str, kind: str, member: Member, message: Message,
    due_at: dt.datetime, now: dt.datetime, extra: dict[str, int],
) -> int:  # fmt: skip
    return _put(db, community, key=key, kind=kind, user_id=member.user_id, member_id=member.id,
                payload=outbox.encode(message) | extra, due_at=due_at, now=now)  # fmt: skip


def _enqueue_each(
    db: Session, community: Community, *, key: str, one: dict[str, Any], extra: dict[str, int], now: dt.datetime
) -> int:
    """One person's own introduction, from a group row's `each` entry."""
    return _put(db, community, key=key, kind="intro", user_id=str(one["user_id"]), member_id=int(one["member_id"]),
                payload=dict(one["message"]) | extra, due_at=now, now=now)  # fmt: skip


def _put(
    db: Session, community: Community, *, key: str, kind: str, user_id: str, member_id: int | None,
    payload: dict[str, Any], due_at: dt.datetime, now: dt.datetime,
) -> int:  # fmt: skip
    return int(
        rhythm.enqueue(
            db=db, dedupe_key=key, kind=kind, platform=community.platform, workspace_id=community.workspace_id,
            destination=f"user:{user_id}", payload=payload, due_at=due_at, now=now, community_id=community.id,
            member_id=member_id,
        )
    )  # fmt: skip


def split_group(*, db: Session, item: OutboxItem, now: dt.datetime) -> int:
    """A group introduction the platform could not send as one conversation: each person's own introduction is
    queued instead (in the caller's transaction, which also finishes the group row, so a crash does neither or
    both). Returns the rows added."""
    community = db.get(Community, item.community_id) if item.community_id is not None else None
    if community is None:
        return 0
    data = json.loads(item.payload)
    extra = {k: int(data[k]) for k in ("intro_round_id", "intro_group_id") if k in data}
    return sum(
        _enqueue_each(db, community, key=f"{item.dedupe_key}:{one['member_id']}", one=one, extra=extra, now=now)
        for one in data.get("each", [])
    )


def _notices(db: Session, community: Community, row: IntroRound, *, now: dt.datetime) -> int:
    assert row.id is not None
    added = 0
    for member in participants(db, community, at=row.due_at, round_id=row.id):
        added += _enqueue(
            db, community, key=f"{row.key}:notice:{member.id}", kind="intro_notice", member=member,
            message=notice_message(community, row), due_at=now, now=now, extra={"intro_round_id": row.id},
        )  # fmt: skip
    return added


def run_round(*, db: Session, community: Community, row: IntroRound, now: dt.datetime) -> int:
    """Match a planned round and queue its introductions, follow-ups, notes and figures; returns rows added."""
    assert community.id is not None and row.id is not None
    if not intros.claim_round(db=db, round_id=row.id):
        return 0
    people = participants(db, community, at=row.due_at, round_id=row.id)
    by_id = {m.id or 0: m for m in people}
    candidates = [Candidate(m.id or 0, m.profession, m.organisation) for m in people]
    past = intros.history(db=db, community_id=community.id)
    result = matching.match(candidates, past, seed=row.seed, current_round=row.number)
    pool = starters()
    added = 0
    for index, group in enumerate(result.groups):
        starter = pick_starter(pool, seed=row.seed * 1_000 + index)
        stored = intros.add_group(
            db=db, round_id=row.id, starter_id=starter.id,
            people=[(i, by_id[i].profession, by_id[i].organisation) for i in group],
        )  # fmt: skip
        assert stored.id is not None
        members = [by_id[i] for i in group]
        extra = {"intro_round_id": row.id, "intro_group_id": stored.id}
        each = [
            {"member_id": m.id, "user_id": m.user_id,
             "message": outbox.encode(intro_message(community, m, [p for p in members if p is not m], starter))}
            for m in members
        ]  # fmt: skip
        destination = "group:" + ",".join(m.user_id for m in members)
        if len(destination) <= _DESTINATION_MAX:
            added += int(
                rhythm.enqueue(
                    db=db, dedupe_key=f"{row.key}:intro:group:{stored.id}", kind=GROUP_KIND,
                    platform=community.platform, workspace_id=community.workspace_id, destination=destination,
                    payload=outbox.encode(group_intro_message(community, members, starter)) | extra | {"each": each},
                    due_at=now, now=now, community_id=community.id,
                )
            )  # fmt: skip
        else:  # ids too long to name as one destination: each person's own introduction straight away
            for one in each:
                added += _enqueue_each(db, community, key=f"{row.key}:intro:{one['member_id']}", one=one, extra=extra,
                                       now=now)  # fmt: skip
        for member_id in group:
            member, partners = by_id[member_id], [by_id[o] for o in group if o != member_id]
            added += _enqueue(
                db, community, key=f"{row.key}:followup:{member_id}", kind="intro_followup", member=member,
                message=followup_message(community, partners, stored.id), due_at=max(now, row.followup_at), now=now,
                extra=extra,
            )  # fmt: skip
    for member_id in result.unpaired:
        added += _enqueue(
            db, community, key=f"{row.key}:unpaired:{member_id}", kind="intro_unpaired", member=by_id[member_id],
            message=unpaired_message(community), due_at=now, now=now, extra={"intro_round_id": row.id},
        )  # fmt: skip
    intros.finish_round(db=db, row=row, participants=len(people), unpaired=len(result.unpaired), now=now)
    round_figures = matching.figures(result, candidates, past)
    message = figures_message(db, community, row, round_figures)
    for facilitator in repo.facilitators(db=db, community=community):
        added += _enqueue(
            db, community, key=f"{row.key}:figures:{facilitator.id}", kind="intro_figures", member=facilitator,
            message=message, due_at=now, now=now, extra={"intro_round_id": row.id},
        )  # fmt: skip
    repo.record_audit(
        db=db, action="intros.round", now=now, community=community,
        detail={"round": row.number, "people": len(people), "groups": len(result.groups),
                "unpaired": len(result.unpaired)},
    )  # fmt: skip
    log.info("intro round %s of community %s: %d groups", row.number, community.id, len(result.groups))
    return added


# --- messages -----------------------------------------------------------------------------------------------------


def _profile_line(member: Member) -> str:
    parts = [member.profession or "profession not given", member.organisation or "organisation not given"]
    return f"<@{member.user_id}> — " + ", ".join(parts)


def _profile_section(member: Member) -> Section:
    return Section(
        text=f"<@{member.user_id}>",
        fields=(
            ("Profession", member.profession or "profession not given"),
            ("Organisation", member.organisation or "organisation not given"),
        ),
    )


def _incomplete(member: Member) -> bool:
    return not (member.profession and member.organisation)


def notice_message(community: Community, row: IntroRound) -> Message:
    """The day-before notice, with the "Skip this round" button."""
    text = (
        f"Tomorrow *{community.name}* introduces you to someone from another profession or organisation for a "
        "short conversation. Not a good time? Skip this round and you'll be in the next one as usual. "
        f"(`/cop intros off in:{community.slug}` stops introductions in this community.)"
    )
    return Message(
        text=text,
        title=f"Introductions tomorrow · {community.name}",
        buttons=(Button("Skip this round", "intro.skip", value=str(row.id)),),
    )


def intro_message(community: Community, member: Member, partners: list[Member], starter: Starter) -> Message:
    """One person's introduction: who they meet, both (all) profiles and a conversation starter.

    The sections carry the whole message (platforms with rich layouts show only them); `text` says the same for
    notifications and plain-text platforms."""
    names = " and ".join(f"<@{p.user_id}>" for p in partners)
    meet = f"*Meet {names}* from {community.name}."
    advice = (
        "They have a message like this one naming you. Send them a message to find 20–30 minutes for a call or a "
        "coffee."
    )
    starter_text = f"*A conversation starter*\n> {starter.text}"
    incomplete = (
        "Your profile is missing your profession or organisation, so your partner knows less about you. "
        "It takes a minute: `/cop profile`."
        if _incomplete(member)
        else ""
    )
    lines = [
        meet,
        *(f"• {_profile_line(p)}" for p in partners),
        f"{advice} (You: {_profile_line(member)}.)",
        starter_text,
        *([incomplete] if incomplete else []),
    ]
    buttons: tuple[Button, ...] = ()
    if incomplete:
        buttons = (Button("Fill in my profile", "profile.open", style="primary"),)
    sections = (
        Section(f"{meet}\n{advice}"),
        *(_profile_section(p) for p in partners),
        Section(f"_You:_ <@{member.user_id}>", fields=_profile_section(member).fields),
        Section(starter_text),
        *((Section(incomplete),) if incomplete else ()),
    )
    return Message(
        text="\n".join(lines),
        title=f"Introduction · {community.name}",
        sections=sections,
        buttons=buttons,
        chat_with=tuple(p.user_id for p in partners),
    )


def _names(members: list[Member]) -> str:
    mentions = [f"<@{m.user_id}>" for m in members]
    return mentions[0] if len(mentions) == 1 else ", ".join(mentions[:-1]) + " and " + mentions[-1]


def group_intro_message(community: Community, members: list[Member], starter: Starter) -> Message:
    """A group's introduction, sent once into a conversation with all of them: every profile, the advice and a
    conversation starter. The sections carry the whole message; `text` says the same for notifications."""
    meet = f"*Meet each other: {_names(members)}*, from {community.name}."
    advice = (
        "copbot started this conversation for you. Reply here to find 20–30 minutes for a call or a coffee in the "
        "next week or two."
    )
    starter_text = f"*A conversation starter*\n> {starter.text}"
    missing = [m for m in members if _incomplete(m)]
    incomplete = (
        f"{_names(missing)}: your profile is missing your profession or organisation, so the others know less "
        "about you. It takes a minute: `/cop profile`."
        if missing
        else ""
    )
    lines = [meet, advice, *(f"• {_profile_line(m)}" for m in members), starter_text, *([incomplete] * bool(missing))]
    sections = (
        Section(f"{meet}\n{advice}"),
        *(_profile_section(m) for m in members),
        Section(starter_text),
        *((Section(incomplete),) if missing else ()),
    )
    buttons = (Button("Fill in my profile", "profile.open", style="primary"),) if missing else ()
    return Message(text="\n".join(lines), title=f"Introduction · {community.name}", sections=sections, buttons=buttons)


def followup_message(community: Community, partners: list[Member], group_id: int) -> Message:
    """The mid-round "Did you meet?" with Yes / Not yet / No."""
    names = " and ".join(f"<@{p.user_id}>" for p in partners)
    return Message(
        text=f"Did you meet {names} from *{community.name}*? Your answer helps the facilitators see what works.",
        title=f"Did you meet? · {community.name}",
        buttons=tuple(
            Button(label, "intro.met", value=f"{group_id}:{answer}", style="primary" if answer == "yes" else "default")
            for answer, label in ANSWERS.items()
        ),
    )


def unpaired_message(community: Community) -> Message:
    """The kind note to someone the round could not pair."""
    return Message(
        text=f"There was nobody else free to meet in *{community.name}* this round, so I couldn't introduce you. "
        "Sorry about that: you're in the next round as usual. Why not say hello in the channel meanwhile?",
        title=f"Introductions · {community.name}",
    )


def _share(value: float) -> str:
    return f"{round(value * 100)}%"


def figures_message(db: Session, community: Community, row: IntroRound, figures: RoundFigures) -> Message:
    """A facilitator's summary of one round, with the figures so far."""
    text = (
        f"*Introductions round {row.number} in {community.name}*: {figures.groups} group(s) from "
        f"{row.participants} people; {figures.unpaired} without a partner. Cross-profession "
        f"{_share(figures.cross_profession_share)}, cross-organisation {_share(figures.cross_organisation_share)}, "
        f"both {_share(figures.cross_both_share)}; {figures.distinct_profession_pairs} profession pairing(s); "
        f"{figures.repeat_meetings} repeat meeting(s).\n"
        + _cumulative_line(summarise(db, community))
        + "\nThe whole picture: `/cop intros report`."
    )
    return Message(text=text, title=f"Introductions · {community.name}")


# --- figures ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RoundReport:
    """One round's figures (as `handlers.matching.figures` measures them) and its follow-up answers."""

    number: int
    matched_at: dt.datetime | None
    participants: int
    figures: RoundFigures
    answered_groups: int
    met_groups: int


@dataclass(frozen=True)
class Summary:
    """Per-round reports and the cumulative figures over all rounds."""

    rounds: tuple[RoundReport, ...]
    cumulative: RoundFigures
    answered_groups: int
    met_groups: int

    @property
    def met_rate(self) -> float:
        """Groups where someone said "Yes", of the groups where anyone answered."""
        return self.met_groups / self.answered_groups if self.answered_groups else 0.0


def summarise(db: Session, community: Community) -> Summary:
    """Figures per round and cumulative, from the profiles as they were when each round was matched.

    The cumulative figures treat every (round, person) as its own candidate, so they are `matching.figures` over
    all groups ever made: the shares are of all groups, and profession pairings are counted once however often.
    """
    assert community.id is not None
    rounds = intros.rounds_of(db=db, community_id=community.id)
    groups: dict[int, list[IntroGroupMember]] = {}
    round_of: dict[int, int] = {}
    for group, person in intros.group_rows(db=db, round_ids=[r.id for r in rounds if r.id is not None]):
        assert group.id is not None
        groups.setdefault(group.id, []).append(person)
        round_of[group.id] = group.round_id
    past: dict[frozenset[int], int] = {}
    reports = []
    all_groups: list[tuple[int, ...]] = []
    all_candidates: list[Candidate] = []
    answered = met = 0
    for r in rounds:
        mine = [people for gid, people in groups.items() if round_of[gid] == r.id]
        candidates = [Candidate(p.member_id, p.profession, p.organisation) for people in mine for p in people]
        result = Match(groups=tuple(tuple(p.member_id for p in people) for people in mine), unpaired=())
        fig = matching.figures(result, candidates, past)
        fig = dataclasses.replace(fig, unpaired=r.unpaired)
        r_answered = sum(1 for people in mine if any(p.answer for p in people))
        r_met = sum(1 for people in mine if any(p.answer == "yes" for p in people))
        reports.append(RoundReport(r.number, r.matched_at, r.participants, fig, r_answered, r_met))
        answered, met = answered + r_answered, met + r_met
        for people in mine:
            ids = [p.member_id for p in people]
            for i, a in enumerate(ids):
                for b in ids[i + 1 :]:
                    past[frozenset((a, b))] = r.number
            all_groups.append(tuple(p.id or 0 for p in people))
            all_candidates.extend(Candidate(p.id or 0, p.profession, p.organisation) for p in people)
    total = matching.figures(Match(groups=tuple(all_groups)), all_candidates, {})
    total = dataclasses.replace(total, unpaired=sum(r.unpaired for r in rounds))
    return Summary(rounds=tuple(reports), cumulative=total, answered_groups=answered, met_groups=met)


def _cumulative_line(summary: Summary) -> str:
    c = summary.cumulative
    return (
        f"So far: {len(summary.rounds)} round(s), {c.groups} group(s); met {summary.met_groups} of "
        f"{summary.answered_groups} group(s) that answered ({_share(summary.met_rate)}); cross-profession "
        f"{_share(c.cross_profession_share)}, cross-organisation {_share(c.cross_organisation_share)}; "
        f"{c.distinct_profession_pairs} distinct profession pairing(s) connected."
    )


def report_message(db: Session, community: Community) -> Message:
    """`/cop intros report`: each round and the cumulative figures."""
    summary = summarise(db, community)
    if not summary.rounds:
        return Message(text=f"*{community.name}* hasn't had an introductions round yet. `/cop intros run` starts one.")
    lines = [f"*Introductions in {community.name}*"]
    for r in summary.rounds:
        f = r.figures
        when = f" ({r.matched_at:%d %b})" if r.matched_at else ""
        lines.append(
            f"• Round {r.number}{when}: {f.groups} group(s), {f.unpaired} unpaired; met {r.met_groups} of "
            f"{r.answered_groups} answered; cross-profession {_share(f.cross_profession_share)}, "
            f"cross-organisation {_share(f.cross_organisation_share)}; {f.distinct_profession_pairs} profession "
            "pairing(s)"
        )
    lines.append(_cumulative_line(summary))
    return Message(text="\n".join(lines), title=f"Introductions report · {community.name}")


# --- the outbox's last check ---------------------------------------------------------------------------------------


def still_wanted(*, db: Session, item: OutboxItem, now: dt.datetime) -> bool:
    """Checked just before an intro row is sent: drop it when its person left, stepped out, or already answered."""
    if item.kind not in KINDS or item.community_id is None:
        return True
    community = db.get(Community, item.community_id)
    if community is None or community.archived_at is not None:
        return False
    if item.kind == "intro_figures" or item.member_id is None:
        return True
    member = db.get(Member, item.member_id)
    if member is None or repo.membership(db=db, community=community, member=member) is None:
        return False
    data = json.loads(item.payload)
    if item.kind == "intro_notice":
        row = db.get(IntroRound, int(data.get("intro_round_id", 0)))
        if row is None or row.status != "planned" or item.member_id in intros.skipped(db=db, round_id=row.id or 0):
            return False
        choice = intros.enrolments(db=db, community_id=item.community_id).get(item.member_id)
        return takes_part(member, community, choice=choice, at=row.due_at)
    if item.kind == "intro_followup":
        place = intros.group_member(db=db, group_id=int(data.get("intro_group_id", 0)), member_id=item.member_id)
        return place is not None and place.answer is None
    return True


# --- buttons ------------------------------------------------------------------------------------------------------


def answer(ctx: Context, value: str) -> list[Reply]:
    """The follow-up buttons (`intro.met`, value `<group id>:yes|not_yet|no`); pressing again changes nothing."""
    group_id, _, choice = value.partition(":")
    group = row_id(group_id)
    if group is None or choice not in ANSWERS:
        raise UsageError("That button no longer works; nothing was recorded.")
    place = intros.group_member(db=ctx.db, group_id=group, member_id=ctx.actor.id or 0)
    if place is None:
        raise NotAllowed("That question was for the people in that introduction.")
    intros.record_answer(db=ctx.db, row=place, answer=choice, now=ctx.now)
    return [Reply.private(ANSWER_REPLIES[choice])]


def skip_action(ctx: Context, value: str) -> list[Reply]:
    """The notice's "Skip this round" button (`intro.skip`, value = round id); pressing again changes nothing."""
    number = row_id(value)
    row = ctx.db.get(IntroRound, number) if number is not None else None
    community = ctx.db.get(Community, row.community_id) if row is not None else None
    if row is None or community is None:
        raise UsageError("That round no longer exists.")
    if row.status != "planned":
        return [
            Reply.private(
                "This round has already been matched, so it's too late to skip it. To pause introductions for a "
                "while: `/cop intros snooze 2`."
            )
        ]
    intros.skip(db=ctx.db, round_id=row.id or 0, member_id=ctx.actor.id or 0, now=ctx.now)
    return [Reply.private(f"You'll skip this round of introductions in *{community.name}*; you're in the next one.")]


# --- commands -----------------------------------------------------------------------------------------------------


def intros_command(ctx: Context, cmd: ParsedCommand) -> list[Reply]:
    """`intros on|off|snooze <weeks>` (anyone) and `intros enrol|schedule|run|report` (facilitators)."""
    action = cmd.args[0].lower() if cmd.args else ""
    handlers = {
        "on": _on, "off": _off, "snooze": _snooze, "enrol": _enrol, "enroll": _enrol, "schedule": _schedule,
        "run": _run, "report": _report,
    }  # fmt: skip
    if action not in handlers:
        raise UsageError(
            "Say `on`, `off` or `snooze <weeks>`; facilitators also `enrol`, `schedule`, `run` or `report`.",
            example="/cop intros snooze 2",
        )
    return handlers[action](ctx, cmd, list(cmd.args[1:]))


def _community_if_named(ctx: Context, cmd: ParsedCommand) -> Community | None:
    if cmd.channels or cmd.community:
        return resolve_community(ctx, cmd, example="/cop intros off in:falls-prevention")
    return community_in_channel(ctx)


def _on(ctx: Context, cmd: ParsedCommand, words: list[str]) -> list[Reply]:
    member = ctx.actor
    community = _community_if_named(ctx, cmd)
    member.intros_opt_in, member.snoozed_until, member.updated_at = True, None, ctx.now
    ctx.db.add(member)
    assert member.id is not None
    targets = [community] if community else [c for c, _ in repo.communities_of(db=ctx.db, member=member)]
    for target in targets:
        intros.set_enrolment(db=ctx.db, community_id=target.id or 0, member_id=member.id, choice="in", now=ctx.now)
    where = f"in *{community.name}*" if community else "in all your communities"
    return [Reply.private(f"Introductions are on {where}. You'll hear the day before each round.")]


def _off(ctx: Context, cmd: ParsedCommand, words: list[str]) -> list[Reply]:
    member = ctx.actor
    community = _community_if_named(ctx, cmd)
    assert member.id is not None
    if community is not None:
        intros.set_enrolment(db=ctx.db, community_id=community.id or 0, member_id=member.id, choice="out", now=ctx.now)
        return [Reply.private(f"No more introductions in *{community.name}*. `/cop intros on` brings them back.")]
    member.intros_opt_in, member.updated_at = False, ctx.now
    ctx.db.add(member)
    return [Reply.private("Introductions are off in all your communities. `/cop intros on` brings them back.")]


def _snooze(ctx: Context, cmd: ParsedCommand, words: list[str]) -> list[Reply]:
    example = "/cop intros snooze 2"
    if len(words) != 1 or not words[0].isdigit() or not 1 <= int(words[0]) <= MAX_SNOOZE_WEEKS:
        raise UsageError(f"Give a number of weeks from 1 to {MAX_SNOOZE_WEEKS}.", example=example)
    until = ctx.now + dt.timedelta(weeks=int(words[0]))
    ctx.actor.snoozed_until, ctx.actor.updated_at = until, ctx.now
    ctx.db.add(ctx.actor)
    day = until.astimezone(ZoneInfo(ctx.actor.timezone or ctx.config.timezone))
    return [
        Reply.private(
            f"Snoozed until {day:%a} {day.day} {day:%b}: no introductions (and no DM prompts) until then. "
            "It ends by itself; `/cop intros on` ends it now."
        )
    ]


def _enrol(ctx: Context, cmd: ParsedCommand, words: list[str]) -> list[Reply]:
    example = "/cop intros enrol opt-in in:falls-prevention"
    choice = words[0].lower() if words else ""
    if choice not in ENROLMENTS:
        raise UsageError(
            "Say `opt-in` (only people who ask) or `opt-out` (everyone, who may step out).", example=example
        )
    community = facilitated_community(ctx, cmd, example)
    community.intro_enrolment = choice
    ctx.db.add(community)
    repo.record_audit(
        db=ctx.db, action="intros.enrol", now=ctx.now, actor=ctx.actor, community=community, detail={"mode": choice}
    )
    if choice == "opt-in":
        text = (
            f"Introductions in *{community.name}* are now opt-in: only members who say "
            f"`/cop intros on in:{community.slug}` are introduced."
        )
    else:
        text = (
            f"Introductions in *{community.name}* are now opt-out: every member takes part, hears the day before "
            "each round and can skip it, or step out with `/cop intros off`."
        )
    return [Reply.private(text)]


def _schedule(ctx: Context, cmd: ParsedCommand, words: list[str]) -> list[Reply]:
    lowered = [w.lower() for w in words]
    community = facilitated_community(ctx, cmd, SCHEDULE_EXAMPLE)
    if lowered == ["off"]:
        community.intro_every_weeks = None
        ctx.db.add(community)
        repo.record_audit(db=ctx.db, action="intros.unschedule", now=ctx.now, actor=ctx.actor, community=community)
        return [Reply.private(f"Scheduled introductions in *{community.name}* are off. `/cop intros run` still works.")]
    if len(lowered) < 2 or lowered[0] != "every" or not lowered[1].isdigit() or int(lowered[1]) not in EVERY:
        raise UsageError("Say how often: every 1, 2 or 4 weeks, and optionally the weekday.", example=SCHEDULE_EXAMPLE)
    rest = lowered[2:]
    if rest and rest[0] in ("week", "weeks"):
        rest = rest[1:]
    weekday = community.intro_weekday if community.intro_weekday is not None else 0
    if rest:
        parsed = schedule.parse_weekday(rest[0])
        if parsed is None or len(rest) > 1:
            raise UsageError(f"`{' '.join(words[2:])[:30]}` isn't a weekday.", example=SCHEDULE_EXAMPLE)
        weekday = parsed
    community.intro_every_weeks, community.intro_weekday, community.intro_since = int(lowered[1]), weekday, ctx.now
    ctx.db.add(community)
    repo.record_audit(
        db=ctx.db, action="intros.schedule", now=ctx.now, actor=ctx.actor, community=community,
        detail={"every_weeks": community.intro_every_weeks, "weekday": weekday},
    )  # fmt: skip
    upcoming = next_round_at(community, now=ctx.now)
    every = "every week" if community.intro_every_weeks == 1 else f"every {community.intro_every_weeks} weeks"
    text = (
        f"*{community.name}* has introductions {every} on {schedule.WEEKDAYS[weekday].title()} at {INTRO_TIME} "
        f"({community.timezone}), enrolment {community.intro_enrolment}. People hear the day before and can skip "
        "a round; half-way through I ask whether they met."
    )
    if upcoming:
        local = upcoming.astimezone(ZoneInfo(community.timezone))
        text += f"\nFirst round: {local:%a} {local.day} {local:%b %H:%M}."
    return [Reply.private(text)]


def _run(ctx: Context, cmd: ParsedCommand, words: list[str]) -> list[Reply]:
    community = facilitated_community(ctx, cmd, "/cop intros run in:falls-prevention")
    assert community.id is not None
    key = f"intro:{community.id}:run:{ctx.now:%Y%m%dT%H%M}"
    row = intros.add_round(
        db=ctx.db, key=key, community_id=community.id, due_at=ctx.now, followup_at=ctx.now + followup_delay(community),
        now=ctx.now,
    )  # fmt: skip
    if row is None:
        raise Conflict("A round of introductions started this minute already.")
    run_round(db=ctx.db, community=community, row=row, now=ctx.now)
    repo.record_audit(db=ctx.db, action="intros.run", now=ctx.now, actor=ctx.actor, community=community)
    if row.participants < 2:
        return [
            Reply.private(
                f"Round {row.number} of *{community.name}*: only {row.participants} member(s) available, so nobody "
                "could be introduced."
            )
        ]
    groups = (row.participants - row.unpaired) // 2
    return [
        Reply.private(
            f"Round {row.number} of *{community.name}*: {groups} introduction(s) for {row.participants} people "
            "are on their way. The figures follow by DM; `/cop intros report` has them all."
        )
    ]


def _report(ctx: Context, cmd: ParsedCommand, words: list[str]) -> list[Reply]:
    community = facilitated_community(ctx, cmd, "/cop intros report in:falls-prevention")
    return [Reply(message=report_message(ctx.db, community))]
