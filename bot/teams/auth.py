"""Inbound Bot Framework authentication: is this `POST /api/messages` really from the Teams channel, for us?

The channel signs a JWT (RS256) with keys published through OpenID metadata (`TEAMS_OPENID_METADATA_URL` names
the `jwks_uri`). We check the signature, the issuer, the audience (our app id), the lifetime with five minutes of
clock skew, that the `serviceurl` claim is the activity's `serviceUrl` (so a stolen token cannot redirect our
replies), and, as the Bot Framework SDKs do, that a key carrying `endorsements` endorses the activity's channel.

Keys are cached; a token signed with a key we have not seen triggers at most one refetch per
`min_refresh_interval`, so nobody can make us hammer the metadata endpoint by sending made-up key ids.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
import jwt

from handlers.ports import Clock, SystemClock

log = logging.getLogger(__name__)

BOT_FRAMEWORK_ISSUER = "https://api.botframework.com"
DEFAULT_OPENID_METADATA_URL = "https://login.botframework.com/v1/.well-known/openidconfiguration"
CLOCK_SKEW = dt.timedelta(minutes=5)
_EMPTY_RETRY = dt.timedelta(seconds=30)


class Unauthorized(Exception):
    """The request is not from the Bot Framework for this bot. `reason` is short and safe to log."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Claims:
    """What a validated channel token says."""

    app_id: str
    service_url: str
    issuer: str
    channel_id: str | None
    raw: Mapping[str, Any] = field(repr=False)


@dataclass(frozen=True)
class _SigningKey:
    key: jwt.PyJWK
    endorsements: frozenset[str] | None


