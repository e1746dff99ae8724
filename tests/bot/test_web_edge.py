"""The HTTP edge refuses malformed requests in order (size, then signature or token, then parsing) with a 4xx, one
warning line with a fixed reason, no traceback and nothing stored; a fuzz test throws bodies, headers and content
types at `POST /slack/events` and `POST /api/messages` and sees only 2xx/4xx answers and no error in the log."""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent import futures
from concurrent.futures import Executor, Future
from typing import Any
from urllib.parse import quote, urlencode

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from slack_bolt import App
from sqlalchemy import Engine, func
from sqlmodel import Session, SQLModel, select

from bot.web import MAX_BODY_BYTES, MAX_JSON_DEPTH, create_web_app
from tests.bot.slack import conftest as slack_conftest
from tests.bot.teams import conftest as teams_conftest
from tests.bot.teams.conftest import CARD_SUBMIT_MESSAGE, MEMBER_ADDED, PERSONAL_MESSAGE, TASK_FETCH, TeamsWorld
from tests.fakes import slack_signing as signing
from tests.fakes.slack_api import FakeSlack
from tests.fakes.teams import recorded_activity

# The fixtures of the Slack and Teams adapter tests, shared rather than copied.
engine = slack_conftest.engine
slack = slack_conftest.slack
world = teams_conftest.world

FORM = "application/x-www-form-urlencoded"
JSON = "application/json"


# --- the wire ------------------------------------------------------------------------------------------------------


def post_slack(app: App, body: bytes, headers: Mapping[str, str | bytes]) -> httpx.Response:
    """POST /slack/events to the real ASGI app, in process (Bolt still runs in Starlette's worker thread)."""
    web = create_web_app(slack_app=app, slack_signing_secret=signing.SIGNING_SECRET, healthy=lambda: True)

    async def send() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=web), base_url="https://copbot.test") as c:
            # As bytes, so a test can send header bytes that are not ASCII, as a client on the wire can.
            raw = [(k.encode(), v if isinstance(v, bytes) else v.encode()) for k, v in headers.items()]
            return await c.post("/slack/events", content=body, headers=raw)

    return asyncio.run(send())


def signed(body: bytes, content_type: str, *, timestamp: str | None = None) -> dict[str, str]:
    """Slack's headers for `body`, signed over its bytes exactly as Slack signs them."""
    timestamp = timestamp or str(int(time.time()))
    return {
        "Content-Type": content_type,
        "X-Slack-Request-Timestamp": timestamp,
        "X-Slack-Signature": signing.signature(secret=signing.SIGNING_SECRET, timestamp=timestamp, body=body),
    }


def nested(depth: int) -> bytes:
    """A JSON object `depth` levels deep: {"a": {"a": ... }}."""
    return ('{"a": ' * depth + "1" + "}" * depth).encode()


def stored_rows(engine: Engine) -> dict[str, int]:
    """Every copbot table that holds a row, with its count."""
    counts = {}
    with Session(engine) as db:
        for table in SQLModel.metadata.sorted_tables:
            count = db.exec(select(func.count()).select_from(table)).one()
            if count:
                counts[table.name] = count
    return counts


