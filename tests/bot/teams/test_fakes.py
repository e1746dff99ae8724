"""The Teams fakes catch what they are there to catch, and accept what real Teams traffic looks like."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from bot.teams.tokens import MsalTokenProvider
from tests.fakes.teams import FakeConnector, FakeTeamsCloud, swagger_violations
from tests.reference import reference_path


def recorded_replies() -> list[dict[str, Any]]:
    replies = []
    for path in sorted(reference_path("teams-botbuilder-js-recordings").glob("*-reply-*.json")):
        recording = json.loads(path.read_text())
        if recording["method"] in ("POST", "PUT"):
            replies.append(recording)
    return replies


def test_every_recorded_bot_to_teams_body_passes_the_swagger_check() -> None:
    replies = recorded_replies()

    assert len(replies) > 30
    for recording in replies:
        op, _ = FakeConnector._match(recording["method"], recording["path"].removeprefix("/amer"))
        assert op is not None, recording["path"]
        assert op.body_schema is not None
        assert swagger_violations(op.body_schema, recording["body"]) == [], recording["path"]


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"text": "no type"}, "Activity: missing 'type'"),
        ({"type": "message", "txet": "typo"}, "Activity: unknown field 'txet'"),
        (
            {"type": "message", "attachments": {"not": "a list"}},
            "Activity/attachments: {'not': 'a list'} is not of type 'array'",
        ),
        ({"type": "telepathy"}, "Activity/type: 'telepathy' is not one of"),
    ],
)
def test_bad_activity_bodies_are_violations(body: dict[str, Any], problem: str) -> None:
    assert any(p.startswith(problem) for p in swagger_violations("Activity", body))


def _post(teams_cloud: FakeTeamsCloud, http: httpx.Client, path: str, token: str | None, body: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return http.post(teams_cloud.connector.service_url + path, json=body, headers=headers)


def test_the_connector_fake_records_violations_for_bad_requests(
    teams_cloud: FakeTeamsCloud, teams_http: httpx.Client, teams_tokens: MsalTokenProvider
) -> None:
    good = teams_tokens.connector_token()
    graph_token = teams_tokens.graph_token()

    responses = [
        _post(teams_cloud, teams_http, "v3/conversations/abc/activities", None, {"type": "message"}),
        _post(teams_cloud, teams_http, "v3/conversations/abc/activities", graph_token, {"type": "message"}),
        _post(teams_cloud, teams_http, "v3/conversations/abc/messages", good, {"type": "message"}),
        _post(teams_cloud, teams_http, "v3/conversations/abc/activities", good, {"text": "typeless"}),
    ]

    assert [r.status_code for r in responses] == [401, 401, 404, 201]
    problems = teams_cloud.connector.violations
    assert len(problems) == 4
    assert "not a Bot Connector token" in problems[0] and "not a Bot Connector token" in problems[1]
    assert "no such path and method" in problems[2]
    assert "missing 'type'" in problems[3]
    problems.clear()  # seen: the fixture would otherwise fail this test at teardown


def test_the_graph_fake_wants_a_graph_token(
    teams_cloud: FakeTeamsCloud, teams_http: httpx.Client, teams_tokens: MsalTokenProvider
) -> None:
    team = teams_cloud.graph.add_team()
    url = f"{teams_cloud.graph.base_url}/teams/{team.team_id}/members"

    wrong = teams_http.get(url, headers={"Authorization": f"Bearer {teams_tokens.connector_token()}"})
    right = teams_http.get(url, headers={"Authorization": f"Bearer {teams_tokens.graph_token()}"})

    assert (wrong.status_code, right.status_code) == (401, 200)
    assert len(teams_cloud.graph.violations) == 1
    teams_cloud.graph.violations.clear()
