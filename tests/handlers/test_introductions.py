"""Peer introductions: enrolment, scheduled and one-off rounds, notices, follow-ups, edge cases and the figures."""

from __future__ import annotations

import datetime as dt
import itertools
import json
from dataclasses import dataclass, field

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from bot.dispatcher import Dispatcher
from handlers import introductions, matching
from handlers.context import CoreConfig
from handlers.errors import PlatformError
from handlers.matching import Candidate, Match
from handlers.ports import Message
from storage import intros
from storage.intros import IntroGroup, IntroGroupMember, IntroRound
from storage.models import Community, Member
from storage.rhythm import OutboxItem, OutboxStatus
from tests.conftest import Conversation, FixedClock, visible
from tests.fakes.recording import RecordingPlatform

CHANNEL = "C0001"
# Wednesday 25 Nov 2026; London is on GMT, so local times equal UTC.
SUN_1000 = dt.datetime(2026, 11, 29, 10, 0, tzinfo=dt.UTC)
MON_1000 = dt.datetime(2026, 11, 30, 10, 0, tzinfo=dt.UTC)
PEOPLE = {
    # user: (profession, organisation)
    "alice": ("Nurse", "North Trust"),
    "bob": ("Pharmacist", "South Trust"),
    "carol": ("Physiotherapist", "East Trust"),
    "dan": ("Nurse", "South Trust"),
    "erin": ("Doctor", "North Trust"),
    "femi": ("Pharmacist", "East Trust"),
    "gita": ("Doctor", "South Trust"),
    "hal": ("Physiotherapist", "North Trust"),
    "ivy": ("Nurse", "East Trust"),
    "jon": ("Doctor", "East Trust"),
}


@dataclass
class FlakyPlatform(RecordingPlatform):
    """A recording platform on which some people cannot be messaged (deactivated, or a bot)."""

    unreachable: dict[str, str] = field(default_factory=dict)  # user id -> Slack error code
    group_dms: bool = False  # like Teams by default: no group conversations, so each person gets their own intro

    def send_group_dm(self, *, user_ids: list[str], message: Message) -> str:
        if not self.group_dms:
            self.calls.append(("send_group_dm_unsupported", {"user_ids": user_ids}))
            raise PlatformError("No group conversations here.", code="unsupported")
        return super().send_group_dm(user_ids=user_ids, message=message)

    def send_dm(self, *, user_id: str, message: Message) -> str:
        if user_id in self.unreachable:
            self.calls.append(("send_dm_failed", {"user_id": user_id}))
            raise PlatformError("That person can't be messaged.", code=self.unreachable[user_id])
        return super().send_dm(user_id=user_id, message=message)


@pytest.fixture
def platform() -> FlakyPlatform:
    return FlakyPlatform()


def start(convo: Conversation, users: list[str], *, profiles: bool = True) -> None:
    """Alice creates the community; the others join; everyone fills in their profile."""
    convo.say("/cop create Falls prevention")
    for user in users:
        if user != "alice":
            convo.say("/cop join falls-prevention", user=user)
        if profiles:
            profession, organisation = PEOPLE[user]
            convo.say(f'/cop profile profession="{profession}" organisation="{organisation}"', user=user)


def tick(engine: Engine, at: dt.datetime) -> int:
    with Session(engine) as db:
        return introductions.plan_due(db=db, now=at, config=CoreConfig())


def deliver(engine: Engine, platform: RecordingPlatform, clock: FixedClock) -> int:
    dispatcher = Dispatcher(
        engine=engine, platform=platform, clock=clock, workspace_rate=float("inf"), channel_rate=float("inf"),
        sleep=lambda _s: None,
    )  # fmt: skip
    return dispatcher.run()


def run_until(engine: Engine, platform: RecordingPlatform, clock: FixedClock, at: dt.datetime) -> None:
    """Let time pass to `at`, as the scheduler would: the tick, then the dispatcher."""
    clock.at = at
    tick(engine, at)
    deliver(engine, platform, clock)


def dms(platform: RecordingPlatform, user: str, title: str = "") -> list[Message]:
    return [
        c["message"]
        for c in platform.called("send_dm")
        if c["user_id"] == user and (c["message"].title or "").startswith(title)
    ]


