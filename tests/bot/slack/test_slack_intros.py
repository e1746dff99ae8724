"""Introductions on Slack: ten people with profiles, three rounds of group DMs through the outbox, follow-up buttons
counted."""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter

from slack_bolt import App, BoltRequest
from sqlalchemy import Engine

from bot.dispatcher import Dispatcher
from tests.bot.slack.test_slack_rhythm import command
from tests.bot.slack.test_slack_rhythm import setup as setup  # the shared fixture
from tests.conftest import FixedClock
from tests.fakes import slack_signing as signing
from tests.fakes.slack_api import BOT_USER_ID, FakeSlack
from tests.seen import slack_seen

PEOPLE = [
    ("U0ALICE", "Manager", "NUH"), ("U0BOB", "Nurse", "NUH"), ("U0CAROL", "Doctor", "NUH"),
    ("U0DAN", "Pharmacist", "SFH"), ("U0ERIN", "Physio", "SFH"), ("U0FRED", "Nurse", "SFH"),
    ("U0GITA", "Doctor", "Leeds"), ("U0HARI", "Midwife", "Leeds"), ("U0IVY", "HCA", "NUH"), ("U0JON", "OT", "Leeds"),
]  # fmt: skip


def intro_groups(fake: FakeSlack, since: int) -> list[frozenset[str]]:
    """The groups copbot introduced, read back from its group DMs: the people in each conversation it posted an
    introduction to (copbot aside), every one of them shown in it with their profile."""
    groups = []
    for record in fake.records[since:]:
        if record.method != "chat.postMessage" or "Introduction ·" not in slack_seen(record.params):
            continue
        conversation = fake.channels.get(str(record.params["channel"]))
        assert conversation is not None and conversation.kind == "mpim", "an introduction goes to the group DM"
        people = frozenset(conversation.members) - {BOT_USER_ID}
        seen = slack_seen(record.params)
        for user, profession, organisation in PEOPLE:
            if user in people:
                assert f"@{user}\nProfession\n{profession}\nOrganisation\n{organisation}" in seen, user
        groups.append(people)
    return sorted(groups, key=sorted)


def test_three_rounds_on_slack_never_repeat_and_count_follow_ups(
    setup: tuple[App, Dispatcher], fake_slack: FakeSlack, clock: FixedClock, file_engine: Engine
) -> None:
    app, dispatcher = setup
    command(app, fake_slack, "create Falls prevention")
    channel = fake_slack.channel_named("cop-falls-prevention")
    assert channel is not None
    for user, profession, organisation in PEOPLE:
        if user != "U0ALICE":
            command(app, fake_slack, "join falls-prevention", user=user)
        command(app, fake_slack, f"profile profession={profession} organisation={organisation}", user=user)
    seen: list[frozenset[str]] = []
    for _ in range(3):
        start = len(fake_slack.records)
        assert "introduction(s) for 10 people" in command(app, fake_slack, "intros run", channel=channel.id)
        dispatcher.run()
        groups = intro_groups(fake_slack, start)
        assert len(groups) == 5  # one group DM per pair, one introduction in each
        assert sum(len(g) for g in groups) == 10 and set().union(*groups) == {u for u, _, _ in PEOPLE}
        seen += groups
        clock.advance(dt.timedelta(days=4))
        dispatcher.run()  # the "Did you meet?" follow-ups
    assert len(seen) == len(set(seen)) == 15
    follow_up = next(
        r for r in reversed(fake_slack.records)
        if r.method == "chat.postMessage" and r.params.get("channel") == "U0BOB" and "Did you meet" in str(r.params)
    )  # fmt: skip
    blocks = follow_up.params["blocks"]
    blocks = json.loads(blocks) if isinstance(blocks, str) else blocks
    yes = next(e for b in blocks if b["type"] == "actions" for e in b["elements"] if e["value"].endswith(":yes"))
    before = len(fake_slack.responses)
    for _ in range(2):  # a double click counts once
        payload = signing.interactive(
            "block_actions",
            user={"id": "U0BOB", "username": "bob", "team_id": "T0COPBOT"},
            actions=[{**yes, "block_id": "b", "action_ts": "1"}],
            response_url=fake_slack.response_url("met"),
        )
        app.dispatch(
            BoltRequest(
                body=signing.signed_interactive(payload).body, headers=signing.signed_interactive(payload).headers
            )
        )
    fake_slack.wait_for_responses(before + 2)
    report = command(app, fake_slack, "intros report", channel=channel.id)
    assert "So far: 3 round(s), 15 group(s); met 1 of 1 group(s) that answered (100%)" in report
    assert Counter(r.status for r in fake_slack.records if r.method == "chat.postMessage")[200] > 30
