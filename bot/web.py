"""One ASGI app for every HTTP entry point: Slack events (and, with Teams, /api/messages), /healthz, /readyz, /metrics.

Each inbound endpoint takes a request in the same order, and refuses it at the first step it fails, with a 4xx,
one warning line giving a fixed reason (never anything from the request) and nothing stored:

1. size: at most `MAX_BODY_BYTES`, from Content-Length when given and while reading (413), so a huge body is never
   held whole;
2. who sent it: Slack's signature over the raw bytes (401), or a Bearer token for Teams (401; the token itself is
   checked by bot/teams/auth.py, which needs the parsed activity for its `serviceurl` claim);
3. what it says: UTF-8, a JSON object (or Slack's form fields), nested at most `MAX_JSON_DEPTH` deep, no unpaired
   surrogates, and the envelope fields copbot reads of the JSON types the platform documents (400).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from slack_bolt import App, BoltRequest
from slack_bolt.request import payload_utils
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bot.metrics import ACKS, REGISTRY, REQUESTS

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024
"""The largest request body read (1 MiB); more is refused with 413. Slack's and Teams' requests are a few kilobytes:
even a story form with every field full is well under 100 kB, so this leaves room without inviting abuse."""

MAX_JSON_DEPTH = 64
"""The deepest nesting of objects and arrays accepted; Slack's and Teams' recorded payloads nest at most 10 deep."""

SLACK_MAX_AGE_SECONDS = 5 * 60
"""Slack's replay window: a signature whose timestamp is further from now than this is refused."""

TeamsHandler = Callable[[str | None, Mapping[str, Any]], tuple[int, Any]]
"""Teams: (Authorization header, activity) -> (HTTP status, JSON body or None); see bot/teams/adapter.py."""

Checks = Callable[[], Mapping[str, bool]]
"""Readiness: each check's name and whether it passed (see bot/server.py)."""

TEAMS_KINDS = ("message", "invoke", "conversationUpdate")


class Refused(Exception):
    """A request refused at the edge: the status to answer and a fixed reason for the log and the answer."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class SlackSignature:
    """Slack's v0 request signature, checked over the raw bytes before anything is decoded.

    slack_sdk's `SignatureVerifier` is not used: it decodes the body as UTF-8 and calls `int()` on the timestamp
    header, so an invalid body or timestamp raises instead of being refused.
    """

    _TIMESTAMP = re.compile(r"[0-9]{1,12}")

    def __init__(self, signing_secret: str, *, now: Callable[[], float] = time.time) -> None:
        self._secret = signing_secret.encode()
        self._now = now

    def check(self, body: bytes, headers: Headers) -> None:
        """Raise `Refused(401)` unless `body` carries a fresh, valid signature."""
        timestamp = headers.get("x-slack-request-timestamp")
        signature = headers.get("x-slack-signature")
        if not timestamp or not signature:
            raise Refused(401, "not signed")
        if not self._TIMESTAMP.fullmatch(timestamp):
            raise Refused(401, "malformed timestamp")
        if abs(self._now() - int(timestamp)) > SLACK_MAX_AGE_SECONDS:
            raise Refused(401, "stale timestamp")
        expected = hmac.new(self._secret, b"v0:" + timestamp.encode() + b":" + body, hashlib.sha256).hexdigest()
        # Starlette decodes header bytes as latin-1, so this gives back exactly the bytes that were sent.
        if not hmac.compare_digest(("v0=" + expected).encode(), signature.encode("latin-1")):
            raise Refused(401, "bad signature")


async def read_body(request: Request, *, limit: int = MAX_BODY_BYTES) -> bytes:
    """The body, read in chunks and given up on as soon as it is over `limit` bytes (or says it will be)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isascii() or not declared.isdigit():
            raise Refused(400, "malformed Content-Length")
        if len(declared) > 12 or int(declared) > limit:
            raise Refused(413, "body too large")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise Refused(413, "body too large")
    return bytes(body)


def decode(body: bytes) -> str:
    """The body as text, or `Refused(400)`: both platforms send UTF-8."""
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise Refused(400, "body is not UTF-8") from None


def json_object(body: bytes) -> dict[str, Any]:
    """The body as a JSON object, or `Refused(400)`."""
    try:
        value = json.loads(decode(body))
    except (ValueError, RecursionError):  # RecursionError: nesting deeper than the parser's stack
        raise Refused(400, "body is not JSON") from None
    if not isinstance(value, dict):
        raise Refused(400, "body is not a JSON object")
    check_structure(value)
    return value


_SURROGATE = re.compile("[\ud800-\udfff]")