def groups_by_round(engine: Engine) -> dict[int, list[tuple[str, ...]]]:
    """Round number -> the groups, as user ids."""
    with Session(engine) as db:
        rows = db.exec(
            select(IntroRound.number, IntroGroup.id, IntroGroupMember.member_id)
            .join(IntroGroup, col(IntroGroup.round_id) == col(IntroRound.id))
            .join(IntroGroupMember, col(IntroGroupMember.group_id) == col(IntroGroup.id))
            .order_by(col(IntroRound.number), col(IntroGroup.id))
        ).all()
        users = {m.id: m.user_id for m in db.exec(select(Member))}
    found: dict[int, dict[int, list[str]]] = {}
    for number, group_id, member_id in rows:
        assert group_id is not None
        found.setdefault(number, {}).setdefault(group_id, []).append(users[member_id])
    return {n: [tuple(sorted(g)) for g in gs.values()] for n, gs in found.items()}


def summary(engine: Engine) -> introductions.Summary:
    with Session(engine) as db:
        community = db.exec(select(Community)).one()
        return introductions.summarise(db, community)


def outbox(engine: Engine, kind: str) -> list[OutboxItem]:
    with Session(engine) as db:
        return list(db.exec(select(OutboxItem).where(OutboxItem.kind == kind).order_by(col(OutboxItem.id))))


def followup_value(platform: RecordingPlatform, user: str, answer: str) -> str:
    [message] = dms(platform, user, "Did you meet?")[-1:]
    [button] = [b for b in message.buttons if b.value.endswith(f":{answer}")]
    assert button.action_id == "intro.met"
    return button.value


# --- the acceptance conversation ------------------------------------------------------------------------------------


def test_ten_members_three_weekly_rounds_no_repeats_figures_and_answers(
    convo: Conversation, platform: FlakyPlatform, engine: Engine, clock: FixedClock
) -> None:
    start(convo, list(PEOPLE))
    reply = convo.say("/cop intros schedule every 1 weeks monday", channel=CHANNEL)
    assert "introductions every week on Monday at 10:00 (Europe/London), enrolment opt-out" in reply
    assert "First round: Mon 30 Nov 10:00" in reply

    for week in range(3):
        sunday, monday = SUN_1000 + dt.timedelta(weeks=week), MON_1000 + dt.timedelta(weeks=week)
        run_until(engine, platform, clock, sunday - dt.timedelta(minutes=1))
        assert len(dms(platform, "bob", "Introductions tomorrow")) == week  # not yet
        run_until(engine, platform, clock, sunday)
        [notice] = dms(platform, "bob", "Introductions tomorrow")[-1:]
        assert "Tomorrow *Falls prevention* introduces you" in visible(notice)
        assert [b.label for b in notice.buttons] == ["Skip this round"]

        run_until(engine, platform, clock, monday)
        for user in PEOPLE:
            [intro] = dms(platform, user, "Introduction ·")[-1:]
            shown = visible(intro)
            assert "*Meet <@" in shown and "*A conversation starter*" in shown and "20–30 minutes" in shown
            assert f"_You:_ <@{user}>" in shown  # their own profile, as the partner sees it
        [figures] = dms(platform, "alice", "Introductions · Falls")[-1:]
        assert f"*Introductions round {week + 1} in Falls prevention*: 5 group(s) from 10 people" in visible(figures)

        run_until(engine, platform, clock, monday + dt.timedelta(days=3))
        # Two people answer each round; bob presses "Yes" twice (the second press changes nothing).
        assert "Wonderful" in convo.click("intro.met", followup_value(platform, "bob", "yes"), user="bob")
        assert "Wonderful" in convo.click("intro.met", followup_value(platform, "bob", "yes"), user="bob")
        assert "No rush" in convo.click("intro.met", followup_value(platform, "carol", "not_yet"), user="carol")

    rounds = groups_by_round(engine)
    assert sorted(rounds) == [1, 2, 3]
    pairs = [frozenset(p) for groups in rounds.values() for g in groups for p in itertools.combinations(g, 2)]
    assert len(pairs) == 15 and len(set(pairs)) == 15, "no pair meets twice"

    # The figures are handlers.matching.figures over the groups made, with the profiles people gave.
    got = summary(engine)
    past: dict[frozenset[int], int] = {}
    candidates = [Candidate(i, *PEOPLE[u]) for i, u in enumerate(PEOPLE)]
    index = {u: i for i, u in enumerate(PEOPLE)}
    for number, report in zip(sorted(rounds), got.rounds, strict=True):
        result = Match(groups=tuple(tuple(index[u] for u in g) for g in rounds[number]))
        assert report.figures == matching.figures(result, candidates, past)
        for g in result.groups:
            for a, b in itertools.combinations(g, 2):
                past[frozenset((a, b))] = number
    everything = Match(groups=tuple(tuple(index[u] for u in g) for n in sorted(rounds) for g in rounds[n]))
    total = matching.figures(everything, candidates, {})
    assert got.cumulative.cross_profession_share == total.cross_profession_share
    assert got.cumulative.cross_organisation_share == total.cross_organisation_share
    assert got.cumulative.distinct_profession_pairs == total.distinct_profession_pairs
    assert got.cumulative.groups == 15
    # Follow-ups counted: bob's group met each round (his two clicks count once); carol's answer is "not yet".
    bob_and_carol_shared = sum(1 for n in rounds for g in rounds[n] if {"bob", "carol"} <= set(g))
    assert got.met_groups == 3
    assert got.answered_groups == 6 - bob_and_carol_shared

    text = convo.say("/cop intros report", channel=CHANNEL)
    assert "Round 1 (30 Nov): 5 group(s), 0 unpaired; met 1 of" in text
    assert "So far: 3 round(s), 15 group(s); met 3 of" in text
    assert "Only facilitators" in convo.say("/cop intros report", user="bob", channel=CHANNEL)


