"""A Teams channel simulator for adapter tests: recorded activities, re-addressed and signed, posted to the web app.

`TeamsWorld` holds one tenant and one team (Graph team + its General channel on the Bot Connector fake) with five
people who are in the team; activities are built from the recorded Teams traffic with our ids and serviceUrl, signed
with the fake channel's key, and posted to `POST /api/messages` of the real Starlette app. An inbox worker runs on a
thread beside it, as the worker process does in production (`world`; `world_without_worker` has none), and `post`
waits until it has run what the request wrote down, so a test reads what copbot sent right after posting.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import datetime as dt
import itertools
import json
import secrets
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT6
from sqlalchemy import Engine, and_, or_
from sqlmodel import Session, col, select

from bot.config import Settings, load_settings
from bot.teams.inbox import teams_kinds
from bot.teams.runtime import TeamsRuntime, build_teams
from bot.web import create_web_app
from bot.worker import Worker, running
from storage import teams as refs
from storage.engine import make_engine
from storage.inbox import InboxItem, InboxStatus
from tests.fakes.teams import (
    FakeTeam,
    FakeTeamsCloud,
    RecordingSleep,
    SettableClock,
    graph_member,
    recorded_activity,
    synthetic_members,
)
from tests.reference import reference_path

CARD_TYPE = "application/vnd.microsoft.card.adaptive"

CHANNEL_MESSAGE = "20191020020553704-request-integrationBot.json"  # `<at>My Combined</at>1` in a channel
PERSONAL_MESSAGE = "20191021205338231-request-integrationBot.json"  # `file` in a 1:1 chat
CARD_SUBMIT_MESSAGE = "20191020024307637-request-integrationBot.json"  # Action.Submit data as `value`
MEMBER_ADDED = "20191019181214767-request-integrationBot.json"  # teamMemberAdded
MEMBER_REMOVED = "20191019181218849-request-integrationBot.json"  # teamMemberRemoved
TASK_FETCH = "20191020021852930-request-integrationBot.json"
TASK_SUBMIT = "20191020021910141-request-integrationBot.json"
FETCH_TASK = "20191030203551783-request-integrationBot.json"  # composeExtension/fetchTask
SUBMIT_ACTION = "20191019180710668-request-integrationBot.json"  # composeExtension/submitAction with `value.data`

# Teams' people picker (`Input.ChoiceSet` with `choices.data`), which Teams documents for cards from version 1.2 and
# Adaptive Cards standardised in 1.6: the 1.5 schema forbids unknown properties, so its definition is added, as
# microsoft/AdaptiveCards @ 020577953b590f5df59cd725c9468944484c9a10 `schemas/1.6.0/adaptive-card.json` has it.
DATA_QUERY_1_6 = {
    "description": "Data to be sent to the bot to fetch dynamic choices",
    "properties": {
        "type": {"enum": ["Data.Query"]},
        "dataset": {"type": "string"},
        "count": {"type": "number"},
        "skip": {"type": "number"},
    },
    "type": "object",
    "additionalProperties": False,
    "required": ["dataset"],
}


@cache
def card_validator() -> jsonschema.Draft6Validator:
    """The Adaptive Cards 1.5 schema plus Teams' people picker, every `$ref` resolved offline from the copy."""
    schema = json.loads(reference_path("adaptive-cards-schema", "1.5.0", "adaptive-card.json").read_text())
    schema["definitions"]["Data.Query"] = DATA_QUERY_1_6
    schema["definitions"]["Input.ChoiceSet"]["properties"]["choices.data"] = {"$ref": "#/definitions/Data.Query"}
    resource = Resource.from_contents(schema, default_specification=DRAFT6)
    registry: Registry[Any] = Registry().with_resource("http://adaptivecards.io/schemas/adaptive-card.json", resource)
    return jsonschema.Draft6Validator(schema, registry=registry)


def card_errors(card: Any) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in card_validator().iter_errors(card)]


def cards_in(activity: Any) -> list[dict[str, Any]]:
    """The Adaptive Cards in an activity (or a dialog response)."""
    found: list[dict[str, Any]] = []
    if isinstance(activity, dict):
        if activity.get("contentType") == CARD_TYPE:
            found.append(activity["content"])
        for value in activity.values():
            found += cards_in(value)
    elif isinstance(activity, list):
        for value in activity:
            found += cards_in(value)
    return found


