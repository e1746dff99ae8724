"""Inbound Slack requests for tests: bodies built from recorded payloads, signed exactly as Slack signs them.

Signing (see tests/reference/slack-protocol/PROTOCOL-NOTES.md §1): ``X-Slack-Signature = "v0=" + hex(HMAC-SHA256(secret,
"v0:{timestamp}:{raw body}"))`` with ``X-Slack-Request-Timestamp``. Switches make each rejection path a one-liner:
``bad_signature=True``, ``bad_timestamp=True`` (6 minutes old) or ``age_seconds=N``, ``retry_num=N``.

Payload builders start from Slack's recorded payloads (bolt-python tests, java-slack-sdk samples) and override the
ids with the fake workspace's (tests/fakes/slack_api.py), so API state and inbound traffic agree by default.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import hmac
import itertools
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from tests.fakes.slack_api import (
    APP_ID,
    BOT_ID,
    BOT_USER_ID,
    DEFAULT_USERS,
    GENERAL_CHANNEL_ID,
    TEAM_DOMAIN,
    TEAM_ID,
)
from tests.reference import reference_path

SIGNING_SECRET = "fake-signing-secret-0123456789abcdef"
DEFAULT_USER = "U0ALICE"
STALE_SECONDS = 6 * 60  # Slack (and Bolt) reject timestamps more than 5 minutes off

_serial = itertools.count(1)


def signature(*, secret: str, timestamp: str | int, body: str | bytes) -> str:
    """Slack's v0 request signature of `body` at `timestamp`."""
    raw = body.encode() if isinstance(body, str) else body
    base = b"v0:" + str(timestamp).encode() + b":" + raw
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class SignedRequest:
    """A request as Slack would send it to POST /slack/events."""

    body: str
    headers: dict[str, Any] = field(default_factory=dict)  # str values; Any so BoltRequest(headers=...) accepts it

    @property
    def content(self) -> bytes:
        return self.body.encode()


def sign(
    body: str,
    *,
    content_type: str,
    secret: str = SIGNING_SECRET,
    now: float | None = None,
    age_seconds: float = 0,
    bad_timestamp: bool = False,
    bad_signature: bool = False,
    retry_num: int | None = None,
    retry_reason: str = "http_timeout",
) -> SignedRequest:
    """Sign `body`; the switches produce the requests a verifier must reject (or, for retry_num, de-duplicate)."""
    if bad_timestamp:
        age_seconds = max(age_seconds, STALE_SECONDS)
    timestamp = str(int((time.time() if now is None else now) - age_seconds))
    sig = signature(secret=secret, timestamp=timestamp, body=body)
    if bad_signature:
        sig = sig[:-4] + ("0000" if not sig.endswith("0000") else "1111")
    headers = {
        "Content-Type": content_type,
        "X-Slack-Request-Timestamp": timestamp,
        "X-Slack-Signature": sig,
    }
    if retry_num is not None:
        headers["X-Slack-Retry-Num"] = str(retry_num)
        headers["X-Slack-Retry-Reason"] = retry_reason
    return SignedRequest(body=body, headers=headers)


# ---- recorded payloads ---------------------------------------------------------------------------------------------