def assert_refused_cleanly(caplog: pytest.LogCaptureFixture, reason: str) -> None:
    """One warning line from the edge with its fixed reason; no error, no traceback anywhere."""
    assert [r.levelname for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert [r.name for r in caplog.records if r.exc_info or r.exc_text] == []
    edge = [r.getMessage() for r in caplog.records if r.name == "bot.web"]
    assert len(edge) == 1 and edge[0].endswith(f": {reason}"), edge


# --- Slack: each malformed request -----------------------------------------------------------------------------

EVENT = json.dumps(signing.event_callback("message", text="hello", channel="D0ALICE", channel_type="im")).encode()
COMMAND = signing.slash_command("help").encode()
WIDE = "１２３".encode()  # fullwidth digits as UTF-8 bytes: not the ASCII digits a timestamp is made of


@pytest.mark.parametrize(
    ("body", "headers", "status", "reason"),
    [
        pytest.param(b"x" * (MAX_BODY_BYTES + 1), None, 413, "body too large", id="over-the-limit"),
        pytest.param(EVENT, {"Content-Length": str(MAX_BODY_BYTES + 1)}, 413, "body too large", id="declared-huge"),
        pytest.param(EVENT, {"Content-Length": "12abc"}, 400, "malformed Content-Length", id="bad-content-length"),
        pytest.param(EVENT, {"X-Slack-Request-Timestamp": "soon"}, 401, "malformed timestamp", id="timestamp-word"),
        pytest.param(EVENT, {"X-Slack-Request-Timestamp": "9" * 5000}, 401, "malformed timestamp", id="timestamp-huge"),
        pytest.param(EVENT, {"X-Slack-Request-Timestamp": WIDE}, 401, "malformed timestamp", id="timestamp-wide"),
        pytest.param(EVENT, {"X-Slack-Signature": "v0=é".encode()}, 401, "bad signature", id="signature-not-ascii"),
        pytest.param(b"\xff\xfe{}", None, 400, "body is not UTF-8", id="invalid-utf-8"),
        pytest.param(b"payload=%7Bnot-json", None, 400, "body is not a Slack payload", id="payload-bad-json"),
        pytest.param(COMMAND, {"Content-Type": JSON}, 400, "body is not a Slack payload", id="form-labelled-json"),
        pytest.param(b"[1, 2]", {"Content-Type": JSON}, 400, "body is not a Slack payload object", id="json-array"),
        pytest.param(b"payload=%5B1%5D", None, 400, "body is not a Slack payload object", id="payload-array"),
        pytest.param(b"[" * 200_000, {"Content-Type": JSON}, 400, "body is not a Slack payload", id="recursion"),
        pytest.param(nested(MAX_JSON_DEPTH + 1), None, 400, "JSON nested too deeply", id="nested-too-deep"),
        pytest.param(
            b'{"type": "event_callback", "event": {"type": "message", "text": "\\ud800"}}',
            {"Content-Type": JSON}, 400, "text with an unpaired surrogate", id="lone-surrogate",
        ),
        pytest.param(
            b'{"type": "view_submission", "view": "V1"}', {"Content-Type": JSON}, 400, "view is not an object",
            id="view-not-an-object",
        ),
        pytest.param(
            b'{"type": "block_actions", "actions": []}', {"Content-Type": JSON}, 400, "actions without an action_id",
            id="no-actions",
        ),
        pytest.param(
            b'{"type": "event_callback", "event": {"type": 7}}', {"Content-Type": JSON}, 400,
            "event.type has the wrong type", id="event-type-number",
        ),
        pytest.param(
            b'{"type": "event_callback", "authorizations": [{"team_id": "T1"}, 3]}', {"Content-Type": JSON}, 400,
            "authorizations is not a list of objects", id="authorization-number",
        ),
    ],
)  # fmt: skip
def test_a_malformed_slack_request_is_refused_with_a_4xx_and_nothing_stored(
    slack: tuple[App, FakeSlack],
    engine: Engine,
    caplog: pytest.LogCaptureFixture,
    body: bytes,
    headers: dict[str, str | bytes] | None,
    status: int,
    reason: str,
) -> None:
    app, fake = slack
    sent: dict[str, str | bytes] = {
        **signed(body, FORM),
        **(headers or {}),
    }  # signed correctly unless the case is the signature

    response = post_slack(app, body, sent)

    assert response.status_code == status
    assert response.json() == {"error": reason}
    assert_refused_cleanly(caplog, reason)
    assert stored_rows(engine) == {}
    assert [c.method for c in fake.calls if c.method != "auth.test"] == []  # auth.test: when the app was built


def test_the_size_is_checked_before_the_signature(
    slack: tuple[App, FakeSlack], caplog: pytest.LogCaptureFixture
) -> None:
    app, _fake = slack

    response = post_slack(app, b"x" * (MAX_BODY_BYTES + 1), {"Content-Type": FORM})  # not signed at all

    assert response.status_code == 413
    assert_refused_cleanly(caplog, "body too large")


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"\xff\xfe{}", id="invalid-utf-8"),
        pytest.param(b"[" * 200_000, id="recursion"),
        pytest.param(b"payload=%7Bnot-json", id="payload-bad-json"),
    ],
)
def test_an_unsigned_malformed_body_is_refused_for_its_signature_before_it_is_read(
    slack: tuple[App, FakeSlack], engine: Engine, caplog: pytest.LogCaptureFixture, body: bytes
) -> None:
    app, _fake = slack

    response = post_slack(app, body, {"Content-Type": JSON, "X-Slack-Request-Timestamp": str(int(time.time()))})

    assert response.status_code == 401
    assert_refused_cleanly(caplog, "not signed")
    assert stored_rows(engine) == {}


