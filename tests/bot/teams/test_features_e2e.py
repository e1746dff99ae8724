"""Prompts, reflections and introductions on Teams, end to end: signed activities into the real HTTP app, the
scheduler's jobs (the minute tick and the outbox dispatcher), and what reaches people at the fake Bot Connector.

Every card copbot sends here is checked against the Adaptive Cards 1.5 schema (`TeamsWorld.replies_since`).
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

from sqlmodel import Session, col, select

from storage import intros
from storage import repository as repo
from storage import teams as refs
from storage.intros import IntroGroup, IntroGroupMember
from storage.models import Community, Member
from storage.rhythm import OutboxItem, Reflection
from storage.stories import Story
from tests.bot.teams.conftest import MEMBER_ADDED, TASK_FETCH, TASK_SUBMIT, Person, TeamsWorld, cards_in, text_of

CHAT_LINK = "https://teams.microsoft.com/l/chat/0/0"


# --- helpers ---------------------------------------------------------------------------------------------------


def community(world: TeamsWorld, slug: str = "falls-prevention") -> Community:
    with Session(world.engine) as db:
        found = db.exec(select(Community).where(Community.slug == slug)).one()
    return found


def chat_of(world: TeamsWorld, person: Person) -> str:
    """The person's 1:1 chat with copbot, as copbot stored it."""
    with Session(world.engine) as db:
        row = refs.user_by_aad(db=db, tenant_id=world.cloud.tenant_id, aad_object_id=person.aad)
    assert row is not None and row.personal_conversation_id, f"copbot has no 1:1 chat with {person.name}"
    return row.personal_conversation_id


def received(world: TeamsWorld, person: Person, since: int = 0) -> list[dict[str, Any]]:
    """What copbot sent to the person's 1:1 chat since call number `since`."""
    chat = chat_of(world, person)
    return [
        c.body
        for c in world.cloud.connector.calls[since:]
        if c.operation == "Conversations_SendToConversation" and c.params["conversationId"] == chat
    ]


def one_titled(activities: list[dict[str, Any]], title: str) -> dict[str, Any]:
    """The one card among the activities whose title starts with `title`."""
    found = [
        card for activity in activities for card in cards_in(activity) if card["body"][0]["text"].startswith(title)
    ]
    assert len(found) == 1, f"{len(found)} cards titled {title!r}"
    return found[0]


def open_urls(card: dict[str, Any]) -> list[dict[str, Any]]:
    return [a for a in card.get("actions", []) if a["type"] == "Action.OpenUrl"]


def chat_query(url: str) -> dict[str, list[str]]:
    """The query of a Teams chat deep link, after checking it is one."""
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == CHAT_LINK
    return parse_qs(parts.query)


def in_team(world: TeamsWorld) -> None:
    """copbot is added to the team (it learns the team's address) and Alice creates the community there."""
    assert world.post(world.installed_in_team()).status_code == 200
    assert "Created **Falls prevention**" in world.say("create Falls prevention | Sharing what works", channel=True)


def added_to_channel(world: TeamsWorld, person: Person) -> None:
    """Someone is added to the community's channel: Teams says so with their ids only (no name, no sign-in name)."""
    falls = community(world)
    assert falls.channel_id is not None
    activity = world.member_event(MEMBER_ADDED, person, channel_id=falls.channel_id)
    assert world.post(activity).status_code == 200


def member_id(world: TeamsWorld, person: Person) -> int:
    with Session(world.engine) as db:
        member = repo.get_member(db=db, platform="teams", workspace_id=world.cloud.tenant_id, user_id=person.aad)
    assert member is not None and member.id is not None
    return member.id


def run_jobs(world: TeamsWorld) -> dict[str, int]:
    """What the APScheduler jobs do each time they fire: the tick, then the dispatcher."""
    return world.runtime.container.run_due_work()


def reflections(world: TeamsWorld) -> list[Reflection]:
    with Session(world.engine) as db:
        return list(db.exec(select(Reflection).order_by(col(Reflection.id))))