def text_of(activity: Any) -> str:
    """Every text a person would read in an activity or dialog response (message text and card text)."""
    parts: list[str] = []
    if isinstance(activity, dict):
        for key in ("text", "value", "title", "fallbackText"):
            if isinstance(activity.get(key), str):
                parts.append(activity[key])
        for value in activity.values():
            if isinstance(value, dict | list):
                parts.append(text_of(value))
    elif isinstance(activity, list):
        parts += [text_of(v) for v in activity]
    return "\n".join(p for p in parts if p)


def save_as_story(author: Person, html: str, *, message_id: str = "1764669700123") -> dict[str, Any]:
    """The `value` of the "Save as a story" message action on `author`'s message (`composeExtension/fetchTask`; its
    `submitAction` adds `data`), shaped as Teams documents a message action's invoke: the command, its context and
    the message."""
    payload = {
        "id": message_id,
        "from": {"user": {"id": author.bot_id, "aadObjectId": author.aad, "displayName": author.name}},
        "body": {"contentType": "html", "content": html},
        "linkToMessage": f"https://teams.microsoft.com/l/message/19:x/{message_id}",
    }
    return {"commandId": "saveAsStory", "commandContext": "message", "messagePayload": payload}


def dialog_card(answer: Any) -> dict[str, Any]:
    """The card a `continue` task response shows in the dialog (it must pass the schema)."""
    assert answer["task"]["type"] == "continue", answer
    [card] = cards_in(answer["task"])
    assert card_errors(card) == [], card
    return card


def form_inputs(card: dict[str, Any]) -> dict[str, str]:
    """What a form card's inputs show, by input id (`value`, or "" when empty)."""
    return {e["id"]: e.get("value", "") for e in card["body"] if e["type"].startswith("Input.")}


def problems_shown(card: dict[str, Any]) -> dict[str, str]:
    """The problem shown right under each input (an "Attention" TextBlock just after it), by input id."""
    body = card["body"]
    found: dict[str, str] = {}
    for element, below in itertools.pairwise(body):
        if element["type"].startswith("Input.") and below["type"] == "TextBlock" and below.get("color") == "Attention":
            found[element["id"]] = below["text"]
    return found


def submit_data(card: dict[str, Any]) -> dict[str, Any]:
    """The data of a form card's submit button (copbot's form id, context and people fields)."""
    [submit] = card["actions"]
    return dict(submit["data"])


@dataclass(frozen=True)
class Person:
    bot_id: str  # 29:…
    aad: str
    name: str
    upn: str = ""  # the Entra sign-in name the Bot Connector's roster gives

    def account(self) -> dict[str, str]:
        return {"id": self.bot_id, "name": self.name, "aadObjectId": self.aad}


