"""A fake Slack Web API on loopback that checks every call against Slack's published method contract.

Contract sources (see tests/reference/SOURCES.md):

- method names: ``slack-java-sdk-json-logs/rate_limit_tiers.json`` (current, 326 methods);
- parameters: ``slack-api-specs/slack_web_openapi_v2.json`` (OpenAPI 2.0, 2021). Where the spec has the method,
  every parameter sent must be declared there and every required ``formData``/``query`` parameter must be present
  (``token`` is ignored: real clients send ``Authorization: Bearer``). The spec models read methods as GET with
  ``query`` parameters, and slack_sdk sends them that way, so ``query`` requirements count too;
- a small explicit allow-list, ``NEWER_PARAMS``, for parameters that current Slack and slack_sdk use but the 2021
  spec lacks, and ``SUPPLEMENTARY_CONTRACTS`` for the few newer methods copbot calls that the spec lacks entirely;
- JSON bodies are only accepted by methods whose spec ``consumes`` lists ``application/json`` (Slack ignores JSON
  bodies for the read methods, which is a classic silent bug);
- bot scopes: when ``FakeSlack.scopes`` is set (the ``fake_slack`` fixture sets it from manifest.yaml), a call
  whose bot scope is not granted is a violation, as Slack would answer ``missing_scope``. The table is
  ``BOT_SCOPES`` (granular bot scopes from Slack's method docs; the 2021 spec only lists classic scopes).

A violation is recorded in ``violations`` and answered with ``{"ok": false, "error":
"fake_slack_contract_violation"}``; the pytest fixture fails the test at teardown if any happened.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import functools
import itertools
import json
import re
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar
from urllib.parse import parse_qs, urlsplit

from tests.reference import reference_path

if TYPE_CHECKING:
    from tests.fakes.slack_socket import FakeSocketMode

# The simulated workspace. The signing helpers use the same ids, so payloads and API state agree by default.
TEAM_ID = "T0COPBOT"
TEAM_DOMAIN = "copbot-test"
APP_ID = "A0COPBOT"
BOT_ID = "B0COPBOT"
BOT_USER_ID = "U0COPBOT"
BOT_TOKEN = "xoxb-0000000000-0000000000000-fakefakefakefakefakefake"
APP_TOKEN = "xapp-1-A0COPBOT-0000000000-fakefakefakefakefakefake"
GENERAL_CHANNEL_ID = "C0GENERAL"
DEFAULT_USERS = {"U0ALICE": "alice", "U0BOB": "bob", "U0CAROL": "carol"}

VIOLATION_ERROR = "fake_slack_contract_violation"

# Parameters the 2021 OpenAPI spec lacks but current Slack documents and slack_sdk 3.x sends. Keep it small and
# explicit: adding a name here is a claim that Slack accepts it.
NEWER_PARAMS: dict[str, frozenset[str]] = {
    "chat.postMessage": frozenset({"metadata", "markdown_text", "container_id"}),
    "chat.postEphemeral": frozenset({"markdown_text"}),
    "chat.update": frozenset({"metadata", "markdown_text", "file_ids", "reply_broadcast"}),
    "views.open": frozenset({"interactivity_pointer"}),
    "views.push": frozenset({"interactivity_pointer"}),
    "conversations.create": frozenset({"team_id"}),
    "conversations.invite": frozenset({"force"}),
    "conversations.list": frozenset({"team_id"}),
    "conversations.history": frozenset({"include_all_metadata"}),
    "conversations.replies": frozenset({"include_all_metadata"}),
}

# Sent with every call by slack_sdk's `WebClient(team_id=...)` default params, which Bolt sets on the per-request
# client it hands to listeners (for org-wide installs); Slack accepts it on every method.
GLOBAL_PARAMS = frozenset({"team_id"})

# Where Slack accepts one of several parameters instead of the one the spec marks required.
REQUIRED_ALTERNATIVES: dict[str, dict[str, frozenset[str]]] = {
    "views.open": {"trigger_id": frozenset({"trigger_id", "interactivity_pointer"})},
    "views.push": {"trigger_id": frozenset({"trigger_id", "interactivity_pointer"})},
}


@dataclass(frozen=True)
class MethodContract:
    """What the fake checks for one Web API method."""

    name: str
    tier: str
    checked: bool  # False: the method is real (current list) but no parameter contract is known
    params: frozenset[str] = frozenset()
    required: frozenset[str] = frozenset()
    accepts_json: bool = True


# Newer methods copbot calls that the 2021 spec lacks (from Slack's method docs and slack_sdk 3.x signatures).
SUPPLEMENTARY_CONTRACTS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "files.getUploadURLExternal": (
        frozenset({"filename", "length", "alt_txt", "snippet_type"}),
        frozenset({"filename", "length"}),
    ),
    "files.completeUploadExternal": (
        frozenset({"files", "channel_id", "channels", "initial_comment", "thread_ts", "blocks"}),
        frozenset({"files"}),
    ),
    "apps.connections.open": (frozenset(), frozenset()),
}

# Granular bot scopes per method, by conversation kind ("public", "private", "im", "mpim", "*" = any). A call
# passes when any one listed scope is granted. Methods absent here need no scope (views.*, chat.getPermalink,
# auth.test) or are not modelled.
BOT_SCOPES: dict[str, dict[str, frozenset[str]]] = {
    "conversations.create": {"public": frozenset({"channels:manage"}), "private": frozenset({"groups:write"})},
    "conversations.invite": {"public": frozenset({"channels:manage"}), "private": frozenset({"groups:write"})},
    "conversations.kick": {"public": frozenset({"channels:manage"}), "private": frozenset({"groups:write"})},
    "conversations.archive": {"public": frozenset({"channels:manage"}), "private": frozenset({"groups:write"})},
    "conversations.setTopic": {
        "public": frozenset({"channels:manage"}),
        "private": frozenset({"groups:write"}),
        "im": frozenset({"im:write"}),
        "mpim": frozenset({"mpim:write"}),
    },
    "conversations.setPurpose": {
        "public": frozenset({"channels:manage"}),
        "private": frozenset({"groups:write"}),
        "im": frozenset({"im:write"}),
        "mpim": frozenset({"mpim:write"}),
    },
    "conversations.join": {"*": frozenset({"channels:join"})},
    "conversations.open": {"im": frozenset({"im:write"}), "mpim": frozenset({"mpim:write"})},
    "conversations.info": {
        "public": frozenset({"channels:read"}),
        "private": frozenset({"groups:read"}),
        "im": frozenset({"im:read"}),
        "mpim": frozenset({"mpim:read"}),
    },
    "conversations.members": {
        "public": frozenset({"channels:read"}),
        "private": frozenset({"groups:read"}),
        "im": frozenset({"im:read"}),
        "mpim": frozenset({"mpim:read"}),
    },
    "conversations.history": {
        "public": frozenset({"channels:history"}),
        "private": frozenset({"groups:history"}),
        "im": frozenset({"im:history"}),
        "mpim": frozenset({"mpim:history"}),
    },
    "conversations.replies": {
        "public": frozenset({"channels:history"}),
        "private": frozenset({"groups:history"}),
        "im": frozenset({"im:history"}),
        "mpim": frozenset({"mpim:history"}),
    },
    "chat.postMessage": {"*": frozenset({"chat:write"})},
    "chat.postEphemeral": {"*": frozenset({"chat:write"})},
    "chat.update": {"*": frozenset({"chat:write"})},
    "chat.delete": {"*": frozenset({"chat:write"})},
    "users.info": {"*": frozenset({"users:read"})},
    "users.lookupByEmail": {"*": frozenset({"users:read.email"})},
    "reactions.add": {"*": frozenset({"reactions:write"})},
    "reactions.get": {"*": frozenset({"reactions:read"})},
    "files.getUploadURLExternal": {"*": frozenset({"files:write"})},
    "files.completeUploadExternal": {"*": frozenset({"files:write"})},
}

_ERROR_KEYS = ("error", "needed", "provided", "warning", "errors", "detail")
_CHANNEL_NAME = re.compile(r"^[a-z0-9_\-]{1,80}$")


@functools.cache
def _tiers() -> dict[str, str]:
    path = reference_path("slack-java-sdk-json-logs", "rate_limit_tiers.json")
    data: dict[str, str] = json.loads(path.read_text())
    return data


@functools.cache
def _spec_paths() -> dict[str, Any]:
    path = reference_path("slack-api-specs", "slack_web_openapi_v2.json")
    paths: dict[str, Any] = json.loads(path.read_text())["paths"]
    return paths


@functools.cache
def contract(method: str) -> MethodContract | None:
    """The contract for `method`, or None when Slack has no such method."""
    tier = _tiers().get(method)
    if tier is None:
        return None
    op_by_verb = _spec_paths().get("/" + method)
    if op_by_verb:
        params: set[str] = set()
        required: set[str] = set()
        accepts_json = False
        for op in op_by_verb.values():
            accepts_json = accepts_json or "application/json" in op.get("consumes", [])
            for p in op.get("parameters", []):
                if p["name"] == "token":
                    continue
                params.add(p["name"])
                if p.get("required") and p.get("in") in ("formData", "query"):
                    required.add(p["name"])
        params |= NEWER_PARAMS.get(method, frozenset())
        return MethodContract(method, tier, True, frozenset(params), frozenset(required), accepts_json)
    if method in SUPPLEMENTARY_CONTRACTS:
        allowed, req = SUPPLEMENTARY_CONTRACTS[method]
        return MethodContract(method, tier, True, allowed, req, True)
    return MethodContract(method, tier, False)


@functools.cache
def _sample(method: str) -> dict[str, Any] | None:
    try:
        path = reference_path("slack-java-sdk-json-logs", "samples", "api", f"{method}.json")
    except FileNotFoundError:
        # Only the samples some test needs are copied into tests/reference; any other method answers a bare success.
        return None
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def sample_response(method: str) -> dict[str, Any]:
    """The java-sdk shape sample for `method` (blanked values) turned into a success: ok true, no error keys."""
    body = copy.deepcopy(_sample(method) or {})
    for key in _ERROR_KEYS:
        body.pop(key, None)
    meta = body.get("response_metadata")
    if isinstance(meta, dict) and meta.get("messages") == [""]:
        body.pop("response_metadata")
    body["ok"] = True
    return body


class Call(NamedTuple):
    """One Web API call as the fake received it (token removed from params)."""

    method: str
    params: dict[str, Any]


@dataclass(frozen=True)
class CallRecord:
    """Call details beyond `Call`: how it was sent and what the fake answered."""

    method: str
    params: dict[str, Any]
    token: str | None
    http_method: str
    content_type: str
    status: int
    response: dict[str, Any] | None


@dataclass(frozen=True)
class Violation:
    """A call that broke Slack's contract: the app would fail (or silently misbehave) against real Slack."""

    method: str
    kind: str
    detail: str

    def __str__(self) -> str:
        return f"{self.method}: {self.kind}: {self.detail}"