# --- reflective prompts -----------------------------------------------------------------------------------------


def test_a_dm_prompt_reaches_each_member_and_a_reply_becomes_a_reflection_then_a_story(world: TeamsWorld) -> None:
    alice, bob, carol = world.people[:3]
    in_team(world)
    assert "You're now a member" in world.say("join falls-prevention", person=bob)
    added_to_channel(world, carol)
    world.say("prompt schedule monday 10:00 dm in:falls-prevention", channel=True)
    assert run_jobs(world) == {"tick": 0, "dispatch": 0}  # scheduled at 09:00 for 10:00: nothing yet

    world.clock.advance(dt.timedelta(hours=1))
    before = len(world.cloud.connector.calls)
    assert run_jobs(world) == {"tick": 3, "dispatch": 3}
    assert run_jobs(world) == {"tick": 0, "dispatch": 0}  # once a week, however often the tick runs

    world.replies_since(before)  # every card valid
    for person in (alice, bob, carol):
        prompt = one_titled(received(world, person, before), "Reflective prompt")
        assert "leave out anything that could identify a patient" in text_of(prompt)

    # Bob answers in his 1:1 chat: kept as his reflection, with a button to turn it into a story.
    before = len(world.cloud.connector.calls)
    world.say("Our safety huddle caught a deteriorating patient early", person=bob)
    [kept] = reflections(world)
    assert (kept.text, kept.community_id) == (
        "Our safety huddle caught a deteriorating patient early",
        community(world).id,
    )
    [thanks] = cards_in(received(world, bob, before)[-1])
    assert "kept as a reflection" in text_of(thanks)
    [promote] = thanks["actions"]
    assert promote["data"] == {"action_id": "reflection.promote", "value": str(kept.id)}

    # The button opens the story form pre-filled from the reflection; saving it publishes the story in the channel.
    world.post(world.button(promote["data"], person=bob))
    [opener] = cards_in(received(world, bob)[-1])
    fetched = world.post(world.invoke(TASK_FETCH, {"data": opener["actions"][0]["data"]}, person=bob)).json()
    [form] = cards_in(fetched)
    inputs = {i["id"]: i.get("value", "") for i in form["body"] if i["type"].startswith("Input.")}
    assert inputs["action"] == "Our safety huddle caught a deteriorating patient early"
    before = len(world.cloud.connector.calls)
    submitted = {**form["actions"][0]["data"], **inputs, "consent_scope": "community"}
    assert world.post(world.invoke(TASK_SUBMIT, {"data": submitted}, person=bob)).status_code == 200
    with Session(world.engine) as db:
        [story] = db.exec(select(Story)).all()
    assert (story.status, story.source) == ("published", "reply")
    falls = community(world)
    assert falls.channel_id is not None
    assert any("Our safety huddle" in text_of(a) for a in world.posted_in(falls.channel_id, since=before))
    world.replies_since(before)