class TeamsWorld:
    """One tenant, one team with five people, the bot wired to the fakes, and helpers that speak like Teams."""

    def __init__(self, cloud: FakeTeamsCloud, runtime: TeamsRuntime, team: FakeTeam, clock: SettableClock) -> None:
        self.cloud = cloud
        self.runtime = runtime
        self.team = team
        self.clock = clock
        self.worker: Worker | None = None  # the inbox worker running beside the app, if any
        self.team_conversation = f"19:{uuid.uuid4().hex}@thread.tacv2"
        self.people = [
            Person(bot_id=m["id"], aad=m["objectId"], name=m["name"], upn=m["userPrincipalName"])
            for m in cloud.connector.members[self.team_conversation_key]
        ]
        self.app = create_web_app(slack_app=None, healthy=lambda: True, teams_handler=runtime.adapter)

    team_conversation_key = "team"

    @property
    def bot_id(self) -> str:
        return f"28:{self.cloud.app_id}"

    @property
    def alice(self) -> Person:
        return self.people[0]

    @property
    def bob(self) -> Person:
        return self.people[1]

    @property
    def engine(self) -> Engine:
        return self.runtime.container.engine

    # -- activities ----------------------------------------------------------------------------------------------

    def _address(self, activity: dict[str, Any], *, person: Person | None) -> dict[str, Any]:
        activity = copy.deepcopy(activity)
        activity["id"] = activity["id"][:2] + secrets.token_hex(8) if activity.get("id") else secrets.token_hex(8)
        activity["serviceUrl"] = self.cloud.connector.service_url
        activity["recipient"] = {"id": self.bot_id, "name": "copbot"}
        if person is not None:
            activity["from"] = person.account()
        conversation = activity.setdefault("conversation", {})
        conversation["tenantId"] = self.cloud.tenant_id
        channel_data = activity.setdefault("channelData", {})
        channel_data["tenant"] = {"id": self.cloud.tenant_id}
        return activity

    def in_channel(self, activity: dict[str, Any], channel_id: str | None = None) -> dict[str, Any]:
        channel_id = channel_id or self.team_conversation
        root = activity["conversation"]["id"].partition(";")[2]
        activity["conversation"]["id"] = channel_id + (f";{root}" if root else "")
        channel_data = activity["channelData"]
        channel_data["channel"] = {"id": channel_id}
        channel_data["team"] = {"id": self.team_conversation, "name": "Patient Safety", "aadGroupId": self.team.team_id}
        channel_data.pop("teamsChannelId", None)
        channel_data.pop("teamsTeamId", None)
        return activity

    def channel_message(
        self,
        text: str,
        *,
        person: Person | None = None,
        channel_id: str | None = None,
        mentions: tuple[Person, ...] = (),
    ) -> dict[str, Any]:
        """`@copbot <text>` in a channel, like the recorded channel mention (with its mention entity)."""
        activity = self.in_channel(
            self._address(recorded_activity(CHANNEL_MESSAGE), person=person or self.alice), channel_id
        )
        bot_tag = "<at>copbot</at>"
        for other in mentions:
            text = text.replace(f"@{other.name}", f"<at>{other.name}</at>")
        activity["text"] = f"{bot_tag} {text}\n"
        activity["entities"] = [
            {"type": "mention", "text": bot_tag, "mentioned": {"id": self.bot_id, "name": "copbot"}},
            *(
                {"type": "mention", "text": f"<at>{o.name}</at>", "mentioned": {"id": o.bot_id, "name": o.name}}
                for o in mentions
            ),
            {"locale": "en-GB", "country": "GB", "platform": "Web", "type": "clientInfo"},
        ]
        activity["attachments"] = [{"contentType": "text/html", "content": f"<div>{text}</div>"}]
        return activity

    def channel_post(
        self,
        text: str,
        *,
        person: Person,
        channel_id: str,
        thread: str | None = None,
        mentions: tuple[Person, ...] = (),
    ) -> dict[str, Any]:
        """A message in a channel that doesn't mention copbot (Teams sends those once the team granted
        `ChannelMessage.Read.Group`): a reply in the thread started by message `thread`, or a new thread.
        `@Name` of someone in `mentions` becomes a Teams mention of them."""
        activity = self.in_channel(self._address(recorded_activity(CHANNEL_MESSAGE), person=person), channel_id)
        root = thread or activity["id"]
        activity["conversation"]["id"] = f"{channel_id};messageid={root}"
        if thread:
            activity["replyToId"] = thread
        for other in mentions:
            text = text.replace(f"@{other.name}", f"<at>{other.name}</at>")
        activity["text"] = text
        activity["entities"] = [
            *(
                {"type": "mention", "text": f"<at>{o.name}</at>", "mentioned": {"id": o.bot_id, "name": o.name}}
                for o in mentions
            ),
            {"locale": "en-GB", "country": "GB", "platform": "Web", "type": "clientInfo"},
        ]
        activity["attachments"] = [{"contentType": "text/html", "content": f"<p>{text}</p>"}]
        return activity

    def personal_conversation(self, person: Person) -> str:
        return f"a:1{person.bot_id[4:40]}"

    def personal_message(self, text: str, *, person: Person | None = None) -> dict[str, Any]:
        """A message in the person's 1:1 chat with copbot (the recorded personal message)."""
        person = person or self.alice
        activity = self._address(recorded_activity(PERSONAL_MESSAGE), person=person)
        activity["conversation"]["id"] = self.personal_conversation(person)
        activity["text"] = text
        return activity

    def button(self, data: dict[str, Any], *, person: Person | None = None, personal: bool = True) -> dict[str, Any]:
        """A press of a card's Action.Submit: a message whose `value` is the action's data."""
        activity = self._address(recorded_activity(CARD_SUBMIT_MESSAGE), person=person or self.alice)
        activity["value"] = data
        if personal:
            activity["conversation"] = {
                "conversationType": "personal",
                "tenantId": self.cloud.tenant_id,
                "id": self.personal_conversation(person or self.alice),
            }
            activity["channelData"] = {"tenant": {"id": self.cloud.tenant_id}, "source": {"name": "message"}}
        else:
            self.in_channel(activity)
        return activity

    def invoke(self, recording: str, value: dict[str, Any], *, person: Person | None = None) -> dict[str, Any]:
        activity = self.in_channel(self._address(recorded_activity(recording), person=person or self.alice))
        activity["value"] = value
        return activity

    def member_event(
        self, recording: str, person: Person, *, channel_id: str | None = None, key: str = "membersAdded"
    ) -> dict[str, Any]:
        activity = self._address(recorded_activity(recording), person=self.people[-1])
        activity[key] = [{"id": person.bot_id, "aadObjectId": person.aad}]
        activity["conversation"]["id"] = channel_id or self.team_conversation
        activity["channelData"]["team"] = {
            "id": self.team_conversation,
            "name": "Patient Safety",
            "aadGroupId": self.team.team_id,
        }
        return activity

    def installed_in_team(self) -> dict[str, Any]:
        """The docs' `installationUpdate` (add, team scope), addressed to our team."""
        activity = json.loads(reference_path("teams-docs-examples", "installationUpdate.add.team.json").read_text())
        activity = self._address(activity, person=self.alice)
        activity["conversation"]["id"] = self.team_conversation
        activity["channelData"]["channel"] = {"id": self.team_conversation}
        activity["channelData"]["settings"] = {"selectedChannel": {"id": self.team_conversation}}
        activity["channelData"]["team"] = {
            "id": self.team_conversation,
            "name": "Patient Safety",
            "aadGroupId": self.team.team_id,
        }
        return activity

    # -- the wire ------------------------------------------------------------------------------------------------

    def token(self, activity: dict[str, Any], **mint: Any) -> str:
        mint.setdefault("now", self.clock.now())
        return self.cloud.keys.mint(service_url=activity["serviceUrl"], **mint)

    def post(
        self, activity: dict[str, Any], *, headers: dict[str, str] | None = None, settle: bool = True, **mint: Any
    ) -> httpx.Response:
        """POST an activity; with a worker running (and `settle`), return once it has run what was written down."""
        headers = headers if headers is not None else {"Authorization": f"Bearer {self.token(activity, **mint)}"}
        headers.setdefault("Content-Type", "application/json; charset=utf-8")
        headers.setdefault("User-Agent", "Microsoft-SkypeBotApi (Microsoft-BotFramework/3.0)")
        response = self.post_raw(json.dumps(activity).encode(), headers)
        if self.worker is not None and settle:
            self.settle()
        return response

    def new_worker(self, **options: Any) -> Worker:
        """An inbox worker for this world's bot, as `copbot worker` builds one (not started)."""
        options.setdefault("kinds", teams_kinds(self.runtime))
        queue = self.runtime.adapter.queue  # the same side file `open_queue` gives a worker process
        return Worker(engine=self.engine, queue=queue, clock=self.clock, **options)

    def open_rows(self) -> list[InboxItem]:
        """Inbox rows a worker would still run: being run, or pending and due by the world's clock (a row backing
        off after a failure waits for the clock to be advanced)."""
        t = InboxItem
        busy = or_(
            col(t.status) == InboxStatus.WORKING,
            and_(col(t.status) == InboxStatus.PENDING, col(t.next_attempt_at) <= self.clock.now()),
        )
        with Session(self.runtime.adapter.queue) as db:
            return list(db.exec(select(t).where(busy)))

    def settle(self, timeout: float = 20.0) -> None:
        """Wait until the worker has run every row that is due; an AssertionError naming them if it does not."""
        deadline = time.monotonic() + timeout
        while rows := self.open_rows():
            if time.monotonic() > deadline:
                raise AssertionError(f"inbox rows not run: {[(r.id, r.kind, r.status) for r in rows]}")
            time.sleep(0.01)

    def inbox(self) -> list[InboxItem]:
        """Every inbox row, oldest first."""
        with Session(self.runtime.adapter.queue) as db:
            return list(db.exec(select(InboxItem).order_by(col(InboxItem.id))))

    def post_raw(self, content: bytes, headers: dict[str, str]) -> httpx.Response:
        """POST to the ASGI app in process (the handler still runs in Starlette's worker thread)."""

        async def send() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="https://copbot.test") as client:
                return await client.post("/api/messages", content=content, headers=headers)

        return asyncio.run(send())

    def sent(self, operation: str = "Conversations_SendToConversation") -> list[dict[str, Any]]:
        return [c.body for c in self.cloud.connector.activities(operation)]

    def received(self, person: Person, since: int = 0) -> list[dict[str, Any]]:
        """What copbot sent to the person's 1:1 chat (as copbot stored it) since call number `since`."""
        with Session(self.engine) as db:
            row = refs.user_by_aad(db=db, tenant_id=self.cloud.tenant_id, aad_object_id=person.aad)
        assert row is not None and row.personal_conversation_id, f"copbot has no 1:1 chat with {person.name}"
        return [
            c.body
            for c in self.cloud.connector.calls[since:]
            if c.operation == "Conversations_SendToConversation"
            and c.params["conversationId"] == row.personal_conversation_id
        ]

    def opened_chats(self, since: int = 0) -> list[dict[str, Any]]:
        """The 1:1 chats copbot opened (CreateConversation with a member), oldest first."""
        calls = self.cloud.connector.calls[since:]
        return [c.body for c in calls if c.operation == "Conversations_CreateConversation" and c.body.get("members")]

    def posted_in(self, channel_id: str, since: int = 0) -> list[dict[str, Any]]:
        """The activities copbot posted in a channel: new threads (CreateConversation) and messages sent to it."""
        found = []
        for call in self.cloud.connector.calls[since:]:
            if call.operation == "Conversations_CreateConversation":
                if ((call.body.get("channelData") or {}).get("channel") or {}).get("id") == channel_id:
                    found.append(call.body["activity"])
            elif call.params.get("conversationId", "").split(";")[0] == channel_id:
                found.append(call.body)
        return found

    def say(self, text: str, *, person: Person | None = None, channel: bool = False, **kwargs: Any) -> str:
        """Send a command and return the text of every message copbot sent because of it."""
        before = len(self.cloud.connector.calls)
        activity = (
            self.channel_message(text, person=person, **kwargs)
            if channel
            else self.personal_message(text, person=person)
        )
        response = self.post(activity)
        assert response.status_code == 200, response.text
        return self.replies_since(before)

    def replies_since(self, before: int) -> str:
        calls = self.cloud.connector.calls[before:]
        bodies = [
            c.body
            for c in calls
            if c.operation in ("Conversations_SendToConversation", "Conversations_ReplyToActivity")
            or (c.operation == "Conversations_CreateConversation" and "activity" in c.body)
        ]
        for body in bodies:
            for card in cards_in(body):
                assert card_errors(card) == [], card
        return "\n".join(text_of(b) for b in bodies)


