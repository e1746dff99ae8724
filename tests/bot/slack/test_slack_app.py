"""The Slack adapter end to end: signed requests in, Bolt, the core, and calls out to a fake Slack Web API."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from slack_bolt import App, BoltRequest, BoltResponse
from slack_bolt.adapter.socket_mode import SocketModeHandler
from slack_sdk import WebClient
from sqlalchemy import Engine, text
from sqlmodel import Session, select

from bot.slack.app import COMMAND, EVENTS, SHORTCUT_SAVE_AS_STORY, SlackDeps, build_app
from bot.slack.platform import SlackPlatform
from handlers.app import CopBot
from handlers.context import CoreConfig
from storage.inbox import InboxItem, open_queue
from storage.models import Community, Member, Membership
from tests.bot.slack.workers import worker_running
from tests.conftest import FixedClock
from tests.fakes import slack_signing as signing
from tests.fakes.slack_api import BOT_TOKEN, FakeSlack
from tests.fakes.slack_manifest import declared
from tests.fakes.slack_socket import FakeSocketMode

ROOT = Path(__file__).resolve().parents[3]


def dispatch(app: App, request: signing.SignedRequest) -> BoltResponse:
    return app.dispatch(BoltRequest(body=request.body, headers=request.headers))


def command(app: App, fake: FakeSlack, text: str, *, user: str = "U0ALICE", channel: str = "C0GENERAL") -> str:
    """Send a signed /cop command and return the ephemeral reply that arrives on its response_url."""
    before = len(fake.responses)
    response = dispatch(
        app,
        signing.signed_slash_command(
            text, user_id=user, channel_id=channel, response_url=fake.response_url(f"cmd{before}")
        ),
    )
    assert response.status == 200
    replies = fake.wait_for_responses(before + 1)
    return str(replies[before]["text"])


def test_manifest_declares_exactly_what_the_app_registers() -> None:
    manifest = declared(ROOT / "manifest.yaml")
    assert manifest.commands == {COMMAND}
    assert manifest.shortcut_callback_ids == {SHORTCUT_SAVE_AS_STORY}
    as_listeners = {e.split(".")[0] for e in manifest.bot_events}
    assert as_listeners == set(EVENTS)


def test_create_join_list_over_slack(slack: tuple[App, FakeSlack], engine: Engine) -> None:
    app, fake = slack
    reply = command(app, fake, "create Falls prevention | Sharing what works on our wards")
    assert "Created *Falls prevention* with the channel `cop-falls-prevention`" in reply
    channel = fake.channel_named("cop-falls-prevention")
    assert channel is not None
    assert fake.calls_to("conversations.setTopic")[0]["topic"] == "Sharing what works on our wards"
    welcome = fake.messages_in(channel.id)
    assert any("Welcome to Falls prevention" in m.text for m in welcome)
    assert "You're now a member of *Falls prevention*" in command(app, fake, "join falls-prevention", user="U0BOB")
    assert "U0BOB" in channel.members
    listing = command(app, fake, "list", user="U0CAROL")
    assert "*Falls prevention* — Sharing what works on our wards" in listing
    assert "2 members" in listing
    with Session(engine) as db:
        community = db.exec(select(Community)).one()
        assert (community.platform, community.workspace_id, community.channel_id) == ("slack", "T0COPBOT", channel.id)


def test_taken_channel_names_get_a_number(slack: tuple[App, FakeSlack]) -> None:
    app, fake = slack
    fake.add_channel("cop-sepsis")
    reply = command(app, fake, "create Sepsis")
    assert "`cop-sepsis` was taken, so the channel is `cop-sepsis-2`" in reply


def test_bad_input_gets_a_private_specific_reply(slack: tuple[App, FakeSlack]) -> None:
    app, fake = slack
    assert "Did you mean `/cop create`?" in command(app, fake, "crate Falls")
    assert "at least one letter or digit" in command(app, fake, "create 🎉🎉")
    assert fake.calls_to("conversations.create") == []


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        ("restricted_action", "Your Slack workspace's settings don't allow copbot"),
        ("missing_scope", "copbot is missing a Slack permission"),
        ("some_new_error", "Slack refused that (some_new_error)"),
    ],
)
def test_web_api_errors_become_clear_replies_and_nothing_is_stored(
    slack: tuple[App, FakeSlack], engine: Engine, error: str, expected: str, caplog: pytest.LogCaptureFixture
) -> None:
    app, fake = slack
    fake.fail_next("conversations.create", error=error)
    assert expected in command(app, fake, "create Falls prevention | secret purpose words")
    with Session(engine) as db:
        assert db.exec(select(Community)).all() == []
    assert f"conversations.create failed: {error}" in caplog.text
    assert "secret purpose words" not in caplog.text


def test_rate_limits_are_waited_out_not_dropped(slack: tuple[App, FakeSlack]) -> None:
    app, fake = slack
    fake.rate_limit("chat.postMessage", retry_after=1, times=1)
    command(app, fake, "create Falls prevention")
    channel = fake.channel_named("cop-falls-prevention")
    assert channel is not None
    assert any("Welcome to Falls prevention" in m.text for m in fake.messages_in(channel.id))
    statuses = [r.status for r in fake.records if r.method == "chat.postMessage"]
    assert statuses == [429, 200]


@pytest.mark.parametrize("switch", [{"bad_signature": True}, {"bad_timestamp": True}, {"age_seconds": 301}])
def test_unsigned_or_stale_requests_are_rejected_and_nothing_happens(
    slack: tuple[App, FakeSlack], switch: dict[str, Any]
) -> None:
    app, fake = slack
    request = signing.signed_slash_command("create Falls", response_url=fake.response_url(), sign_options=switch)
    response = dispatch(app, request)
    assert response.status == 401
    assert fake.calls_to("conversations.create") == []


def test_a_retried_event_is_handled_once(slack: tuple[App, FakeSlack], engine: Engine) -> None:
    app, fake = slack
    command(app, fake, "create Falls prevention")
    channel = fake.channel_named("cop-falls-prevention")
    assert channel is not None
    body = signing.event_callback("member_joined_channel", user="U0BOB", channel=channel.id, event_id="Ev0RETRY1")
    assert dispatch(app, signing.signed_event(body)).status == 200
    assert dispatch(app, signing.signed_event(body, retry_num=1, retry_reason="http_timeout")).status == 200
    assert dispatch(app, signing.signed_event(body, retry_num=2)).status == 200
    dms = fake.wait_for("chat.postMessage", count=2)  # the welcome post and one DM
    fake.wait_for("conversations.create")
    assert [d["channel"] for d in dms].count("U0BOB") == 1
    with Session(engine) as db:
        bob = db.exec(select(Member).where(Member.user_id == "U0BOB")).one()
        assert len(db.exec(select(Membership).where(Membership.member_id == bob.id)).all()) == 1


def test_member_joined_channel_welcomes_with_a_profile_button(slack: tuple[App, FakeSlack]) -> None:
    app, fake = slack
    command(app, fake, "create Falls prevention")
    channel = fake.channel_named("cop-falls-prevention")
    assert channel is not None
    dispatch(
        app, signing.signed_event(signing.event_callback("member_joined_channel", user="U0BOB", channel=channel.id))
    )
    [dm] = [c for c in fake.wait_for("chat.postMessage", count=2) if c["channel"] == "U0BOB"]
    blocks = json.loads(dm["blocks"]) if isinstance(dm["blocks"], str) else dm["blocks"]
    buttons = [e for b in blocks if b["type"] == "actions" for e in b["elements"]]
    assert buttons[0]["action_id"] == "profile.open"


def test_profile_button_opens_the_modal_and_submission_saves(slack: tuple[App, FakeSlack], engine: Engine) -> None:
    app, fake = slack
    payload = signing.interactive(
        "block_actions",
        actions=[{"action_id": "profile.open", "block_id": "b", "type": "button", "value": "-", "action_ts": "1"}],
        response_url=fake.response_url("act"),
    )
    assert dispatch(app, signing.signed_interactive(payload)).status == 200
    [opened] = fake.wait_for("views.open")
    view = json.loads(opened["view"]) if isinstance(opened["view"], str) else opened["view"]
    assert view["callback_id"] == "profile"
    assert [b["block_id"] for b in view["blocks"]] == ["profession", "organisation", "timezone"]
    state = signing.view_state(
        {
            "profession": {"type": "plain_text_input", "value": "Pharmacist"},
            "organisation": {"type": "plain_text_input", "value": "Example NHS Trust"},
            "timezone": {"type": "plain_text_input", "value": ""},
        }
    )
    submission = signing.interactive("view_submission", view={**view, "id": "V1", "state": state})
    assert dispatch(app, signing.signed_interactive(submission)).status == 200
    [saved] = [c for c in fake.wait_for("chat.postMessage") if c["channel"] == "U0ALICE"]
    assert "Profession: Pharmacist" in saved["text"]
    with Session(engine) as db:
        alice = db.exec(select(Member).where(Member.user_id == "U0ALICE")).one()
        assert alice.organisation == "Example NHS Trust"


def test_profile_command_without_arguments_opens_a_modal(slack: tuple[App, FakeSlack]) -> None:
    app, fake = slack
    dispatch(app, signing.signed_slash_command("profile", response_url=fake.response_url()))
    [opened] = fake.wait_for("views.open")
    assert "trigger_id" in opened


def test_app_home_and_mentions(slack: tuple[App, FakeSlack]) -> None:
    app, fake = slack
    command(app, fake, "create Falls prevention")
    dispatch(app, signing.signed_event(signing.event_callback("app_home_opened", user="U0ALICE", tab="home")))
    [published] = fake.wait_for("views.publish")
    view = json.loads(published["view"]) if isinstance(published["view"], str) else published["view"]
    text = json.dumps(view)
    assert "Falls prevention" in text and "you facilitate" in text and "Facilitator shortcuts" in text
    dispatch(app, signing.signed_event(signing.event_callback("app_mention", user="U0BOB", channel="C0GENERAL")))
    [ephemeral] = fake.wait_for("chat.postEphemeral")
    assert "copbot helps Patient Safety Communities of Practice" in ephemeral["text"]


def socket_mode_app(fake: FakeSlack, engine: Engine, clock: FixedClock) -> tuple[WebClient, CopBot, App]:
    """The Bolt app for Socket Mode (no signing secret), its client and its core."""
    client = WebClient(token=BOT_TOKEN, base_url=fake.url)
    bot = CopBot(engine=engine, platform=SlackPlatform(client), clock=clock, config=CoreConfig())
    app = build_app(deps=SlackDeps(bot=bot, engine=engine, clock=clock), client=client, signing_secret=None)
    return client, bot, app


def test_socket_mode_acks_commands_and_events(
    fake_slack: FakeSlack, fake_slack_socket: FakeSocketMode, engine: Engine, clock: FixedClock
) -> None:
    client, bot, app = socket_mode_app(fake_slack, engine, clock)
    handler = SocketModeHandler(app, app_token="xapp-1-A0COPBOT-1-fake", web_client=client)
    handler.connect()  # type: ignore[no-untyped-call]
    try:
        fake_slack_socket.wait_connected()
        fields = signing.slash_command_fields("create Falls prevention", response_url=fake_slack.response_url())
        ack = fake_slack_socket.push_slash_command(fields)
        assert ack["envelope_id"]
        with Session(open_queue(engine)) as db:  # acknowledged only once written down; nothing done yet
            [row] = db.exec(select(InboxItem)).all()
        assert (row.kind, row.status) == ("slack.command", "pending") and fake_slack.responses == []
        assert fake_slack.calls_to("conversations.create") == []
        with worker_running(bot=bot, client=client, engine=engine, clock=clock):
            fake_slack.wait_for_responses(1)
            assert fake_slack.channel_named("cop-falls-prevention") is not None
            ack = fake_slack_socket.push_event(signing.event_callback("app_home_opened", user="U0ALICE", tab="home"))
            assert ack["envelope_id"]
            fake_slack.wait_for("views.publish")
    finally:
        handler.close()  # type: ignore[no-untyped-call]


def test_socket_mode_does_not_acknowledge_a_request_it_could_not_write_down(
    fake_slack: FakeSlack, fake_slack_socket: FakeSocketMode, engine: Engine, clock: FixedClock
) -> None:
    client, _, app = socket_mode_app(fake_slack, engine, clock)
    with open_queue(engine).begin() as conn:
        conn.execute(text("DROP TABLE inbox"))  # the database cannot take the request
    handler = SocketModeHandler(app, app_token="xapp-1-A0COPBOT-1-fake", web_client=client)
    handler.connect()  # type: ignore[no-untyped-call]
    try:
        fake_slack_socket.wait_connected()
        fields = signing.slash_command_fields("create Falls prevention", response_url=fake_slack.response_url())
        with pytest.raises(AssertionError, match="no ack"):  # Slack tells the person it failed (retries an event)
            fake_slack_socket.push_slash_command(fields)
    finally:
        handler.close()  # type: ignore[no-untyped-call]
    assert fake_slack.calls_to("conversations.create") == [] and fake_slack.responses == []