def test_a_well_formed_signed_request_still_gets_through(slack: tuple[App, FakeSlack]) -> None:
    app, fake = slack
    request = signing.signed_slash_command("help", response_url=fake.response_url("edge"))

    response = post_slack(app, request.content, request.headers)

    assert response.status_code == 200
    assert "/cop create" in str(fake.wait_for_responses(1)[0]["text"])


def test_bolt_verifies_the_same_signature_the_edge_checked(slack: tuple[App, FakeSlack]) -> None:
    # Slack signs the exact bytes; a body that is the same text in another encoding of it would not verify.
    app, _fake = slack
    body = json.dumps(signing.url_verification("abc123")).encode()

    response = post_slack(app, body, signed(body, JSON))

    assert response.status_code == 200 and response.json() == {"challenge": "abc123"}


# --- Teams: each malformed request -----------------------------------------------------------------------------


def teams_nothing_stored(world: TeamsWorld) -> None:
    assert stored_rows(world.engine) == {}
    assert world.cloud.connector.calls == []


@pytest.mark.parametrize(
    ("body", "headers", "status", "reason"),
    [
        pytest.param(b" " * (MAX_BODY_BYTES + 1), {}, 413, "body too large", id="over-the-limit-unsigned"),
        pytest.param(b"{}", {"Content-Length": str(10**15)}, 413, "body too large", id="declared-huge"),
        pytest.param(None, {}, 401, "no Authorization header", id="no-authorization"),
        pytest.param(None, {"Authorization": "Basic YWxhZGRpbg=="}, 401, "Authorization is not a Bearer token",
                     id="basic-auth"),
        pytest.param(b"\xc3\x28", {"Authorization": "Bearer x"}, 400, "body is not UTF-8", id="invalid-utf-8"),
        pytest.param(b"{'type': 'message'}", {"Authorization": "Bearer x"}, 400, "body is not JSON", id="not-json"),
        pytest.param(b"[1, 2", {"Authorization": "Bearer x"}, 400, "body is not JSON", id="truncated"),
        pytest.param(b"[{}]", {"Authorization": "Bearer x"}, 400, "body is not a JSON object", id="json-array"),
        pytest.param(b'"message"', {"Authorization": "Bearer x"}, 400, "body is not a JSON object", id="json-string"),
        pytest.param(b"[" * 200_000, {"Authorization": "Bearer x"}, 400, "body is not JSON", id="recursion"),
        pytest.param(nested(MAX_JSON_DEPTH + 1), {"Authorization": "Bearer x"}, 400, "JSON nested too deeply",
                     id="nested-too-deep"),
        pytest.param(b'{"type": "message", "text": "\\udfff"}', {"Authorization": "Bearer x"}, 400,
                     "text with an unpaired surrogate", id="lone-surrogate"),
        pytest.param(b'{"type": "message", "1e99999": 1' + b"9" * 5000 + b"}", {"Authorization": "Bearer x"}, 400,
                     "body is not JSON", id="number-too-long"),
    ],
)  # fmt: skip
def test_a_malformed_teams_request_is_refused_with_a_4xx_and_nothing_stored(
    world: TeamsWorld,
    caplog: pytest.LogCaptureFixture,
    body: bytes | None,
    headers: dict[str, str],
    status: int,
    reason: str,
) -> None:
    content = body if body is not None else json.dumps(world.personal_message("create Falls")).encode()

    response = world.post_raw(content, {"Content-Type": JSON, **headers})

    assert response.status_code == status
    assert response.json() == {"error": reason}
    assert_refused_cleanly(caplog, reason)
    teams_nothing_stored(world)


def test_a_well_formed_teams_activity_still_gets_through(world: TeamsWorld) -> None:
    assert "/cop create" in world.say("help")


# --- fuzz ----------------------------------------------------------------------------------------------------------

