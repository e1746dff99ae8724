"""The Microsoft Graph client against the Graph fake: channel creation and paged member lists."""

from __future__ import annotations

import httpx
import pytest

from bot.teams.graph import GraphClient, GraphError
from tests.fakes.teams import FakeTeamsCloud, RecordingSleep


def test_create_channel_makes_a_standard_channel(teams_graph: GraphClient, teams_cloud: FakeTeamsCloud) -> None:
    team = teams_cloud.graph.add_team()

    channel_id, web_url = teams_graph.create_channel(team.team_id, "cop-falls-prevention", "Falls prevention CoP")

    created = team.channels[channel_id]
    assert created["displayName"] == "cop-falls-prevention"
    assert created["description"] == "Falls prevention CoP"
    assert created["membershipType"] == "standard"
    assert channel_id.endswith("@thread.tacv2")
    assert web_url.startswith("https://teams.microsoft.com/l/channel/")


def test_a_duplicate_channel_name_is_a_graph_error(teams_graph: GraphClient, teams_cloud: FakeTeamsCloud) -> None:
    team = teams_cloud.graph.add_team()
    teams_graph.create_channel(team.team_id, "cop-handover", "")

    with pytest.raises(GraphError) as caught:
        teams_graph.create_channel(team.team_id, "COP-Handover", "")

    assert (caught.value.status, caught.value.code) == (400, "NameAlreadyExists")


def test_team_members_follow_next_links(teams_graph: GraphClient, teams_cloud: FakeTeamsCloud) -> None:
    team = teams_cloud.graph.add_team(member_count=5)  # the fake pages two at a time

    members = list(teams_graph.list_team_members(team.team_id))

    assert [m.membership_id for m in members] == [m["id"] for m in team.members]
    assert members[0].roles == ("owner",)
    assert members[0].user_id == "c87bdf38-be54-466a-bd67-4029da348cc4"
    assert members[0].tenant_id == teams_cloud.tenant_id
    member_pages = [path for method, path in teams_cloud.graph.requests if path.endswith("/members")]
    assert len(member_pages) == 3


def test_channel_members_are_listed(teams_graph: GraphClient, teams_cloud: FakeTeamsCloud) -> None:
    team = teams_cloud.graph.add_team(member_count=3)
    channel_id, _ = teams_graph.create_channel(team.team_id, "cop-sepsis", "")
    team.channel_members[channel_id] = team.members[:1]

    members = list(teams_graph.list_channel_members(team.team_id, channel_id))

    assert [m.display_name for m in members] == [team.members[0]["displayName"]]


def test_graph_throttling_shares_the_connector_retry_policy(
    teams_graph: GraphClient, teams_cloud: FakeTeamsCloud, teams_sleep: RecordingSleep
) -> None:
    team = teams_cloud.graph.add_team(member_count=4)
    teams_cloud.graph.fail_next(429, retry_after=5, method="GET")
    teams_cloud.graph.fail_next(504, method="GET")

    members = list(teams_graph.list_team_members(team.team_id))

    assert len(members) == 4
    assert teams_sleep.calls == [5.0, 2.0]  # Retry-After honoured; then backoff for the second attempt


def test_an_unknown_team_is_not_found(teams_graph: GraphClient, teams_cloud: FakeTeamsCloud) -> None:
    with pytest.raises(GraphError) as caught:
        teams_graph.create_channel("2c02739d-4041-4ef2-b8b8-75508bc04808", "cop-x", "")

    assert (caught.value.status, caught.value.code) == (404, "NotFound")


def test_a_next_link_to_another_host_is_not_followed() -> None:
    requests: list[str] = []

    def graph(request: httpx.Request) -> httpx.Response:
        requests.append(str(request.url))
        return httpx.Response(200, json={"value": [], "@odata.nextLink": "https://evil.example/v1.0/steal"})

    client = GraphClient(
        tokens=_StaticToken(),
        base_url="https://graph.microsoft.com/v1.0",
        http=httpx.Client(transport=httpx.MockTransport(graph)),
    )

    with pytest.raises(GraphError) as caught:
        list(client.list_team_members("team"))

    assert caught.value.code == "foreign_next_link"
    assert requests == ["https://graph.microsoft.com/v1.0/teams/team/members"]


class _StaticToken:
    def graph_token(self) -> str:
        return "static-token"
