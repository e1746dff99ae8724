"""Consent on Slack end to end: a story goes only where its scope allows, as Slack shows it (signed requests in,
the fake Slack Web API out, every call checked against Slack's spec)."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from slack_bolt import App, BoltResponse
from sqlalchemy import Engine

from bot.dispatcher import Dispatcher
from storage.stories import ConsentScope
from tests.bot.slack.test_slack_app import dispatch
from tests.bot.slack.test_slack_rhythm import command as rhythm_command
from tests.bot.slack.test_slack_rhythm import setup
from tests.bot.slack.test_slack_stories import BOB, as_dict, channel, stories, story_state, submit
from tests.fakes import slack_signing as signing
from tests.fakes.slack_api import BOT_USER_ID, FakeSlack
from tests.seen import slack_pings, slack_seen

__all__ = ["channel", "setup"]  # the shared fixtures


def open_story_form(app: App, fake: FakeSlack, channel: str) -> dict[str, Any]:
    """Bob runs `/cop story` in the community's channel; the modal Slack was asked to open."""
    dispatch(app, signing.signed_slash_command("story", user_id="U0BOB", channel_id=channel,
                                               response_url=fake.response_url()))  # fmt: skip
    [opened] = fake.wait_for("views.open")
    return as_dict(opened["view"])


@pytest.mark.parametrize("scope", list(ConsentScope))
def test_a_story_reaches_only_the_places_its_scope_allows(
    slack: tuple[App, FakeSlack], channel: str, scope: ConsentScope
) -> None:
    app, fake = slack
    view = open_story_form(app, fake, channel)
    title = "Torch checks at <!channel> night"
    values = story_state(
        view,
        title=title,
        action="We check every torch at 22:00 & log it.",
        consent_scope={"type": "static_select", "selected_option": {"value": scope.value}},
    )
    submit(app, view, values, user=BOB)
    # The welcome, the card or the facilitator's copy, then (last) the author's note saying where it went.
    posts = fake.wait_for("chat.postMessage", count=3)
    assert all(slack_pings(call) == set() for call in posts)  # the title's <!channel> is shown, never acted on
    [note] = [slack_seen(call) for call in posts if call["channel"] == "U0BOB"]
    shown = {c["channel"]: slack_seen(c) for c in posts if c["channel"] != "U0BOB" and "Torch checks" in slack_seen(c)}
    if scope == ConsentScope.SAFETY_TEAM:
        assert set(shown) == {"U0ALICE"}  # the facilitator, privately; chat.postMessage never saw the channel
        assert f"Your story {title} (#1) is shared privately with the facilitators of Falls prevention." in note
    else:
        assert set(shown) == {channel}
        assert f"Your story {title} (#1) is shared in #{channel}." in note
    [where] = shown.values()
    assert title in where and "We check every torch at 22:00 & log it." in where


def test_an_introduction_dm_shows_the_partners_the_advice_and_the_starter(
    setup: tuple[App, Dispatcher], fake_slack: FakeSlack
) -> None:
    app, dispatcher = setup
    rhythm_command(app, fake_slack, "create Falls prevention")
    found = fake_slack.channel_named("cop-falls-prevention")
    assert found is not None
    rhythm_command(app, fake_slack, "join falls-prevention", user="U0BOB")
    rhythm_command(app, fake_slack, 'profile profession="Staff nurse" organisation="North Trust"')
    rhythm_command(app, fake_slack, 'profile profession=Pharmacist organisation="East Trust"', user="U0BOB")
    rhythm_command(app, fake_slack, "intros run", channel=found.id)
    dispatcher.run()
    [opened] = fake_slack.calls_to("conversations.open")
    assert sorted(opened["users"].split(",")) == ["U0ALICE", "U0BOB"]
    [group] = [c for c in fake_slack.channels.values() if c.kind == "mpim"]
    assert set(group.members) == {BOT_USER_ID, "U0ALICE", "U0BOB"}  # the partners and copbot, nobody else
    intros = [c for c in fake_slack.calls_to("chat.postMessage") if "Introduction ·" in slack_seen(c)]
    assert [c["channel"] for c in intros] == [group.id]  # one message, in the group DM; no 1:1 copies
    [call] = intros
    assert call.get("blocks"), "an introduction is rich: Slack shows its blocks, not its text"
    seen = slack_seen(call)
    assert any(f"Meet each other: @{a} and @{b}, from Falls prevention." in seen
               for a, b in (("U0ALICE", "U0BOB"), ("U0BOB", "U0ALICE")))  # fmt: skip
    # Both profiles, each under its person.
    assert "@U0ALICE\nProfession\nStaff nurse\nOrganisation\nNorth Trust" in seen
    assert "@U0BOB\nProfession\nPharmacist\nOrganisation\nEast Trust" in seen
    assert "Reply here to find 20–30 minutes for a call or a coffee" in seen  # the advice
    assert "A conversation starter" in seen and "?" in seen.split("A conversation starter", 1)[1]


# --- forms that never lose a word (issue 12) ----------------------------------------------------------------------


def submit_view(app: App, view: dict[str, object], values: dict[str, object], *, view_hash: str = "h1") -> BoltResponse:
    state = signing.view_state({block: {block: value} for block, value in values.items()})
    payload = signing.interactive("view_submission", view={**view, "id": "V1", "hash": view_hash, "state": state},
                                  user=BOB)  # fmt: skip
    return dispatch(app, signing.signed_interactive(payload))


def test_a_wrong_field_keeps_the_modal_open_with_the_error_under_it_and_fixing_it_saves(
    slack: tuple[App, FakeSlack], channel: str, engine: Engine
) -> None:
    app, fake = slack
    view = open_story_form(app, fake, channel)
    typed = "Ten minutes of careful typing about torch checks at night."
    values = story_state(view, title="Torch checks", action=typed, impact="Patient 943 476 5919 slept")
    response = submit_view(app, view, values)
    assert response.status == 200
    answer = json.loads(response.body)
    assert answer["response_action"] == "errors"
    assert set(answer["errors"]) == {"impact"} and "NHS number" in answer["errors"]["impact"]
    assert "943" not in response.body
    time.sleep(0.3)  # the lazy listener had its chance to (wrongly) save or post something
    assert stories(engine) == []
    assert not any("Torch checks" in slack_seen(c) for c in fake.calls_to("chat.postMessage"))
    fixed = {**values, "impact": "Everyone slept better"}
    response = submit_view(app, view, fixed)  # the same modal, still open, submitted again
    assert response.status == 200 and not response.body
    fake.wait_for_responses(0)
    deadline = time.monotonic() + 5
    while not stories(engine) and time.monotonic() < deadline:
        time.sleep(0.05)
    [story] = stories(engine)
    assert (story.title, story.action, story.impact) == ("Torch checks", typed, "Everyone slept better")
    submit_view(app, view, fixed)  # a double click on the valid form
    time.sleep(0.3)
    assert len(stories(engine)) == 1