FUZZ = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,  # the same examples on every run, so CI is stable
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)


PINNED = frozenset({"response_url", "serviceUrl"})
"""Fields left as recorded: the platform is trusted to say where replies go, and a fuzzed address would send the
bot's replies off the loopback fakes."""


def _paths(value: Any, prefix: tuple[Any, ...] = (), depth: int = 3) -> Iterator[tuple[Any, ...]]:
    """Every path into a recorded payload, `depth` levels down: the places a fuzzed value can replace."""
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in items:
        if key in PINNED:
            continue
        yield (*prefix, key)
        if depth > 1:
            yield from _paths(child, (*prefix, key), depth - 1)


def _replace(payload: Any, path: tuple[Any, ...], value: Any) -> Any:
    changed = copy.deepcopy(payload)
    target = changed
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return changed


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


def mutations(templates: list[Any]) -> st.SearchStrategy[Any]:
    """A recorded payload with one field (up to three levels down) replaced by any JSON value."""

    @st.composite
    def mutate(draw: st.DrawFn) -> Any:
        template = draw(st.sampled_from(templates))
        path = draw(st.sampled_from(list(_paths(template))))
        return _replace(template, path, draw(json_values))

    return mutate()


def slack_bodies(fake: FakeSlack) -> st.SearchStrategy[tuple[bytes, str]]:
    """(body, the content type it would be sent with): junk, JSON, forms, and recorded payloads changed a little."""
    events = [
        signing.event_callback(kind)
        for kind in ("message", "app_mention", "reaction_added", "member_joined_channel", "app_home_opened")
    ]
    interactive = [
        signing.interactive("block_actions", response_url=fake.response_url("fuzz")),
        signing.interactive("view_submission", view={"callback_id": "story", "state": {"values": {}}}),
        signing.interactive("message_action", callback_id="save_as_story", response_url=fake.response_url("fuzz")),
    ]
    command = signing.slash_command_fields("help", response_url=fake.response_url("fuzz"))

    def form(fields: dict[str, Any]) -> bytes:
        return urlencode({k: v if isinstance(v, str) else json.dumps(v) for k, v in fields.items()}).encode()

    changed_event = st.tuples(mutations(events).map(lambda e: json.dumps(e).encode()), st.just(JSON))
    changed_interaction = st.tuples(
        mutations(interactive).map(lambda p: signing.interactive_body(p).encode()), st.just(FORM)
    )
    changed_command = st.tuples(mutations([command]).map(form), st.just(FORM))
    return st.one_of(
        # Slack's own payloads with one field changed reach furthest (signed, they get past the signature): drawn
        # as often as the junk.
        changed_event,
        changed_interaction,
        changed_command,
        changed_event,
        changed_interaction,
        st.tuples(st.binary(max_size=300), st.sampled_from([JSON, FORM, "application/octet-stream"])),
        st.tuples(st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")), st.just("text/plain")),
        st.tuples(json_values.map(lambda v: json.dumps(v).encode()), st.just(JSON)),
        st.tuples(st.dictionaries(st.text(max_size=10), st.text(max_size=20), max_size=5).map(form), st.just(FORM)),
        st.tuples(json_values.map(lambda v: ("payload=" + quote(json.dumps(v))).encode()), st.just(FORM)),
    )


header_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=30)
content_types = st.sampled_from([JSON, FORM, "text/plain", "", "application/json; charset=utf-8"]) | header_text


class Tracked(Executor):
    """Bolt's lazy-listener executor, remembering what it was given, so each example can wait for its listeners."""

    def __init__(self, inner: Executor) -> None:
        self.inner = inner
        self.futures: list[Future[Any]] = []

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future = self.inner.submit(fn, *args, **kwargs)
        self.futures.append(future)
        return future

    def wait(self) -> None:
        futures.wait(self.futures)
        self.futures.clear()