@dataclass
class Channel:
    id: str
    name: str
    kind: str = "public"  # public | private | im | mpim
    creator: str = BOT_USER_ID
    created: int = 0
    members: list[str] = field(default_factory=list)
    topic: str = ""
    purpose: str = ""
    archived: bool = False
    im_user: str | None = None


@dataclass
class Message:
    channel: str
    ts: str
    user: str
    text: str = ""
    blocks: list[Any] | None = None
    thread_ts: str | None = None
    metadata: Any = None
    files: list[str] = field(default_factory=list)
    bot_id: str | None = None
    edited: bool = False


@dataclass
class Ephemeral:
    channel: str
    user: str
    text: str
    blocks: list[Any] | None
    thread_ts: str | None
    message_ts: str


@dataclass
class UploadedFile:
    id: str
    filename: str
    length: int
    data: bytes | None = None
    title: str | None = None
    completed: bool = False
    channels: list[str] = field(default_factory=list)


@dataclass
class _Fault:
    kind: str  # "error" | "ratelimit" | "disconnect"
    remaining: int
    error: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    retry_after: int = 1


class _Handled(Exception):
    """Internal: ends a call with an HTTP status, a JSON body (None = drop the connection)."""

    def __init__(self, status: int, body: dict[str, Any] | None, headers: dict[str, str] | None = None):
        super().__init__(status)
        self.status = status
        self.body = body
        self.headers = headers or {}


def _as_list(value: Any) -> list[Any] | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        parsed = json.loads(value)
        return parsed if isinstance(parsed, list) else [parsed]
    return list(value)