# --- edge cases -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("available", [0, 1, 2, 3])
def test_rounds_of_zero_to_three_people(
    convo: Conversation, platform: FlakyPlatform, engine: Engine, clock: FixedClock, available: int
) -> None:
    users = ["alice", "bob", "carol"]
    start(convo, users)
    for user in users[max(available, 0) :]:
        convo.say("/cop intros off", user=user)
    reply = convo.say("/cop intros run", channel=CHANNEL)
    deliver(engine, platform, clock)
    rounds = groups_by_round(engine)
    if available < 2:
        assert f"only {available} member(s) available" in reply
        assert rounds == {}
    else:
        assert f"1 introduction(s) for {available} people" in reply
        assert rounds == {1: [tuple(users[:available])]}
    unpaired = [u for u in users if any("nobody else" in visible(m) for m in dms(platform, u, "Introductions · Falls"))]
    assert unpaired == (["alice"] if available == 1 else [])
    [figures] = [m for m in dms(platform, "alice", "Introductions · Falls") if "round 1" in visible(m)]
    assert f"{available // 2} group(s) from {available} people" in visible(figures)
    if available == 3:
        [intro] = dms(platform, "bob", "Introduction ·")
        assert "*Meet <@alice> and <@carol>*" in visible(intro)


def test_everyone_from_one_profession_is_still_introduced(
    convo: Conversation, platform: FlakyPlatform, engine: Engine, clock: FixedClock
) -> None:
    convo.say("/cop create Falls prevention")
    for n, user in enumerate(["alice", "bob", "carol", "dan"]):
        if user != "alice":
            convo.say("/cop join falls-prevention", user=user)
        convo.say(f"/cop profile profession=Nurse organisation=Trust{n % 2}", user=user)
    convo.say("/cop intros run", channel=CHANNEL)
    [report] = summary(engine).rounds
    assert report.figures.groups == 2
    assert report.figures.cross_profession_share == 0.0
    assert report.figures.cross_organisation_share == 1.0  # the matcher still crosses what it can
    assert report.figures.distinct_profession_pairs == 0


