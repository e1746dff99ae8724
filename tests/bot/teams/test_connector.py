"""The Bot Connector client against the swagger-checking Connector fake."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import httpx
import pytest

from bot.teams._http import RetryPolicy, error_code, parse_retry_after
from bot.teams.connector import ConnectorClient, ConnectorError
from bot.teams.tokens import MsalTokenProvider
from tests.fakes.teams import (
    FakeTeamsCloud,
    RecordingSleep,
    recorded_activity,
    recorded_connector_error,
    synthetic_members,
)

CHANNEL_THREAD = "19:097e6717fd7245bdbeba6baa13840db8@thread.skype;messageid=1571537152320"


def message(text: str) -> dict[str, Any]:
    return {"type": "message", "text": text, "textFormat": "markdown"}


@pytest.fixture
def service_url(teams_cloud: FakeTeamsCloud) -> str:
    return teams_cloud.connector.service_url


def test_send_to_conversation_posts_the_activity_and_returns_its_id(
    teams_connector: ConnectorClient, teams_cloud: FakeTeamsCloud, service_url: str
) -> None:
    activity_id = teams_connector.send_to_conversation(service_url, CHANNEL_THREAD, message("Welcome"))

    [call] = teams_cloud.connector.activities()
    assert call.operation == "Conversations_SendToConversation"
    assert call.params == {"conversationId": CHANNEL_THREAD}
    assert call.body == message("Welcome")
    assert activity_id is not None and activity_id.startswith("1:")


def test_reply_to_a_recorded_inbound_message_threads_it(
    teams_connector: ConnectorClient, teams_cloud: FakeTeamsCloud, service_url: str
) -> None:
    inbound = recorded_activity(serviceUrl=service_url)

    teams_connector.reply_to_activity(
        inbound["serviceUrl"], inbound["conversation"]["id"], inbound["id"], message("Here is the help")
    )

    [call] = teams_cloud.connector.activities("Conversations_ReplyToActivity")
    assert call.params == {"conversationId": inbound["conversation"]["id"], "activityId": inbound["id"]}
    assert call.body["replyToId"] == inbound["id"]


def test_update_and_delete_address_the_activity(
    teams_connector: ConnectorClient, teams_cloud: FakeTeamsCloud, service_url: str
) -> None:
    teams_connector.update_activity(service_url, CHANNEL_THREAD, "1:1Zu8wK3u9", message("Edited"))
    teams_connector.delete_activity(service_url, CHANNEL_THREAD, "1:1Zu8wK3u9")

    update, delete = teams_cloud.connector.activities()
    assert (update.operation, update.params["activityId"], update.body["id"]) == (
        "Conversations_UpdateActivity",
        "1:1Zu8wK3u9",
        "1:1Zu8wK3u9",
    )
    assert delete.operation == "Conversations_DeleteActivity"


def test_create_conversation_opens_a_one_to_one_chat(
    teams_connector: ConnectorClient, teams_cloud: FakeTeamsCloud, service_url: str
) -> None:
    inbound = recorded_activity(serviceUrl=service_url)

    conversation_id = teams_connector.create_conversation(
        service_url,
        bot_id=inbound["recipient"]["id"],
        tenant_id=teams_cloud.tenant_id,
        member_id=inbound["from"]["id"],
    )

    [call] = teams_cloud.connector.activities("Conversations_CreateConversation")
    assert call.body["bot"] == {"id": inbound["recipient"]["id"]}
    assert call.body["members"] == [{"id": inbound["from"]["id"]}]
    assert call.body["isGroup"] is False
    assert call.body["channelData"] == {"tenant": {"id": teams_cloud.tenant_id}}
    assert conversation_id.startswith("a:")


def test_members_are_read_page_by_page(
    teams_connector: ConnectorClient, teams_cloud: FakeTeamsCloud, service_url: str
) -> None:
    teams_cloud.connector.members[CHANNEL_THREAD] = synthetic_members(5, tenant_id=teams_cloud.tenant_id)

    members = list(teams_connector.get_conversation_members(service_url, CHANNEL_THREAD, page_size=2))

    assert len(members) == 5
    assert len({m.id for m in members}) == 5
    assert members[0].name == "Eric Dahlvang (Murphy & Associates)"  # the recorded Teams member
    assert members[0].aad_object_id == "c87bdf38-be54-466a-bd67-4029da348cc4"
    pages = teams_cloud.connector.activities("Conversations_GetConversationPagedMembers")
    assert [c.query.get("continuationToken") for c in pages] == [None, ["2"], ["4"]]


def test_a_429_is_retried_after_the_time_the_connector_asks(
    teams_connector: ConnectorClient,
    teams_cloud: FakeTeamsCloud,
    teams_sleep: RecordingSleep,
    service_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    teams_cloud.connector.fail_next(429, retry_after=7)
    teams_cloud.connector.fail_next(429, retry_after=3)

    with caplog.at_level(logging.DEBUG):
        activity_id = teams_connector.send_to_conversation(service_url, CHANNEL_THREAD, message("What went well?"))

    assert activity_id is not None
    assert teams_sleep.calls == [7.0, 3.0]
    assert len(teams_cloud.connector.activities()) == 1
    assert "HTTP 429" in caplog.text
    assert "What went well?" not in caplog.text
    assert teams_cloud.login.issued
    assert not any(token in caplog.text for token in teams_cloud.login.issued)


@pytest.mark.parametrize("status", [412, 502, 504])
def test_transient_failures_back_off_exponentially(
    teams_connector: ConnectorClient,
    teams_cloud: FakeTeamsCloud,
    teams_sleep: RecordingSleep,
    service_url: str,
    status: int,
) -> None:
    teams_cloud.connector.fail_next(status, times=2)

    teams_connector.send_to_conversation(service_url, CHANNEL_THREAD, message("Prompt"))

    assert teams_sleep.calls == [1.0, 2.0]


def test_the_client_gives_up_after_the_last_attempt(
    teams_tokens: MsalTokenProvider, teams_http: httpx.Client, teams_cloud: FakeTeamsCloud, service_url: str
) -> None:
    sleeps: list[float] = []
    client = ConnectorClient(
        tokens=teams_tokens, http=teams_http, retry=RetryPolicy(max_attempts=3), sleep=sleeps.append
    )
    teams_cloud.connector.fail_next(429, retry_after=2, times=5)

    with pytest.raises(ConnectorError) as caught:
        client.send_to_conversation(service_url, CHANNEL_THREAD, message("Prompt"))

    assert (caught.value.status, caught.value.code, caught.value.retry_after) == (429, "TooManyRequests", 2.0)
    assert sleeps == [2.0, 2.0]
    assert teams_cloud.connector.faults.pending == 2  # exactly three attempts were made


def test_a_very_long_retry_after_is_handed_back_instead_of_slept(
    teams_connector: ConnectorClient, teams_cloud: FakeTeamsCloud, teams_sleep: RecordingSleep, service_url: str
) -> None:
    teams_cloud.connector.fail_next(429, retry_after=3600)

    with pytest.raises(ConnectorError) as caught:
        teams_connector.send_to_conversation(service_url, CHANNEL_THREAD, message("Prompt"))

    assert caught.value.retry_after == 3600.0
    assert teams_sleep.calls == []


def test_other_errors_fail_at_once_with_the_code_but_not_the_message(
    teams_connector: ConnectorClient, teams_cloud: FakeTeamsCloud, teams_sleep: RecordingSleep, service_url: str
) -> None:
    teams_cloud.connector.fail_next(403, code="BotNotInConversationRoster")

    with pytest.raises(ConnectorError) as caught:
        teams_connector.send_to_conversation(service_url, CHANNEL_THREAD, message("Private words"))

    assert (caught.value.status, caught.value.code) == (403, "BotNotInConversationRoster")
    assert "Private words" not in str(caught.value)
    assert "scripted fault" not in str(caught.value)
    assert teams_sleep.calls == []


def test_a_recorded_connector_error_body_is_read_for_its_code() -> None:
    status, body = recorded_connector_error(
        "test_conversations_send_to_conversation_with_invalid_conversation_id_fails.yaml"
    )
    assert (status, error_code(httpx.Response(status, json=body))) == (400, "ServiceError")


@pytest.mark.parametrize("service_url", ["http://smba.trafficmanager.net/amer/", "ftp://127.0.0.1/", "not a url"])
def test_tokens_are_never_sent_over_plain_http_to_other_hosts(
    teams_connector: ConnectorClient, service_url: str
) -> None:
    with pytest.raises(ValueError, match="https"):
        teams_connector.send_to_conversation(service_url, CHANNEL_THREAD, message("x"))


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("120", 120.0), ("0", 0.0), ("Wed, 21 Oct 2015 07:28:10 GMT", 10.0), ("soon", None), (None, None)],
)
def test_retry_after_reads_seconds_and_http_dates(header: str | None, seconds: float | None) -> None:
    now = dt.datetime(2015, 10, 21, 7, 28, 0, tzinfo=dt.UTC)

    assert parse_retry_after(header, now=now) == seconds


def test_a_new_thread_in_a_channel_is_a_group_conversation_naming_the_channel(
    teams_connector: ConnectorClient, teams_cloud: FakeTeamsCloud, service_url: str
) -> None:
    channel = CHANNEL_THREAD.split(";")[0]

    thread, activity_id = teams_connector.create_channel_thread(
        service_url, channel_id=channel, tenant_id=teams_cloud.tenant_id, activity=message("This week's prompt")
    )

    [call] = teams_cloud.connector.activities("Conversations_CreateConversation")
    assert call.body["isGroup"] is True
    assert call.body["channelData"]["channel"] == {"id": channel}
    assert call.body["activity"] == message("This week's prompt")
    # As recorded from Teams: the thread's id names its first message, which replies in the thread refer to.
    assert thread.startswith(f"{channel};messageid=")
    assert activity_id is not None and activity_id.startswith("1:")


def test_one_member_is_found_by_either_id_with_their_sign_in_name(
    teams_connector: ConnectorClient, teams_cloud: FakeTeamsCloud, service_url: str
) -> None:
    people = synthetic_members(3, tenant_id=teams_cloud.tenant_id)
    teams_cloud.connector.members[CHANNEL_THREAD] = people

    by_bot_id = teams_connector.get_conversation_member(service_url, CHANNEL_THREAD, people[1]["id"])
    by_object_id = teams_connector.get_conversation_member(service_url, CHANNEL_THREAD, people[1]["objectId"])

    assert by_bot_id == by_object_id
    assert (by_bot_id.id, by_bot_id.aad_object_id) == (people[1]["id"], people[1]["objectId"])
    assert by_bot_id.user_principal_name == people[1]["userPrincipalName"]
    [first, _] = teams_cloud.connector.activities("Conversations_GetConversationMember")
    assert first.params == {"conversationId": CHANNEL_THREAD, "memberId": people[1]["id"]}
    with pytest.raises(ConnectorError) as missing:
        teams_connector.get_conversation_member(service_url, CHANNEL_THREAD, "29:nobody")
    assert (missing.value.status, missing.value.code) == (404, "MemberNotFoundInConversation")
