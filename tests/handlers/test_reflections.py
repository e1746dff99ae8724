"""Reflective prompts on a community's rhythm: schedules, the tick, the outbox rows it makes, replies, digests."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from handlers import reflections
from handlers.context import CoreConfig
from storage.models import AuditEvent, Community, Member
from storage.rhythm import OutboxItem, PromptOccurrence, Reflection
from tests.conftest import Conversation, FixedClock, visible

LONDON_WED_0959 = dt.datetime(2026, 11, 25, 9, 59, tzinfo=dt.UTC)  # Wednesday 25 Nov 2026, 09:59 in London


def tick(engine: Engine, at: dt.datetime, config: CoreConfig | None = None) -> int:
    with Session(engine) as db:
        return reflections.plan_due(db=db, now=at, config=config or CoreConfig())


def rows(engine: Engine) -> list[OutboxItem]:
    with Session(engine) as db:
        return list(db.exec(select(OutboxItem).order_by(col(OutboxItem.id))))


def occurrences(engine: Engine) -> list[PromptOccurrence]:
    with Session(engine) as db:
        return list(db.exec(select(PromptOccurrence).order_by(col(PromptOccurrence.id))))


def pretend_sent(engine: Engine, *, channel: str, message_id: str) -> None:
    """Mark the one queued channel prompt as posted (as the dispatcher would), with this platform message id."""
    with Session(engine) as db:
        item = db.exec(select(OutboxItem)).one()
        item.status, item.platform_message_id, item.platform_channel_id = "sent", message_id, channel
        item.sent_at = LONDON_WED_0959
        db.add(item)
        db.commit()


@pytest.fixture
def community(convo: Conversation, clock: FixedClock) -> str:
    clock.at = LONDON_WED_0959 - dt.timedelta(days=1)
    convo.say("/cop create Falls prevention")
    for user in ("bob", "carol", "dan"):
        convo.say("/cop join falls-prevention", user=user)
    return "C0001"


def test_schedule_is_validated_and_explained(convo: Conversation, community: str) -> None:
    reply = convo.say("/cop prompt schedule wednesday 10:00 channel", channel=community)
    assert "every Wednesday at 10:00 (Europe/London), in the channel" in reply
    assert "Next: Wed 25 Nov 10:00 (Europe/London)" in reply
    assert "isn't a weekday" in convo.say("/cop prompt schedule funday 10:00", channel=community)
    assert "isn't a time like 10:00" in convo.say("/cop prompt schedule mon 25:00", channel=community)
    assert "isn't a time zone I know" in convo.say("/cop prompt schedule mon 10:00 Mars/Base", channel=community)
    assert "isn't `channel`, `dm`" in convo.say("/cop prompt schedule mon 10:00 weekly", channel=community)
    assert "Say `now`, `pause`" in convo.say("/cop prompt sometimes", channel=community)
    assert "Only facilitators" in convo.say("/cop prompt schedule mon 10:00", user="bob", channel=community)
    with Session(convo.bot.engine) as db:
        audit = db.exec(select(AuditEvent).where(AuditEvent.action == "prompt.schedule")).one()
        assert json.loads(audit.detail)["time"] == "10:00"


def test_tick_makes_one_channel_post_per_week_however_often_it_runs(
    convo: Conversation, community: str, engine: Engine
) -> None:
    convo.say("/cop prompt schedule wednesday 10:00 channel", channel=community)
    assert tick(engine, LONDON_WED_0959) == 0
    minute = LONDON_WED_0959
    made = 0
    for _ in range(30):  # half an hour of minute ticks
        minute += dt.timedelta(minutes=1)
        made += tick(engine, minute)
    assert made == 1
    [row] = rows(engine)
    assert (row.kind, row.destination, row.due_at) == (
        "prompt",
        "channel:C0001",
        dt.datetime(2026, 11, 25, 10, 0, tzinfo=dt.UTC),
    )
    assert json.loads(row.payload)["prompt_id"] == occurrences(engine)[0].prompt_id


def test_downtime_across_the_scheduled_time_catches_up_once(
    convo: Conversation, community: str, engine: Engine
) -> None:
    convo.say("/cop prompt schedule wednesday 10:00 channel", channel=community)
    # Down from 09:00 Wednesday until Friday afternoon: the first tick after restart sends it, once.
    assert tick(engine, dt.datetime(2026, 11, 27, 15, 0, tzinfo=dt.UTC)) == 1
    assert tick(engine, dt.datetime(2026, 11, 27, 15, 1, tzinfo=dt.UTC)) == 0
    # Down for three whole weeks: only the latest week's prompt goes out, not three.
    assert tick(engine, dt.datetime(2026, 12, 18, 12, 0, tzinfo=dt.UTC)) == 1
    assert len(rows(engine)) == 2


def test_schedule_set_after_this_weeks_time_starts_next_week(
    convo: Conversation, community: str, engine: Engine, clock: FixedClock
) -> None:
    clock.at = dt.datetime(2026, 11, 25, 11, 0, tzinfo=dt.UTC)
    convo.say("/cop prompt schedule wednesday 10:00", channel=community)
    assert tick(engine, clock.at) == 0
    assert tick(engine, dt.datetime(2026, 12, 2, 10, 0, tzinfo=dt.UTC)) == 1


def test_daylight_saving_changes_neither_skip_nor_double(
    convo: Conversation, community: str, engine: Engine, clock: FixedClock
) -> None:
    # Sundays 01:30 local, across the clocks going back (25 Oct 2026, 01:00-02:00 happens twice)
    # and going forward (28 Mar 2027, 01:30 does not exist).
    clock.at = dt.datetime(2026, 10, 10, 0, 0, tzinfo=dt.UTC)
    convo.say("/cop prompt schedule sunday 01:30", channel=community)
    minute = clock.at
    while minute < dt.datetime(2026, 11, 8, 0, 0, tzinfo=dt.UTC):
        tick(engine, minute)
        minute += dt.timedelta(minutes=15)
    dues = [o.due_at for o in occurrences(engine)]
    assert dues == [
        dt.datetime(2026, 10, 11, 0, 30, tzinfo=dt.UTC),  # BST
        dt.datetime(2026, 10, 18, 0, 30, tzinfo=dt.UTC),
        dt.datetime(2026, 10, 25, 0, 30, tzinfo=dt.UTC),  # the first 01:30 of the repeated hour
        dt.datetime(2026, 11, 1, 1, 30, tzinfo=dt.UTC),  # GMT
    ]
    minute = dt.datetime(2027, 3, 20, 0, 0, tzinfo=dt.UTC)
    while minute < dt.datetime(2027, 4, 5, 0, 0, tzinfo=dt.UTC):
        tick(engine, minute)
        minute += dt.timedelta(minutes=15)
    spring = [o.due_at for o in occurrences(engine)][-3:]
    assert spring == [
        dt.datetime(2027, 3, 21, 1, 30, tzinfo=dt.UTC),
        dt.datetime(2027, 3, 28, 1, 30, tzinfo=dt.UTC),  # 01:30 GMT = 02:30 BST: sent, not skipped
        dt.datetime(2027, 4, 4, 0, 30, tzinfo=dt.UTC),
    ]


@pytest.mark.parametrize(
    ("policy", "expected"),
    [("next-working-day", dt.datetime(2026, 12, 29, 10, 0, tzinfo=dt.UTC)), ("skip", None)],
)
def test_bank_holidays_move_or_skip_as_the_community_chose(
    convo: Conversation, community: str, engine: Engine, policy: str, expected: dt.datetime | None
) -> None:
    # Friday 25 December 2026 is Christmas Day; Monday 28 is the Boxing Day substitute in England.
    convo.say(f"/cop prompt schedule friday 10:00 on-holiday={policy}", channel=community)
    tick(engine, dt.datetime(2026, 12, 25, 10, 5, tzinfo=dt.UTC))
    [occurrence] = occurrences(engine)
    if expected is None:
        assert occurrence.skipped
        assert rows(engine) == []
    else:
        assert rows(engine)[0].due_at == expected
    # With COPBOT_HOLIDAYS=none, New Year's Day is an ordinary Friday.
    assert tick(engine, dt.datetime(2027, 1, 1, 10, 5, tzinfo=dt.UTC), CoreConfig(holidays="none")) == 1


def test_rotation_never_repeats_until_the_pool_is_used_up(convo: Conversation, community: str, engine: Engine) -> None:
    convo.say("/cop prompt schedule monday 09:00", channel=community)
    monday = dt.datetime(2026, 11, 30, 9, 1, tzinfo=dt.UTC)
    for week in range(40):
        tick(engine, monday + dt.timedelta(weeks=week))
    ids = [o.prompt_id for o in occurrences(engine)]
    assert len(ids) == 40
    assert len(set(ids)) == 40


def test_dm_mode_fans_out_to_opted_in_members_only(convo: Conversation, community: str, engine: Engine) -> None:
    convo.say("/cop prompt schedule wednesday 10:00 dm", channel=community)
    assert "won't receive reflective prompts" in convo.say("/cop prompts off", user="carol")
    with Session(engine) as db:
        dan = db.exec(select(Member).where(Member.user_id == "dan")).one()
        dan.snoozed_until = LONDON_WED_0959 + dt.timedelta(days=14)
        db.add(dan)
        db.commit()
    assert tick(engine, LONDON_WED_0959 + dt.timedelta(minutes=2)) == 2
    assert sorted(r.destination for r in rows(engine)) == ["user:alice", "user:bob"]
    convo.say("/cop leave falls-prevention", user="bob")
    with Session(engine) as db:
        bob_row = next(r for r in rows(engine) if r.destination == "user:bob")
        assert reflections.still_wanted(db=db, item=bob_row, now=LONDON_WED_0959) is False


def test_pause_resume_and_now(convo: Conversation, community: str, engine: Engine, clock: FixedClock) -> None:
    convo.say("/cop prompt schedule wednesday 10:00", channel=community)
    assert "paused" in convo.say("/cop prompt pause", channel=community)
    assert tick(engine, LONDON_WED_0959 + dt.timedelta(hours=1)) == 0
    clock.at = LONDON_WED_0959 + dt.timedelta(hours=2)
    assert "back on. Next: Wed 2 Dec 10:00" in convo.say("/cop prompt resume", channel=community)
    assert tick(engine, clock.at) == 0  # this week's time passed while paused: not caught up
    assert "on its way to the channel" in convo.say("/cop prompt now", channel=community)
    assert "a prompt went out this minute already" in convo.say("/cop prompt now", channel=community)
    assert len(rows(engine)) == 1


def test_custom_prompts_are_pii_checked_and_join_the_pool(convo: Conversation, community: str, engine: Engine) -> None:
    refused = convo.say("/cop prompt add Who helped Mrs Smith, NHS number 943 476 5919?", channel=community)
    assert "NHS number" in refused
    assert "943 476 5919" not in refused
    assert "as `custom-1`" in convo.say("/cop prompt add What made handover go well today?", channel=community)
    with Session(engine) as db:
        c = db.exec(select(Community)).one()
        pool = reflections.prompt_pool(db, c)
    assert pool[-1].id == "custom-1"
    assert pool[-1].text == "What made handover go well today?"


def test_replies_in_the_thread_and_in_dms_become_reflections_once(
    convo: Conversation, community: str, engine: Engine
) -> None:
    convo.say("/cop prompt now", channel=community)
    pretend_sent(engine, channel=community, message_id="1700.1")
    bot = convo.bot
    reply = bot.handle_message(
        actor=convo.actor("bob"), channel_id=community, message_id="1700.2", thread_id="1700.1",
        text="Our safety huddle caught two risks early", is_dm=False,
    )  # fmt: skip
    assert "kept as a reflection for *Falls prevention*" in visible(reply[0].message)  # type: ignore[arg-type]
    assert reply[0].message.buttons[0].action_id == "reflection.promote"  # type: ignore[union-attr]
    again = bot.handle_message(
        actor=convo.actor("bob"), channel_id=community, message_id="1700.2", thread_id="1700.1",
        text="Our safety huddle caught two risks early", is_dm=False,
    )  # fmt: skip
    assert again == []
    unrelated = bot.handle_message(
        actor=convo.actor("bob"), channel_id=community, message_id="1700.3", thread_id="1234.5", text="hi", is_dm=False
    )
    assert unrelated == []
    refused = bot.handle_message(
        actor=convo.actor("carol"), channel_id=community, message_id="1700.4", thread_id="1700.1",
        text="Call me on 07700 900123", is_dm=False,
    )  # fmt: skip
    assert "didn't keep your reply" in visible(refused[0].message)  # type: ignore[arg-type]
    with Session(engine) as db:
        kept = db.exec(select(Reflection)).all()
    assert [r.text for r in kept] == ["Our safety huddle caught two risks early"]
    digest = convo.say("/cop digest", channel=community)
    assert "Posted a digest" in digest
    posted = visible(convo.platform.called("post")[-1]["message"])
    assert "1 reflection(s) from 1 member(s)" in posted
    assert "safety huddle" not in posted  # the digest counts, it never quotes


def test_dm_replies_attach_to_the_latest_dm_prompt(convo: Conversation, community: str, engine: Engine) -> None:
    convo.say("/cop prompt schedule wednesday 10:00 dm", channel=community)
    convo.say("/cop prompt now", channel=community)
    with Session(engine) as db:
        for item in db.exec(select(OutboxItem)):
            item.status, item.sent_at, item.platform_message_id = "sent", LONDON_WED_0959, "1.1"
            db.add(item)
        db.commit()
    reply = convo.bot.handle_message(
        actor=convo.actor("carol"), channel_id="D0CAROL", message_id="9.9", thread_id=None,
        text="Pharmacy rang ahead", is_dm=True,
    )  # fmt: skip
    assert "kept as a reflection" in visible(reply[0].message)  # type: ignore[arg-type]
    stranger = convo.bot.handle_message(
        actor=convo.actor("zed"), channel_id="D0ZED", message_id="9.8", thread_id=None, text="hello", is_dm=True
    )
    assert stranger == []


def test_a_reflection_becomes_a_story_through_the_prefilled_form(
    convo: Conversation, community: str, engine: Engine
) -> None:
    convo.say("/cop prompt now", channel=community)
    pretend_sent(engine, channel=community, message_id="1700.1")
    [thanks] = convo.bot.handle_message(
        actor=convo.actor("bob"), channel_id=community, message_id="1700.2", thread_id="1700.1",
        text="Huddles at 2pm helped us spot risks early", is_dm=False,
    )  # fmt: skip
    button = thanks.message.buttons[0]  # type: ignore[union-attr]
    assert "Only the person who wrote" in convo.click(button.action_id, button.value, user="carol")
    convo.click(button.action_id, button.value, user="bob")
    [form_reply] = convo.last
    assert form_reply.form is not None
    initial = {f.name: f.initial for f in form_reply.form.fields}
    assert initial["title"] == "Huddles at 2pm helped us spot risks early"
    assert "community" not in initial  # the reflection's community is already known
    values = {**initial, "why_it_works": "Everyone gets a voice", "consent_scope": "community"}
    done = convo.bot.handle_submission(
        actor=convo.actor("bob"), form_id=form_reply.form.form_id, values=values, context=form_reply.form.context
    )
    assert "is shared in" in visible(done[0].message)  # type: ignore[arg-type]
    with Session(engine) as db:
        reflection = db.exec(select(Reflection)).one()
    assert reflection.promoted_story_id == 1
    assert "already story #1" in convo.click(button.action_id, button.value, user="bob")
    convo.say("/cop digest", channel=community)
    assert "New story: Huddles at 2pm helped us spot risks early" in visible(
        convo.platform.called("post")[-1]["message"]
    )