@contextlib.contextmanager
def make_world(
    cloud: FakeTeamsCloud, http: httpx.Client, clock: SettableClock, sleep: RecordingSleep, tmp_path: Path
) -> Iterator[TeamsWorld]:
    """The bot wired to the fakes over a fresh SQLite file, with one team of five people; no worker yet."""
    team_id = str(uuid.uuid4())
    people = synthetic_members(5, tenant_id=cloud.tenant_id)
    team = FakeTeam(
        team_id=team_id, members=[graph_member(p, roles=("owner",) if i == 0 else ()) for i, p in enumerate(people)]
    )
    cloud.graph.teams[team_id] = team
    cloud.connector.members[TeamsWorld.team_conversation_key] = people
    cloud.connector.default_members = people
    settings: Settings = load_settings({**cloud.settings(), "TEAMS_TEAM_ID": team_id}, env_file=None)
    engine = make_engine(f"sqlite:///{tmp_path}/copbot.db")
    runtime = build_teams(settings, http=http, clock=clock, engine=engine, sleep=sleep)
    world = TeamsWorld(cloud, runtime, team, clock)
    cloud.connector.members[world.team_conversation] = people
    try:
        yield world
    finally:
        runtime.close()


@pytest.fixture
def world(
    teams_cloud: FakeTeamsCloud,
    teams_http: httpx.Client,
    teams_clock: SettableClock,
    teams_sleep: RecordingSleep,
    tmp_path: Path,
) -> Iterator[TeamsWorld]:
    """The Teams world with an inbox worker running what the adapter writes down."""
    with make_world(teams_cloud, teams_http, teams_clock, teams_sleep, tmp_path) as world:
        worker = world.new_worker()
        with running(worker):
            world.worker = worker
            yield world
            world.worker = None


@pytest.fixture
def world_without_worker(
    teams_cloud: FakeTeamsCloud,
    teams_http: httpx.Client,
    teams_clock: SettableClock,
    teams_sleep: RecordingSleep,
    tmp_path: Path,
) -> Iterator[TeamsWorld]:
    """The Teams world with no inbox worker: what the adapter writes down waits until a test runs a worker."""
    with make_world(teams_cloud, teams_http, teams_clock, teams_sleep, tmp_path) as world:
        yield world


def later(clock: SettableClock, minutes: int = 1) -> None:
    clock.advance(dt.timedelta(minutes=minutes))
