"""Hostile input never reaches the log: after a session of unsigned, forged and marker-laden requests to the Slack
HTTP app and the Teams adapter, with production's logging set-up and LOG_LEVEL=DEBUG, no record carries a word a
person (or an attacker) sent, and a 5 MB body costs a line, not 5 MB."""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from slack_bolt import App
from sqlmodel import Session, select

from bot.logging_setup import FORMAT, HELD, configure_logging, is_held, uninstall_scrubber
from bot.teams.cards import FORM_KEY
from bot.web import create_web_app
from storage.models import Community, Member
from tests.bot.slack import conftest as slack_conftest
from tests.bot.teams import conftest as teams_conftest
from tests.bot.teams.conftest import TASK_SUBMIT, TeamsWorld
from tests.fakes import slack_signing as signing
from tests.fakes.slack_api import TEAM_ID, FakeSlack
from tests.fakes.teams import SigningKey

# The fixtures of the Slack and Teams adapter tests, shared rather than copied.
engine = slack_conftest.engine
slack = slack_conftest.slack
world = teams_conftest.world

MARK = "zqxmark"  # every marker starts with this; none may appear in the log
FIVE_MB = 5 * 1024 * 1024
SLACK_LIMIT = 20_000  # bytes of log for the whole Slack session, the 5 MB body included


def marker(field: str) -> str:
    return f"{MARK}{field}{secrets.token_hex(3)}"


@pytest.fixture
def production_logging(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """The entry point's logging set-up with LOG_LEVEL=DEBUG; global logging state is put back afterwards."""
    levels = {n: lg.level for n, lg in logging.root.manager.loggerDict.items() if isinstance(lg, logging.Logger)}
    handlers = list(logging.root.handlers)
    root_level = logging.root.level
    configure_logging(level="DEBUG")
    caplog.set_level(logging.DEBUG)  # pytest's handler is on the root already, so basicConfig left the level alone
    try:
        yield caplog
    finally:
        uninstall_scrubber()
        for handler in logging.root.handlers[:]:
            if handler not in handlers:
                logging.root.removeHandler(handler)
        logging.root.setLevel(root_level)
        for name, lg in list(logging.root.manager.loggerDict.items()):
            if isinstance(lg, logging.Logger):
                lg.setLevel(levels.get(name, logging.NOTSET))


def formatted(caplog: pytest.LogCaptureFixture) -> str:
    """Every record as the production format writes it (tracebacks included)."""
    formatter = logging.Formatter(FORMAT)
    return "\n".join(formatter.format(record) for record in caplog.records)


def request_log(caplog: pytest.LogCaptureFixture) -> str:
    """The records so far, less those of the inbox worker's threads (bot/worker.py: inbox-worker, inbox-heartbeat,
    inbox_N). The worker polls every 50 ms whatever the requests do; with SQLAlchemy lowered to DEBUG each poll is
    about ten withheld lines (800 bytes), so how many land beside a request is the scheduler's luck."""
    formatter = logging.Formatter(FORMAT)
    return "\n".join(formatter.format(r) for r in caplog.records if not (r.threadName or "").startswith("inbox"))


def assert_no_marker(caplog: pytest.LogCaptureFixture) -> str:
    text = formatted(caplog)
    leaked = [r.name for r in caplog.records if MARK in logging.Formatter(FORMAT).format(r)]
    assert MARK not in text, f"typed text reached the log through {sorted(set(leaked))}"
    return text


# --- Slack over HTTP ---------------------------------------------------------------------------------------------


def post_slack(app: App, body: str | bytes, headers: dict[str, str]) -> httpx.Response:
    """POST /slack/events to the real ASGI app, in process."""
    web = create_web_app(slack_app=app, slack_signing_secret=signing.SIGNING_SECRET, healthy=lambda: True)

    async def send() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=web), base_url="https://copbot.test") as c:
            return await c.post("/slack/events", content=body, headers=headers)

    return asyncio.run(send())


def send(app: App, request: signing.SignedRequest) -> httpx.Response:
    return post_slack(app, request.body, {k: str(v) for k, v in request.headers.items()})


