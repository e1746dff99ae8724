"""End to end: the real `copbot` process serving Teams over uvicorn, driven by signed activities, against the fakes."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.fakes.server_process import copbot_server
from tests.fakes.teams import (
    ConnectorCall,
    FakeTeam,
    FakeTeamsCloud,
    graph_member,
    recorded_activity,
    synthetic_members,
)

ROOT = Path(__file__).resolve().parents[3]
PERSONAL_MESSAGE = "20191021205338231-request-integrationBot.json"


@pytest.fixture
def team(teams_cloud: FakeTeamsCloud) -> FakeTeam:
    people = synthetic_members(3, tenant_id=teams_cloud.tenant_id)
    team = FakeTeam(team_id=str(uuid.uuid4()), members=[graph_member(p) for p in people])
    teams_cloud.graph.teams[team.team_id] = team
    teams_cloud.connector.default_members = people
    return team


@pytest.fixture
def server(teams_cloud: FakeTeamsCloud, team: FakeTeam, tmp_path: Path) -> Iterator[str]:
    ca = tmp_path / "fake-ca.pem"
    ca.write_bytes(teams_cloud.tls.ca_pem)
    settings = {
        **teams_cloud.settings(),
        "TEAMS_TEAM_ID": team.team_id,
        "SSL_CERT_FILE": str(ca),  # the login fake's throw-away CA; production uses the system's
    }
    with copbot_server(settings, cwd=tmp_path) as base:
        yield base


def personal(teams_cloud: FakeTeamsCloud, text: str) -> dict[str, object]:
    member = teams_cloud.connector.default_members[0]
    activity = recorded_activity(
        PERSONAL_MESSAGE,
        id=uuid.uuid4().hex,
        text=text,
        serviceUrl=teams_cloud.connector.service_url,
        recipient={"id": f"28:{teams_cloud.app_id}", "name": "copbot"},
        channelData={"tenant": {"id": teams_cloud.tenant_id}},
    )
    activity["from"] = {"id": member["id"], "name": member["name"], "aadObjectId": member["objectId"]}
    activity["conversation"] = {"conversationType": "personal", "tenantId": teams_cloud.tenant_id, "id": "a:1chat"}
    return activity


def post(base: str, teams_cloud: FakeTeamsCloud, activity: dict[str, object], **mint: object) -> httpx.Response:
    token = teams_cloud.keys.mint(service_url=str(activity["serviceUrl"]), **mint)  # type: ignore[arg-type]
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    return httpx.post(f"{base}/api/messages", content=json.dumps(activity), headers=headers, timeout=30)


def replies(teams_cloud: FakeTeamsCloud) -> str:
    return "\n".join(json.dumps(c.body) for c in teams_cloud.connector.activities("Conversations_SendToConversation"))


def sent(calls: list[ConnectorCall]) -> str:
    return "\n".join(json.dumps(c.body) for c in calls if c.operation == "Conversations_SendToConversation")


def test_the_real_server_serves_teams(server: str, teams_cloud: FakeTeamsCloud, team: FakeTeam) -> None:
    assert (
        post(server, teams_cloud, personal(teams_cloud, "create Falls prevention | Sharing what works")).status_code
        == 200
    )
    assert post(server, teams_cloud, personal(teams_cloud, "list")).status_code == 200

    # The server acknowledged both; its inbox worker process runs them, in order (one person's).
    teams_cloud.connector.wait_for(lambda calls: "Communities (1)" in sent(calls))
    assert [c["displayName"] for c in team.channels.values()] == ["cop-falls-prevention"]
    answers = replies(teams_cloud)
    assert "Created **Falls prevention**" in answers
    assert answers.index("Created **Falls prevention**") < answers.index("Communities (1)")
    # msal really fetched tokens from the TLS login fake (trusted through SSL_CERT_FILE).
    assert teams_cloud.login.token_requests


def test_the_real_server_refuses_a_forged_request(server: str, teams_cloud: FakeTeamsCloud, team: FakeTeam) -> None:
    activity = personal(teams_cloud, "create Falls prevention")

    response = post(server, teams_cloud, activity, audience="someone-else")

    assert response.status_code == 401
    assert team.channels == {}
    assert teams_cloud.connector.calls == []
    assert httpx.get(f"{server}/healthz").json() == {"ok": True}
