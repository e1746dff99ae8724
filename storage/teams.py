"""Teams tables and storage functions: conversation references and the people the bot has seen, for proactive sends.

The Bot Framework can only message a conversation it has an address for: the `serviceUrl` of the tenant's region,
the conversation id and the tenant. Every inbound activity refreshes these rows, so prompts, intros and DMs can be
sent later. Rows hold ids, addresses, names and sign-in names (for chat deep links) only, never message text.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Index, LargeBinary, UniqueConstraint, delete
from sqlalchemy.sql.expression import Executable
from sqlmodel import Field, Session, SQLModel, col, select

from storage.engine import dialect_insert
from storage.types import UTCDateTime

ID_MAX = 255  # Teams ids (`a:…`, `29:…`, `19:…@thread.tacv2`) run to 150+ characters


class TeamsConversation(SQLModel, table=True):
    """A conversation the bot can post to: a personal chat, a group chat or a team channel."""

    __tablename__ = "teams_conversation"
    __table_args__ = (
        UniqueConstraint("tenant_id", "conversation_id", name="uq_teams_conversation"),
        Index("ix_teams_conversation_team", "team_group_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    tenant_id: str = Field(max_length=64)
    conversation_id: str = Field(max_length=ID_MAX)
    conversation_type: str = Field(default="", max_length=16)  # personal | groupChat | channel
    service_url: str = Field(max_length=ID_MAX)
    channel_id: str = Field(default="msteams", max_length=32)  # the Bot Framework channel, not a Teams channel
    team_id: str | None = Field(default=None, max_length=ID_MAX)  # `19:…` id of the team (its General channel)
    team_group_id: str | None = Field(default=None, max_length=64)  # the team's Microsoft 365 group id (Graph)
    user_id: str | None = Field(default=None, max_length=ID_MAX)  # personal chats: the person's `29:…` id
    aad_object_id: str | None = Field(default=None, max_length=64)  # personal chats: the person's Entra object id
    updated_at: dt.datetime = Field(sa_type=UTCDateTime)


class TeamsUser(SQLModel, table=True):
    """A person the bot has seen: both of their ids, their name for mentions, and their 1:1 chat once opened."""

    __tablename__ = "teams_user"
    __table_args__ = (
        UniqueConstraint("tenant_id", "bot_user_id", name="uq_teams_user"),
        Index("ix_teams_user_aad", "tenant_id", "aad_object_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    tenant_id: str = Field(max_length=64)
    bot_user_id: str = Field(max_length=ID_MAX)  # `29:…`, what the Bot Connector calls the person
    aad_object_id: str | None = Field(default=None, max_length=64)  # what Graph (and copbot's user_id) calls them
    name: str = Field(default="", max_length=200)
    # The Entra userPrincipalName (e.g. jo.bloggs@nhs.net): Teams' chat deep links name people by it.
    upn: str | None = Field(default=None, max_length=ID_MAX)
    service_url: str = Field(max_length=ID_MAX)
    personal_conversation_id: str | None = Field(default=None, max_length=ID_MAX)
    updated_at: dt.datetime = Field(sa_type=UTCDateTime)


class TeamsPendingFile(SQLModel, table=True):
    """A file waiting for its recipient to allow it (a file-consent card was sent); deleted when they answer.

    Teams can only put a file into someone's OneDrive after they press Allow, possibly on another copbot process, so
    the bytes wait here. `key` is random and travels in the card; only the person it was sent to can use it.
    """

    __tablename__ = "teams_pending_file"
    __table_args__ = (
        UniqueConstraint("key", name="uq_teams_pending_file_key"),
        Index("ix_teams_pending_file_created", "created_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(max_length=64)
    tenant_id: str = Field(max_length=64)
    user_id: str = Field(max_length=64)  # copbot's id for the recipient (their Entra object id)
    filename: str = Field(max_length=255)
    content: bytes = Field(sa_type=LargeBinary)
    created_at: dt.datetime = Field(sa_type=UTCDateTime)


def _upsert(db: Session, table: Any, keys: tuple[str, ...], values: dict[str, Any], defaults: dict[str, Any]) -> None:
    """Insert or update one row atomically; a None in `values` never overwrites what is already stored."""
    row = {name: defaults.get(name) if value is None else value for name, value in values.items()}
    statement = dialect_insert(db, table).values(**row)
    changes = {
        name: statement.excluded[name] for name, value in values.items() if value is not None and name not in keys
    }
    upsert: Executable = statement.on_conflict_do_update(index_elements=list(keys), set_=changes)
    db.execute(upsert)


def save_conversation(
    *,
    db: Session,
    tenant_id: str,
    conversation_id: str,
    service_url: str,
    now: dt.datetime,
    conversation_type: str | None = None,
    channel_id: str | None = None,
    team_id: str | None = None,
    team_group_id: str | None = None,
    user_id: str | None = None,
    aad_object_id: str | None = None,
) -> None:
    """Remember (or refresh) the address of a conversation; unknown parts keep what was stored before."""
    _upsert(
        db,
        TeamsConversation.__table__,  # type: ignore[attr-defined]
        ("tenant_id", "conversation_id"),
        {
            "tenant_id": tenant_id,
            "conversation_id": conversation_id,
            "conversation_type": conversation_type,
            "service_url": service_url,
            "channel_id": channel_id,
            "team_id": team_id,
            "team_group_id": team_group_id,
            "user_id": user_id,
            "aad_object_id": aad_object_id,
            "updated_at": now,
        },
        {"conversation_type": "", "channel_id": "msteams"},
    )


def save_user(
    *,
    db: Session,
    tenant_id: str,
    bot_user_id: str,
    service_url: str,
    now: dt.datetime,
    aad_object_id: str | None = None,
    name: str | None = None,
    personal_conversation_id: str | None = None,
    upn: str | None = None,
) -> None:
    """Remember (or refresh) a person's ids, name, sign-in name (UPN) and, once known, their 1:1 chat with the bot."""
    _upsert(
        db,
        TeamsUser.__table__,  # type: ignore[attr-defined]
        ("tenant_id", "bot_user_id"),
        {
            "tenant_id": tenant_id,
            "bot_user_id": bot_user_id,
            "aad_object_id": aad_object_id,
            "name": name or None,
            "service_url": service_url,
            "personal_conversation_id": personal_conversation_id,
            "upn": upn or None,
            "updated_at": now,
        },
        {"name": ""},
    )