@functools.cache
def _load(relative: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(reference_path(relative).read_text())
    return data


def recorded(relative: str) -> dict[str, Any]:
    """A deep copy of a recorded payload, path relative to the reference folder."""
    return copy.deepcopy(_load(relative))


_BOLT = "slack-bolt-python-payloads/"
_JAVA_EVENTS = "slack-java-sdk-json-logs/samples/events/"

# Prefer bolt-python's payloads (real structure, realistic values); fall back to java-sdk's blanked samples.
EVENT_TEMPLATES: dict[str, str] = {
    "app_mention": _BOLT + "event_callback.app_mention__app__app_mention_event_body.json",
    "message": _BOLT + "event_callback.message__message__message_body.json",
    "reaction_added": _BOLT + "event_callback.reaction_added__events_request_verification__event_body.json",
    "member_joined_channel": _JAVA_EVENTS + "MemberJoinedChannelPayload.json",
    "member_left_channel": _JAVA_EVENTS + "MemberLeftChannelPayload.json",
    "app_home_opened": _JAVA_EVENTS + "AppHomeOpenedPayload.json",
    "reaction_removed": _JAVA_EVENTS + "ReactionRemovedPayload.json",
    "team_join": _JAVA_EVENTS + "TeamJoinPayload.json",
    "app_uninstalled": _JAVA_EVENTS + "AppUninstalledPayload.json",
    "tokens_revoked": _JAVA_EVENTS + "TokensRevokedPayload.json",
}

INTERACTIVE_TEMPLATES: dict[str, str] = {
    "block_actions": _BOLT + "block_actions__block_actions__body.json",
    "view_submission": _BOLT + "view_submission__view_submission__body.json",
    "view_closed": _BOLT + "view_closed__view_closed__body.json",
    "message_action": _BOLT + "message_action__shortcut__message_shortcut_body.json",
    "shortcut": _BOLT + "shortcut__shortcut__global_shortcut_body.json",
    "block_suggestion": _BOLT + "block_suggestion__block_suggestion__body.json",
}


def new_ts(now: float | None = None) -> str:
    """A unique Slack-style message timestamp."""
    return f"{int(time.time() if now is None else now)}.{next(_serial):06d}"


def _merge(target: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge `overrides` into `target`; a None override deletes the key."""
    for key, value in overrides.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = value
    return target


def _fill_event(event: dict[str, Any], *, ts: str) -> None:
    """Replace recorded ids and blanked sample values with the fake workspace's."""
    replacements = {"user": DEFAULT_USER, "item_user": "U0BOB", "inviter": BOT_USER_ID}
    for key, value in replacements.items():
        if key in event:
            event[key] = value
    if "channel" in event:
        event["channel"] = GENERAL_CHANNEL_ID
    if "team" in event:
        event["team"] = TEAM_ID
    for key in ("ts", "event_ts"):
        if key in event:
            event[key] = ts
    if isinstance(event.get("item"), dict):
        event["item"].update({"channel": GENERAL_CHANNEL_ID, "ts": ts})
    if event.get("channel_type") == "":
        event["channel_type"] = "C"
    for key in ("enterprise", "client_msg_id"):
        event.pop(key, None)
    if event.get("type") == "app_home_opened":
        event["channel"] = "D" + DEFAULT_USER[1:]
        event["tab"] = "home"
        event.pop("view", None)  # present only once a Home view was published; pass view= to add it
    if event.get("type") == "message" and isinstance(event.get("blocks"), list):
        event.pop("blocks")  # the recorded rich_text would contradict an overridden text


def event_callback(event_type: str, *, event_id: str | None = None, **event: Any) -> dict[str, Any]:
    """An Events API `event_callback` body for `event_type`, built from a recorded payload.

    Keyword arguments override fields of the inner `event` (deep-merged; None deletes), e.g.
    ``event_callback("message", text="hi", thread_ts="…")``,
    ``event_callback("reaction_added", reaction="bulb", item={"ts": msg.ts}, item_user="U0BOB")``.
    """
    template = EVENT_TEMPLATES.get(event_type)
    if template is None:
        camel = "".join(part.title() for part in event_type.split("_"))
        template = _JAVA_EVENTS + f"{camel}Payload.json"
    inner: dict[str, Any] = recorded(template)["event"]
    now = time.time()
    ts = new_ts(now)
    _fill_event(inner, ts=ts)
    _merge(inner, event)
    return {
        "token": "verification_token",
        "team_id": TEAM_ID,
        "api_app_id": APP_ID,
        "event": inner,
        "type": "event_callback",
        "event_id": event_id or f"Ev0{next(_serial):08d}",
        "event_time": int(now),
        "authorizations": [
            {
                "enterprise_id": None,
                "team_id": TEAM_ID,
                "user_id": BOT_USER_ID,
                "is_bot": True,
                "is_enterprise_install": False,
            }
        ],
        "authed_users": [BOT_USER_ID],  # deprecated by Slack but still in its wrapper schema (required there)
        "is_ext_shared_channel": False,
        "event_context": f"4-fake-{next(_serial)}",
    }


def url_verification(challenge: str = "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P") -> dict[str, Any]:
    """The Events API URL handshake body (recorded by python-slack-events-api)."""
    body = recorded("slack-events-api-python-tests/url_challenge.json")
    body["challenge"] = challenge
    return body


def slash_command_fields(
    text: str = "",
    *,
    command: str = "/cop",
    user_id: str = DEFAULT_USER,
    user_name: str | None = None,
    channel_id: str = GENERAL_CHANNEL_ID,
    channel_name: str = "general",
    team_id: str = TEAM_ID,
    trigger_id: str | None = None,
    response_url: str | None = None,
    **extra: str,
) -> dict[str, str]:
    """Slash-command fields as Slack sends them (field set from java-sdk SlashCommandPayload, order from bolt)."""
    serial = next(_serial)
    fields = {
        "token": "verification_token",
        "team_id": team_id,
        "team_domain": TEAM_DOMAIN,
        "channel_id": channel_id,
        "channel_name": channel_name,
        "user_id": user_id,
        "user_name": user_name or DEFAULT_USERS.get(user_id, user_id.lower()),
        "command": command,
        "text": text,
        "api_app_id": APP_ID,
        "is_enterprise_install": "false",
        "response_url": response_url or f"https://hooks.slack.com/commands/{team_id}/{serial}/fake{serial:06d}",
        "trigger_id": trigger_id or f"{serial}.{serial}.fake{serial:06d}",
    }
    expected = set(recorded("slack-java-sdk-json-logs/samples/app-backend/slash-commands/SlashCommandPayload.json"))
    unknown = set(extra) - expected
    if unknown:
        raise ValueError(f"not slash-command fields: {sorted(unknown)}")
    fields.update(extra)
    return fields


def slash_command(text: str = "", **kwargs: Any) -> str:
    """The form-encoded body of a `/cop <text>` slash command."""
    return urlencode(slash_command_fields(text, **kwargs))


def interactive(kind: str, **overrides: Any) -> dict[str, Any]:
    """An interactivity payload of `kind` (block_actions, view_submission, view_closed, message_action, shortcut,
    block_suggestion) from bolt's recorded one, with the fake workspace's ids; overrides are deep-merged.

    E.g. ``interactive("message_action", callback_id="save_as_story", message={"text": "…", "ts": ts})``.
    """
    body = recorded(INTERACTIVE_TEMPLATES[kind])
    user_id = DEFAULT_USER
    body["user"] = {"id": user_id, "username": "alice", "name": "alice", "team_id": TEAM_ID}
    body["team"] = {"id": TEAM_ID, "domain": TEAM_DOMAIN}
    body["api_app_id"] = APP_ID
    serial = next(_serial)
    if "trigger_id" in body:
        body["trigger_id"] = f"{serial}.{serial}.fake{serial:06d}"
    if "response_url" in body:
        body["response_url"] = f"https://hooks.slack.com/actions/{TEAM_ID}/{serial}/fake{serial:06d}"
    if isinstance(body.get("channel"), dict):
        body["channel"] = {"id": GENERAL_CHANNEL_ID, "name": "general"}
    if isinstance(body.get("container"), dict) and "channel_id" in body["container"]:
        body["container"]["channel_id"] = GENERAL_CHANNEL_ID
    if isinstance(body.get("view"), dict):
        view = body["view"]
        view.update({"team_id": TEAM_ID, "app_id": APP_ID, "app_installed_team_id": TEAM_ID, "bot_id": BOT_ID})
        if "state" in view:
            view["state"] = {"values": {}}  # the recorded values belong to bolt's test form; pass view={"state": ...}
    if kind == "message_action":
        ts = new_ts()
        body["message_ts"] = ts
        body["message"] = {"type": "message", "text": "", "user": "U0BOB", "ts": ts, "team": TEAM_ID}
        body["action_ts"] = new_ts()
    _merge(body, overrides)
    if kind == "message_action":
        body["message_ts"] = body["message"]["ts"]
    return body


def view_state(values: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """`view.state` for a view_submission: {block_id: {action_id: value-or-element-state}}.

    A str value becomes a plain_text_input state; a dict is used as is (e.g. a static_select's selected_option).
    """
    out: dict[str, dict[str, Any]] = {}
    for block_id, actions in values.items():
        out[block_id] = {
            action_id: ({"type": "plain_text_input", "value": v} if isinstance(v, str) else v)
            for action_id, v in actions.items()
        }
    return {"values": out}


def interactive_body(payload: dict[str, Any]) -> str:
    """The form body Slack posts for interactivity: a single field `payload` holding URL-encoded JSON."""
    return "payload=" + quote(json.dumps(payload))


def signed_slash_command(text: str = "", *, sign_options: dict[str, Any] | None = None, **fields: Any) -> SignedRequest:
    return sign(slash_command(text, **fields), content_type="application/x-www-form-urlencoded", **(sign_options or {}))


def signed_event(body: dict[str, Any], **sign_options: Any) -> SignedRequest:
    return sign(json.dumps(body), content_type="application/json", **sign_options)


def signed_interactive(payload: dict[str, Any], **sign_options: Any) -> SignedRequest:
    return sign(interactive_body(payload), content_type="application/x-www-form-urlencoded", **sign_options)


def reference_file(relative: str) -> Path:
    return reference_path(relative)
