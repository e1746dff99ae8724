"""The Teams adapter: a validated activity in, written down (the inbox) or answered at once, the replies rendered.

`POST /api/messages` hands every request to `TeamsAdapter.__call__`, which checks the Bot Framework token (401 and
nothing processed on failure) and remembers the conversation's address (a worker sends there). Then:

- `message` and `conversationUpdate`: one inbox row per piece of work (bot/teams/inbox.py), committed, then 200;
  503 when the database cannot take it (Bot Framework retries, with the same activity id). A worker runs the row:
- `message` with text (`@copbot …`, `/cop …`, anything in the 1:1 chat) → `handle_command`; a sentence in the
  1:1 chat, or in a channel thread under a prompt, may answer a prompt → `handle_message` (a reflection). Once a
  team grants `ChannelMessage.Read.Group`, Teams sends copbot every channel message: those not addressed to copbot
  matter only as replies in a thread (`conversation.id` `…;messageid=<thread's first message>`), like Slack's
  thread replies; the others are answered 200 and never stored;
- `message` whose `value` has an `action_id` (a card button) → `handle_action`;
- `conversationUpdate` members added / removed → `member_joined` / `member_left` (replies to the person's 1:1 chat);

Invokes need their answer in the HTTP response, so they run on the request thread:

- `invoke` `task/fetch` (a dialog opens) → the command or button that produced the form, run again; the form card is
  the invoke response;
- `invoke` `task/submit` → the core's validation first: with problems, the same form again in the dialog (what was
  typed kept, each problem under its field, nothing stored); valid → an inbox row run here and now through the
  worker's machinery (`bot.teams.inbox.run_inline`), so a retried or crashed submission saves and posts once; the
  result card is the invoke response (a button in a dialog → `handle_action`, directly);
- `invoke` `composeExtension/fetchTask` (Save as a story) → the pre-filled story form in a dialog (as on Slack), and
  its `composeExtension/submitAction` (how Teams submits a dialog a message action opened) → as `task/submit`;
- `invoke` `fileConsent/invoke` (Allow / Decline on a file copbot offered, e.g. an export) → the file is uploaded to
  the person's OneDrive and shown, or forgotten (`bot.teams.files`).

Public replies go to the thread (channel) or the chat; private ones in place in a 1:1 chat, otherwise to the
person's 1:1 chat with copbot (Teams has no ephemeral messages).
Message text is never logged.
"""

from __future__ import annotations

import hashlib
import html
import json
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session

from bot.teams import cards, files
from bot.teams import inbox as teams_inbox
from bot.teams._http import TeamsApiError
from bot.teams.auth import BotFrameworkAuthenticator, Unauthorized
from bot.teams.package import SAVE_AS_STORY_COMMAND_ID
from bot.teams.platform import PLATFORM, THREAD_MARK, TeamsPlatform
from bot.teams.tokens import TokenError
from bot.worker import Step
from handlers import stories
from handlers.app import CopBot
from handlers.commands import COMMANDS
from handlers.errors import PlatformError
from handlers.grammar import parse as parse_command
from handlers.ports import Actor, Clock, Invocation, Message, Reply, Section
from storage import repository as repo
from storage import teams as refs
from storage.inbox import open_queue

log = logging.getLogger(__name__)

_AT = re.compile(r"<at>.*?</at>", re.DOTALL)
_TAG = re.compile(r"<[^>]+>")
_COP = re.compile(r"^/?cop\b\s*", re.IGNORECASE)
_SLASH_COP = re.compile(r"^/cop\b", re.IGNORECASE)
REFLECTION_MIN_WORDS = 3  # fewer words that aren't a command are more likely a mistyped command
FORM_EXPIRED = "Nothing was saved: that form has expired. Please open it again."
ALREADY_SAVED = "That form is already saved (it was sent twice); nothing more was changed."
STILL_SAVING = (
    "I couldn't finish that just now, so I'll keep trying and tell you in our chat when it's done. "
    "There's no need to send it again."
)
CONFLICTING_TENANTS = "(conflicting tenants)"  # never a tenant id, so such an activity is ignored as foreign
# Logged names come from these lists (or a fixed label), never from the activity as sent.
ACTIVITY_TYPES = frozenset(
    {"message", "conversationUpdate", "invoke", "messageReaction", "installationUpdate", "typing", "event"}
)
CONVERSATION_TYPES = frozenset({"personal", "groupChat", "channel"})
# Teams invokes copbot answers 501 (NotImplemented); any other name is logged as "other".
UNHANDLED_INVOKES = frozenset(
    {
        "composeExtension/query",
        "composeExtension/queryLink",
        "composeExtension/selectItem",
        "composeExtension/querySettingUrl",
        "composeExtension/setting",
        "composeExtension/onCardButtonClicked",
        "signin/verifyState",
        "signin/tokenExchange",
        "config/fetch",
        "config/submit",
        "tab/fetch",
        "tab/submit",
        "message/submitAction",
        "actionableMessage/executeAction",
        "healthCheck",
        "handoff/action",
    }
)