class BotFrameworkAuthenticator:
    """Validates the `Authorization` header of an inbound activity.

    `clock` is consulted for the token lifetime checks and the key-cache timing.
    """

    def __init__(
        self,
        *,
        app_id: str,
        openid_metadata_url: str = DEFAULT_OPENID_METADATA_URL,
        http: httpx.Client | None = None,
        clock: Clock | None = None,
        issuer: str = BOT_FRAMEWORK_ISSUER,
        keys_ttl: dt.timedelta = dt.timedelta(hours=24),
        min_refresh_interval: dt.timedelta = dt.timedelta(minutes=5),
    ) -> None:
        if not app_id:
            raise ValueError("app_id is required")
        self._app_id = app_id
        self._metadata_url = openid_metadata_url
        self._http = http or httpx.Client(timeout=10.0)
        self._clock: Clock = clock or SystemClock()
        self._issuer = issuer
        self._keys_ttl = keys_ttl
        self._min_refresh_interval = min_refresh_interval
        self._keys: dict[str, _SigningKey] = {}
        self._loaded_at: dt.datetime | None = None
        self._attempted_at: dt.datetime | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"BotFrameworkAuthenticator(app_id={self._app_id!r}, openid_metadata_url={self._metadata_url!r})"

    def validate(self, authorization_header: str | None, activity: Mapping[str, Any]) -> Claims:
        """Return the token's claims, or raise `Unauthorized` saying which check failed."""
        token = _bearer_token(authorization_header)
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise Unauthorized("malformed token") from exc
        if header.get("alg") != "RS256":
            raise Unauthorized("token is not RS256")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise Unauthorized("token has no key id")
        signing_key = self._key(kid)

        channel_id = activity.get("channelId")
        channel_id = channel_id if isinstance(channel_id, str) and channel_id else None
        if signing_key.endorsements is not None and channel_id and channel_id not in signing_key.endorsements:
            raise Unauthorized("signing key does not endorse this channel")

        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key=signing_key.key,
                algorithms=["RS256"],
                audience=self._app_id,
                issuer=self._issuer,
                # Lifetime is checked below against the injected clock; pyjwt would read the system clock.
                options={
                    "require": ["exp", "iss", "aud"],
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                },
            )
        except jwt.InvalidSignatureError as exc:
            raise Unauthorized("bad signature") from exc
        except jwt.InvalidAudienceError as exc:
            raise Unauthorized("wrong audience") from exc
        except jwt.InvalidIssuerError as exc:
            raise Unauthorized("wrong issuer") from exc
        except jwt.MissingRequiredClaimError as exc:
            raise Unauthorized(f"token lacks the {exc.claim} claim") from exc
        except jwt.PyJWTError as exc:
            raise Unauthorized("invalid token") from exc

        self._check_lifetime(claims)
        service_url = self._check_service_url(claims, activity)
        return Claims(
            app_id=self._app_id,
            service_url=service_url,
            issuer=str(claims["iss"]),
            channel_id=channel_id,
            raw=claims,
        )

    def _check_lifetime(self, claims: Mapping[str, Any]) -> None:
        now = self._clock.now().timestamp()
        skew = CLOCK_SKEW.total_seconds()
        exp = _numeric(claims.get("exp"), "exp")
        if now > exp + skew:
            raise Unauthorized("token expired")
        if "nbf" in claims and now < _numeric(claims["nbf"], "nbf") - skew:
            raise Unauthorized("token not yet valid")

    @staticmethod
    def _check_service_url(claims: Mapping[str, Any], activity: Mapping[str, Any]) -> str:
        claimed = claims.get("serviceurl")
        actual = activity.get("serviceUrl")
        if not isinstance(claimed, str) or not claimed:
            raise Unauthorized("token lacks the serviceurl claim")
        if not isinstance(actual, str) or not actual:
            raise Unauthorized("activity has no serviceUrl")
        if claimed.rstrip("/") != actual.rstrip("/"):
            raise Unauthorized("serviceurl claim does not match the activity")
        return actual

    # -- signing keys ------------------------------------------------------------------------------------------

    def _key(self, kid: str) -> _SigningKey:
        with self._lock:
            now = self._clock.now()
            wanted = self._loaded_at is None or now - self._loaded_at >= self._keys_ttl or kid not in self._keys
            # With no keys at all every request fails, so retry a failed first load sooner than the usual limit.
            interval = self._min_refresh_interval if self._keys else min(self._min_refresh_interval, _EMPTY_RETRY)
            allowed = self._attempted_at is None or now - self._attempted_at >= interval
            if wanted and allowed:
                self._refresh(now)
            key = self._keys.get(kid)
        if key is None:
            raise Unauthorized("unknown signing key")
        return key

    def _refresh(self, now: dt.datetime) -> None:
        # The attempt counts even when it fails, so an outage is not turned into one refetch per request.
        self._attempted_at = now
        try:
            keys = self._fetch_keys()
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            log.warning(
                "could not refresh Bot Framework signing keys (%s); keeping %d cached",
                type(exc).__name__,
                len(self._keys),
            )
            return
        self._keys = keys
        self._loaded_at = now
        log.info("loaded %d Bot Framework signing keys", len(keys))

    def _fetch_keys(self) -> dict[str, _SigningKey]:
        metadata = self._http.get(self._metadata_url)
        metadata.raise_for_status()
        jwks_uri = metadata.json()["jwks_uri"]
        if not isinstance(jwks_uri, str):
            raise TypeError("jwks_uri is not a string")
        response = self._http.get(jwks_uri)
        response.raise_for_status()
        keys: dict[str, _SigningKey] = {}
        for entry in response.json()["keys"]:
            kid = entry.get("kid")
            if not isinstance(kid, str) or entry.get("kty") != "RSA":
                continue
            try:
                key = jwt.PyJWK.from_dict({k: v for k, v in entry.items() if k != "endorsements"}, algorithm="RS256")
            except jwt.PyJWTError:
                log.warning("skipping an unreadable signing key %s", kid)
                continue
            endorsements = entry.get("endorsements")
            keys[kid] = _SigningKey(
                key=key,
                endorsements=frozenset(str(e) for e in endorsements) if isinstance(endorsements, list) else None,
            )
        return keys


def _bearer_token(authorization_header: str | None) -> str:
    if not authorization_header:
        raise Unauthorized("missing Authorization header")
    parts = authorization_header.split(" ")
    if len(parts) != 2 or parts[0].lower() != "bearer" or not parts[1]:
        raise Unauthorized("Authorization header is not 'Bearer <token>'")
    return parts[1]


def _numeric(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Unauthorized(f"token {name} claim is not a number")
    return float(value)