def check_structure(value: Any) -> None:
    """Refuse JSON nested deeper than `MAX_JSON_DEPTH`, or with an unpaired surrogate (`"\\ud800"` parses, but no
    database or platform can store or send it)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, str):
            if not node.isascii() and _SURROGATE.search(node):
                raise Refused(400, "text with an unpaired surrogate")
        elif isinstance(node, dict | list):
            if depth > MAX_JSON_DEPTH:
                raise Refused(400, "JSON nested too deeply")
            for key, child in node.items() if isinstance(node, dict) else enumerate(node):
                stack.append((key, depth))
                stack.append((child, depth + 1))


# --- envelopes ------------------------------------------------------------------------------------------------------

Spec = Mapping[str, Any]
"""An envelope: field name -> the JSON types it may have (a tuple of Python types), the spec of the object it must
be (a nested Spec), or `[spec]` for a list of such objects. Fields left out are not looked at."""

_STR: tuple[type, ...] = (str,)
_NULLABLE_STR: tuple[type, ...] = (str, type(None))
_ID: tuple[type, ...] = (str, dict, type(None))  # Slack sends a person, team or channel as an id, an object, or null

SLACK_ENVELOPE: Spec = {
    "type": _STR, "command": _STR, "text": _STR, "callback_id": _STR, "action_id": _STR, "user_id": _STR,
    "team_id": _NULLABLE_STR, "channel_id": _STR, "response_url": _STR, "trigger_id": _STR, "challenge": _STR,
    "event_id": _STR, "team": _ID, "user": _ID, "channel": _ID, "enterprise": _ID, "container": {}, "message": {},
    "event": {
        "type": _STR, "subtype": _NULLABLE_STR, "user": _ID, "channel": _ID, "item": {}, "text": _STR, "ts": _STR,
        "thread_ts": _STR, "channel_type": _STR, "tab": _STR, "reaction": _STR, "item_user": _STR,
        "bot_id": _NULLABLE_STR, "message": {}, "previous_message": {},
    },
    "view": {
        "callback_id": _STR, "state": {"values": {}}, "blocks": [{}], "private_metadata": _STR, "id": _STR,
        "hash": _STR, "type": _STR,
    },
    "actions": [{"action_id": _STR, "block_id": _STR, "value": _STR, "type": _STR}],
    "authorizations": [{"team_id": _NULLABLE_STR, "user_id": _NULLABLE_STR, "enterprise_id": _NULLABLE_STR}],
}  # fmt: skip
"""The Slack fields Bolt routes on and copbot's listeners read, with the JSON types Slack sends them as."""

_ACCOUNT: Spec = {"id": _STR, "name": _NULLABLE_STR, "aadObjectId": _NULLABLE_STR}
TEAMS_ENVELOPE: Spec = {
    "type": _STR, "id": _STR, "name": _NULLABLE_STR, "text": _NULLABLE_STR, "serviceUrl": _STR, "channelId": _STR,
    "replyToId": _NULLABLE_STR, "from": _ACCOUNT, "recipient": _ACCOUNT,
    "conversation": {"id": _STR, "tenantId": _NULLABLE_STR, "conversationType": _NULLABLE_STR},
    "channelData": {"tenant": {"id": _STR}, "team": {"id": _STR, "aadGroupId": _NULLABLE_STR}, "channel": {"id": _STR}},
    "membersAdded": [_ACCOUNT], "membersRemoved": [_ACCOUNT], "entities": [{"type": _STR, "mentioned": _ACCOUNT}],
    "attachments": [{"contentType": _STR}],
}  # fmt: skip
"""The Bot Framework activity fields copbot's adapter reads, with their types in the Bot Framework's schema."""


def check_envelope(value: Mapping[str, Any], spec: Spec, *, where: str = "") -> None:
    """Refuse (400) a payload in which a field `spec` names has another JSON type, so a signed payload of the
    wrong shape is refused here rather than failing inside Bolt's matchers or an adapter."""
    for field, rule in spec.items():
        if field not in value:
            continue
        got, name = value[field], where + field
        if isinstance(rule, tuple):
            if not isinstance(got, rule):
                raise Refused(400, f"{name} has the wrong type")
        elif isinstance(rule, list):
            if not isinstance(got, list) or not all(isinstance(item, dict) for item in got):
                raise Refused(400, f"{name} is not a list of objects")
            for item in got:
                check_envelope(item, rule[0], where=name + "[].")
        else:
            if not isinstance(got, dict):
                raise Refused(400, f"{name} is not an object")
            check_envelope(got, rule, where=name + ".")


def slack_kind(body: dict[str, Any]) -> str:
    """What a Slack request was, for the acks metric: command, action, view, shortcut, event, or other."""
    for kind, test in (
        ("command", payload_utils.is_slash_command),
        ("action", payload_utils.is_action),
        ("view", payload_utils.is_view),
        ("shortcut", payload_utils.is_shortcut),
        ("event", payload_utils.is_event),
    ):
        if test(body):
            return kind
    return "other"


def _bolt_request(body: str, request: Request) -> BoltRequest:
    """Bolt's request, built only from a body that parses into a Slack payload; `Refused(400)` otherwise."""
    headers: dict[str, str | Sequence[str]] = dict(request.headers.items())
    try:
        bolt_request = BoltRequest(body=body, query=request.url.query, headers=headers)
    except (ValueError, RecursionError):  # Bolt's json.loads: the body, or a form's payload= field
        raise Refused(400, "body is not a Slack payload") from None
    except (TypeError, AttributeError, LookupError):  # Bolt read a field of a payload that is not an object
        raise Refused(400, "body is not a Slack payload object") from None
    if not isinstance(bolt_request.body, dict):
        raise Refused(400, "body is not a Slack payload object")
    check_structure(bolt_request.body)
    check_envelope(bolt_request.body, SLACK_ENVELOPE)
    actions = bolt_request.body.get("actions")
    if actions is not None and (not actions or any("action_id" not in action for action in actions)):
        raise Refused(400, "actions without an action_id")  # Bolt's matchers read the first action's id
    return bolt_request