@dataclass(frozen=True)
class TeamsResponse:
    """What `POST /api/messages` answers: an HTTP status and, for invokes, a JSON body."""

    status: int
    body: Any = None


@dataclass(frozen=True)
class Inbound:
    """The parts of an activity copbot uses."""

    raw: Mapping[str, Any]
    type: str
    tenant_id: str
    service_url: str
    conversation_id: str  # as sent: channel threads carry `;messageid=…`
    conversation_type: str  # personal | groupChat | channel
    base_conversation_id: str
    channel_id: str | None  # the Teams channel, for channel conversations
    team_id: str | None
    team_group_id: str | None
    from_id: str
    aad_object_id: str | None
    name: str
    activity_id: str | None
    bot_id: str

    @property
    def actor(self) -> Actor:
        """The sender; copbot knows people by their Entra object id (what Graph and admins use)."""
        return Actor(
            platform=PLATFORM,
            workspace_id=self.tenant_id,
            user_id=self.aad_object_id or self.from_id,
            display_name=self.name,
        )

    @property
    def is_personal(self) -> bool:
        return self.conversation_type == "personal"

    @property
    def thread_id(self) -> str | None:
        """For a reply in a channel thread, the id of the thread's first message (None for the first message)."""
        if self.conversation_type != "channel":
            return None
        root = self.conversation_id.partition(THREAD_MARK)[2] or _str(self.raw.get("replyToId"))
        return root if root and root != self.activity_id else None


