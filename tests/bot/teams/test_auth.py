"""Inbound Bot Framework JWT validation against the loopback OpenID/JWKS fake."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from bot.teams.auth import BotFrameworkAuthenticator, Unauthorized
from tests.fakes.teams import FakeTeamsCloud, SettableClock, SigningKey, recorded_activity

METADATA = "/v1/.well-known/openidconfiguration"
JWKS = "/v1/.well-known/keys"


@pytest.fixture
def activity(teams_cloud: FakeTeamsCloud) -> dict[str, Any]:
    """A recorded personal-chat message from Teams, its serviceUrl pointed at the Connector fake."""
    return recorded_activity(serviceUrl=teams_cloud.connector.service_url)


def bearer(token: str) -> str:
    return f"Bearer {token}"


def rejection(auth: BotFrameworkAuthenticator, header: str | None, activity: dict[str, Any]) -> str:
    with pytest.raises(Unauthorized) as caught:
        auth.validate(header, activity)
    return caught.value.reason


def test_a_good_token_on_a_recorded_teams_activity_is_accepted(
    teams_authenticator: BotFrameworkAuthenticator,
    teams_cloud: FakeTeamsCloud,
    teams_clock: SettableClock,
    activity: dict[str, Any],
) -> None:
    token = teams_cloud.keys.mint(service_url=activity["serviceUrl"], now=teams_clock.now())

    claims = teams_authenticator.validate(bearer(token), activity)

    assert claims.app_id == teams_cloud.app_id
    assert claims.service_url == activity["serviceUrl"]
    assert claims.channel_id == "msteams"
    assert claims.issuer == "https://api.botframework.com"


def test_keys_are_fetched_once_and_cached(
    teams_authenticator: BotFrameworkAuthenticator,
    teams_cloud: FakeTeamsCloud,
    teams_clock: SettableClock,
    activity: dict[str, Any],
) -> None:
    for _ in range(3):
        token = teams_cloud.keys.mint(service_url=activity["serviceUrl"], now=teams_clock.now())
        teams_authenticator.validate(bearer(token), activity)

    assert teams_cloud.keys.hits == {METADATA: 1, JWKS: 1}


def test_the_service_url_claim_may_differ_by_a_trailing_slash(
    teams_authenticator: BotFrameworkAuthenticator,
    teams_cloud: FakeTeamsCloud,
    teams_clock: SettableClock,
    activity: dict[str, Any],
) -> None:
    token = teams_cloud.keys.mint(service_url=activity["serviceUrl"].rstrip("/"), now=teams_clock.now())

    assert teams_authenticator.validate(bearer(token), activity).service_url == activity["serviceUrl"]


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (None, "missing Authorization header"),
        ("", "missing Authorization header"),
        ("Basic dXNlcjpwYXNz", "Authorization header is not 'Bearer <token>'"),
        ("Bearer", "Authorization header is not 'Bearer <token>'"),
        ("Bearer a b", "Authorization header is not 'Bearer <token>'"),
        ("Bearer not-a-jwt", "malformed token"),
        ("Bearer aaa.bbb.ccc", "malformed token"),
    ],
)
def test_missing_or_malformed_headers_are_rejected(
    teams_authenticator: BotFrameworkAuthenticator, activity: dict[str, Any], header: str | None, reason: str
) -> None:
    assert rejection(teams_authenticator, header, activity) == reason


def test_a_forged_signature_is_rejected(
    teams_authenticator: BotFrameworkAuthenticator,
    teams_cloud: FakeTeamsCloud,
    teams_clock: SettableClock,
    teams_attacker_key: SigningKey,
    activity: dict[str, Any],
) -> None:
    forged = teams_cloud.keys.mint(
        service_url=activity["serviceUrl"],
        now=teams_clock.now(),
        kid=teams_cloud.keys.default_key.kid,
        sign_with=teams_attacker_key,
    )

    assert rejection(teams_authenticator, bearer(forged), activity) == "bad signature"


def test_a_token_signed_with_another_algorithm_is_rejected(
    teams_authenticator: BotFrameworkAuthenticator,
    teams_cloud: FakeTeamsCloud,
    teams_clock: SettableClock,
    activity: dict[str, Any],
) -> None:
    token = teams_cloud.keys.mint(service_url=activity["serviceUrl"], now=teams_clock.now(), algorithm="RS512")

    assert rejection(teams_authenticator, bearer(token), activity) == "token is not RS256"


@pytest.mark.parametrize(
    ("tweak", "reason"),
    [
        ({"issuer": "https://sts.windows.net/evil/"}, "wrong issuer"),
        ({"audience": "00000000-0000-0000-0000-000000000000"}, "wrong audience"),
        ({"omit": ("aud",)}, "token lacks the aud claim"),
        ({"omit": ("exp",)}, "token lacks the exp claim"),
        ({"omit": ("serviceurl",)}, "token lacks the serviceurl claim"),
        (
            {"extra_claims": {"serviceurl": "https://smba.trafficmanager.net/amer/"}},
            "serviceurl claim does not match the activity",
        ),
    ],
)
def test_tokens_with_wrong_claims_are_rejected(
    teams_authenticator: BotFrameworkAuthenticator,
    teams_cloud: FakeTeamsCloud,
    teams_clock: SettableClock,
    activity: dict[str, Any],
    tweak: dict[str, Any],
    reason: str,
) -> None:
    token = teams_cloud.keys.mint(service_url=activity["serviceUrl"], now=teams_clock.now(), **tweak)

    assert rejection(teams_authenticator, bearer(token), activity) == reason


def test_an_activity_without_service_url_is_rejected(
    teams_authenticator: BotFrameworkAuthenticator,
    teams_cloud: FakeTeamsCloud,
    teams_clock: SettableClock,
    activity: dict[str, Any],
) -> None:
    token = teams_cloud.keys.mint(service_url=activity.pop("serviceUrl"), now=teams_clock.now())

    assert rejection(teams_authenticator, bearer(token), activity) == "activity has no serviceUrl"


@pytest.mark.parametrize(
    ("expired_for", "accepted"),
    [(dt.timedelta(minutes=4), True), (dt.timedelta(minutes=5, seconds=1), False), (dt.timedelta(hours=2), False)],
)
def test_expiry_allows_five_minutes_of_clock_skew(
    teams_authenticator: BotFrameworkAuthenticator,
    teams_cloud: FakeTeamsCloud,
    teams_clock: SettableClock,
    activity: dict[str, Any],
    expired_for: dt.timedelta,
    accepted: bool,
) -> None:
    token = teams_cloud.keys.mint(
        service_url=activity["serviceUrl"],
        now=teams_clock.now() - dt.timedelta(hours=3),
        expires_at=teams_clock.now() - expired_for,
    )

    if accepted:
        teams_authenticator.validate(bearer(token), activity)
    else:
        assert rejection(teams_authenticator, bearer(token), activity) == "token expired"


@pytest.mark.parametrize(("early_by", "accepted"), [(dt.timedelta(minutes=4), True), (dt.timedelta(minutes=6), False)])
def test_not_before_allows_five_minutes_of_clock_skew(
    teams_authenticator: BotFrameworkAuthenticator,
    teams_cloud: FakeTeamsCloud,
    teams_clock: SettableClock,
    activity: dict[str, Any],
    early_by: dt.timedelta,
    accepted: bool,
) -> None:
    token = teams_cloud.keys.mint(
        service_url=activity["serviceUrl"], now=teams_clock.now(), not_before=teams_clock.now() + early_by
    )

    if accepted:
        teams_authenticator.validate(bearer(token), activity)
    else:
        assert rejection(teams_authenticator, bearer(token), activity) == "token not yet valid"


def test_an_unknown_key_triggers_one_refresh_then_rejection(
    teams_authenticator: BotFrameworkAuthenticator,
    teams_cloud: FakeTeamsCloud,
    teams_clock: SettableClock,
    teams_attacker_key: SigningKey,
    activity: dict[str, Any],
) -> None:
    good = teams_cloud.keys.mint(service_url=activity["serviceUrl"], now=teams_clock.now())
    teams_authenticator.validate(bearer(good), activity)  # keys loaded once
    unknown = teams_cloud.keys.mint(
        service_url=activity["serviceUrl"], now=teams_clock.now(), kid="made-up", sign_with=teams_attacker_key
    )

    assert rejection(teams_authenticator, bearer(unknown), activity) == "unknown signing key"
    assert teams_cloud.keys.hits[JWKS] == 1  # too soon after the first load: no refetch

    teams_clock.advance(dt.timedelta(minutes=6))
    for _ in range(5):
        assert rejection(teams_authenticator, bearer(unknown), activity) == "unknown signing key"

    assert teams_cloud.keys.hits == {METADATA: 2, JWKS: 2}  # one refresh for five made-up tokens


def test_a_rotated_key_is_picked_up_by_the_refresh(
    teams_authenticator: BotFrameworkAuthenticator,
    teams_cloud: FakeTeamsCloud,
    teams_clock: SettableClock,
    activity: dict[str, Any],
) -> None:
    teams_authenticator.validate(
        bearer(teams_cloud.keys.mint(service_url=activity["serviceUrl"], now=teams_clock.now())), activity
    )
    rotated = SigningKey.generate("bf-key-2")
    teams_cloud.keys.publish(rotated)
    teams_clock.advance(dt.timedelta(minutes=10))
    token = teams_cloud.keys.mint(service_url=activity["serviceUrl"], now=teams_clock.now(), kid=rotated.kid)

    assert teams_authenticator.validate(bearer(token), activity).app_id == teams_cloud.app_id
    assert teams_cloud.keys.hits[JWKS] == 2


def test_cached_keys_survive_an_outage_of_the_metadata_endpoint(
    teams_authenticator: BotFrameworkAuthenticator,
    teams_cloud: FakeTeamsCloud,
    teams_clock: SettableClock,
    activity: dict[str, Any],
) -> None:
    teams_authenticator.validate(
        bearer(teams_cloud.keys.mint(service_url=activity["serviceUrl"], now=teams_clock.now())), activity
    )
    teams_cloud.keys.unavailable = True
    teams_clock.advance(dt.timedelta(days=2))  # keys are stale: a refresh is tried and fails

    token = teams_cloud.keys.mint(service_url=activity["serviceUrl"], now=teams_clock.now())

    assert teams_authenticator.validate(bearer(token), activity).channel_id == "msteams"
    assert teams_cloud.keys.hits[METADATA] == 2


def test_a_key_must_endorse_the_activity_channel(
    teams_authenticator: BotFrameworkAuthenticator,
    teams_cloud: FakeTeamsCloud,
    teams_clock: SettableClock,
    activity: dict[str, Any],
) -> None:
    webchat_only = SigningKey.generate("bf-webchat", endorsements=("webchat",))
    teams_cloud.keys.publish(webchat_only)
    token = teams_cloud.keys.mint(service_url=activity["serviceUrl"], now=teams_clock.now(), kid=webchat_only.kid)

    assert rejection(teams_authenticator, bearer(token), activity) == "signing key does not endorse this channel"
    assert teams_authenticator.validate(bearer(token), {**activity, "channelId": "webchat"}).channel_id == "webchat"


def test_a_key_without_endorsements_is_accepted_for_any_channel(
    teams_authenticator: BotFrameworkAuthenticator,
    teams_cloud: FakeTeamsCloud,
    teams_clock: SettableClock,
    activity: dict[str, Any],
) -> None:
    plain = SigningKey.generate("bf-plain", endorsements=None)
    teams_cloud.keys.publish(plain)
    token = teams_cloud.keys.mint(service_url=activity["serviceUrl"], now=teams_clock.now(), kid=plain.kid)

    assert teams_authenticator.validate(bearer(token), activity).channel_id == "msteams"


def test_a_failed_first_key_load_is_retried_after_thirty_seconds(
    teams_authenticator: BotFrameworkAuthenticator,
    teams_cloud: FakeTeamsCloud,
    teams_clock: SettableClock,
    activity: dict[str, Any],
) -> None:
    teams_cloud.keys.unavailable = True
    token = teams_cloud.keys.mint(service_url=activity["serviceUrl"], now=teams_clock.now())
    assert rejection(teams_authenticator, bearer(token), activity) == "unknown signing key"
    assert rejection(teams_authenticator, bearer(token), activity) == "unknown signing key"
    assert teams_cloud.keys.hits[METADATA] == 1

    teams_cloud.keys.unavailable = False
    teams_clock.advance(dt.timedelta(seconds=31))

    assert teams_authenticator.validate(bearer(token), activity).channel_id == "msteams"
    assert teams_cloud.keys.hits[METADATA] == 2