def _refusal(where: str, refused: Refused) -> Response:
    log.warning("%s request refused (%d): %s", where, refused.status, refused.reason)
    return JSONResponse({"error": refused.reason}, status_code=refused.status)


Endpoint = Callable[[Request], Awaitable[Response]]


def _counted(endpoint: str, handle: Endpoint) -> Endpoint:
    """`handle`, with every answer counted in the requests metric by endpoint and status (500 if it raised)."""

    async def run(request: Request) -> Response:
        try:
            response = await handle(request)
        except Exception:
            REQUESTS.labels(endpoint=endpoint, status="500").inc()
            raise
        REQUESTS.labels(endpoint=endpoint, status=str(response.status_code)).inc()
        return response

    return run


def create_web_app(
    *,
    slack_app: App | None,
    healthy: Callable[[], bool],
    slack_signing_secret: str | None = None,
    teams_handler: TeamsHandler | None = None,
    readiness: Checks | None = None,
    collect: Callable[[], None] | None = None,
    on_startup: Callable[[], None] | None = None,
    on_shutdown: Callable[[], None] | None = None,
) -> Starlette:
    """The HTTP app. Bolt's dispatch (ack, listeners) and the Teams adapter (JWT check, handling) run in a worker
    thread, never on the loop.

    `slack_signing_secret` is required with `slack_app`: the edge checks signatures before Bolt parses anything.
    `readiness` answers `/readyz` (default: the database answers, as `healthy`); `collect` refreshes the gauges
    read at scrape time (outbox depth and age) before `/metrics` answers.
    """
    if slack_app is not None and not slack_signing_secret:
        raise ValueError("Slack over HTTP needs its signing secret (SLACK_SIGNING_SECRET)")
    signature = SlackSignature(slack_signing_secret) if slack_signing_secret else None

    async def slack_events(request: Request) -> Response:
        if slack_app is None or signature is None:
            return JSONResponse({"error": "Slack is not configured"}, status_code=404)
        try:
            raw = await read_body(request)
            signature.check(raw, request.headers)
            bolt_request = _bolt_request(decode(raw), request)
        except Refused as refused:
            return _refusal("slack", refused)
        bolt_response = await run_in_threadpool(slack_app.dispatch, bolt_request)
        if 200 <= bolt_response.status < 300:
            ACKS.labels(platform="slack", kind=slack_kind(bolt_request.body)).inc()
        return Response(
            content=bolt_response.body,
            status_code=bolt_response.status,
            headers={k: v[0] for k, v in bolt_response.headers.items() if v},
        )

    async def teams_messages(request: Request) -> Response:
        if teams_handler is None:
            return JSONResponse({"error": "Teams is not configured"}, status_code=404)
        try:
            raw = await read_body(request)
            authorization = request.headers.get("authorization")
            if not authorization:
                raise Refused(401, "no Authorization header")
            if authorization.partition(" ")[0].lower() != "bearer":
                raise Refused(401, "Authorization is not a Bearer token")
            activity = json_object(raw)
            check_envelope(activity, TEAMS_ENVELOPE)
        except Refused as refused:
            return _refusal("teams", refused)
        status, body = await run_in_threadpool(teams_handler, authorization, activity)
        if 200 <= status < 300:
            kind = activity.get("type")
            ACKS.labels(platform="teams", kind=kind if kind in TEAMS_KINDS else "other").inc()
        if body is None:
            return Response(status_code=status)
        return JSONResponse(body, status_code=status)

    async def healthz(request: Request) -> Response:
        ok = await run_in_threadpool(healthy)
        return JSONResponse({"ok": ok}, status_code=200 if ok else 503)

    async def readyz(request: Request) -> Response:
        checks = dict(await run_in_threadpool(readiness or (lambda: {"database": healthy()})))
        ok = all(checks.values())
        return JSONResponse({"ok": ok, "checks": checks}, status_code=200 if ok else 503)

    async def metrics(request: Request) -> Response:
        if collect is not None:
            await run_in_threadpool(collect)
        return Response(content=generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST})

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # Each server process starts its own background jobs; the outbox makes that safe.
        if on_startup is not None:
            on_startup()
        try:
            yield
        finally:
            if on_shutdown is not None:
                on_shutdown()

    routes = (
        ("/slack/events", slack_events, "POST"),
        ("/api/messages", teams_messages, "POST"),
        ("/healthz", healthz, "GET"),
        ("/readyz", readyz, "GET"),
        ("/metrics", metrics, "GET"),
    )
    return Starlette(
        routes=[Route(path, _counted(path, handle), methods=[method]) for path, handle, method in routes],
        lifespan=lifespan,
    )