def test_when_every_pair_has_met_the_longest_ago_meet_again(
    convo: Conversation, platform: FlakyPlatform, engine: Engine, clock: FixedClock
) -> None:
    start(convo, ["alice", "bob", "carol", "dan"])
    for _ in range(4):
        convo.say("/cop intros run", channel=CHANNEL)
        clock.advance(dt.timedelta(days=7))
    rounds = groups_by_round(engine)
    first_three = [frozenset(g) for n in (1, 2, 3) for g in rounds[n]]
    assert len(set(first_three)) == 6  # all six pairs of four people, none repeated
    assert {frozenset(g) for g in rounds[4]} == {frozenset(g) for g in rounds[1]}
    assert summary(engine).rounds[3].figures.repeat_meetings == 2


def test_a_member_who_leaves_after_the_notice_is_not_matched(
    convo: Conversation, platform: FlakyPlatform, engine: Engine, clock: FixedClock
) -> None:
    start(convo, ["alice", "bob", "carol", "dan", "erin"])
    convo.say("/cop intros schedule every 2 weeks monday", channel=CHANNEL)
    run_until(engine, platform, clock, SUN_1000)
    assert len(outbox(engine, "intro_notice")) == 5
    assert dms(platform, "dan", "Introductions tomorrow")
    convo.say("/cop leave falls-prevention", user="dan", channel=CHANNEL)
    run_until(engine, platform, clock, MON_1000)
    [groups] = groups_by_round(engine).values()
    assert "dan" not in {u for g in groups for u in g}
    assert not dms(platform, "dan", "Introduction ·")
    assert sorted(len(g) for g in groups) == [2, 2]
    # Every two weeks: nothing the next Monday, a round the one after.
    run_until(engine, platform, clock, MON_1000 + dt.timedelta(weeks=1))
    assert len(groups_by_round(engine)) == 1
    run_until(engine, platform, clock, MON_1000 + dt.timedelta(weeks=2))
    assert len(groups_by_round(engine)) == 2


def test_a_snoozed_member_sits_rounds_out_until_the_snooze_ends(
    convo: Conversation, platform: FlakyPlatform, engine: Engine, clock: FixedClock
) -> None:
    start(convo, ["alice", "bob", "carol"])
    reply = convo.say("/cop intros snooze 2", user="bob")
    assert "Snoozed until Wed 9 Dec" in reply and "ends by itself" in reply
    assert "from 1 to 12" in convo.say("/cop intros snooze forever", user="bob")
    convo.say("/cop intros run", channel=CHANNEL)
    assert groups_by_round(engine)[1] == [("alice", "carol")]
    clock.advance(dt.timedelta(weeks=2))
    convo.say("/cop intros run", channel=CHANNEL)
    assert groups_by_round(engine)[2] == [("alice", "bob", "carol")]


def test_skip_this_round_and_duplicate_clicks(
    convo: Conversation, platform: FlakyPlatform, engine: Engine, clock: FixedClock
) -> None:
    start(convo, ["alice", "bob", "carol", "dan"])
    convo.say("/cop intros schedule every 1 weeks monday", channel=CHANNEL)
    run_until(engine, platform, clock, SUN_1000)
    [notice] = dms(platform, "carol", "Introductions tomorrow")
    value = notice.buttons[0].value
    assert "You'll skip this round" in convo.click("intro.skip", value, user="carol")
    assert "You'll skip this round" in convo.click("intro.skip", value, user="carol")
    run_until(engine, platform, clock, MON_1000)
    assert groups_by_round(engine)[1] == [("alice", "bob", "dan")]
    assert "too late to skip" in convo.click("intro.skip", value, user="dan")

    run_until(engine, platform, clock, MON_1000 + dt.timedelta(days=3))
    yes = followup_value(platform, "dan", "yes")
    assert "Wonderful" in convo.click("intro.met", yes, user="dan")
    assert "Wonderful" in convo.click("intro.met", yes, user="dan")
    assert "for the people in that introduction" in convo.click("intro.met", yes, user="carol")
    assert "no longer works" in convo.click("intro.met", "x:maybe", user="dan")
    with Session(engine) as db:
        answers = [r.answer for r in db.exec(select(IntroGroupMember).order_by(col(IntroGroupMember.id)))]
    assert sorted(a or "-" for a in answers) == ["-", "-", "yes"]
    assert summary(engine).met_groups == 1