def save_upn(*, db: Session, tenant_id: str, aad_object_id: str, upn: str) -> int:
    """Fill in the sign-in name of the people with this Entra object id where none is stored yet; rows changed.

    For rosters that name people only by object id (Graph): a UPN the Bot Connector gave is never overwritten.
    """
    table = TeamsUser.__table__  # type: ignore[attr-defined]
    result = db.connection().execute(
        table.update()
        .where(table.c.tenant_id == tenant_id, table.c.aad_object_id == aad_object_id, table.c.upn.is_(None))
        .values(upn=upn)
    )
    return int(result.rowcount or 0)


def conversation(*, db: Session, tenant_id: str, conversation_id: str) -> TeamsConversation | None:
    """The stored address of one conversation, if the bot has seen it."""
    return db.exec(
        select(TeamsConversation).where(
            TeamsConversation.tenant_id == tenant_id, TeamsConversation.conversation_id == conversation_id
        )
    ).first()


def team_conversation(*, db: Session, team_group_id: str) -> TeamsConversation | None:
    """A channel conversation of the team with this Microsoft 365 group id (its General channel when known)."""
    rows = db.exec(
        select(TeamsConversation)
        .where(TeamsConversation.team_group_id == team_group_id, TeamsConversation.conversation_type == "channel")
        .order_by(col(TeamsConversation.updated_at).desc())
    ).all()
    general = [r for r in rows if r.team_id and r.conversation_id == r.team_id]
    found = general or list(rows)
    return found[0] if found else None


def latest_service_url(*, db: Session, tenant_id: str) -> str | None:
    """The service URL the tenant's traffic came from most recently (one region serves a whole tenant)."""
    row = db.exec(
        select(TeamsConversation)
        .where(TeamsConversation.tenant_id == tenant_id)
        .order_by(col(TeamsConversation.updated_at).desc())
    ).first()
    return row.service_url if row else None


def user_by_aad(*, db: Session, tenant_id: str, aad_object_id: str) -> TeamsUser | None:
    """The person with this Entra object id, if the bot has seen them."""
    return db.exec(
        select(TeamsUser)
        .where(TeamsUser.tenant_id == tenant_id, TeamsUser.aad_object_id == aad_object_id)
        .order_by(col(TeamsUser.updated_at).desc())
    ).first()


def user_by_bot_id(*, db: Session, tenant_id: str, bot_user_id: str) -> TeamsUser | None:
    """The person with this Bot Framework (`29:…`) id, if the bot has seen them."""
    return db.exec(
        select(TeamsUser).where(TeamsUser.tenant_id == tenant_id, TeamsUser.bot_user_id == bot_user_id)
    ).first()


def forget_user(*, db: Session, tenant_id: str, user_id: str) -> int:
    """Erase a person's Teams ids, name, 1:1 conversation and waiting files (by Entra or `29:…` id); rows removed."""
    users = db.exec(
        select(TeamsUser).where(
            TeamsUser.tenant_id == tenant_id,
            (col(TeamsUser.aad_object_id) == user_id) | (col(TeamsUser.bot_user_id) == user_id),
        )
    ).all()
    chats = db.exec(
        select(TeamsConversation).where(
            TeamsConversation.tenant_id == tenant_id,
            (col(TeamsConversation.aad_object_id) == user_id) | (col(TeamsConversation.user_id) == user_id),
        )
    ).all()
    for row in [*users, *chats]:
        db.delete(row)
    files = _delete_files(
        db, (col(TeamsPendingFile.tenant_id) == tenant_id) & (col(TeamsPendingFile.user_id) == user_id)
    )
    return len(users) + len(chats) + files


def add_pending_file(
    *, db: Session, key: str, tenant_id: str, user_id: str, filename: str, content: bytes, now: dt.datetime
) -> None:
    """Keep a file until its recipient answers the consent card."""
    db.add(
        TeamsPendingFile(
            key=key, tenant_id=tenant_id, user_id=user_id, filename=filename, content=content, created_at=now
        )
    )


def pending_file(*, db: Session, key: str, user_id: str) -> TeamsPendingFile | None:
    """The file behind a consent card, if it is still waiting and was sent to `user_id`."""
    return db.exec(
        select(TeamsPendingFile).where(TeamsPendingFile.key == key, TeamsPendingFile.user_id == user_id)
    ).first()


def purge_pending_files(*, db: Session, before: dt.datetime) -> int:
    """Delete files nobody answered for since `before`; the number deleted."""
    return _delete_files(db, col(TeamsPendingFile.created_at) < before)


def _delete_files(db: Session, condition: Any) -> int:
    """Delete waiting files in one statement, without reading their bytes; the number deleted."""
    result = db.connection().execute(delete(TeamsPendingFile).where(condition))
    return int(result.rowcount or 0)