def test_a_channel_prompt_starts_a_thread_and_replies_in_it_become_reflections(world: TeamsWorld) -> None:
    bob, carol, dave = world.people[1:4]
    in_team(world)
    world.say("join falls-prevention", person=bob)
    falls = community(world)
    assert falls.channel_id is not None
    world.say("prompt schedule monday 10:00 channel in:falls-prevention", channel=True)
    world.clock.advance(dt.timedelta(hours=1))
    before = len(world.cloud.connector.calls)

    assert run_jobs(world) == {"tick": 1, "dispatch": 1}

    [prompt] = world.posted_in(falls.channel_id, since=before)
    assert "Reply in this thread" in text_of(prompt)
    world.replies_since(before)
    with Session(world.engine) as db:
        [row] = db.exec(select(OutboxItem).where(OutboxItem.kind == "prompt")).all()
    thread = row.platform_message_id
    assert thread and thread.isdigit()  # the thread's message id, as replies name it (`…;messageid=<id>`)

    # Bob replies in the thread without @mentioning copbot (Teams sends it thanks to ChannelMessage.Read.Group).
    before = len(world.cloud.connector.calls)
    reply = world.channel_post(
        "Handover at the bedside meant nobody missed the falls risk", person=bob, channel_id=falls.channel_id,
        thread=thread,
    )  # fmt: skip
    assert world.post(reply).status_code == 200
    assert world.post(reply).status_code == 200  # Teams retried: still one reflection

    [kept] = reflections(world)
    assert kept.text == "Handover at the bedside meant nobody missed the falls risk"
    assert (kept.community_id, kept.source_channel, kept.source_message) == (falls.id, falls.channel_id, reply["id"])
    assert "kept as a reflection" in world.replies_since(before)
    assert world.posted_in(falls.channel_id, since=before) == []  # the thanks is private: Bob's 1:1 chat
    assert received(world, bob, before)

    # What is not a reply to a prompt is not copbot's business: no reflection, no answer, no Bot Connector call.
    before = len(world.cloud.connector.calls)
    chatter = [
        world.channel_post("Coffee in the staff room at eleven", person=carol, channel_id=falls.channel_id),
        world.channel_post(
            "Agreed, see you all there then", person=carol, channel_id=falls.channel_id, thread="1740000099999"
        ),
        world.channel_post(  # copbot doesn't know Dave: still no roster lookup for a message that isn't for it
            f"@{dave.name} are you coming?",
            person=carol,
            channel_id=falls.channel_id,
            thread="1740000099999",
            mentions=(dave,),
        ),
    ]
    for activity in chatter:
        assert world.post(activity).status_code == 200
    assert len(reflections(world)) == 1
    assert world.cloud.connector.calls[before:] == []

    # A reply naming a patient is refused privately and nothing of it is kept.
    pii = world.channel_post(
        "Mrs Smith, NHS number 943 476 5919, fell twice", person=carol, channel_id=falls.channel_id, thread=thread
    )
    assert world.post(pii).status_code == 200
    assert len(reflections(world)) == 1
    assert "patient-identifiable details" in world.replies_since(before)


def test_commands_in_a_prompt_thread_still_work_and_a_mentioned_sentence_is_a_reflection(world: TeamsWorld) -> None:
    in_team(world)
    falls = community(world)
    assert falls.channel_id is not None
    world.say("prompt schedule monday 10:00 channel in:falls-prevention", channel=True)
    world.clock.advance(dt.timedelta(hours=1))
    run_jobs(world)
    with Session(world.engine) as db:
        [row] = db.exec(select(OutboxItem).where(OutboxItem.kind == "prompt")).all()

    def in_thread(text: str) -> dict[str, Any]:
        activity = world.channel_message(text, channel_id=falls.channel_id)
        activity["conversation"]["id"] = f"{falls.channel_id};messageid={row.platform_message_id}"
        return activity

    before = len(world.cloud.connector.calls)
    world.post(in_thread("list"))
    assert "Falls prevention" in world.replies_since(before)
    assert reflections(world) == []

    world.post(in_thread("We now check lying and standing blood pressure on admission"))
    [kept] = reflections(world)
    assert kept.text == "We now check lying and standing blood pressure on admission"


# --- introductions ----------------------------------------------------------------------------------------------


def groups_by_member(world: TeamsWorld) -> dict[str, set[str]]:
    """Each person's partners in the latest round, by Entra object id (from what copbot stored)."""
    with Session(world.engine) as db:
        rows = db.exec(select(IntroGroup, IntroGroupMember).where(IntroGroupMember.group_id == IntroGroup.id)).all()
        ids = {m.id: m.user_id for m in db.exec(select(Member))}
    people: dict[int, set[str]] = {}
    for group, member in rows:
        people.setdefault(group.id or 0, set()).add(ids[member.member_id])
    return {person: group - {person} for group in people.values() for person in group}


