"""ChatPlatform on Microsoft Teams: channels through Graph, messages through the Bot Connector.

Teams is not Slack, and the differences are told to people rather than hidden:
- a standard channel includes everyone in the team, so `invite` only checks that the person is in the team, and
  `remove` cannot take anyone out (each adds a short note to the reply);
- Graph cannot archive a standard channel, so `archive_channel` leaves it (the core has posted its goodbye) and says
  that a team owner can hide or delete it;
- a bot cannot whisper in a channel, so private replies and DMs go to the person's 1:1 chat with copbot.

Addresses (service URL, conversation ids, both ids of a person) come from `storage.teams`, kept fresh by the
adapter. While the core's unit of work holds the database, this class only reads (SQLite allows one writer): rows it
learns are queued in the current `scope()` and written when the scope ends.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
from sqlalchemy import Engine
from sqlmodel import Session, select

from bot.teams import files
from bot.teams._http import TeamsApiError, require_secure_url
from bot.teams.cards import Names, Person, message_activity
from bot.teams.connector import ConnectorClient, ConnectorError
from bot.teams.graph import GraphClient, GraphError, GraphMember
from bot.teams.tokens import TokenError
from handlers.errors import PlatformError, RateLimited
from handlers.ports import ChannelRef, Clock, Message, SystemClock
from storage import teams as refs
from storage.models import Community, Member

log = logging.getLogger(__name__)

PLATFORM = "teams"
CHANNEL_NAME_MAX = 50  # Teams' limit for a channel's display name
NAME_TAKEN_ATTEMPTS = 20
DESCRIPTION_MAX = 1024
_FORBIDDEN = re.compile(r"[~#%&*{}+/\\:<>?|'\"]")
TRANSIENT_STATUSES = frozenset({0, 408, 412, 429, 500, 502, 503, 504})
THREAD_MARK = ";messageid="  # a channel thread's conversation id: `<channel id>;messageid=<first message id>`
UPN_RETRY_AFTER = 24 * 3600.0  # seconds before asking the Connector again for someone it gave no sign-in name

Write = Callable[[Session], None]


def teams_channel_name(name: str, *, limit: int = CHANNEL_NAME_MAX) -> str:
    """A name Teams accepts for a channel: no `~#%&*{}+/\\:<>?|'"` or `..`, no leading `_`/`.`, ≤ 50 chars."""
    cleaned = _FORBIDDEN.sub("-", name)
    while ".." in cleaned:
        cleaned = cleaned.replace("..", ".")
    cleaned = cleaned.lstrip("_.").strip()[:limit].rstrip(". ")
    return cleaned or "community"


def platform_error(what: str, exc: Exception) -> PlatformError:
    """A Teams failure as a PlatformError safe to show; the log gets the operation, status and code only."""
    if isinstance(exc, TokenError):
        log.warning("teams %s failed: token error %s", what, exc.code)
        return PlatformError(
            "copbot couldn't sign in to Microsoft to do that. Ask whoever runs copbot to check TEAMS_APP_ID, "
            "TEAMS_APP_PASSWORD and TEAMS_TENANT_ID.",
            code=exc.code,
            transient=exc.code == "login_unreachable",
        )
    if not isinstance(exc, TeamsApiError):
        log.warning("teams %s failed: %s", what, type(exc).__name__)
        return PlatformError("Something went wrong talking to Teams. Please try again.", code="unknown")
    service = "graph" if isinstance(exc, GraphError) else "connector"
    log.warning("teams %s failed: %s HTTP %d %s", what, service, exc.status, exc.code)
    if exc.retry_after is not None:
        return RateLimited(exc.retry_after, code=exc.code)
    transient = exc.status in TRANSIENT_STATUSES
    if exc.status == 0 or exc.status >= 500:
        message = "I couldn't reach Microsoft Teams just now. Please try again in a minute."
    elif exc.status in (412, 429):
        message = "Teams is busy right now; please try again in a minute."
    elif exc.status == 401:
        message = "Microsoft refused copbot's credentials. Ask whoever runs copbot to check the Teams settings."
    elif service == "graph" and exc.status == 403:
        message = (
            "copbot isn't allowed to do that in the team. A team owner needs to install copbot in the team and "
            "accept its permissions (create channels, read team members)."
        )
    elif service == "graph" and exc.status == 404:
        message = "Teams can't find the team copbot makes channels in. Ask whoever runs copbot to check TEAMS_TEAM_ID."
    elif service == "graph" and exc.status == 400:
        message = "Teams didn't accept that channel name; try a shorter or simpler name."
    elif exc.status == 403:
        message = "copbot isn't in that conversation any more (it may have been removed from the team or chat)."
    elif exc.status == 404:
        message = "Teams can't find that conversation; it may have been deleted."
    else:
        message = f"Teams refused that ({exc.code}). Please try again, or tell whoever runs copbot."
    return PlatformError(message, code=exc.code, transient=transient)


@dataclass
class _Scope:
    """What the current inbound activity tells us, plus notes and writes gathered while the core works."""

    service_url: str | None = None
    tenant_id: str | None = None
    team_group_id: str | None = None
    notes: list[str] = field(default_factory=list)
    writes: list[Write] = field(default_factory=list)


class TeamsPlatform:
    """The ChatPlatform port on Teams (one bot registration, one tenant, communities' channels in one team)."""

    name = PLATFORM

    def __init__(
        self,
        *,
        engine: Engine,
        connector: ConnectorClient,
        graph: GraphClient,
        app_id: str,
        tenant_id: str,
        team_id: str | None = None,
        clock: Clock | None = None,
        files_http: httpx.Client,
    ) -> None:
        self.engine = engine
        self.connector = connector
        self.graph = graph
        self.app_id = app_id
        self.tenant_id = tenant_id
        self.team_id = team_id
        self.clock: Clock = clock or SystemClock()
        self._local = threading.local()
        self.files_http = files_http  # for OneDrive upload sessions (they take no bearer token)
        self._upn_asked: dict[str, float] = {}  # user id -> monotonic time of a lookup that found no sign-in name

    def __repr__(self) -> str:
        return f"TeamsPlatform(app_id={self.app_id!r}, tenant_id={self.tenant_id!r}, team_id={self.team_id!r})"

    @property
    def bot_id(self) -> str:
        """The bot's Bot Framework id."""
        return f"28:{self.app_id}"

    # -- the current activity ------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def scope(
        self, *, service_url: str | None = None, tenant_id: str | None = None, team_group_id: str | None = None
    ) -> Iterator[_Scope]:
        """Handle one inbound activity: its service URL is used for sends; learnt addresses are saved at the end."""
        current = _Scope(service_url=service_url, tenant_id=tenant_id, team_group_id=team_group_id)
        previous = getattr(self._local, "scope", None)
        self._local.scope = current
        try:
            yield current
        finally:
            self._local.scope = previous
            self._flush(current.writes)

    def take_notes(self) -> list[str]:
        """Notes about Teams' differences gathered since the last call (shown with the replies)."""
        current = self._scope()
        notes = list(dict.fromkeys(current.notes)) if current else []
        if current:
            current.notes.clear()
        return notes

    def _scope(self) -> _Scope | None:
        scope: _Scope | None = getattr(self._local, "scope", None)
        return scope

    def _note(self, text: str) -> None:
        current = self._scope()
        if current is not None:
            current.notes.append(text)

    def _write(self, write: Write) -> None:
        current = self._scope()
        if current is not None:
            current.writes.append(write)
        else:
            self._flush([write])

    def _flush(self, writes: list[Write]) -> None:
        if not writes:
            return
        with Session(self.engine) as db:
            for write in writes:
                write(db)
            db.commit()
        writes.clear()

    # -- addresses -----------------------------------------------------------------------------------------------

    def _team(self) -> str:
        current = self._scope()
        team = self.team_id or (current.team_group_id if current else None)
        if not team:
            raise PlatformError(
                "copbot doesn't know which team to make channels in. Ask whoever runs copbot to set TEAMS_TEAM_ID.",
                code="no_team",
            )
        return team

    def service_url(self, conversation_id: str | None = None) -> str:
        """Where to send: the conversation's stored service URL, the current activity's, or the tenant's latest."""
        with Session(self.engine) as db:
            if conversation_id:
                row = refs.conversation(db=db, tenant_id=self.tenant_id, conversation_id=conversation_id)
                if row is not None:
                    return row.service_url
            current = self._scope()
            if current and current.service_url:
                return current.service_url
            team = refs.team_conversation(db=db, team_group_id=self.team_id) if self.team_id else None
            url = team.service_url if team else refs.latest_service_url(db=db, tenant_id=self.tenant_id)
        if not url:
            raise PlatformError(
                "copbot hasn't heard from Teams yet, so it doesn't know where to send messages. Add copbot to the "
                "team (or chat with it once) and try again.",
                code="no_service_url",
            )
        return url

    def person(self, user_id: str) -> refs.TeamsUser | None:
        """The stored Teams ids of a person, by Entra object id (copbot's user id) or `29:…` id."""
        with Session(self.engine) as db:
            return refs.user_by_aad(db=db, tenant_id=self.tenant_id, aad_object_id=user_id) or refs.user_by_bot_id(
                db=db, tenant_id=self.tenant_id, bot_user_id=user_id
            )

    def _find_in_team(self, user_id: str) -> refs.TeamsUser | None:
        """Look a person up in the team's roster (Bot Connector), remembering everyone on the way."""
        with Session(self.engine) as db:
            team = refs.team_conversation(db=db, team_group_id=self._team())
        if team is None or not team.team_id:
            return None
        found: refs.TeamsUser | None = None
        try:
            for member in self.connector.get_conversation_members(team.service_url, team.team_id):
                row = refs.TeamsUser(
                    tenant_id=self.tenant_id,
                    bot_user_id=member.id,
                    aad_object_id=member.aad_object_id,
                    name=member.name or "",
                    upn=member.user_principal_name or member.email,
                    service_url=team.service_url,
                    updated_at=self.clock.now(),
                )
                self._remember_user(row)
                if user_id in (member.id, member.aad_object_id):
                    found = row
        except (TeamsApiError, TokenError) as exc:
            platform_error("read the team roster", exc)
        return found

    def _remember_user(self, row: refs.TeamsUser) -> None:
        values = {
            "tenant_id": row.tenant_id,
            "bot_user_id": row.bot_user_id,
            "aad_object_id": row.aad_object_id,
            "name": row.name or None,
            "service_url": row.service_url,
            "personal_conversation_id": row.personal_conversation_id,
            "upn": row.upn,
            "now": self.clock.now(),
        }
        self._write(lambda db: refs.save_user(db=db, **values))  # type: ignore[arg-type]

    def names(self, learnt: dict[str, refs.TeamsUser] | None = None) -> Names:
        """How to show people and channels named in neutral markup (`learnt`: people looked up just now)."""
        return _StoredNames(self, learnt or {})

    def render(self, message: Message) -> dict[str, Any]:
        """The activity showing a neutral message; the people it invites a chat with are looked up if needed."""
        return message_activity(message, self.names(self.people_to_chat_with(message.chat_with)))

    def people_to_chat_with(self, user_ids: tuple[str, ...]) -> dict[str, refs.TeamsUser]:
        """The people a message invites a chat with, each with a name and an Entra userPrincipalName when known.

        Chat deep links name people by UPN, which no activity carries (and people who joined by being added to a
        channel arrive without even a name): whoever lacks one is looked up once with the Bot Connector, in the
        team's roster (or their 1:1 chat), and stored. Someone the lookup can't name gets no link (the message still
        names them as well as it can) and is not asked about again for a day.
        """
        found: dict[str, refs.TeamsUser] = {}
        for user_id in dict.fromkeys(user_ids):
            known = self.person(user_id)
            if known is not None and known.upn and known.name:
                found[user_id] = known
                continue
            asked = self._upn_asked.get(user_id)
            if asked is None or time.monotonic() - asked >= UPN_RETRY_AFTER:
                looked_up = self._look_up_member(user_id, known)
                if looked_up is not None and looked_up.upn:
                    self._upn_asked.pop(user_id, None)
                else:
                    self._upn_asked[user_id] = time.monotonic()
                known = looked_up or known
            if known is not None:
                found[user_id] = known
        return found

    def _look_up_member(self, user_id: str, known: refs.TeamsUser | None) -> refs.TeamsUser | None:
        current = self._scope()
        team_group = self.team_id or (current.team_group_id if current else None)
        with Session(self.engine) as db:
            team = refs.team_conversation(db=db, team_group_id=team_group) if team_group else None
        if team is not None and team.team_id:
            service_url, conversation_id = team.service_url, team.team_id
        elif known is not None and known.personal_conversation_id:
            service_url, conversation_id = known.service_url, known.personal_conversation_id
        else:
            return None
        try:
            member = self.connector.get_conversation_member(
                service_url, conversation_id, known.bot_user_id if known else user_id
            )
        except (TeamsApiError, TokenError) as exc:
            platform_error("look up a member", exc)  # logged; the message goes without the link
            return None
        if not member.id.startswith("29:"):
            return None
        row = refs.TeamsUser(
            tenant_id=self.tenant_id,
            bot_user_id=member.id,
            aad_object_id=member.aad_object_id or (known.aad_object_id if known else None),
            name=member.name or (known.name if known else ""),
            upn=member.user_principal_name or member.email or (known.upn if known else None),
            service_url=service_url,
            personal_conversation_id=known.personal_conversation_id if known else None,
            updated_at=self.clock.now(),
        )
        self._remember_user(row)
        return row

    # -- ChatPlatform --------------------------------------------------------------------------------------------

    def create_channel(self, *, name: str, topic: str, purpose: str) -> ChannelRef:
        team = self._team()
        base = teams_channel_name(name)
        candidate = base
        for attempt in range(1, NAME_TAKEN_ATTEMPTS + 1):
            try:
                channel_id, url = self.graph.create_channel(team, candidate, (purpose or topic)[:DESCRIPTION_MAX])
                break
            except GraphError as exc:
                taken = exc.code == "NameAlreadyExists" or exc.status == 409
                if not taken or attempt == NAME_TAKEN_ATTEMPTS:
                    raise platform_error("create the channel", exc) from exc
                suffix = f"-{attempt + 1}"
                candidate = base[: CHANNEL_NAME_MAX - len(suffix)] + suffix
            except TokenError as exc:
                raise platform_error("create the channel", exc) from exc
        if len(name) > CHANNEL_NAME_MAX:
            self._note(f"Teams channel names are at most {CHANNEL_NAME_MAX} characters, so it is `{candidate}`.")
        self._remember_channel(team, channel_id)
        return ChannelRef(id=channel_id, name=candidate, url=url or None)

    def find_channel(self, *, name: str) -> ChannelRef | None:
        # Channels in copbot's own team are the ones it makes; Teams compares names without case.
        team = self._team()
        wanted = teams_channel_name(name)
        try:
            listed = self.graph.list_channels(team)
        except (GraphError, TokenError) as exc:
            raise platform_error("look up the channel", exc) from exc
        for channel_id, display_name, url in listed:
            if display_name.casefold() == wanted.casefold():
                self._remember_channel(team, channel_id)
                return ChannelRef(id=channel_id, name=display_name, url=url or None)
        return None

    def _remember_channel(self, team_group_id: str, channel_id: str) -> None:
        with Session(self.engine) as db:
            team = refs.team_conversation(db=db, team_group_id=team_group_id)
        current = self._scope()
        service_url = team.service_url if team else (current.service_url if current else None)
        if not service_url:
            return
        values: dict[str, Any] = {
            "tenant_id": self.tenant_id,
            "conversation_id": channel_id,
            "service_url": service_url,
            "conversation_type": "channel",
            "team_id": team.team_id if team else None,
            "team_group_id": team_group_id,
            "now": self.clock.now(),
        }
        self._write(lambda db: refs.save_conversation(db=db, **values))

    def invite(self, *, channel_id: str, user_ids: list[str]) -> None:
        # A standard channel is open to the whole team: being in the team is being able to see the channel.
        team = self._team()
        try:
            members = [m for m in self.graph.list_team_members(team) if m.user_id]
        except (GraphError, TokenError) as exc:
            platform_error("read the team members", exc)  # logged; not knowing the roster must not block a join
            members = None
        roster = {m.user_id for m in members} if members is not None else None
        self._remember_emails(members or [])
        for user_id in user_ids:
            known = self.person(user_id)
            aad = known.aad_object_id if known and known.aad_object_id else user_id
            if roster is not None and aad not in roster:
                who = known.name if known and known.name else "That person"
                raise PlatformError(
                    f"{who} isn't a member of the Teams team that holds the communities' channels, so they can't "
                    "see the channel. Ask a team owner to add them to the team, then try again.",
                    code="not_in_team",
                )
        self._note(
            "In Teams a standard channel is open to everyone in the team, so nobody needs adding: find the channel "
            "in the team's channel list (it may be under hidden channels)."
        )

    def _remember_emails(self, members: list[GraphMember]) -> None:
        """Graph names people by object id and e-mail: the e-mail fills a missing sign-in name (usually the same)."""
        emails = {m.user_id: m.email for m in members if m.user_id and m.email}
        if not emails:
            return

        def write(db: Session) -> None:
            for aad, email in emails.items():
                refs.save_upn(db=db, tenant_id=self.tenant_id, aad_object_id=aad, upn=email)

        self._write(write)

    def remove(self, *, channel_id: str, user_id: str) -> None:
        self._note(
            "Teams can't take one person out of a standard channel (it is open to the whole team), so the channel "
            "stays in your list; hide it if you like. copbot won't count you as a member any more."
        )

    def archive_channel(self, *, channel_id: str) -> None:
        log.info("teams channel kept: standard channels can't be archived through Graph")
        self._note(
            "Teams can't archive a standard channel, so its messages stay where they are. A team owner can hide or "
            "delete the channel in Teams."
        )

    def post(self, *, channel_id: str, message: Message) -> str:
        activity = self.render(message)
        if not self._is_channel(channel_id):
            return self.send_activity(channel_id, activity)
        # In a Teams channel every post starts a thread; its replies arrive as `<channel>;messageid=<id>`, so the id
        # returned (and stored, e.g. for a prompt) is that message id, not the Bot Framework activity id.
        service_url = self.service_url(channel_id)
        try:
            thread, activity_id = self.connector.create_channel_thread(
                service_url, channel_id=channel_id, tenant_id=self.tenant_id, activity=activity
            )
        except (ConnectorError, TokenError) as exc:
            raise platform_error("post in the channel", exc) from exc
        return thread.partition(THREAD_MARK)[2] or activity_id or ""

    def _is_channel(self, conversation_id: str) -> bool:
        """A Teams channel (not a chat): as stored, else by its id (`19:…@thread.tacv2`, older `@thread.skype`)."""
        with Session(self.engine) as db:
            row = refs.conversation(db=db, tenant_id=self.tenant_id, conversation_id=conversation_id)
        if row is not None and row.conversation_type:
            return row.conversation_type == "channel"
        return conversation_id.startswith("19:") and conversation_id.endswith(("@thread.tacv2", "@thread.skype"))

    def send_dm(self, *, user_id: str, message: Message) -> str:
        return self.send_activity_to_user(user_id, self.render(message))

    def send_group_dm(self, *, user_ids: list[str], message: Message) -> str:
        # Teams lets a bot start 1:1 chats and channel threads, never a group chat, so the caller sends each person
        # their own message instead (an introduction's deep link lets them open the group chat themselves).
        raise PlatformError("Teams bots can't start a group chat.", code="unsupported", transient=False)

    def update_message(self, *, channel_id: str, message_id: str, message: Message) -> None:
        """Replace a message copbot sent (Bot Connector update activity). A channel post is its thread's root, whose
        activity id is the thread's message id."""
        conversation = f"{channel_id}{THREAD_MARK}{message_id}" if self._is_channel(channel_id) else channel_id
        try:
            self.connector.update_activity(self.service_url(channel_id), conversation, message_id, self.render(message))
        except (ConnectorError, TokenError) as exc:
            raise platform_error("update a message", exc) from exc

    def upload_file(self, *, user_id: str, filename: str, content: bytes, title: str) -> None:
        """Offer a file in the person's 1:1 chat with a file-consent card; it reaches their OneDrive when they allow
        it (`answer_file_consent`). The bytes wait in the database meanwhile, never in a message."""
        if not content:
            raise PlatformError("That file is empty, so there is nothing to send.", code="file_empty")
        if len(content) > files.MAX_BYTES:
            raise PlatformError(
                f"That file is over {files.MAX_BYTES // (1024 * 1024)} MB, too big to send in Teams. "
                "Narrow it down, or ask whoever runs copbot for it.",
                code="file_too_big",
            )
        key = secrets.token_urlsafe(24)
        card = files.consent_attachment(filename=filename, description=title, size=len(content), key=key)
        self.send_activity_to_user(
            user_id,
            {
                "type": "message",
                "text": f"**{title}**: press **Allow** to save `{filename}` to your OneDrive.",
                "textFormat": "markdown",
                "attachments": [card],
            },
        )
        now = self.clock.now()

        def keep(db: Session) -> None:
            refs.add_pending_file(
                db=db, key=key, tenant_id=self.tenant_id, user_id=user_id, filename=filename, content=content, now=now
            )

        self._write(keep)

    def answer_file_consent(self, *, user_id: str, answer: files.ConsentAnswer) -> dict[str, Any]:
        """Finish what `upload_file` offered: upload on Allow, forget on Decline; the message to show the person."""
        with Session(self.engine) as db:
            row = refs.pending_file(db=db, key=answer.key, user_id=user_id)
            if row is None:
                return _text(
                    "That file is no longer waiting: it was answered already, or it expired. "
                    "Ask for it again (for example `/cop export`)."
                )
            filename, content = row.filename, row.content
            db.delete(row)  # answered either way: Teams never asks twice about one card
            db.commit()
        if not answer.accepted:
            return _text(f"OK, I haven't saved `{filename}` anywhere.")
        if answer.upload is None:
            log.warning("teams file consent accepted without uploadInfo")
            return _text("Teams didn't say where to put the file. Please ask for it again.")
        try:
            require_secure_url(answer.upload.upload_url, what="the OneDrive upload URL")
            files.upload(self.files_http, answer.upload, content)
        except (files.UploadError, ValueError) as exc:
            log.warning("teams file upload failed: %s", exc if isinstance(exc, files.UploadError) else "bad URL")
            return _text(f"I couldn't save `{filename}` to your OneDrive. Please ask for it again in a while.")
        return {"type": "message", "attachments": [files.file_info_attachment(answer.upload)]}

    def purge_pending_files(self, now: dt.datetime) -> int:
        """Delete offered files nobody answered within `PENDING_FILE_DAYS` (run with the minute tick)."""
        with Session(self.engine) as db:
            gone = refs.purge_pending_files(db=db, before=now - dt.timedelta(days=files.PENDING_FILE_DAYS))
            db.commit()
        if gone:
            log.info("deleted %d offered file(s) nobody answered", gone)
        return gone

    # -- sending -------------------------------------------------------------------------------------------------

    def send_activity(self, conversation_id: str, activity: dict[str, Any], *, reply_to: str | None = None) -> str:
        """Send an activity to a conversation (a reply in its thread when `reply_to` is given); its id or ""."""
        service_url = self.service_url(conversation_id.split(";", 1)[0])
        try:
            if reply_to:
                sent = self.connector.reply_to_activity(service_url, conversation_id, reply_to, activity)
            else:
                sent = self.connector.send_to_conversation(service_url, conversation_id, activity)
        except (ConnectorError, TokenError) as exc:
            raise platform_error("send a message", exc) from exc
        return sent or ""

    def send_activity_to_user(self, user_id: str, activity: dict[str, Any]) -> str:
        """Send an activity to a person's 1:1 chat with copbot, opening that chat when needed; its id or ""."""
        person = self.person(user_id) or self._find_in_team(user_id)
        if person is None:
            raise PlatformError(
                "I can't send that person a message in Teams yet: they need to be in the team, or to have chatted "
                "with copbot once.",
                code="unknown_user",
            )
        conversation_id = person.personal_conversation_id
        service_url = person.service_url
        try:
            if not conversation_id:
                conversation_id = self.connector.create_conversation(
                    service_url, bot_id=self.bot_id, tenant_id=self.tenant_id, member_id=person.bot_user_id
                )
                person.personal_conversation_id = conversation_id
                self._remember_user(person)
            sent = self.connector.send_to_conversation(service_url, conversation_id, activity)
        except (ConnectorError, TokenError) as exc:
            raise platform_error("send a direct message", exc) from exc
        return sent or ""


def _text(text: str) -> dict[str, Any]:
    return {"type": "message", "textFormat": "markdown", "text": text}


class _StoredNames:
    """Names from what copbot has stored: people from the Teams user table and members, channels from communities."""

    def __init__(self, platform: TeamsPlatform, learnt: dict[str, refs.TeamsUser]) -> None:
        self._platform = platform
        self._learnt = learnt

    def person(self, user_id: str) -> Person | None:
        known = self._learnt.get(user_id) or self._platform.person(user_id)
        name = known.name if known else ""
        if not name:
            with Session(self._platform.engine) as db:
                member = db.exec(
                    select(Member).where(
                        Member.platform == PLATFORM,
                        Member.workspace_id == self._platform.tenant_id,
                        Member.user_id == user_id,
                    )
                ).first()
            name = member.display_name if member else ""
        if not name:
            return None
        return Person(name=name, bot_user_id=known.bot_user_id if known else None, upn=known.upn if known else None)

    def channel(self, channel_id: str) -> str | None:
        with Session(self._platform.engine) as db:
            community = db.exec(
                select(Community).where(Community.platform == PLATFORM, Community.channel_id == channel_id)
            ).first()
        return community.channel_name if community else None