def test_fuzzed_slack_requests_get_only_2xx_or_4xx_and_no_error_is_logged(
    slack: tuple[App, FakeSlack], caplog: pytest.LogCaptureFixture
) -> None:
    app, fake = slack
    lazy = app.listener_runner.lazy_listener_runner
    listeners = lazy.executor = Tracked(lazy.executor)  # type: ignore[attr-defined]

    @FUZZ
    @given(
        body=slack_bodies(fake),
        how=st.sampled_from(["signed", "signed", "signed", "unsigned", "bad-signature", "odd-timestamp"]),
        content_type=st.none() | content_types,
        timestamp=header_text,
        extra=st.dictionaries(
            st.sampled_from(["X-Slack-Retry-Num", "X-Slack-Retry-Reason", "Accept", "User-Agent"]), header_text
        ),
    )
    def run(body: tuple[bytes, str], how: str, content_type: str | None, timestamp: str, extra: dict[str, str]) -> None:
        caplog.clear()
        raw, natural = body
        headers = {**extra, **signed(raw, content_type if content_type is not None else natural)}
        if how == "unsigned":
            del headers["X-Slack-Signature"]
        elif how == "bad-signature":
            headers["X-Slack-Signature"] = headers["X-Slack-Signature"][:-2] + "00"
        elif how == "odd-timestamp":
            headers["X-Slack-Request-Timestamp"] = timestamp

        response = post_slack(app, raw, headers)
        listeners.wait()

        assert response.status_code < 300 or 400 <= response.status_code < 500, response.status_code
        errors = [f"{r.name}: {r.getMessage()}" for r in caplog.records if r.levelno >= logging.ERROR]
        assert errors == []

    try:
        run()
    finally:
        fake.take_violations()  # fuzzed payloads make calls Slack's contract checker flags; not this test's point


TEAMS_ACTIVITIES = [
    recorded_activity(name) for name in (PERSONAL_MESSAGE, CARD_SUBMIT_MESSAGE, TASK_FETCH, MEMBER_ADDED)
]


@st.composite
def teams_bodies(draw: st.DrawFn, world: TeamsWorld) -> tuple[bytes, dict[str, Any] | None]:
    """(body, the activity it holds if any): junk, JSON, and recorded activities re-addressed and changed a little."""
    kind = draw(st.sampled_from(["binary", "text", "json", "activity", "activity"]))
    if kind == "binary":
        return draw(st.binary(max_size=300)), None
    if kind == "text":
        return draw(st.text(max_size=200)).encode("utf-8", "surrogatepass"), None
    if kind == "json":
        value = draw(json_values)
        return json.dumps(value).encode(), value if isinstance(value, dict) else None
    addressed = [world._address(a, person=world.alice) for a in TEAMS_ACTIVITIES]
    activity = draw(mutations(addressed))
    return json.dumps(activity).encode(), activity


def test_fuzzed_teams_requests_get_only_2xx_or_4xx_and_no_error_is_logged(
    world: TeamsWorld, caplog: pytest.LogCaptureFixture
) -> None:
    @FUZZ
    @given(
        body=teams_bodies(world),
        auth=st.sampled_from(["token", "token", "none", "basic", "junk-bearer"]),
        content_type=st.none() | content_types,
    )
    def run(body: tuple[bytes, dict[str, Any] | None], auth: str, content_type: str | None) -> None:
        caplog.clear()
        raw, activity = body
        headers = {"Content-Type": content_type} if content_type is not None else {}
        if auth == "token":
            service_url = (activity or {}).get("serviceUrl")
            url = service_url if isinstance(service_url, str) else world.cloud.connector.service_url
            headers["Authorization"] = f"Bearer {world.cloud.keys.mint(service_url=url, now=world.clock.now())}"
        elif auth == "basic":
            headers["Authorization"] = "Basic YWxhZGRpbg=="
        elif auth == "junk-bearer":
            headers["Authorization"] = "Bearer not.a.jwt"

        response = world.post_raw(raw, headers)

        # 501 is the Bot Framework's own answer to an invoke a bot does not handle (botbuilder's ActivityHandler).
        unhandled_invoke = response.status_code == 501 and (activity or {}).get("type") == "invoke"
        assert response.status_code < 300 or 400 <= response.status_code < 500 or unhandled_invoke, response.status_code
        errors = [f"{r.name}: {r.getMessage()}" for r in caplog.records if r.levelno >= logging.ERROR]
        assert errors == []

    try:
        run()
    finally:  # fuzzed activities make replies the fakes' swagger checks flag; they are not this test's point
        world.cloud.connector.violations.clear()
        world.cloud.graph.violations.clear()