def test_intros_run_sends_each_person_a_card_with_a_chat_link_and_the_follow_up_records_answers(
    world: TeamsWorld,
) -> None:
    alice, bob, carol, dave = world.people[:4]
    in_team(world)  # Alice's sign-in name comes from the team roster (Graph) read when the channel is made
    world.say("join falls-prevention", person=bob)  # Bob's too, when his join is checked against the roster
    added_to_channel(world, carol)  # Carol and Dave arrive with ids only: copbot asks the Connector when needed
    added_to_channel(world, dave)
    for person, profession in zip(world.people[:4], ("Nurse", "Pharmacist", "Physiotherapist", "Doctor"), strict=True):
        world.say(f"profile profession={profession} organisation=Example", person=person)

    ran = world.say("intros run in:falls-prevention")
    assert "2 introduction(s) for 4 people" in ran
    before = len(world.cloud.connector.calls)
    assert run_jobs(world)["dispatch"] == 5  # four introductions and the facilitator's figures

    world.replies_since(before)  # every card valid
    partners = groups_by_member(world)
    by_aad = {p.aad: p for p in world.people}
    for person in (alice, bob, carol, dave):
        [partner_id] = partners[person.aad]
        partner = by_aad[partner_id]
        card = one_titled(received(world, person, before), "Introduction ·")
        assert f"**{partner.name}**" in text_of(card)  # named, not "someone"
        [chat] = open_urls(card)
        assert chat["title"] == f"Chat with {partner.name}"
        query = chat_query(chat["url"])
        assert query["users"] == [partner.upn]
        assert "copbot introduced us" in query["message"][0]
        assert "topicName" not in query  # a 1:1 chat has no topic
    # Carol's and Dave's sign-in names were fetched once each, then stored.
    lookups = [c.params["memberId"] for c in world.cloud.connector.activities("Conversations_GetConversationMember")]
    assert sorted(lookups) == sorted([carol.bot_id, dave.bot_id])
    with Session(world.engine) as db:
        for person in world.people[:4]:
            stored = refs.user_by_aad(db=db, tenant_id=world.cloud.tenant_id, aad_object_id=person.aad)
            assert stored is not None and stored.upn == person.upn
    assert "Introductions round 1" in text_of(received(world, alice, before))  # the figures, for the facilitator

    # Half-way through the round each person is asked "Did you meet?".
    world.clock.advance(dt.timedelta(days=3))
    before = len(world.cloud.connector.calls)
    assert run_jobs(world)["dispatch"] == 4
    world.replies_since(before)
    asked = one_titled(received(world, bob, before), "Did you meet?")
    buttons = {a["title"]: a["data"] for a in asked["actions"]}
    assert list(buttons) == ["Yes", "Not yet", "No"]
    assert all(a["type"] == "Action.Submit" for a in asked["actions"])

    before = len(world.cloud.connector.calls)
    world.post(world.button(buttons["Not yet"], person=bob))
    world.post(world.button(buttons["Yes"], person=bob))  # the last answer counts
    assert "Wonderful" in world.replies_since(before)
    group_id = int(buttons["Yes"]["value"].split(":")[0])
    with Session(world.engine) as db:
        place = intros.group_member(db=db, group_id=group_id, member_id=member_id(world, bob))
    assert place is not None and place.answer == "yes"

    # Someone else pressing Bob's button records nothing for them.
    outsider = next(p for p in (alice, carol, dave) if p.aad not in partners[bob.aad])
    before = len(world.cloud.connector.calls)
    world.post(world.button(buttons["No"], person=outsider))
    assert "for the people in that introduction" in world.replies_since(before)
    assert "met 1 of 1 answered" in world.say("intros report in:falls-prevention")