def command(app: App, fake: FakeSlack, text: str, *, user: str = "U0ALICE", **fields: Any) -> str:
    before = len(fake.responses)
    request = signing.signed_slash_command(text, user_id=user, response_url=fake.response_url(f"c{before}"), **fields)
    assert send(app, request).status_code == 200
    return str(fake.wait_for_responses(before + 1)[before]["text"])


def view_of(call: dict[str, Any]) -> dict[str, Any]:
    view = call["view"]
    return json.loads(view) if isinstance(view, str) else dict(view)


def filled(view: dict[str, Any], *, text: str) -> dict[str, Any]:
    """A modal's state with every text input set to a marker (selects keep their first or initial option)."""
    values: dict[str, dict[str, Any]] = {}
    for block in view["blocks"]:
        element, name = block.get("element") or {}, block.get("block_id")
        if not name:
            continue
        if element.get("type") == "plain_text_input":
            value: Any = f"{text}{name}"
        elif element.get("type") == "static_select":
            option = element.get("initial_option") or element["options"][0]
            value = {"type": "static_select", "selected_option": option}
        else:
            value = {"type": element.get("type"), "selected_options": element.get("initial_options", [])}
        values[name] = {name: value}
    return signing.view_state(values)


def hostile_slack_session(app: App, fake: FakeSlack, caplog: pytest.LogCaptureFixture) -> int:
    """Every kind of request an attacker or a careless paste can send; returns the size of the 5 MB body's log."""
    # Unsigned, 5 MB, and badly signed: refused before any listener.
    body = json.dumps({"type": "event_callback", "event": {"type": "message", "text": marker("body") * 400_000}})
    assert len(body) > FIVE_MB
    assert post_slack(app, body, {"Content-Type": "application/json"}).status_code == 413
    unsigned_log = len(request_log(caplog))  # refused in bot/web.py: the inbox worker never sees it
    for switch in ({"bad_signature": True}, {"bad_timestamp": True}):
        request = signing.signed_slash_command(f"create {marker('forged')}", sign_options=switch)
        assert send(app, request).status_code == 401
    # Signed commands: unknown words, and known commands full of markers (names, options, searches, mentions).
    community = marker("community")
    assert "I don't know" in command(app, fake, f"{marker('cmd')} {marker('arg')}", user_name=marker("name"))
    command(app, fake, f'"{marker("quoted")}" x')
    command(app, fake, f"create {community} | {marker('purpose')}")
    for text in (
        f"join {marker('nosuch')}",
        f"profile profession={marker('profession')} organisation={marker('org')}",
        f"profile {marker('stray')}",
        f"stories {marker('search')}",
        f"help {marker('topic')}",
        f"prompt add {marker('prompt')}",
        f"prompt schedule {marker('day')} 25:99",
        f"facilitator add <@U0{marker('uid').upper()}> in:{community}",
        f"intros snooze {marker('weeks')}",
        f"export csv in:{community}",
        f"export {marker('format')} in:{community}",
        f"{marker('x')}=1",
    ):
        command(app, fake, text)
    command(app, fake, f"list {marker('extra')}", user="U0BOB", user_name=marker("bobname"))
    # Events: a DM, a thread reply, a mention, a stray reaction.
    channel = next(c for c in fake.channels.values() if c.name.startswith(f"cop-{MARK}"))
    for event in (
        signing.event_callback("message", text=marker("dm"), channel="D0ALICE", channel_type="im"),
        signing.event_callback("message", text=marker("reply"), channel=channel.id, thread_ts="1.000001"),
        signing.event_callback("app_mention", text=f"<@U0COPBOT> {marker('mention')}", channel=channel.id),
        signing.event_callback("reaction_added", reaction=marker("emoji"), item={"type": "message", "ts": "1.2"}),
    ):
        assert send(app, signing.signed_event(event)).status_code == 200
    # Interactivity: a story and a profile form full of markers, buttons with forged values, a shortcut.
    send(app, signing.signed_slash_command("story", channel_id=channel.id, response_url=fake.response_url("s")))
    story = view_of(fake.wait_for("views.open")[-1])
    submission = signing.interactive("view_submission", view={**story, "id": "V1", "state": filled(story, text=MARK)})
    assert send(app, signing.signed_interactive(submission)).status_code == 200
    send(app, signing.signed_slash_command("profile", response_url=fake.response_url("p")))
    profile = view_of(fake.wait_for("views.open", count=2)[-1])
    submission = signing.interactive(
        "view_submission",
        view={**profile, "id": "V2", "state": filled(profile, text=marker("profileform"))},
        user={"id": "U0ALICE", "username": marker("username"), "team_id": TEAM_ID},
    )
    assert send(app, signing.signed_interactive(submission)).status_code == 200
    for action_id, value in (("community.archive", marker("value")), ("story.approve", marker("story"))):
        button = {"action_id": action_id, "block_id": "b", "type": "button", "value": value, "action_ts": "1"}
        payload = signing.interactive("block_actions", actions=[button], response_url=fake.response_url("a"))
        assert send(app, signing.signed_interactive(payload)).status_code == 200
    unmatched = {"action_id": marker("UNMATCHED").upper(), "block_id": "b", "type": "button", "value": marker("v")}
    send(app, signing.signed_interactive(signing.interactive("block_actions", actions=[unmatched])))
    message = fake.add_message(channel.id, f"{marker('captured')} at handover", user="U0BOB")
    shortcut = signing.interactive(
        "message_action",
        callback_id="save_as_story",
        channel={"id": channel.id, "name": channel.name},
        message={"type": "message", "text": message.text, "user": "U0BOB", "ts": message.ts},
    )
    assert send(app, signing.signed_interactive(shortcut)).status_code == 200
    fake.wait_for("views.open", count=3)
    app.listener_runner.listener_executor.shutdown(wait=True)  # every lazy listener has run (and logged)
    return unsigned_log


