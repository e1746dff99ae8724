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
import logging
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine
from sqlmodel import Session, select

from bot.teams._http import TeamsApiError
from bot.teams.cards import Names, Person, message_activity
from bot.teams.connector import ConnectorClient, ConnectorError
from bot.teams.graph import GraphClient, GraphError
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
FILE_TEXT_MAX = 20000  # a Teams message holds about 28 KB
_FORBIDDEN = re.compile(r"[~#%&*{}+/\\:<>?|'\"]")
TRANSIENT_STATUSES = frozenset({0, 408, 412, 429, 500, 502, 503, 504})

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
    ) -> None:
        self.engine = engine
        self.connector = connector
        self.graph = graph
        self.app_id = app_id
        self.tenant_id = tenant_id
        self.team_id = team_id
        self.clock: Clock = clock or SystemClock()
        self._local = threading.local()

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
            "now": self.clock.now(),
        }
        self._write(lambda db: refs.save_user(db=db, **values))  # type: ignore[arg-type]

    def names(self) -> Names:
        """How to show people and channels named in neutral markup."""
        return _StoredNames(self)

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
            roster = {m.user_id for m in self.graph.list_team_members(team) if m.user_id}
        except (GraphError, TokenError) as exc:
            platform_error("read the team members", exc)  # logged; not knowing the roster must not block a join
            roster = None
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
        return self.send_activity(channel_id, message_activity(message, self.names()))

    def send_dm(self, *, user_id: str, message: Message) -> str:
        return self.send_activity_to_user(user_id, message_activity(message, self.names()))

    def upload_file(self, *, user_id: str, filename: str, content: bytes, title: str) -> None:
        # A Teams bot can only attach a file through the file-consent flow (the person accepts, then copbot uploads
        # to their OneDrive). Until that is built, a text file small enough for one message is sent as a code block.
        try:
            text = content.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        if text is None or len(text) > FILE_TEXT_MAX or "```" in text:
            raise PlatformError(
                "That file is too big (or not plain text) to send as a Teams message, and copbot can't attach files "
                "in Teams yet. Ask whoever runs copbot for the export, or narrow it down.",
                code="file_not_sendable",
            )
        activity = {
            "type": "message",
            "textFormat": "markdown",
            "text": f"**{title}** ({filename})\n\n```\n{text}\n```",
        }
        self.send_activity_to_user(user_id, activity)

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


class _StoredNames:
    """Names from what copbot has stored: people from the Teams user table and members, channels from communities."""

    def __init__(self, platform: TeamsPlatform) -> None:
        self._platform = platform

    def person(self, user_id: str) -> Person | None:
        known = self._platform.person(user_id)
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
        return Person(name=name, bot_user_id=known.bot_user_id if known else None)

    def channel(self, channel_id: str) -> str | None:
        with Session(self._platform.engine) as db:
            community = db.exec(
                select(Community).where(Community.platform == PLATFORM, Community.channel_id == channel_id)
            ).first()
        return community.channel_name if community else None
