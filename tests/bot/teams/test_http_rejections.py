"""`POST /api/messages` refuses anything not signed by the Bot Framework for this bot: 401, nothing processed."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlmodel import Session, select

from storage import teams as refs
from tests.bot.teams.conftest import TeamsWorld
from tests.fakes.teams import SigningKey


def assert_nothing_processed(world: TeamsWorld) -> None:
    assert world.cloud.connector.calls == []
    assert world.cloud.graph.requests == []
    assert world.team.channels == {}
    with Session(world.engine) as db:
        assert db.exec(select(refs.TeamsConversation)).all() == []
        assert db.exec(select(refs.TeamsUser)).all() == []


@pytest.mark.parametrize(
    "mint",
    [
        pytest.param({"issuer": "https://sts.windows.net/evil/"}, id="wrong-issuer"),
        pytest.param({"audience": "00000000-0000-0000-0000-000000000000"}, id="wrong-audience"),
        pytest.param({"lifetime": dt.timedelta(minutes=-10)}, id="expired"),
        pytest.param({"kid": "never-published"}, id="unknown-key"),
        pytest.param({"service_url": "https://attacker.example/amer/"}, id="serviceurl-mismatch"),
        pytest.param({"omit": ("serviceurl",)}, id="no-serviceurl-claim"),
    ],
)
def test_a_bad_token_is_refused(world: TeamsWorld, mint: dict[str, Any]) -> None:
    activity = world.channel_message("create Falls prevention")
    mint.setdefault("now", world.clock.now())
    service_url = mint.pop("service_url", activity["serviceUrl"])
    token = world.cloud.keys.mint(service_url=service_url, **mint)

    response = world.post(activity, headers={"Authorization": f"Bearer {token}"})

    assert response.status_code == 401
    assert_nothing_processed(world)


def test_a_token_signed_by_someone_else_is_refused(world: TeamsWorld, teams_attacker_key: SigningKey) -> None:
    activity = world.channel_message("create Falls prevention")

    response = world.post(activity, sign_with=teams_attacker_key)  # same kid as the real key, other RSA key

    assert response.status_code == 401
    assert_nothing_processed(world)


@pytest.mark.parametrize("header", [{}, {"Authorization": "Basic abc"}, {"Authorization": "Bearer not.a.jwt"}])
def test_missing_or_malformed_authorization_is_refused(world: TeamsWorld, header: dict[str, str]) -> None:
    response = world.post(world.channel_message("create Falls prevention"), headers=dict(header))

    assert response.status_code == 401
    assert_nothing_processed(world)


def test_a_body_that_is_not_an_activity_is_a_bad_request(world: TeamsWorld) -> None:
    response = world.post_raw(b"[1, 2", {"Authorization": "Bearer x", "Content-Type": "application/json"})

    assert response.status_code == 400
    assert_nothing_processed(world)


def test_five_minutes_of_clock_skew_are_tolerated(world: TeamsWorld) -> None:
    activity = world.personal_message("help")

    response = world.post(activity, lifetime=dt.timedelta(minutes=-4))

    assert response.status_code == 200
    assert world.cloud.connector.calls


def test_an_activity_from_another_tenant_is_ignored(world: TeamsWorld) -> None:
    activity = world.personal_message("help")
    activity["channelData"]["tenant"] = {"id": "someone-else"}

    response = world.post(activity)

    assert response.status_code == 200
    assert world.cloud.connector.calls == []
