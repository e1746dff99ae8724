"""The Slack fakes themselves: contract checks, state, faults, signing, payload builders and Socket Mode."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path
from urllib.error import HTTPError, URLError
from urllib.parse import parse_qsl

import pytest
from jsonschema import Draft7Validator
from slack_bolt import App, BoltRequest
from slack_bolt.adapter.socket_mode import SocketModeHandler
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler
from slack_sdk.signature import SignatureVerifier

from tests.fakes import slack_signing as signing
from tests.fakes.slack_api import (
    APP_TOKEN,
    BOT_TOKEN,
    BOT_USER_ID,
    GENERAL_CHANNEL_ID,
    VIOLATION_ERROR,
    FakeSlack,
    contract,
)
from tests.fakes.slack_socket import FakeSocketMode
from tests.reference import reference_path

REPO = Path(__file__).resolve().parents[2]


def violation_kinds(fake: FakeSlack) -> list[str]:
    return [v.kind for v in fake.take_violations()]


# ---- contract --------------------------------------------------------------------------------------------------


def test_a_good_call_passes_and_is_recorded(fake_slack: FakeSlack, slack_client: WebClient) -> None:
    response = slack_client.chat_postMessage(channel=GENERAL_CHANNEL_ID, text="Welcome!", unfurl_links=False)

    assert response["ok"] is True
    assert response["channel"] == GENERAL_CHANNEL_ID
    assert fake_slack.calls_to("chat.postMessage") == [
        {"channel": GENERAL_CHANNEL_ID, "text": "Welcome!", "unfurl_links": False}
    ]
    assert [m.text for m in fake_slack.messages_in(GENERAL_CHANNEL_ID)] == ["Welcome!"]
    assert fake_slack.records[-1].token == BOT_TOKEN


def test_newer_params_on_the_allow_list_pass(fake_slack: FakeSlack, slack_client: WebClient) -> None:
    metadata = {"event_type": "copbot_prompt", "event_payload": {"prompt_id": "p-001"}}
    response = slack_client.chat_postMessage(channel=GENERAL_CHANNEL_ID, text="A prompt", metadata=metadata)

    assert fake_slack.messages_in(GENERAL_CHANNEL_ID)[0].metadata == metadata
    assert response["message"]["metadata"] == metadata


def test_unknown_method_is_a_violation(fake_slack: FakeSlack, slack_client: WebClient) -> None:
    with pytest.raises(SlackApiError) as raised:
        slack_client.api_call("chat.postMesage", json={"channel": GENERAL_CHANNEL_ID, "text": "typo"})

    assert raised.value.response["error"] == VIOLATION_ERROR
    assert violation_kinds(fake_slack) == ["unknown_method"]


def test_unknown_param_is_a_violation(fake_slack: FakeSlack, slack_client: WebClient) -> None:
    with pytest.raises(SlackApiError):
        slack_client.conversations_create(name="cop-sepsis", topic="not a create param")

    violations = fake_slack.take_violations()
    assert [(v.kind, v.detail) for v in violations] == [("unknown_param", "topic")]


def test_missing_required_param_is_a_violation(fake_slack: FakeSlack, slack_client: WebClient) -> None:
    with pytest.raises(SlackApiError):
        slack_client.api_call("chat.update", json={"channel": GENERAL_CHANNEL_ID, "text": "no ts"})

    violations = fake_slack.take_violations()
    assert [(v.kind, v.detail) for v in violations] == [("missing_required_param", "ts")]


def test_json_body_to_a_form_only_method_is_a_violation(fake_slack: FakeSlack, slack_client: WebClient) -> None:
    with pytest.raises(SlackApiError):
        slack_client.api_call("conversations.info", json={"channel": GENERAL_CHANNEL_ID})

    assert violation_kinds(fake_slack) == ["json_not_accepted"]


def test_a_scope_missing_from_the_manifest_is_a_violation(fake_slack: FakeSlack, slack_client: WebClient) -> None:
    message = fake_slack.add_message(GENERAL_CHANNEL_ID, "Great handover today")

    with pytest.raises(SlackApiError):
        slack_client.reactions_add(channel=GENERAL_CHANNEL_ID, name="bulb", timestamp=message.ts)

    violations = fake_slack.take_violations()
    assert [v.kind for v in violations] == ["missing_scope"]
    assert "reactions:write" in violations[0].detail


def test_calls_without_a_token_or_with_the_wrong_token_type_are_violations(fake_slack: FakeSlack) -> None:
    with pytest.raises(SlackApiError):
        WebClient(base_url=fake_slack.url).auth_test()
    with pytest.raises(SlackApiError):
        WebClient(token=APP_TOKEN, base_url=fake_slack.url).auth_test()

    assert violation_kinds(fake_slack) == ["not_authed", "not_allowed_token_type"]


def test_the_token_may_come_as_a_form_param(fake_slack: FakeSlack) -> None:
    data = f"token={BOT_TOKEN}&user=U0ALICE".encode()
    request = urllib.request.Request(f"{fake_slack.url}users.info", data=data, method="POST")
    with urllib.request.urlopen(request, timeout=5) as response:
        body = json.load(response)

    assert body["user"]["name"] == "alice"
    assert fake_slack.calls_to("users.info") == [{"user": "U0ALICE"}]


def test_the_contract_knows_newer_methods_and_spec_requirements() -> None:
    upload = contract("files.getUploadURLExternal")
    post = contract("chat.postMessage")

    assert upload is not None
    assert upload.required == {"filename", "length"}
    assert post is not None
    assert post.required == {"channel"}
    assert "metadata" in post.params
    assert contract("chat.postMesage") is None


# ---- state ------------------------------------------------------------------------------------------------------


def test_conversations_create_then_name_taken(fake_slack: FakeSlack, slack_client: WebClient) -> None:
    created = slack_client.conversations_create(name="cop-falls-prevention")
    channel_id = created["channel"]["id"]

    assert channel_id.startswith("C")
    assert created["channel"]["name"] == "cop-falls-prevention"
    assert fake_slack.channels[channel_id].members == [BOT_USER_ID]
    with pytest.raises(SlackApiError) as raised:
        slack_client.conversations_create(name="cop-falls-prevention")
    assert raised.value.response["error"] == "name_taken"
    with pytest.raises(SlackApiError) as bad_name:
        slack_client.conversations_create(name="CoP Falls")
    assert bad_name.value.response["error"] == "invalid_name_specials"


def test_channel_management_round_trip(fake_slack: FakeSlack, slack_client: WebClient) -> None:
    channel_id = slack_client.conversations_create(name="cop-deterioration")["channel"]["id"]

    slack_client.conversations_setTopic(channel=channel_id, topic="Spotting the deteriorating patient")
    slack_client.conversations_setPurpose(channel=channel_id, purpose="Share what works")
    slack_client.conversations_invite(channel=channel_id, users="U0ALICE,U0BOB,U0CAROL")
    with pytest.raises(SlackApiError) as again:
        slack_client.conversations_invite(channel=channel_id, users="U0ALICE")
    slack_client.conversations_kick(channel=channel_id, user="U0BOB")
    first = slack_client.conversations_members(channel=channel_id, limit=2)
    second = slack_client.conversations_members(
        channel=channel_id, limit=2, cursor=first["response_metadata"]["next_cursor"]
    )
    info = slack_client.conversations_info(channel=channel_id, include_num_members=True)
    slack_client.conversations_archive(channel=channel_id)

    assert again.value.response["error"] == "already_in_channel"
    assert first["members"] + second["members"] == [BOT_USER_ID, "U0ALICE", "U0CAROL"]
    assert second["response_metadata"]["next_cursor"] == ""
    assert info["channel"]["topic"]["value"] == "Spotting the deteriorating patient"
    assert info["channel"]["purpose"]["value"] == "Share what works"
    assert info["channel"]["num_members"] == 3
    assert fake_slack.channels[channel_id].archived is True


def test_dms_open_with_a_stable_d_id(fake_slack: FakeSlack, slack_client: WebClient) -> None:
    opened = slack_client.conversations_open(users="U0ALICE")
    again = slack_client.conversations_open(users="U0ALICE")
    posted = slack_client.chat_postMessage(channel="U0ALICE", text="Welcome to the community")

    assert opened["channel"]["id"].startswith("D")
    assert again["channel"]["id"] == opened["channel"]["id"] == posted["channel"]
    assert again["already_open"] is True


def test_posting_where_the_bot_is_not_a_member_fails_like_slack(fake_slack: FakeSlack, slack_client: WebClient) -> None:
    elsewhere = fake_slack.add_channel("random", members=["U0ALICE"])

    with pytest.raises(SlackApiError) as raised:
        slack_client.chat_postMessage(channel=elsewhere.id, text="hello")

    assert raised.value.response["error"] == "not_in_channel"


def test_update_permalink_ephemeral_and_history(fake_slack: FakeSlack, slack_client: WebClient) -> None:
    ts = slack_client.chat_postMessage(channel=GENERAL_CHANNEL_ID, text="draft")["ts"]
    reply = slack_client.chat_postMessage(channel=GENERAL_CHANNEL_ID, text="a reflection", thread_ts=ts)

    slack_client.chat_update(channel=GENERAL_CHANNEL_ID, ts=ts, text="final")
    link = slack_client.chat_getPermalink(channel=GENERAL_CHANNEL_ID, message_ts=ts)
    slack_client.chat_postEphemeral(channel=GENERAL_CHANNEL_ID, user="U0ALICE", text="only you")
    history = slack_client.conversations_history(channel=GENERAL_CHANNEL_ID)
    replies = slack_client.conversations_replies(channel=GENERAL_CHANNEL_ID, ts=ts)

    assert link["permalink"].endswith(f"/archives/{GENERAL_CHANNEL_ID}/p{ts.replace('.', '')}")
    assert [e.text for e in fake_slack.ephemerals] == ["only you"]
    assert [m["text"] for m in history["messages"]] == ["final"]
    assert [m["ts"] for m in replies["messages"]] == [ts, reply["ts"]]


def test_views_open_update_and_publish(fake_slack: FakeSlack, slack_client: WebClient) -> None:
    modal = {
        "type": "modal",
        "callback_id": "story_form",
        "title": {"type": "plain_text", "text": "Share a story"},
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "What worked?"}}],
    }
    opened = slack_client.views_open(trigger_id="123.456.abc", view=modal)
    updated = slack_client.views_update(view_id=opened["view"]["id"], view={**modal, "blocks": []})
    home = slack_client.views_publish(user_id="U0ALICE", view={"type": "home", "blocks": []})

    assert updated["view"]["id"] == opened["view"]["id"]
    assert fake_slack.views[opened["view"]["id"]]["callback_id"] == "story_form"
    assert fake_slack.home_views["U0ALICE"]["id"] == home["view"]["id"]


def test_file_upload_v2_end_to_end(fake_slack: FakeSlack, slack_client: WebClient) -> None:
    dm = slack_client.conversations_open(users="U0ALICE")["channel"]["id"]

    response = slack_client.files_upload_v2(
        channel=dm, content="title,themes\nHandover,teamwork\n", filename="stories.csv", title="Stories"
    )

    upload = fake_slack.files[response["file"]["id"]]
    assert upload.data == b"title,themes\nHandover,teamwork\n"
    assert upload.completed
    assert upload.channels == [dm]
    assert [m.files for m in fake_slack.messages_in(dm)] == [[upload.id]]


def test_wait_for_blocks_until_a_background_call_arrives(fake_slack: FakeSlack, slack_client: WebClient) -> None:
    import threading

    worker = threading.Thread(target=lambda: slack_client.chat_postMessage(channel=GENERAL_CHANNEL_ID, text="later"))
    worker.start()

    assert fake_slack.wait_for("chat.postMessage")[0]["text"] == "later"
    worker.join()


# ---- faults -----------------------------------------------------------------------------------------------------


def test_scripted_error(fake_slack: FakeSlack, slack_client: WebClient) -> None:
    fake_slack.fail_next("chat.postMessage", error="not_in_channel")

    with pytest.raises(SlackApiError) as raised:
        slack_client.chat_postMessage(channel=GENERAL_CHANNEL_ID, text="first")
    slack_client.chat_postMessage(channel=GENERAL_CHANNEL_ID, text="second")

    assert raised.value.response["error"] == "not_in_channel"
    assert [m.text for m in fake_slack.messages_in(GENERAL_CHANNEL_ID)] == ["second"]


def test_rate_limit_answers_429_with_retry_after(fake_slack: FakeSlack) -> None:
    fake_slack.rate_limit("auth.test", retry_after=7)
    request = urllib.request.Request(
        f"{fake_slack.url}auth.test", data=b"", headers={"Authorization": f"Bearer {BOT_TOKEN}"}
    )

    with pytest.raises(HTTPError) as raised:
        urllib.request.urlopen(request, timeout=5)

    assert raised.value.code == 429
    assert raised.value.headers["Retry-After"] == "7"
    assert json.load(raised.value)["error"] == "ratelimited"


def test_sdk_retry_handler_waits_out_a_429_and_succeeds(fake_slack: FakeSlack) -> None:
    client = WebClient(token=BOT_TOKEN, base_url=fake_slack.url, retry_handlers=[RateLimitErrorRetryHandler(2)])
    fake_slack.rate_limit("chat.postMessage", retry_after=0, times=1)

    response = client.chat_postMessage(channel=GENERAL_CHANNEL_ID, text="eventually")

    assert response["ok"] is True
    assert [r.status for r in fake_slack.records if r.method == "chat.postMessage"] == [429, 200]
    assert len(fake_slack.messages_in(GENERAL_CHANNEL_ID)) == 1


def test_enforced_rate_rejects_the_excess(fake_slack: FakeSlack, slack_client: WebClient) -> None:
    fake_slack.enforce_rate("chat.postMessage", per_second=2)
    outcomes = []
    for n in range(3):
        try:
            slack_client.chat_postMessage(channel=GENERAL_CHANNEL_ID, text=f"burst {n}")
            outcomes.append("ok")
        except SlackApiError as error:
            outcomes.append(f"{error.response.status_code} {error.response.headers.get('Retry-After')}")

    assert outcomes == ["ok", "ok", "429 1"]


def test_network_failure_is_a_dropped_connection(fake_slack: FakeSlack) -> None:
    no_retry = WebClient(token=BOT_TOKEN, base_url=fake_slack.url, retry_handlers=[])
    fake_slack.disconnect_next("auth.test")

    with pytest.raises((URLError, ConnectionError)):
        no_retry.auth_test()
    assert no_retry.auth_test()["ok"] is True


def test_fixture_fails_a_test_that_broke_the_contract(tmp_path: Path) -> None:
    test_file = tmp_path / "test_breaks_contract.py"
    test_file.write_text(
        textwrap.dedent(
            """
            import pytest
            from slack_sdk.errors import SlackApiError

            def test_typo(slack_client):
                with pytest.raises(SlackApiError):
                    slack_client.api_call("chat.postMesage", json={"channel": "C0GENERAL", "text": "x"})
            """
        )
    )
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests.conftest_slack", "-q", "-p", "no:cacheprovider", str(test_file)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert result.returncode == 1, result.stdout + result.stderr
    assert "chat.postMesage: unknown_method" in result.stdout


# ---- signing and payloads -------------------------------------------------------------------------------------


def test_signature_matches_slacks_published_vector() -> None:
    vector = json.loads(reference_path("slack-protocol", "slack-signing-test-vector.json").read_text())
    timestamp = vector["headers"]["X-Slack-Request-Timestamp"]

    got = signing.signature(secret=vector["signing_secret"], timestamp=timestamp, body=vector["raw_body"])

    assert got == vector["expected_signature"]
    assert dict(parse_qsl(vector["raw_body"], keep_blank_values=True)) == vector["decoded_form_fields"]


@pytest.mark.parametrize(
    ("switches", "valid"),
    [({}, True), ({"bad_signature": True}, False), ({"bad_timestamp": True}, False), ({"age_seconds": 299}, True)],
)
def test_switches_make_requests_slack_sdk_rejects(switches: dict[str, object], valid: bool) -> None:
    signed = signing.signed_slash_command("list", sign_options=switches)
    verifier = SignatureVerifier(signing_secret=signing.SIGNING_SECRET)

    assert verifier.is_valid_request(signed.body, signed.headers) is valid


def test_retry_num_adds_slacks_retry_headers() -> None:
    signed = signing.signed_event(signing.event_callback("app_mention"), retry_num=1)

    assert signed.headers["X-Slack-Retry-Num"] == "1"
    assert signed.headers["X-Slack-Retry-Reason"] == "http_timeout"


@pytest.mark.parametrize(
    "event_type",
    ["app_mention", "message", "reaction_added", "member_joined_channel", "member_left_channel", "app_home_opened"],
)
def test_event_callbacks_match_slacks_wrapper_schema(event_type: str) -> None:
    schema = json.loads(reference_path("slack-api-specs", "slack_common_event_wrapper_schema.json").read_text())

    body = signing.event_callback(event_type)

    assert list(Draft7Validator(schema).iter_errors(body)) == []
    assert body["event"]["type"] == event_type
    assert "" not in body["event"].values()  # no blanked sample values left


def test_event_overrides_are_deep_merged() -> None:
    body = signing.event_callback("reaction_added", reaction="bulb", item={"ts": "1700000000.000100"})

    assert body["event"]["reaction"] == "bulb"
    assert body["event"]["item"] == {"type": "message", "channel": GENERAL_CHANNEL_ID, "ts": "1700000000.000100"}
    assert signing.event_callback("message")["event_id"] != body["event_id"]


def test_interactive_payloads_use_the_fake_workspace() -> None:
    shortcut = signing.interactive("message_action", callback_id="save_as_story", message={"text": "We huddled"})
    submission = signing.interactive(
        "view_submission", view={"callback_id": "story_form", "state": signing.view_state({"b": {"a": "text"}})}
    )
    form = signing.interactive_body(shortcut)

    assert shortcut["message_ts"] == shortcut["message"]["ts"]
    assert shortcut["user"]["id"] == "U0ALICE"
    assert submission["view"]["state"]["values"] == {"b": {"a": {"type": "plain_text_input", "value": "text"}}}
    assert json.loads(dict(parse_qsl(form))["payload"]) == shortcut


def test_slash_command_rejects_fields_slack_never_sends() -> None:
    with pytest.raises(ValueError, match="not slash-command fields"):
        signing.slash_command_fields("list", chanel_id="C1")


# ---- Bolt over HTTP and Socket Mode -------------------------------------------------------------------------------


def _bolt_app(fake: FakeSlack) -> App:
    app = App(signing_secret=signing.SIGNING_SECRET, client=WebClient(token=BOT_TOKEN, base_url=fake.url))

    @app.command("/cop")
    def cop(ack, command, say):  # type: ignore[no-untyped-def]
        ack(f"you said: {command['text']}")
        say(channel=command["channel_id"], text="working on it")

    @app.event("app_mention")
    def mention(event, say):  # type: ignore[no-untyped-def]
        say(channel=event["channel"], text="Try /cop help")

    @app.shortcut("save_as_story")
    def save(ack):  # type: ignore[no-untyped-def]
        ack()

    return app


def test_bolt_over_http_accepts_signed_and_rejects_forged_requests(fake_slack: FakeSlack) -> None:
    app = _bolt_app(fake_slack)
    good = signing.signed_slash_command("list")
    forged = signing.signed_slash_command("list", sign_options={"bad_signature": True})

    ok = app.dispatch(BoltRequest(body=good.body, headers=good.headers))
    rejected = app.dispatch(BoltRequest(body=forged.body, headers=forged.headers))
    shortcut = signing.signed_interactive(signing.interactive("message_action", callback_id="save_as_story"))

    assert (ok.status, ok.body) == (200, "you said: list")
    assert rejected.status == 401
    assert app.dispatch(BoltRequest(body=shortcut.body, headers=shortcut.headers)).status == 200
    assert fake_slack.wait_for("chat.postMessage")[0]["text"] == "working on it"


def test_socket_mode_round_trip_with_bolt(fake_slack: FakeSlack, fake_slack_socket: FakeSocketMode) -> None:
    handler = SocketModeHandler(_bolt_app(fake_slack), app_token=APP_TOKEN)
    handler.connect()  # type: ignore[no-untyped-call]
    try:
        fake_slack_socket.wait_connected()

        ack = fake_slack_socket.push_slash_command(signing.slash_command_fields("help"))
        event_ack = fake_slack_socket.push_event(signing.event_callback("app_mention", text="<@U0COPBOT> hi"))
        posted = fake_slack.wait_for("chat.postMessage", count=2)
    finally:
        handler.close()  # type: ignore[no-untyped-call]

    assert ack["payload"] == {"text": "you said: help"}
    assert event_ack["envelope_id"]
    assert sorted(p["text"] for p in posted) == ["Try /cop help", "working on it"]
    opened = fake_slack.records[[r.method for r in fake_slack.records].index("apps.connections.open")]
    assert opened.token == APP_TOKEN


def test_socket_fake_without_an_app_times_out_clearly() -> None:
    with FakeSocketMode() as sock, pytest.raises(AssertionError, match="no app is connected"):
        sock.push("events_api", {}, timeout=0.5)
    started = time.monotonic()
    with FakeSocketMode() as sock, pytest.raises(AssertionError, match="no Socket Mode connection"):
        sock.wait_connected(timeout=0.2)
    assert time.monotonic() - started < 5