@pytest.mark.parametrize("lowered", [False, True], ids=["as-configured", "third-party-lowered-to-debug"])
def test_a_hostile_slack_session_leaves_nothing_typed_in_the_log(
    slack: tuple[App, FakeSlack], production_logging: pytest.LogCaptureFixture, lowered: bool
) -> None:
    app, fake = slack
    if lowered:  # what a LOG_LEVEL=DEBUG or a library resetting its own level would do: the scrubber still holds
        for name in HELD:
            logging.getLogger(name).setLevel(logging.DEBUG)

    unsigned_log = hostile_slack_session(app, fake, production_logging)

    fake.take_violations()  # hostile input provokes calls the contract checker flags; they are not this test's point
    text = assert_no_marker(production_logging)
    assert unsigned_log < 1_000
    assert "command:unknown refused: UsageError" in text
    if lowered:  # every library line is there (so many more lines), each withheld
        assert "slack request refused (401): bad signature" in text
        assert any(is_held(r.name) for r in production_logging.records)
    else:
        assert len(text.encode()) < SLACK_LIMIT
        assert not any(is_held(r.name) and r.levelno < logging.WARNING for r in production_logging.records)


def test_the_5_mb_body_is_one_short_line_even_with_bolt_at_debug(
    slack: tuple[App, FakeSlack], production_logging: pytest.LogCaptureFixture
) -> None:
    app, _fake = slack
    logging.getLogger("slack_bolt").setLevel(logging.DEBUG)
    body = signing.interactive_body({"type": "block_actions", "text": marker("payload") * (FIVE_MB // 10)})

    response = post_slack(app, body, {"Content-Type": "application/x-www-form-urlencoded"})

    assert response.status_code == 413
    text = assert_no_marker(production_logging)
    assert 0 < len(text) < 1_000
    assert [r.getMessage() for r in production_logging.records if r.name == "bot.web"] == [
        "slack request refused (413): body too large"
    ]


# --- Teams ---------------------------------------------------------------------------------------------------------


def hostile_teams_session(world: TeamsWorld, teams_attacker_key: SigningKey) -> None:
    unsigned = world.personal_message(marker("unsigned"))
    assert world.post(unsigned, headers={}).status_code == 401
    forged = world.personal_message(marker("forged"))
    assert world.post(forged, sign_with=teams_attacker_key).status_code == 401
    huge = world.personal_message(marker("huge") * 100_000)
    assert world.post(huge, headers={"Authorization": f"Bearer {marker('token')}"}).status_code == 413
    world.say(marker("cmd"))
    world.say(f"{marker('cmd')} {marker('arg')}", channel=True)
    world.say(f"We tried {marker('sentence')} on the ward today")
    world.say(f"create {marker('community')} | {marker('purpose')}", channel=True)
    world.say(f"profile profession={marker('profession')}")
    world.say(f"stories {marker('search')}")
    named = world.personal_message(f"help {marker('topic')}")
    named["from"]["name"] = marker("displayname")
    assert world.post(named).status_code == 200
    assert world.post(world.button({"action_id": "community.archive", "value": marker("value")})).status_code == 200
    submit = world.invoke(TASK_SUBMIT, {"data": {FORM_KEY: "profile", "profession": marker("form")}})
    assert world.post(submit).status_code == 200
    strange = world.personal_message("help")
    strange.update(type="invoke", name=f"{marker('invoke')}/x", value={"text": marker("invokevalue")})
    assert world.post(strange).status_code == 501
    odd = world.personal_message("help")
    odd["type"] = marker("type")
    assert world.post(odd).status_code == 200
    action = world.personal_message("help")
    action.update(type="invoke", name="composeExtension/fetchTask", value={"commandId": marker("commandid")})
    assert world.post(action).status_code == 200


def test_a_hostile_teams_session_leaves_nothing_typed_in_the_log(
    world: TeamsWorld, production_logging: pytest.LogCaptureFixture, teams_attacker_key: SigningKey
) -> None:
    hostile_teams_session(world, teams_attacker_key)

    text = assert_no_marker(production_logging)
    assert len(text.encode()) < SLACK_LIMIT
    assert "teams request refused" in text and "command:unknown refused: UsageError" in text
    assert "teams invoke other not handled" in text


def test_a_teams_activity_naming_two_tenants_is_ignored(world: TeamsWorld) -> None:
    # Neither tenant field is signed: when they disagree, neither is believed.
    activity = world.personal_message("create Falls prevention")
    activity["conversation"]["tenantId"] = "another-tenant"

    assert world.post(activity).status_code == 200

    assert world.cloud.connector.calls == []
    with Session(world.engine) as db:
        assert db.exec(select(Community)).all() == []
        assert db.exec(select(Member)).all() == []


# --- the scrubber itself ----------------------------------------------------------------------------------------


def test_an_exception_keeps_its_type_and_frames_but_not_its_message(
    production_logging: pytest.LogCaptureFixture,
) -> None:
    typed = marker("typed")
    try:
        try:
            int(typed)
        except ValueError as exc:
            raise RuntimeError(f"could not read {typed}") from exc
    except RuntimeError:
        logging.getLogger("handlers.app").exception("command:profile failed")

    text = assert_no_marker(production_logging)
    assert "command:profile failed" in text
    assert "builtins.ValueError (message withheld)" in text and "builtins.RuntimeError (message withheld)" in text
    assert "test_an_exception_keeps_its_type_and_frames_but_not_its_message" in text  # where it happened


def test_copbots_own_lines_are_kept_and_held_loggers_keep_only_their_opening_words(
    production_logging: pytest.LogCaptureFixture,
) -> None:
    logging.getLogger("bot.slack.app").warning("slack %s failed: %s", "chat.postMessage", "channel_not_found")
    # Libraries log f-strings (Bolt does), so the value is already inside the message: that is the case to test.
    logging.getLogger("slack_sdk.web.base_client").warning(f"Received a response: {marker('json')}")  # noqa: G004
    logging.getLogger("urllib3.connectionpool").warning('%s://%s "%s"', "https", "slack.com", marker("path"))

    assert_no_marker(production_logging)
    lines = [r.getMessage() for r in production_logging.records]
    assert lines[0] == "slack chat.postMessage failed: channel_not_found"
    assert lines[1].startswith("Received a response [") and lines[2].startswith("message [")