def test_unreachable_people_do_not_stop_the_round(
    convo: Conversation, platform: FlakyPlatform, engine: Engine, clock: FixedClock
) -> None:
    start(convo, ["alice", "bob", "carol", "dan"])
    platform.unreachable = {"bob": "user_not_found", "carol": "cannot_dm_bot"}
    convo.say("/cop intros run", channel=CHANNEL)
    deliver(engine, platform, clock)
    failed = {(r.destination, r.last_error) for r in outbox(engine, "intro") if r.status == OutboxStatus.FAILED}
    assert failed == {("user:bob", "user_not_found"), ("user:carol", "cannot_dm_bot")}
    assert dms(platform, "alice", "Introduction ·") and dms(platform, "dan", "Introduction ·")
    assert dms(platform, "alice", "Introductions · Falls")  # the facilitator's figures went out
    clock.advance(dt.timedelta(days=3))
    deliver(engine, platform, clock)
    assert len(dms(platform, "dan", "Did you meet?")) == 1
    assert summary(engine).rounds[0].figures.groups == 2


def test_people_without_a_profile_are_matched_and_asked_to_complete_it(
    convo: Conversation, platform: FlakyPlatform, engine: Engine, clock: FixedClock
) -> None:
    start(convo, ["alice", "bob"], profiles=False)
    convo.say("/cop intros run", channel=CHANNEL)
    deliver(engine, platform, clock)
    [intro] = dms(platform, "bob", "Introduction ·")
    assert "Your profile is missing your profession or organisation" in visible(intro)
    assert [b.action_id for b in intro.buttons] == ["profile.open"]
    assert "profession not given" in visible(intro)


def test_each_introduction_invites_a_chat_with_the_partners_through_the_outbox(
    convo: Conversation, platform: FlakyPlatform, engine: Engine, clock: FixedClock
) -> None:
    start(convo, ["alice", "bob", "carol"])
    convo.say("/cop intros run", channel=CHANNEL)
    deliver(engine, platform, clock)

    [trio] = groups_by_round(engine)[1]
    for user in trio:
        [intro] = dms(platform, user, "Introduction ·")
        # Platforms that can open a chat with them (Teams' deep link) add a button; the text names them anyway.
        assert sorted(intro.chat_with) == sorted(set(trio) - {user})
        assert all(f"<@{partner}>" in visible(intro) for partner in intro.chat_with)
    assert all(not m.chat_with for m in dms(platform, "alice") if not (m.title or "").startswith("Introduction ·"))


def test_opt_in_enrolment_takes_only_those_who_asked(
    convo: Conversation, platform: FlakyPlatform, engine: Engine, clock: FixedClock
) -> None:
    start(convo, ["alice", "bob", "carol", "dan"])
    assert "Only facilitators" in convo.say("/cop intros enrol opt-in", user="bob", channel=CHANNEL)
    assert "Say `opt-in`" in convo.say("/cop intros enrol sometimes", channel=CHANNEL)
    assert "now opt-in" in convo.say("/cop intros enrol opt-in", channel=CHANNEL)
    assert "only 0 member(s)" in convo.say("/cop intros run", channel=CHANNEL)
    clock.advance(dt.timedelta(minutes=1))
    assert "on in *Falls prevention*" in convo.say("/cop intros on", user="bob", channel=CHANNEL)
    assert "on in all your communities" in convo.say("/cop intros on", user="dan")
    convo.say("/cop intros run", channel=CHANNEL)
    assert groups_by_round(engine)[2] == [("bob", "dan")]
    clock.advance(dt.timedelta(minutes=1))
    assert "No more introductions in *Falls prevention*" in convo.say("/cop intros off", user="dan", channel=CHANNEL)
    assert "only 1 member(s)" in convo.say("/cop intros run", channel=CHANNEL)