def _as_dict(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        parsed = json.loads(value)
        if not isinstance(parsed, dict):
            raise ValueError("not an object")
        return parsed
    if isinstance(value, dict):
        return value
    raise ValueError("not an object")


_T = TypeVar("_T")


def _page(items: list[_T], params: dict[str, Any], *, most: int | None = None) -> tuple[list[_T], str]:
    """One page of `items` for Slack's cursor paging (`limit`, `cursor`) and the next page's cursor ("" at the end)."""
    limit = int(params.get("limit") or 100)
    limit = min(limit, most) if most else limit
    cursor = str(params.get("cursor") or "")
    start = int(base64.b64decode(cursor).decode().split(":")[1]) if cursor else 0
    more = start + limit < len(items)
    return items[start : start + limit], base64.b64encode(f"offset:{start + limit}".encode()).decode() if more else ""


def _truthy(value: Any) -> bool:
    return value is True or str(value).lower() in ("1", "true")


def _split_ids(value: Any) -> list[str]:
    if isinstance(value, list):
        return [str(v) for v in value]
    return [v.strip() for v in str(value or "").split(",") if v.strip()]


def _ok(**fields: Any) -> dict[str, Any]:
    return {"ok": True, **fields}


def _err(error: str, **fields: Any) -> _Handled:
    return _Handled(200, {"ok": False, "error": error, **fields})


class FakeSlack:
    """A loopback HTTP server speaking the Slack Web API, with a little workspace state and scripted faults.

    Use as a context manager (or start()/stop()); `url` is the `base_url` for `WebClient`.
    """

    def __init__(self, *, scopes: set[str] | None = None, team_id: str = TEAM_ID):
        self.team_id = team_id
        self.bot_user_id = BOT_USER_ID
        self.bot_id = BOT_ID
        self.app_id = APP_ID
        self.scopes: set[str] | None = scopes
        self.calls: list[Call] = []
        self.records: list[CallRecord] = []
        self.violations: list[Violation] = []
        self.socket: FakeSocketMode | None = None
        self.channels: dict[str, Channel] = {}
        self.users: dict[str, dict[str, Any]] = {}
        self.messages: list[Message] = []
        self.ephemerals: list[Ephemeral] = []
        self.responses: list[dict[str, Any]] = []  # JSON bodies POSTed to response_url
        self.files: dict[str, UploadedFile] = {}
        self.views: dict[str, dict[str, Any]] = {}
        self.home_views: dict[str, dict[str, Any]] = {}
        self.reactions: list[tuple[str, str, str, str]] = []  # (channel, ts, name, user)
        self._handlers: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {}
        self._faults: dict[str, deque[_Fault]] = {}
        self._rates: dict[str, tuple[float, deque[float]]] = {}
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._ids = itertools.count(1)
        self._ts_base = int(time.time())
        self._ts_counter = itertools.count(100)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._seed()

    # ---- lifecycle -------------------------------------------------------------------------------------------

    def start(self) -> FakeSlack:
        fake = self

        class Handler(_RequestHandler):
            owner = fake

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="fake-slack-api", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeSlack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("FakeSlack is not started")
        return int(self._server.server_address[1])

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """The Web API base URL, e.g. http://127.0.0.1:PORT/api/ (for WebClient(base_url=...) / SLACK_API_URL)."""
        return f"{self.base}/api/"

    def attach_socket(self, socket_fake: FakeSocketMode) -> None:
        """apps.connections.open will hand out this Socket Mode fake's ws:// URL."""
        self.socket = socket_fake

    # ---- workspace state -------------------------------------------------------------------------------------

    def _seed(self) -> None:
        self.add_user(BOT_USER_ID, name="copbot", is_bot=True)
        for user_id, name in DEFAULT_USERS.items():
            self.add_user(user_id, name=name)
        self.add_channel("general", id=GENERAL_CHANNEL_ID, members=[BOT_USER_ID, *DEFAULT_USERS])

    def add_user(
        self,
        user_id: str,
        *,
        name: str | None = None,
        real_name: str | None = None,
        tz: str = "Europe/London",
        is_bot: bool = False,
        email: str | None = None,
    ) -> dict[str, Any]:
        """Add (or replace) a workspace member; users.info answers from here."""
        name = name or user_id.lower()
        real = real_name or name.title()
        user: dict[str, Any] = {
            "id": user_id,
            "team_id": self.team_id,
            "name": name,
            "deleted": False,
            "color": "9f69e7",
            "real_name": real,
            "tz": tz,
            "tz_label": "Greenwich Mean Time",
            "tz_offset": 0,
            "profile": {
                "title": "",
                "phone": "",
                "real_name": real,
                "real_name_normalized": real,
                "display_name": name,
                "display_name_normalized": name,
                "status_text": "",
                "status_emoji": "",
                "team": self.team_id,
                "email": email or f"{name}@example.org",
                "first_name": real.split(" ")[0],
                "last_name": " ".join(real.split(" ")[1:]),
                "image_72": "https://www.example.com/avatar_72.png",
            },
            "is_admin": False,
            "is_owner": False,
            "is_restricted": False,
            "is_ultra_restricted": False,
            "is_bot": is_bot,
            "is_app_user": False,
            "updated": self._ts_base,
        }
        if is_bot:
            user["profile"]["bot_id"] = self.bot_id
            user["profile"]["api_app_id"] = self.app_id
        with self._lock:
            self.users[user_id] = user
        return user

    def add_channel(
        self,
        name: str,
        *,
        id: str | None = None,
        members: list[str] | tuple[str, ...] = (BOT_USER_ID,),
        is_private: bool = False,
        topic: str = "",
        purpose: str = "",
    ) -> Channel:
        """Add a channel the app did not create (e.g. one named in a recorded payload)."""
        with self._lock:
            channel = Channel(
                id=id or self._new_id("C"),
                name=name,
                kind="private" if is_private else "public",
                created=self._ts_base,
                members=list(dict.fromkeys(members)),
                topic=topic,
                purpose=purpose,
            )
            self.channels[channel.id] = channel
            return channel

    def channel_named(self, name: str) -> Channel | None:
        with self._lock:
            return next((c for c in self.channels.values() if c.name == name), None)

    def messages_in(self, channel: str, *, thread_ts: str | None = None) -> list[Message]:
        with self._lock:
            return [
                m for m in self.messages if m.channel == channel and (thread_ts is None or m.thread_ts == thread_ts)
            ]

    def add_message(self, channel: str, text: str, *, user: str = "U0ALICE", thread_ts: str | None = None) -> Message:
        """Put a message from a person into a channel (e.g. the one a reaction or shortcut refers to)."""
        with self._lock:
            msg = Message(channel=channel, ts=self._new_ts(), user=user, text=text, thread_ts=thread_ts)
            self.messages.append(msg)
            return msg

    def im_channel_for(self, user_id: str) -> str:
        """The DM channel id between the bot and `user_id` (stable, like Slack's)."""
        return "D" + user_id[1:]

    # ---- recorded calls --------------------------------------------------------------------------------------

    def calls_to(self, method: str) -> list[dict[str, Any]]:
        """Params of every call to `method`, in order."""
        with self._lock:
            return [c.params for c in self.calls if c.method == method]

    def response_url(self, tag: str = "cmd") -> str:
        """A response_url on this fake (instead of hooks.slack.com), for slash commands and interactions."""
        return f"{self.base}/response/{tag}"

    def receive_response(self, path: str, raw: bytes) -> None:
        body = json.loads(raw or b"{}")
        with self._changed:
            self.responses.append({"path": path, **body})
            self._changed.notify_all()

    def wait_for_responses(self, count: int = 1, *, timeout: float = 5.0) -> list[dict[str, Any]]:
        """Block until `count` response_url posts have arrived."""
        with self._changed:
            if not self._changed.wait_for(lambda: len(self.responses) >= count, timeout=timeout):
                raise AssertionError(f"expected {count} response_url posts, got {len(self.responses)}")
            return list(self.responses)

    def wait_for(self, method: str, *, count: int = 1, timeout: float = 5.0) -> list[dict[str, Any]]:
        """Block until at least `count` calls to `method` have been answered; returns their params."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                answered = [r.params for r in self.records if r.method == method]
                if len(answered) >= count:
                    return answered
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"expected {count} call(s) to {method} within {timeout}s, got {answered!r}")
                self._changed.wait(left)

    def take_violations(self) -> list[Violation]:
        """Return and forget the recorded violations (for tests that provoke them on purpose)."""
        with self._lock:
            found, self.violations = self.violations, []
            return found

    def assert_no_violations(self) -> None:
        with self._lock:
            if self.violations:
                listed = "\n  ".join(str(v) for v in self.violations)
                raise AssertionError(f"Slack API contract violations:\n  {listed}")

    # ---- scripted behaviour ----------------------------------------------------------------------------------

    def on(self, method: str, handler: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        """Answer `method` with handler(params) instead of the built-in behaviour (contract checks still run)."""
        with self._lock:
            self._handlers[method] = handler

    def fail_next(self, method: str, *, error: str, times: int = 1, **extra: Any) -> None:
        """The next `times` calls to `method` answer {"ok": false, "error": error, **extra}."""
        self._add_fault(method, _Fault("error", times, error=error, extra=extra))

    def rate_limit(self, method: str, *, retry_after: int = 1, times: int = 1) -> None:
        """The next `times` calls to `method` answer HTTP 429 with a Retry-After header."""
        self._add_fault(method, _Fault("ratelimit", times, retry_after=retry_after))

    def disconnect_next(self, method: str, *, times: int = 1) -> None:
        """The next `times` calls to `method` read the request and close the connection without answering."""
        self._add_fault(method, _Fault("disconnect", times))

    def enforce_rate(self, method: str, *, per_second: float) -> None:
        """Answer 429 (Retry-After: 1) to calls beyond `per_second` in any sliding one-second window."""
        with self._lock:
            self._rates[method] = (per_second, deque())

    def _add_fault(self, method: str, fault: _Fault) -> None:
        with self._lock:
            self._faults.setdefault(method, deque()).append(fault)

    def _next_fault(self, method: str) -> _Fault | None:
        queue = self._faults.get(method)
        if not queue:
            return None
        fault = queue[0]
        fault.remaining -= 1
        if fault.remaining <= 0:
            queue.popleft()
        return fault

    # ---- id helpers ------------------------------------------------------------------------------------------

    def _new_id(self, prefix: str) -> str:
        return f"{prefix}0{next(self._ids):08d}"

    def _new_ts(self) -> str:
        n = next(self._ts_counter)
        return f"{self._ts_base + n // 1_000_000}.{n % 1_000_000:06d}"

    def permalink(self, channel: str, ts: str) -> str:
        return f"https://{TEAM_DOMAIN}.slack.com/archives/{channel}/p{ts.replace('.', '')}"

    # ---- request processing ----------------------------------------------------------------------------------

    def _violate(self, method: str, kind: str, detail: str) -> _Handled:
        self.violations.append(Violation(method, kind, detail))
        return _Handled(200, {"ok": False, "error": VIOLATION_ERROR, "kind": kind, "detail": detail})

    def handle_api(
        self, *, http_method: str, method: str, params: dict[str, Any], token: str | None, content_type: str
    ) -> tuple[int, dict[str, Any] | None, dict[str, str]]:
        with self._changed:
            self.calls.append(Call(method, params))
            try:
                self._check(method, params, token, content_type)
                self._scripted(method)
                handler = self._handlers.get(method)
                body = handler(params) if handler else self._dispatch(method, params, token)
                result = _Handled(200, body)
            except _Handled as done:
                result = done
            except (ValueError, KeyError, TypeError) as exc:  # malformed JSON fields and the like
                result = _err("invalid_arguments", detail=f"{type(exc).__name__}: {exc}")
            self.records.append(
                CallRecord(method, params, token, http_method, content_type, result.status, result.body)
            )
            self._changed.notify_all()
            return result.status, result.body, result.headers

    def _check(self, method: str, params: dict[str, Any], token: str | None, content_type: str) -> None:
        spec = contract(method)
        if spec is None:
            raise self._violate(method, "unknown_method", "not in rate_limit_tiers.json (current Slack methods)")
        if not token:
            raise self._violate(method, "not_authed", "no Authorization: Bearer header and no token param")
        wants_app_token = method == "apps.connections.open"
        if wants_app_token != token.startswith("xapp-"):
            raise self._violate(method, "not_allowed_token_type", f"token type {token[:5]} not valid here")
        if not spec.checked:
            return
        if content_type.startswith("application/json") and not spec.accepts_json:
            raise self._violate(method, "json_not_accepted", "the spec lists only form encoding for this method")
        unknown = sorted(set(params) - spec.params - GLOBAL_PARAMS)
        if unknown:
            raise self._violate(method, "unknown_param", ", ".join(unknown))
        alternatives = REQUIRED_ALTERNATIVES.get(method, {})
        missing = sorted(
            name
            for name in spec.required
            if not any(params.get(alt) not in (None, "") for alt in alternatives.get(name, frozenset({name})))
        )
        if missing:
            raise self._violate(method, "missing_required_param", ", ".join(missing))

    def _require_scope(self, method: str, kind: str) -> None:
        if self.scopes is None:
            return
        table = BOT_SCOPES.get(method)
        if not table:
            return
        acceptable = table.get(kind, table.get("*"))
        if acceptable and not acceptable & self.scopes:
            needed = ",".join(sorted(acceptable))
            raise self._violate(method, "missing_scope", f"needs {needed} (granted: {','.join(sorted(self.scopes))})")

    def _scripted(self, method: str) -> None:
        fault = self._next_fault(method)
        if fault is not None:
            if fault.kind == "disconnect":
                raise _Handled(0, None)
            if fault.kind == "ratelimit":
                raise _Handled(429, {"ok": False, "error": "ratelimited"}, {"Retry-After": str(fault.retry_after)})
            raise _err(fault.error, **fault.extra)
        rate = self._rates.get(method)
        if rate is not None:
            per_second, window = rate
            now = time.monotonic()
            while window and now - window[0] >= 1.0:
                window.popleft()
            if len(window) >= per_second:
                raise _Handled(429, {"ok": False, "error": "ratelimited"}, {"Retry-After": "1"})
            window.append(now)

    def _dispatch(self, method: str, params: dict[str, Any], token: str | None) -> dict[str, Any]:
        name = "_m_" + method.replace(".", "_")
        impl = getattr(self, name, None)
        if impl is None:
            self._require_scope(method, "*")
            return sample_response(method)
        result: dict[str, Any] = impl(params)
        return result

    # ---- conversation helpers --------------------------------------------------------------------------------

    def _channel(self, ref: Any, method: str, *, allow_archived: bool = False, allow_user: bool = False) -> Channel:
        channel_id = str(ref or "")
        if channel_id.startswith("#"):
            found = self.channel_named(channel_id[1:])
            channel_id = found.id if found else channel_id
        channel = self.channels.get(channel_id)
        if channel is None and allow_user and channel_id[:1] in ("U", "W"):
            # chat.postMessage to a user id posts in the app's DM with that user.
            channel = self._open_im(channel_id)
        if channel is None:
            self._require_scope(method, "public")
            raise _err("channel_not_found")
        self._require_scope(method, channel.kind)
        if channel.archived and not allow_archived:
            raise _err("is_archived")
        return channel

    def _user(self, user_id: str) -> dict[str, Any]:
        user = self.users.get(user_id)
        if user is None:
            if re.fullmatch(r"[UW][A-Z0-9]{2,}", user_id):
                # Recorded payloads use ids like W111; treat any well-formed id as a workspace member.
                return self.add_user(user_id)
            raise _err("user_not_found")
        return user

    def _open_im(self, user_id: str) -> Channel:
        self._user(user_id)
        im_id = self.im_channel_for(user_id)
        channel = self.channels.get(im_id)
        if channel is None:
            channel = Channel(
                id=im_id,
                name=im_id,
                kind="im",
                created=self._ts_base,
                members=[BOT_USER_ID, user_id],
                im_user=user_id,
            )
            self.channels[im_id] = channel
        return channel

    def _channel_obj(self, channel: Channel, *, num_members: bool = False) -> dict[str, Any]:
        if channel.kind == "im":
            return {
                "id": channel.id,
                "created": channel.created,
                "is_im": True,
                "is_org_shared": False,
                "user": channel.im_user,
                "is_user_deleted": False,
                "priority": 0,
                "context_team_id": self.team_id,
            }
        obj: dict[str, Any] = {
            "id": channel.id,
            "name": channel.name,
            "is_channel": channel.kind == "public",
            "is_group": channel.kind == "private",
            "is_im": False,
            "is_mpim": channel.kind == "mpim",
            "is_private": channel.kind != "public",
            "created": channel.created,
            "is_archived": channel.archived,
            "is_general": channel.id == GENERAL_CHANNEL_ID,
            "unlinked": 0,
            "name_normalized": channel.name,
            "is_shared": False,
            "is_org_shared": False,
            "is_ext_shared": False,
            "is_pending_ext_shared": False,
            "pending_shared": [],
            "context_team_id": self.team_id,
            "updated": channel.created * 1000,
            "parent_conversation": None,
            "creator": channel.creator,
            "shared_team_ids": [self.team_id],
            "is_member": BOT_USER_ID in channel.members,
            "topic": {"value": channel.topic, "creator": channel.creator if channel.topic else "", "last_set": 0},
            "purpose": {
                "value": channel.purpose,
                "creator": channel.creator if channel.purpose else "",
                "last_set": 0,
            },
            "previous_names": [],
        }
        if num_members:
            obj["num_members"] = len(channel.members)
        return obj

    def _bot_must_be_in(self, channel: Channel) -> None:
        if BOT_USER_ID not in channel.members:
            raise _err("not_in_channel")

    # ---- methods ---------------------------------------------------------------------------------------------

    def _m_auth_test(self, params: dict[str, Any]) -> dict[str, Any]:
        return _ok(
            url=f"https://{TEAM_DOMAIN}.slack.com/",
            team="copbot test workspace",
            user="copbot",
            team_id=self.team_id,
            user_id=self.bot_user_id,
            bot_id=self.bot_id,
            is_enterprise_install=False,
        )

    def _m_apps_connections_open(self, params: dict[str, Any]) -> dict[str, Any]:
        if self.socket is None:
            raise self._violate("apps.connections.open", "no_socket_fake", "attach a FakeSocketMode first")
        return _ok(url=self.socket.new_ws_url())

    def _m_conversations_create(self, params: dict[str, Any]) -> dict[str, Any]:
        private = _truthy(params.get("is_private"))
        self._require_scope("conversations.create", "private" if private else "public")
        name = str(params.get("name") or "")
        if not name:
            raise _err("invalid_name_required")
        if len(name) > 80:
            raise _err("invalid_name_maxlength")
        if not _CHANNEL_NAME.fullmatch(name):
            raise _err("invalid_name_specials")
        if self.channel_named(name) is not None:
            raise _err("name_taken")
        channel = Channel(
            id=self._new_id("C"),
            name=name,
            kind="private" if private else "public",
            created=int(time.time()),
            members=[BOT_USER_ID],
        )
        self.channels[channel.id] = channel
        return _ok(channel=self._channel_obj(channel))

    def _m_conversations_invite(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(params.get("channel"), "conversations.invite")
        self._bot_must_be_in(channel)
        users = _split_ids(params.get("users"))
        if not users:
            raise _err("no_user")
        if BOT_USER_ID in users:
            raise _err("cant_invite_self")
        for user_id in users:
            self._user(user_id)
        new = [u for u in users if u not in channel.members]
        if not new:
            raise _err(
                "already_in_channel", errors=[{"user": u, "ok": False, "error": "already_in_channel"} for u in users]
            )
        channel.members.extend(new)
        return _ok(channel=self._channel_obj(channel))

    def _m_conversations_kick(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(params.get("channel"), "conversations.kick")
        self._bot_must_be_in(channel)
        user_id = str(params.get("user") or "")
        if user_id == BOT_USER_ID:
            raise _err("cant_kick_self")
        if user_id not in channel.members:
            raise _err("not_in_channel")
        channel.members.remove(user_id)
        return _ok()

    def _m_conversations_setTopic(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(params.get("channel"), "conversations.setTopic")
        self._bot_must_be_in(channel)
        topic = str(params.get("topic") or "")
        if len(topic) > 250:
            raise _err("too_long")
        channel.topic = topic
        return _ok(channel=self._channel_obj(channel))

    def _m_conversations_setPurpose(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(params.get("channel"), "conversations.setPurpose")
        self._bot_must_be_in(channel)
        purpose = str(params.get("purpose") or "")
        if len(purpose) > 250:
            raise _err("too_long")
        channel.purpose = purpose
        return _ok(channel=self._channel_obj(channel))

    def _m_conversations_archive(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(params.get("channel"), "conversations.archive", allow_archived=True)
        if channel.archived:
            raise _err("already_archived")
        if channel.id == GENERAL_CHANNEL_ID:
            raise _err("cant_archive_general")
        self._bot_must_be_in(channel)
        channel.archived = True
        return _ok()

    def _m_conversations_info(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(params.get("channel"), "conversations.info", allow_archived=True)
        return _ok(channel=self._channel_obj(channel, num_members=_truthy(params.get("include_num_members"))))

    def _m_conversations_list(self, params: dict[str, Any]) -> dict[str, Any]:
        """Slack's channel listing: `types` (default public_channel), `exclude_archived`, cursor paging."""
        kinds = {"public_channel": "public", "private_channel": "private", "mpim": "mpim", "im": "im"}
        wanted = {kinds.get(t.strip(), "?") for t in str(params.get("types") or "public_channel").split(",")}
        for kind in wanted - {"?"}:
            self._require_scope("conversations.info", kind)  # Slack asks the same *:read scopes as for info
        found = [
            c for c in self.channels.values()
            if c.kind in wanted and not (c.archived and _truthy(params.get("exclude_archived")))
            and (c.kind == "public" or BOT_USER_ID in c.members)
        ]  # fmt: skip
        page, next_cursor = _page(found, params, most=1000)
        return _ok(channels=[self._channel_obj(c) for c in page], response_metadata={"next_cursor": next_cursor})

    def _m_conversations_members(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(params.get("channel"), "conversations.members", allow_archived=True)
        page, next_cursor = _page(channel.members, params)
        return _ok(members=page, response_metadata={"next_cursor": next_cursor})

    def _m_conversations_join(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(params.get("channel"), "conversations.join")
        if channel.kind != "public":
            raise _err("method_not_supported_for_channel_type")
        body = _ok(channel=self._channel_obj(channel))
        if BOT_USER_ID in channel.members:
            body["warning"] = "already_in_channel"
            body["response_metadata"] = {"warnings": ["already_in_channel"]}
        else:
            channel.members.append(BOT_USER_ID)
            body["channel"] = self._channel_obj(channel)
        return body

    def _m_conversations_open(self, params: dict[str, Any]) -> dict[str, Any]:
        if params.get("channel"):
            channel = self._channel(params["channel"], "conversations.open")
            return _ok(channel={"id": channel.id}, no_op=True, already_open=True)
        users = _split_ids(params.get("users"))
        if not users:
            raise _err("users_list_not_supplied")
        if len(users) > 8:
            raise _err("too_many_users")
        if len(users) == 1:
            self._require_scope("conversations.open", "im")
            existed = self.im_channel_for(users[0]) in self.channels
            channel = self._open_im(users[0])
        else:
            self._require_scope("conversations.open", "mpim")
            for user_id in users:
                self._user(user_id)
            members = [BOT_USER_ID, *sorted(users)]
            name = "mpdm-" + "--".join(self.users[u]["name"] for u in members) + "-1"
            found = self.channel_named(name)
            existed = found is not None
            channel = found or Channel(
                id=self._new_id("G"), name=name, kind="mpim", created=int(time.time()), members=members
            )
            self.channels[channel.id] = channel
        if _truthy(params.get("return_im")):
            return _ok(channel=self._channel_obj(channel), already_open=existed, no_op=existed)
        return _ok(channel={"id": channel.id}, already_open=existed, no_op=existed)

    def _message_obj(self, msg: Message) -> dict[str, Any]:
        obj: dict[str, Any] = {
            "type": "message",
            "text": msg.text,
            "user": msg.user,
            "ts": msg.ts,
            "team": self.team_id,
        }
        if msg.bot_id:
            obj["bot_id"] = msg.bot_id
            obj["app_id"] = self.app_id
        if msg.blocks is not None:
            obj["blocks"] = msg.blocks
        if msg.thread_ts:
            obj["thread_ts"] = msg.thread_ts
        if msg.metadata is not None:
            obj["metadata"] = msg.metadata
        if msg.edited:
            obj["edited"] = {"user": msg.user, "ts": msg.ts}
        return obj

    def _message_content(self, params: dict[str, Any]) -> tuple[str, list[Any] | None]:
        text = str(params.get("text") or params.get("markdown_text") or "")
        blocks = _as_list(params.get("blocks"))
        attachments = _as_list(params.get("attachments"))
        if not text and not blocks and not attachments:
            raise _err("no_text")
        if len(text) > 40_000:
            raise _err("msg_too_long")
        if blocks is not None and (len(blocks) > 50 or not all(isinstance(b, dict) and "type" in b for b in blocks)):
            raise _err("invalid_blocks")
        return text, blocks

    def _m_chat_postMessage(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(params.get("channel"), "chat.postMessage", allow_user=True)
        if BOT_USER_ID not in channel.members:
            public_ok = channel.kind == "public" and self.scopes is not None and "chat:write.public" in self.scopes
            if not public_ok:
                raise _err("not_in_channel")
        text, blocks = self._message_content(params)
        metadata = params.get("metadata")
        msg = Message(
            channel=channel.id,
            ts=self._new_ts(),
            user=BOT_USER_ID,
            text=text,
            blocks=blocks,
            thread_ts=str(params["thread_ts"]) if params.get("thread_ts") else None,
            metadata=_as_dict(metadata) if metadata else None,
            bot_id=self.bot_id,
        )
        self.messages.append(msg)
        return _ok(channel=channel.id, ts=msg.ts, message=self._message_obj(msg))

    def _m_chat_postEphemeral(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(params.get("channel"), "chat.postEphemeral")
        user_id = str(params.get("user") or "")
        self._user(user_id)
        if channel.kind != "im":
            self._bot_must_be_in(channel)
            if user_id not in channel.members:
                raise _err("user_not_in_channel")
        text, blocks = self._message_content(params)
        message_ts = self._new_ts()
        thread_ts = str(params["thread_ts"]) if params.get("thread_ts") else None
        self.ephemerals.append(Ephemeral(channel.id, user_id, text, blocks, thread_ts, message_ts))
        return _ok(message_ts=message_ts)

    def _find_message(self, channel_id: str, ts: str) -> Message:
        for msg in self.messages:
            if msg.channel == channel_id and msg.ts == ts:
                return msg
        raise _err("message_not_found")

    def _m_chat_update(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(params.get("channel"), "chat.update")
        msg = self._find_message(channel.id, str(params.get("ts")))
        if msg.user != BOT_USER_ID:
            raise _err("cant_update_message")
        text, blocks = self._message_content(params)
        msg.text, msg.blocks, msg.edited = text, blocks, True
        if params.get("metadata"):
            msg.metadata = _as_dict(params["metadata"])
        return _ok(channel=channel.id, ts=msg.ts, text=msg.text, message=self._message_obj(msg))

    def _m_chat_getPermalink(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(params.get("channel"), "chat.getPermalink", allow_archived=True)
        msg = self._find_message(channel.id, str(params.get("message_ts")))
        return _ok(channel=channel.id, permalink=self.permalink(channel.id, msg.ts))

    def _m_reactions_add(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(params.get("channel"), "reactions.add")
        msg = self._find_message(channel.id, str(params.get("timestamp")))
        key = (channel.id, msg.ts, str(params.get("name")), BOT_USER_ID)
        if key in self.reactions:
            raise _err("already_reacted")
        self.reactions.append(key)
        return _ok()

    def _m_users_info(self, params: dict[str, Any]) -> dict[str, Any]:
        self._require_scope("users.info", "*")
        user = copy.deepcopy(self._user(str(params.get("user") or "")))
        if self.scopes is not None and "users:read.email" not in self.scopes:
            user["profile"].pop("email", None)
        return _ok(user=user)

    def _view(self, params: dict[str, Any], *, view_id: str | None = None, root: str | None = None) -> dict[str, Any]:
        view = _as_dict(params.get("view"))
        kind = view.get("type")
        if kind not in ("modal", "home"):
            raise _err("invalid_arguments", response_metadata={"messages": ["[ERROR] view.type must be modal or home"]})
        blocks = view.get("blocks")
        if not isinstance(blocks, list) or len(blocks) > 100:
            raise _err("invalid_arguments", response_metadata={"messages": ["[ERROR] view.blocks: 0..100 blocks"]})
        if kind == "modal" and not isinstance(view.get("title"), dict):
            raise _err("invalid_arguments", response_metadata={"messages": ["[ERROR] modal needs a title"]})
        view_id = view_id or self._new_id("V")
        stored: dict[str, Any] = {
            "id": view_id,
            "team_id": self.team_id,
            "type": kind,
            "blocks": blocks,
            "private_metadata": view.get("private_metadata", ""),
            "callback_id": view.get("callback_id", ""),
            "state": {"values": {}},
            "hash": f"{int(time.time())}.{next(self._ids):08d}",
            "title": view.get("title"),
            "clear_on_close": bool(view.get("clear_on_close", False)),
            "notify_on_close": bool(view.get("notify_on_close", False)),
            "close": view.get("close"),
            "submit": view.get("submit"),
            "previous_view_id": None,
            "root_view_id": root or view_id,
            "app_id": self.app_id,
            "external_id": view.get("external_id", ""),
            "app_installed_team_id": self.team_id,
            "bot_id": self.bot_id,
        }
        self.views[view_id] = stored
        return stored

    def _m_views_open(self, params: dict[str, Any]) -> dict[str, Any]:
        return _ok(view=self._view(params))

    def _m_views_push(self, params: dict[str, Any]) -> dict[str, Any]:
        return _ok(view=self._view(params))

    def _m_views_update(self, params: dict[str, Any]) -> dict[str, Any]:
        view_id = params.get("view_id")
        if not view_id and params.get("external_id"):
            view_id = next((v["id"] for v in self.views.values() if v["external_id"] == params["external_id"]), None)
        if not view_id or view_id not in self.views:
            raise _err("not_found")
        old = self.views[view_id]
        if params.get("hash") and params["hash"] != old["hash"]:
            raise _err("hash_conflict")
        return _ok(view=self._view(params, view_id=view_id, root=old["root_view_id"]))

    def _m_views_publish(self, params: dict[str, Any]) -> dict[str, Any]:
        user_id = str(params.get("user_id") or "")
        self._user(user_id)
        view = self._view(params, view_id=self.home_views.get(user_id, {}).get("id"))
        if view["type"] != "home":
            raise _err("invalid_arguments", response_metadata={"messages": ["[ERROR] views.publish needs type home"]})
        self.home_views[user_id] = view
        return _ok(view=view)

    def _m_files_getUploadURLExternal(self, params: dict[str, Any]) -> dict[str, Any]:
        self._require_scope("files.getUploadURLExternal", "*")
        length = int(params["length"])
        if length <= 0:
            raise _err("invalid_arguments")
        file_id = self._new_id("F")
        self.files[file_id] = UploadedFile(id=file_id, filename=str(params["filename"]), length=length)
        return _ok(upload_url=f"{self.base}/upload/v1/{file_id}", file_id=file_id)

    def receive_upload(self, file_id: str, data: bytes) -> tuple[int, str]:
        with self._lock:
            upload = self.files.get(file_id)
            if upload is None:
                return 404, "unknown upload"
            upload.data = data
            return 200, f"OK - {len(data)}"

    def _m_files_completeUploadExternal(self, params: dict[str, Any]) -> dict[str, Any]:
        self._require_scope("files.completeUploadExternal", "*")
        entries = _as_list(params.get("files")) or []
        targets = _split_ids(params.get("channels")) or _split_ids(params.get("channel_id"))
        channels = [self._channel(c, "files.completeUploadExternal") for c in targets]
        for channel in channels:
            self._bot_must_be_in(channel)
        out: list[dict[str, Any]] = []
        for entry in entries:
            upload = self.files.get(str(entry.get("id")))
            if upload is None:
                raise _err("file_not_found")
            if upload.data is None:
                raise _err("invalid_arguments", detail=f"no bytes were POSTed to the upload_url of {upload.id}")
            upload.title = entry.get("title") or upload.filename
            upload.completed = True
            upload.channels = [c.id for c in channels]
            out.append(
                {
                    "id": upload.id,
                    "created": int(time.time()),
                    "timestamp": int(time.time()),
                    "name": upload.filename,
                    "title": upload.title,
                    "mimetype": "text/plain",
                    "filetype": upload.filename.rsplit(".", 1)[-1] if "." in upload.filename else "text",
                    "user": BOT_USER_ID,
                    "user_team": self.team_id,
                    "size": len(upload.data),
                    "is_external": False,
                    "is_public": any(c.kind == "public" for c in channels),
                    "url_private": f"https://files.slack.com/files-pri/{self.team_id}-{upload.id}/{upload.filename}",
                    "permalink": f"https://{TEAM_DOMAIN}.slack.com/files/{BOT_USER_ID}/{upload.id}/{upload.filename}",
                    "channels": [c.id for c in channels if c.kind == "public"],
                    "groups": [c.id for c in channels if c.kind in ("private", "mpim")],
                    "ims": [c.id for c in channels if c.kind == "im"],
                }
            )
        for channel in channels:
            msg = Message(
                channel=channel.id,
                ts=self._new_ts(),
                user=BOT_USER_ID,
                text=str(params.get("initial_comment") or ""),
                thread_ts=str(params["thread_ts"]) if params.get("thread_ts") else None,
                files=[f["id"] for f in out],
                bot_id=self.bot_id,
            )
            self.messages.append(msg)
        return _ok(files=out)

    def _m_conversations_history(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(params.get("channel"), "conversations.history", allow_archived=True)
        self._bot_must_be_in(channel)
        msgs = [m for m in self.messages_in(channel.id) if m.thread_ts in (None, m.ts)]
        latest, oldest = params.get("latest"), params.get("oldest")
        inclusive = _truthy(params.get("inclusive"))

        def within(ts: str) -> bool:
            t = float(ts)
            if latest and (t > float(latest) or (t == float(latest) and not inclusive)):
                return False
            return not (oldest and (t < float(oldest) or (t == float(oldest) and not inclusive)))

        chosen = [self._message_obj(m) for m in sorted(msgs, key=lambda m: float(m.ts), reverse=True) if within(m.ts)]
        limit = int(params.get("limit") or 100)
        return _ok(messages=chosen[:limit], has_more=len(chosen) > limit, pin_count=0)

    def _m_conversations_replies(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(params.get("channel"), "conversations.replies", allow_archived=True)
        self._bot_must_be_in(channel)
        root = self._find_message(channel.id, str(params.get("ts")))
        thread = [root, *[m for m in self.messages_in(channel.id, thread_ts=root.ts) if m.ts != root.ts]]
        return _ok(messages=[self._message_obj(m) for m in thread], has_more=False)


class _RequestHandler(BaseHTTPRequestHandler):
    owner: FakeSlack
    server_version = "FakeSlack/1.0"

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the fake's records are the log."""

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def _serve(self, http_method: str) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if parts.path.startswith("/upload/v1/"):
            status, text = self.owner.receive_upload(parts.path.rsplit("/", 1)[-1], raw)
            self._reply(status, text.encode(), "text/plain; charset=utf-8", {})
            return
        if parts.path.startswith("/response/"):
            # response_url: Slack's hooks endpoint for replying to a command or an interaction.
            self.owner.receive_response(parts.path, raw)
            self._reply(200, b"ok", "text/plain; charset=utf-8", {})
            return
        if not parts.path.startswith("/api/"):
            self._reply(404, b"not found", "text/plain", {})
            return
        method = parts.path[len("/api/") :]
        content_type = self.headers.get("Content-Type") or ""
        try:
            params = self._params(parts.query, raw, content_type)
        except ValueError:
            self._json(200, {"ok": False, "error": "invalid_json"}, {})
            return
        token = params.pop("token", None)
        auth = self.headers.get("Authorization") or ""
        if auth.startswith("Bearer "):
            token = auth[len("Bearer ") :]
        status, body, headers = self.owner.handle_api(
            http_method=http_method, method=method, params=params, token=token, content_type=content_type
        )
        if body is None:  # scripted network failure: drop the connection without a response
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        self._json(status, body, headers)

    @staticmethod
    def _params(query: str, raw: bytes, content_type: str) -> dict[str, Any]:
        params: dict[str, Any] = {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}
        if content_type.startswith("application/json"):
            if raw:
                body = json.loads(raw)
                if not isinstance(body, dict):
                    raise ValueError("JSON body must be an object")
                params.update(body)
        elif raw:
            params.update({k: v[-1] for k, v in parse_qs(raw.decode(), keep_blank_values=True).items()})
        return params

    def _json(self, status: int, body: dict[str, Any], headers: dict[str, str]) -> None:
        self._reply(status, json.dumps(body).encode(), "application/json; charset=utf-8", headers)

    def _reply(self, status: int, data: bytes, content_type: str, headers: dict[str, str]) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)


@contextlib.contextmanager
def running_fake_slack(**kwargs: Any) -> Iterator[FakeSlack]:
    """Start a FakeSlack for the duration of a with-block."""
    with FakeSlack(**kwargs) as fake:
        yield fake