def _dict(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def parse(activity: Mapping[str, Any], *, default_tenant: str) -> Inbound:
    """Read the routing parts of an activity (Teams omits fields freely, so everything is optional)."""
    conversation = _dict(activity.get("conversation"))
    channel_data = _dict(activity.get("channelData"))
    sender = _dict(activity.get("from"))
    team = _dict(channel_data.get("team"))
    conversation_id = _str(conversation.get("id")) or ""
    base = conversation_id.split(";", 1)[0]
    kind = _str(conversation.get("conversationType")) or ("channel" if team else "personal")
    channel_id = _str(_dict(channel_data.get("channel")).get("id")) or (base if kind == "channel" else None)
    return Inbound(
        raw=activity,
        type=_str(activity.get("type")) or "",
        tenant_id=_tenant(conversation, channel_data, default=default_tenant),
        service_url=_str(activity.get("serviceUrl")) or "",
        conversation_id=conversation_id,
        conversation_type=kind,
        base_conversation_id=base,
        channel_id=channel_id,
        team_id=_str(team.get("id")),
        team_group_id=_str(team.get("aadGroupId")),
        from_id=_str(sender.get("id")) or "",
        aad_object_id=_str(sender.get("aadObjectId")),
        name=_str(sender.get("name")) or "",
        activity_id=_str(activity.get("id")),
        bot_id=_str(_dict(activity.get("recipient")).get("id")) or "",
    )


def _tenant(conversation: Mapping[str, Any], channel_data: Mapping[str, Any], *, default: str) -> str:
    """The activity's tenant (`channelData.tenant.id`, else `conversation.tenantId`); two different ones mean
    neither can be trusted, and the activity is ignored as another tenant's."""
    from_channel_data = _str(_dict(channel_data.get("tenant")).get("id"))
    from_conversation = _str(conversation.get("tenantId"))
    if from_channel_data and from_conversation and from_channel_data != from_conversation:
        return CONFLICTING_TENANTS
    return from_channel_data or from_conversation or default


def _label(value: str, known: frozenset[str]) -> str:
    """`value` when it is one of the `known` names, else a fixed label: logs never carry a field as sent."""
    return value if value in known else "other"


Render = Callable[[list[Reply]], list[Step]]
"""Turns one core unit's replies into delivery steps (bot/teams/inbox.py has the table)."""
CoreFor = Callable[[Render], CopBot]
"""The core for one inbox row, each unit's replies rendered by the function given and stored with its commit
(`bot.worker.Run.bot`)."""


class TeamsAdapter:
    """Handles one `POST /api/messages` at a time (called in a worker thread by the web app), and runs the routing
    of the inbox rows it writes (for `bot.teams.inbox.TeamsKinds`, in a worker)."""

    def __init__(
        self,
        *,
        bot: CopBot,
        platform: TeamsPlatform,
        authenticator: BotFrameworkAuthenticator,
        engine: Engine,
        clock: Clock,
    ) -> None:
        self.bot = bot
        self.platform = platform
        self.authenticator = authenticator
        self.engine = engine
        self.clock = clock
        self.queue = open_queue(engine)  # the inbox (a side file beside a SQLite database)

    def __call__(self, authorization: str | None, activity: Mapping[str, Any]) -> tuple[int, Any]:
        """Validate, then handle; the (status, JSON body) to answer with."""
        response = self.handle(authorization, activity)
        return response.status, response.body

    def handle(self, authorization: str | None, activity: Mapping[str, Any]) -> TeamsResponse:
        try:
            self.authenticator.validate(authorization, activity)
        except Unauthorized as exc:
            log.warning("teams request refused: %s", exc.reason)
            return TeamsResponse(401, {"error": "Unauthorized"})
        inbound = parse(activity, default_tenant=self.platform.tenant_id)
        if inbound.tenant_id != self.platform.tenant_id:
            log.warning("teams activity from another tenant ignored")
            return TeamsResponse(200)
        try:
            self._remember(inbound)
            if inbound.type == "invoke":
                with self.platform.scope(
                    service_url=inbound.service_url, tenant_id=inbound.tenant_id, team_group_id=inbound.team_group_id
                ):
                    return self._invoke(inbound)
            if inbound.type == "message":
                return self._take(inbound, self._message_entries(inbound))
            if inbound.type == "conversationUpdate":
                return self._take(inbound, self._update_entries(inbound))
        except SQLAlchemyError as exc:
            # Nothing is acknowledged that was not written down: Bot Framework retries a 503.
            kind = _label(inbound.type, ACTIVITY_TYPES)
            log.warning("teams %s not taken: database unavailable (%s)", kind, type(exc).__name__)
            return TeamsResponse(503, {"error": "ServiceUnavailable"})
        log.debug("teams %s activity noted", _label(inbound.type, ACTIVITY_TYPES))
        return TeamsResponse(200)

    # -- addresses and the inbox -----------------------------------------------------------------------------------

    def _remember(self, inbound: Inbound) -> None:
        """Store the conversation's address and the people in the activity, so copbot can write to them later."""
        if not inbound.service_url or not inbound.base_conversation_id:
            return
        now = self.clock.now()
        raw = inbound.raw
        with Session(self.engine) as db:
            refs.save_conversation(
                db=db,
                tenant_id=inbound.tenant_id,
                conversation_id=inbound.base_conversation_id,
                service_url=inbound.service_url,
                now=now,
                conversation_type=inbound.conversation_type,
                channel_id=_str(raw.get("channelId")),
                team_id=inbound.team_id,
                team_group_id=inbound.team_group_id,
                user_id=inbound.from_id if inbound.is_personal else None,
                aad_object_id=inbound.aad_object_id if inbound.is_personal else None,
            )
            people = [_dict(raw.get("from"))]
            people += [_dict(m) for m in raw.get("membersAdded") or []]
            people += [
                _dict(e.get("mentioned")) for e in raw.get("entities") or [] if _dict(e).get("type") == "mention"
            ]
            for person in people:
                person_id = _str(person.get("id"))
                if not person_id or not person_id.startswith("29:"):
                    continue  # bots (28:) and placeholders
                refs.save_user(
                    db=db,
                    tenant_id=inbound.tenant_id,
                    bot_user_id=person_id,
                    service_url=inbound.service_url,
                    now=now,
                    aad_object_id=_str(person.get("aadObjectId")),
                    name=_str(person.get("name")),
                    personal_conversation_id=(
                        inbound.base_conversation_id if inbound.is_personal and person_id == inbound.from_id else None
                    ),
                )
            db.commit()

    def _take(self, inbound: Inbound, entries: list[teams_inbox.Entry]) -> TeamsResponse:
        """Write the activity's rows down (committed; raises when the database cannot take them), then 200."""
        if entries and not teams_inbox.enqueue(engine=self.queue, clock=self.clock, inbound=inbound, entries=entries):
            log.info("teams %s %s taken already; skipped", inbound.type, inbound.activity_id)
        return TeamsResponse(200)

    def _message_entries(self, inbound: Inbound) -> list[teams_inbox.Entry]:
        """One row for a message copbot acts on (judged from the payload alone); none for a channel's ordinary
        messages, so their text is never kept."""
        wanted = (
            bool(_str(_dict(inbound.raw.get("value")).get("action_id")))
            or inbound.is_personal
            or self._addressed(inbound)
            or inbound.thread_id is not None
        )
        if not wanted:
            return []
        key = teams_inbox.activity_key(inbound)
        return [teams_inbox.Entry(kind=teams_inbox.MESSAGE, dedupe_key=key, person=inbound.actor.user_id)]

    def _update_entries(self, inbound: Inbound) -> list[teams_inbox.Entry]:
        """One row per member added or removed (each is one unit of the core: see bot/teams/inbox.py), and one for
        copbot's hello when it is installed in someone's 1:1 chat."""
        key = teams_inbox.activity_key(inbound)
        entries: list[teams_inbox.Entry] = []

        def entry(suffix: str, person: str, **extra: Any) -> None:
            entries.append(
                teams_inbox.Entry(kind=teams_inbox.UPDATE, dedupe_key=f"{key}:{suffix}", person=person, extra=extra)
            )

        for change, field in (("added", "membersAdded"), ("removed", "membersRemoved")):
            members = inbound.raw.get(field)
            for index, member in enumerate(_dict(m) for m in (members if isinstance(members, list) else [])):
                member_id = _str(member.get("id")) or ""
                if member_id == inbound.bot_id or member_id.startswith("28:"):
                    if change == "added" and inbound.is_personal:  # installed for someone: hello in their chat
                        entry("hello", inbound.actor.user_id, change="hello")
                    elif change == "removed":
                        kind = _label(inbound.conversation_type, CONVERSATION_TYPES)
                        log.info("copbot was removed from a %s conversation", kind)
                elif member_id:
                    entry(f"{change}:{index}", self._member_actor(member, inbound).user_id, change=change, member=index)
        return entries

    # -- messages --------------------------------------------------------------------------------------------------

    def run_message(self, inbound: Inbound, core: CoreFor) -> None:
        """A `teams.message` row: a button, a command, or a reply to a prompt."""
        value = _dict(inbound.raw.get("value"))
        if _str(value.get("action_id")):
            source = {"action_id": str(value["action_id"]), "value": str(value.get("value") or "")}
            core(lambda replies: self.plan(replies, inbound, source=source)).handle_action(
                actor=inbound.actor, action_id=source["action_id"], value=source["value"], channel_id=inbound.channel_id
            )
            return
        thread = inbound.thread_id
        if not (inbound.is_personal or self._addressed(inbound)):
            # Seen only thanks to ChannelMessage.Read.Group: a reply in a thread may answer a channel prompt.
            # (Mentions in it cost no roster lookup.)
            if thread:
                self._reflect(inbound, self.message_text(inbound, look_up=False), thread, core)
            return
        text = self.command_text(inbound)
        # A sentence that isn't a command may answer a DM prompt (1:1 chat) or a channel prompt (its thread). When
        # it doesn't, the command's unit runs second (a retry skips whichever units committed, bot/worker.py).
        sentence = parse_command(text).name not in COMMANDS and len(text.split()) >= REFLECTION_MIN_WORDS
        if (inbound.is_personal or thread) and sentence and self._reflect(inbound, text, thread, core):
            return
        source = {"command": text}
        core(lambda replies: self.plan(replies, inbound, source=source)).handle_command(
            Invocation(actor=inbound.actor, text=text, channel_id=inbound.channel_id)
        )

    def _addressed(self, inbound: Inbound) -> bool:
        """Whether a channel or group chat message is for copbot: it @mentions copbot, or starts with `/cop`."""
        for entity in inbound.raw.get("entities") or []:
            entity = _dict(entity)
            mentioned = _str(_dict(entity.get("mentioned")).get("id")) or ""
            if entity.get("type") == "mention" and mentioned and mentioned in (inbound.bot_id, self.platform.bot_id):
                return True
        return bool(_SLASH_COP.match(html.unescape(str(inbound.raw.get("text") or "")).lstrip()))

    def _reflect(self, inbound: Inbound, text: str, thread: str | None, core: CoreFor) -> bool:
        """Offer a message to the core as a reply to a prompt; True when it was one (its answer is sent)."""
        if not text.strip():
            return False
        replies = core(lambda replies: self.plan(replies, inbound)).handle_message(
            actor=inbound.actor,
            channel_id=(inbound.channel_id or inbound.base_conversation_id) if thread else inbound.base_conversation_id,
            message_id=inbound.activity_id or "",
            thread_id=thread,
            text=text,
            is_dm=inbound.is_personal,
        )
        return bool(replies)

    def command_text(self, inbound: Inbound) -> str:
        """The command typed: the bot's mention and `/cop` removed, other mentions as `<@user id>`."""
        return _COP.sub("", self.message_text(inbound))

    def message_text(self, inbound: Inbound, *, look_up: bool = True) -> str:
        """The text as written: the bot's mention removed, other mentions as `<@user id>`, spaces normalised.

        A mentioned person copbot doesn't know is looked up in the conversation's roster, unless `look_up` is off
        (their Bot Framework id is used then, which copbot's names understand too).
        """
        text = str(inbound.raw.get("text") or "")
        for entity in inbound.raw.get("entities") or []:
            entity = _dict(entity)
            tag, mentioned = _str(entity.get("text")), _dict(entity.get("mentioned"))
            if entity.get("type") != "mention" or not tag:
                continue
            mentioned_id = _str(mentioned.get("id")) or ""
            if mentioned_id == inbound.bot_id or mentioned_id.startswith("28:"):
                text = text.replace(tag, " ", 1)
            else:
                text = text.replace(tag, f" <@{self._user_id(mentioned_id, inbound, look_up=look_up)}> ", 1)
        text = html.unescape(_AT.sub(" ", text)).replace("\xa0", " ")
        return " ".join(text.split())

    def _user_id(self, bot_user_id: str, inbound: Inbound, *, look_up: bool = True) -> str:
        """copbot's id (Entra object id) for a mentioned person, asking the conversation's roster when unknown."""
        known = self.platform.person(bot_user_id)
        if known is not None and known.aad_object_id:
            return known.aad_object_id
        if not look_up:
            return bot_user_id
        try:
            for member in self.platform.connector.get_conversation_members(
                inbound.service_url, inbound.base_conversation_id
            ):
                if member.id == bot_user_id and member.aad_object_id:
                    with Session(self.engine) as db:
                        refs.save_user(
                            db=db,
                            tenant_id=inbound.tenant_id,
                            bot_user_id=member.id,
                            service_url=inbound.service_url,
                            now=self.clock.now(),
                            aad_object_id=member.aad_object_id,
                            name=member.name,
                            upn=member.user_principal_name or member.email,
                        )
                        db.commit()
                    return member.aad_object_id
        except (TeamsApiError, TokenError) as exc:
            log.warning("teams roster lookup failed: %s", type(exc).__name__)
        return bot_user_id

    # -- membership --------------------------------------------------------------------------------------------

    def run_update(self, inbound: Inbound, core: CoreFor, *, change: str, index: int) -> None:
        """A `teams.update` row: copbot's hello, or member `index` of the activity's members added / removed."""
        if change == "hello":
            core(lambda replies: self.plan(replies, inbound)).handle_command(
                Invocation(actor=inbound.actor, text="help")
            )
            return
        members = inbound.raw.get("membersAdded" if change == "added" else "membersRemoved")
        if not isinstance(members, list) or not 0 <= index < len(members):
            return
        actor = self._member_actor(_dict(members[index]), inbound)
        channel_id = inbound.channel_id or inbound.base_conversation_id
        if change == "added":
            core(lambda replies: self.plan_to(actor.user_id, replies)).member_joined(actor=actor, channel_id=channel_id)
            return
        # Leaving the team is one unit per community channel, none of which answers or calls Teams: they run on the
        # plain core, so a retry runs them all again (each is idempotent) rather than stopping after the first.
        failed = [
            c for c in self._channels_left(inbound, channel_id) if self.bot.member_left(actor=actor, channel_id=c)
        ]
        if failed:  # member_left answers only when it went wrong
            raise RuntimeError(f"member_left failed in {len(failed)} channel(s)")

    def _member_actor(self, member: Mapping[str, Any], inbound: Inbound) -> Actor:
        user_id = _str(member.get("aadObjectId")) or _str(member.get("id")) or ""
        return Actor(
            platform=PLATFORM,
            workspace_id=inbound.tenant_id,
            user_id=user_id,
            display_name=_str(member.get("name")) or "",
        )

    def _channels_left(self, inbound: Inbound, channel_id: str) -> list[str]:
        """Leaving the communities' team leaves every community channel in it (standard channels are the team's)."""
        ours = self.platform.team_id in (None, inbound.team_group_id)
        if _dict(inbound.raw.get("channelData")).get("eventType") != "teamMemberRemoved" or not ours:
            return [channel_id]
        with Session(self.engine) as db:
            live = repo.communities(db=db, platform=PLATFORM, workspace_id=inbound.tenant_id)
        return list(dict.fromkeys([channel_id, *(c.channel_id for c in live if c.channel_id)]))

    # -- invokes -----------------------------------------------------------------------------------------------

    def _invoke(self, inbound: Inbound) -> TeamsResponse:
        name = _str(inbound.raw.get("name")) or ""
        value = _dict(inbound.raw.get("value"))
        data = _dict(value.get("data"))
        if name == "task/fetch":
            return TeamsResponse(200, self._open_dialog(inbound, _dict(data.get(cards.DIALOG_KEY))))
        if name == "task/submit":
            return TeamsResponse(200, self._submit_dialog(inbound, data))
        if name in ("composeExtension/fetchTask", "composeExtension/submitAction"):
            if _str(value.get("commandId")) != SAVE_AS_STORY_COMMAND_ID:
                log.info("teams message action is not copbot's")
                return TeamsResponse(200, {})
            if name == "composeExtension/submitAction":
                # `{}` closes the dialog; a `continue` task shows the next card (the form again, or the answer).
                return TeamsResponse(200, self._submit_dialog(inbound, data) or {})
            message = self._source_message(inbound, _dict(value.get("messagePayload")))
            replies = self.bot.story_shortcut(actor=inbound.actor, message=message)
            answer = self._dialog_answer(inbound, replies, title="Save as a story")
            return TeamsResponse(200, answer or {})
        if name == files.INVOKE:
            consent = files.parse_answer(inbound.raw.get("value"))
            if consent is None:
                return TeamsResponse(200)
            activity = self.platform.answer_file_consent(user_id=inbound.actor.user_id, answer=consent)
            try:
                self.send(self._step(inbound, activity, private=True))
            except PlatformError as exc:
                log.warning("teams file consent answer not delivered: %s", exc.code)
            return TeamsResponse(200)
        if name == "adaptiveCard/action":
            action_data = _dict(_dict(value.get("action")).get("data"))
            replies = self._run_action(inbound, action_data) if _str(action_data.get("action_id")) else []
            text = "\n".join(r.message.text for r in replies if r.message) or "Done."
            return TeamsResponse(
                200, {"statusCode": 200, "type": "application/vnd.microsoft.activity.message", "value": text}
            )
        log.info("teams invoke %s not handled", _label(name, UNHANDLED_INVOKES))
        return TeamsResponse(501, {"error": "NotImplemented"})

    def _source_message(self, inbound: Inbound, payload: Mapping[str, Any]) -> stories.SourceMessage:
        """The message a person chose to save, as the core's neutral SourceMessage (its HTML made plain text)."""
        sender = _dict(payload.get("from"))
        user = _dict(sender.get("user"))
        body = _dict(payload.get("body"))
        content = str(body.get("content") or "")
        if str(body.get("contentType") or "html").lower() == "html":
            content = html.unescape(_TAG.sub(" ", _AT.sub(lambda m: _TAG.sub("", m.group(0)), content)))
        return stories.SourceMessage(
            channel_id=inbound.channel_id or inbound.base_conversation_id,
            message_id=str(payload.get("id") or ""),
            author_user_id=_str(user.get("aadObjectId")) or _str(user.get("id")),
            text=" ".join(content.split()),
            link=_str(payload.get("linkToMessage")),
            from_bot=bool(sender.get("application")) and not user,
        )

    def _run_action(self, inbound: Inbound, data: Mapping[str, Any]) -> list[Reply]:
        return self.bot.handle_action(
            actor=inbound.actor,
            action_id=str(data["action_id"]),
            value=str(data.get("value") or ""),
            channel_id=inbound.channel_id,
        )

    def _open_dialog(self, inbound: Inbound, source: Mapping[str, Any]) -> dict[str, Any] | None:
        """Ask the core for the form again (the command or button that produced it) and show it in the dialog."""
        if _str(source.get("action_id")):
            replies = self._run_action(inbound, source)
        else:
            text = str(source.get("command") or "help")
            replies = self.bot.handle_command(Invocation(actor=inbound.actor, text=text, channel_id=inbound.channel_id))
        return self._dialog_answer(inbound, replies, title="copbot")

    def _submit_dialog(self, inbound: Inbound, data: Mapping[str, Any]) -> dict[str, Any] | None:
        """A dialog's submit: a form is checked first and, with problems, shown again; nothing is stored then. A
        valid form is an inbox row, run here (the answer is the invoke's response)."""
        form_id = _str(data.get(cards.FORM_KEY))
        if form_id:
            values = cards.submitted_values(data)
            context = str(data.get(cards.CONTEXT_KEY) or "")
            actor = inbound.actor
            errors = self.bot.validate_submission(actor=actor, form_id=form_id, values=values, context=context)
            if errors:
                return self._form_again(inbound, form_id=form_id, values=values, context=context, errors=errors)
            outcome: teams_inbox.Inline = teams_inbox.run_inline(
                adapter=self, inbound=inbound, dedupe_key=self._submission_key(inbound, form_id, values, context)
            )
            if not outcome.stored:
                return _notice(ALREADY_SAVED)
            if outcome.answer is not None or outcome.done:
                return outcome.answer
            return _notice(STILL_SAVING)  # the row is retried by a worker, which sends the answer to the 1:1 chat
        if _str(data.get("action_id")):
            return self._dialog_answer(inbound, self._run_action(inbound, data), title="copbot")
        return None

    def run_submission(self, inbound: Inbound, core: CoreFor) -> None:
        """A `teams.submit` row: the valid form in the invoke saved; its answer is a `dialog` step."""
        data = _dict(_dict(inbound.raw.get("value")).get("data"))
        core(lambda replies: self._dialog_steps(inbound, replies, title="copbot")).handle_submission(
            actor=inbound.actor,
            form_id=str(data.get(cards.FORM_KEY) or ""),
            values=cards.submitted_values(data),
            context=str(data.get(cards.CONTEXT_KEY) or ""),
        )

    def _submission_key(self, inbound: Inbound, form_id: str, values: Mapping[str, str], context: str) -> str:
        """This person's submission of this form with these values: Teams sends each click of Save as its own
        invoke, so a double click would otherwise save a story twice. (Only a hash is kept, never what was typed.)"""
        content = json.dumps([inbound.actor.user_id, form_id, context, sorted(values.items())], ensure_ascii=False)
        return f"teams:form:{hashlib.sha256(content.encode('utf-8')).hexdigest()[:48]}"

    def _form_again(
        self, inbound: Inbound, *, form_id: str, values: Mapping[str, str], context: str, errors: Mapping[str, str]
    ) -> dict[str, Any]:
        """The form just submitted, drawn again in the dialog with what was typed and each problem under its field."""
        form = self.bot.form_again(actor=inbound.actor, form_id=form_id, values=values, context=context)
        if form is None:
            return _notice(FORM_EXPIRED)
        return cards.dialog_value(form.title, cards.form_card(form, errors, names=self.platform.names()))

    def _dialog_answer(self, inbound: Inbound, replies: list[Reply], *, title: str) -> dict[str, Any] | None:
        """The answer to an invoke run here: the dialog's next card (or None to close it), public replies sent."""
        answer: dict[str, Any] | None = None
        for step in self._dialog_steps(inbound, replies, title=title):
            if step["op"] == "dialog":
                answer = step["value"]
                continue
            try:
                self.send(step)
            except PlatformError as exc:
                log.warning("teams reply not delivered: %s", exc.code)
        return answer

    def _dialog_steps(self, inbound: Inbound, replies: list[Reply], *, title: str) -> list[Step]:
        """A form continues the dialog; private messages are shown in it; public ones go to the conversation.

        The dialog comes first as a `dialog` step (the invoke's answer; sent to the person's 1:1 chat when a worker
        runs the row after the request is gone)."""
        notes = self.platform.take_notes()
        user_id = inbound.aad_object_id or inbound.from_id
        form = next((r.form for r in replies if r.form is not None), None)
        if form is not None:
            opener = cards.open_dialog_card(form, {"command": "help"})
            value = cards.dialog_value(form.title, cards.form_card(form, names=self.platform.names()))
            return [_dialog_step(value, user_id, {"type": "message", "attachments": [cards.attachment(opener)]})]
        public = [r for r in replies if r.message is not None and r.visibility == "public"]
        private = [r.message for r in replies if r.message is not None and r.visibility == "private"]
        steps = self.plan(public, inbound) if public else []
        if not private and not notes:
            return steps
        body: list[dict[str, Any]] = []
        names = self.platform.names()
        for message in private:
            body += cards.message_card(message, names)["body"]
        body += [{"type": "TextBlock", "text": n, "wrap": True, "isSubtle": True} for n in notes]
        heading = next((m.title for m in private if m.title), title)
        card = cards.card(body)
        shown = {"type": "message", "attachments": [cards.attachment(card)]}
        return [_dialog_step(cards.dialog_value(heading, card), user_id, shown), *steps]

    # -- delivery ----------------------------------------------------------------------------------------------

    def plan(self, replies: list[Reply], inbound: Inbound, *, source: Mapping[str, str] | None = None) -> list[Step]:
        """The steps that show replies (with Teams' notes): public in the thread or chat; private in the 1:1 chat;
        forms as a button opening a dialog (`source` says how to ask the core for the form again)."""
        steps: list[Step] = []
        for reply in _with_notes(replies, self.platform.take_notes()):
            if reply.form is not None:
                card = cards.open_dialog_card(reply.form, source or {"command": "help"})
                activity = {"type": "message", "attachments": [cards.attachment(card)]}
                steps.append(self._step(inbound, activity, private=True))
            elif reply.message is not None:
                activity = self.platform.render(reply.message)
                steps.append(self._step(inbound, activity, private=reply.visibility == "private"))
        return steps

    def plan_to(self, user_id: str, replies: list[Reply]) -> list[Step]:
        """Replies to someone who didn't write (a membership event): to their 1:1 chat."""
        steps: list[Step] = []
        for reply in _with_notes(replies, self.platform.take_notes()):
            if reply.form is not None:
                card = cards.open_dialog_card(reply.form, {"command": "profile"})
                activity = {"type": "message", "attachments": [cards.attachment(card)]}
            elif reply.message is not None:
                activity = self.platform.render(reply.message)
            else:
                continue
            steps.append({"op": "send_to_user", "user_id": user_id, "activity": activity})
        return steps

    def _step(self, inbound: Inbound, activity: dict[str, Any], *, private: bool) -> Step:
        """Where an activity in answer to `inbound` goes: the chat itself (1:1, or a group chat when public), the
        channel thread (public), or the person's 1:1 chat (private, outside a 1:1 chat)."""
        if inbound.is_personal or (not private and inbound.conversation_type == "groupChat"):
            conversation, reply_to = inbound.base_conversation_id, None
        elif not private:
            conversation = inbound.conversation_id
            reply_to = inbound.activity_id if inbound.conversation_id != inbound.base_conversation_id else None
        else:
            return {"op": "send_to_user", "user_id": inbound.aad_object_id or inbound.from_id, "activity": activity}
        return {
            "op": "send",
            "conversation_id": conversation,
            "reply_to": reply_to,
            "service_url": inbound.service_url,
            "activity": activity,
        }

    def send(self, step: Step) -> None:
        """Carry out one `send` / `send_to_user` step (a `dialog` one as the 1:1 message it falls back to); raises
        PlatformError (`transient` when a retry may work)."""
        op = step.get("op")
        with self.platform.scope(service_url=_str(step.get("service_url")), tenant_id=self.platform.tenant_id):
            if op == "send":
                self.platform.send_activity(
                    str(step["conversation_id"]), dict(step["activity"]), reply_to=_str(step.get("reply_to"))
                )
            elif op in ("send_to_user", "dialog"):
                self.platform.send_activity_to_user(str(step["user_id"]), dict(step["activity"]))
            else:
                raise PlatformError("copbot doesn't know that kind of delivery.", code="unknown_step")


def _dialog_step(value: dict[str, Any], user_id: str, activity: dict[str, Any]) -> Step:
    return {"op": "dialog", "value": value, "user_id": user_id, "activity": activity}


def _notice(text: str) -> dict[str, Any]:
    """A dialog showing one short message."""
    return cards.dialog_value("copbot", cards.card([{"type": "TextBlock", "text": text, "wrap": True}], fallback=text))


def _with_notes(replies: list[Reply], notes: list[str]) -> list[Reply]:
    """Teams' differences (see platform.py) added to the first private message, or as one of their own."""
    if not notes:
        return replies
    note = "\n".join(f"_{n}_" for n in notes)
    out = list(replies)
    for i, reply in enumerate(out):
        message = reply.message
        if message is not None and reply.visibility == "private":
            if cards.is_plain(message):
                changed = Message(text=f"{message.text}\n\n{note}")
            else:
                changed = Message(
                    text=f"{message.text}\n{note}",
                    title=message.title,
                    sections=(*(message.sections or (Section(message.text),)), Section(note)),
                    buttons=message.buttons,
                    chat_with=message.chat_with,
                )
            out[i] = Reply(message=changed, visibility="private")
            return out
    return [*out, Reply.private(note)]


Handler = Callable[[str | None, Mapping[str, Any]], tuple[int, Any]]