def test_schedule_is_validated_and_the_tick_is_idempotent(
    convo: Conversation, platform: FlakyPlatform, engine: Engine, clock: FixedClock
) -> None:
    start(convo, ["alice", "bob", "carol"])
    assert "Only facilitators" in convo.say("/cop intros schedule every 1 weeks", user="bob", channel=CHANNEL)
    assert "every 1, 2 or 4 weeks" in convo.say("/cop intros schedule every 3 weeks", channel=CHANNEL)
    assert "every 1, 2 or 4 weeks" in convo.say("/cop intros schedule weekly", channel=CHANNEL)
    assert "isn't a weekday" in convo.say("/cop intros schedule every 2 weeks funday", channel=CHANNEL)
    assert "Say `on`, `off`" in convo.say("/cop intros sometimes")
    assert "every 4 weeks on Thursday" in convo.say("/cop intros schedule every 4 weeks thu", channel=CHANNEL)
    minute = clock.at
    made = 0
    while minute < dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.UTC):  # Wednesday to Friday noon, each 10 minutes
        made += tick(engine, minute)
        minute += dt.timedelta(minutes=10)
    with Session(engine) as db:
        [row] = intros.rounds_of(db=db, community_id=1)
    assert row.due_at == dt.datetime(2026, 11, 26, 10, 0, tzinfo=dt.UTC)
    # 3 notices, one group introduction (one trio), 3 follow-ups, the facilitator's figures.
    assert made == 8
    kinds = sorted(r.kind for r in outbox(engine, "intro_group") + outbox(engine, "intro_notice"))
    assert kinds == ["intro_group"] + ["intro_notice"] * 3
    assert outbox(engine, "intro_group")[0].destination.startswith("group:")
    assert json.loads(outbox(engine, "intro_followup")[0].payload)["intro_group_id"] == 1
    assert "are off" in convo.say("/cop intros schedule off", channel=CHANNEL)


def test_where_group_conversations_exist_each_group_gets_one_message_with_every_profile(
    convo: Conversation, platform: FlakyPlatform, engine: Engine, clock: FixedClock
) -> None:
    platform.group_dms = True
    start(convo, ["alice", "bob", "carol", "dan"])
    convo.say('/cop profile profession="" organisation=""', user="dan")
    convo.say("/cop intros run", channel=CHANNEL)
    deliver(engine, platform, clock)

    groups = platform.called("send_group_dm")
    assert sorted(sorted(g["user_ids"]) for g in groups) == sorted(sorted(g) for g in groups_by_round(engine)[1])
    assert not dms(platform, "bob", "Introduction ·")  # no 1:1 introduction beside the group's
    for group in groups:
        shown = visible(group["message"])
        assert shown.startswith("Introduction · Falls prevention")
        assert "*Meet each other: <@" in shown and "*A conversation starter*" in shown and "20–30 minutes" in shown
        for user in group["user_ids"]:
            assert f"<@{user}>" in shown and (PEOPLE[user][0] if user != "dan" else "profession not given") in shown
        assert ("<@dan>: your profile is missing" in shown) == ("dan" in group["user_ids"])
    # The follow-ups stay personal: each person answers "Did you meet?" for themselves.
    clock.advance(dt.timedelta(days=3))
    deliver(engine, platform, clock)
    asked = [c["user_id"] for c in platform.called("send_dm") if (c["message"].title or "").startswith("Did you meet?")]
    assert sorted(asked) == ["alice", "bob", "carol", "dan"]


def test_without_group_conversations_each_person_gets_their_own_introduction_once(
    convo: Conversation, platform: FlakyPlatform, engine: Engine, clock: FixedClock
) -> None:
    start(convo, ["alice", "bob"])
    convo.say("/cop intros run", channel=CHANNEL)
    deliver(engine, platform, clock)
    deliver(engine, platform, clock)  # a second pass sends nothing more

    assert len(platform.called("send_group_dm_unsupported")) == 1
    [to_alice] = dms(platform, "alice", "Introduction ·")
    [to_bob] = dms(platform, "bob", "Introduction ·")
    assert "*Meet <@bob>*" in visible(to_alice) and "*Meet <@alice>*" in visible(to_bob)
    [group_row] = outbox(engine, "intro_group")
    assert group_row.status == OutboxStatus.CANCELLED  # replaced by the two below, in the same transaction
    assert sorted(r.destination for r in outbox(engine, "intro")) == ["user:alice", "user:bob"]