def test_a_trio_gets_one_group_chat_link_naming_both_partners(world: TeamsWorld) -> None:
    alice, bob, carol = world.people[:3]
    in_team(world)
    world.say("join falls-prevention", person=bob)
    added_to_channel(world, carol)

    world.say("intros run in:falls-prevention")
    before = len(world.cloud.connector.calls)
    run_jobs(world)

    for person in (alice, bob, carol):
        others = [p for p in (alice, bob, carol) if p != person]
        card = one_titled(received(world, person, before), "Introduction ·")
        [chat] = open_urls(card)
        assert chat["title"] in {f"Chat with {others[0].name} and {others[1].name}",
                                 f"Chat with {others[1].name} and {others[0].name}"}  # fmt: skip
        query = chat_query(chat["url"])
        assert sorted(query["users"][0].split(",")) == sorted(p.upn for p in others)
        assert query["topicName"] == ["Introduction · Falls prevention"]
    world.replies_since(before)
    # Carol is a partner in two introductions but was looked up once.
    assert len(world.cloud.connector.activities("Conversations_GetConversationMember")) == 1


def test_without_a_sign_in_name_the_introduction_still_names_the_partner(world: TeamsWorld) -> None:
    alice, carol = world.people[0], world.people[2]
    in_team(world)
    added_to_channel(world, carol)
    world.say("profile profession=Nurse", person=carol)  # Carol has written to copbot: her name is known
    # The Connector can't find Carol (e.g. a guest who left the team since): no sign-in name for her.
    team_people = world.cloud.connector.members[world.team_conversation]
    world.cloud.connector.members[world.team_conversation] = [m for m in team_people if m["id"] != carol.bot_id]

    world.say("intros run in:falls-prevention")
    before = len(world.cloud.connector.calls)
    run_jobs(world)

    to_alice = one_titled(received(world, alice, before), "Introduction ·")
    assert open_urls(to_alice) == []  # no link, and nothing broken
    assert f"**{carol.name}**" in text_of(to_alice)
    to_carol = one_titled(received(world, carol, before), "Introduction ·")
    [chat] = open_urls(to_carol)
    assert chat_query(chat["url"])["users"] == [alice.upn]
    world.replies_since(before)
    assert len(world.cloud.connector.activities("Conversations_GetConversationMember")) == 1

    # The next round doesn't ask about Carol again.
    world.clock.advance(dt.timedelta(minutes=1))
    world.say("intros run in:falls-prevention")
    run_jobs(world)
    assert len(world.cloud.connector.activities("Conversations_GetConversationMember")) == 1


def test_a_scheduled_round_gives_notice_honours_a_skip_and_introduces_the_others(world: TeamsWorld) -> None:
    alice, bob, carol, dave = world.people[:4]
    in_team(world)
    world.say("join falls-prevention", person=bob)
    added_to_channel(world, carol)
    added_to_channel(world, dave)
    # Monday 09:00: rounds every week on Wednesday at 10:00 (London, GMT in March).
    assert "First round: Wed 5 Mar 10:00" in world.say("intros schedule every 1 weeks wednesday in:falls-prevention")

    world.clock.advance(dt.timedelta(days=1, hours=1))  # Tuesday 10:00: the day before
    before = len(world.cloud.connector.calls)
    assert run_jobs(world)["dispatch"] == 4
    world.replies_since(before)
    notice = one_titled(received(world, dave, before), "Introductions tomorrow")
    [skip] = notice["actions"]
    assert skip["data"]["action_id"] == "intro.skip"
    before = len(world.cloud.connector.calls)
    world.post(world.button(skip["data"], person=dave))
    assert "You'll skip this round" in world.replies_since(before)

    world.clock.advance(dt.timedelta(days=1))  # Wednesday 10:00: the round
    before = len(world.cloud.connector.calls)
    run_jobs(world)
    partners = groups_by_member(world)
    assert dave.aad not in partners
    assert set(partners) == {alice.aad, bob.aad, carol.aad}  # three people: one trio
    for person in (alice, bob, carol):
        card = one_titled(received(world, person, before), "Introduction ·")
        [chat] = open_urls(card)
        assert dave.upn not in chat["url"]
    assert not [c for a in received(world, dave, before) for c in cards_in(a) if "Introduction ·" in json.dumps(c)]
    world.replies_since(before)
