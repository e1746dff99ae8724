"""Rhythm tables and storage functions: prompt occurrences, the outbox, custom prompts and reflections."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from enum import StrEnum
from typing import Any

from sqlalchemy import Column, ForeignKey, Index, Integer, Text, UniqueConstraint, func, or_, update
from sqlmodel import Field, Session, SQLModel, col, select

from storage.repository import insert_or_ignore
from storage.types import UTCDateTime


class OutboxStatus(StrEnum):
    """Where an outbox row is in its life."""

    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    CANCELLED = "cancelled"
    FAILED = "failed"


class PromptOccurrence(SQLModel, table=True):
    """One scheduled (or `prompt now`) prompt in one community: the rotation history and what replies attach to."""

    __tablename__ = "prompt_occurrence"
    __table_args__ = (UniqueConstraint("key", name="uq_prompt_occurrence_key"),)

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(max_length=120)
    community_id: int = Field(
        sa_column=Column(Integer, ForeignKey("community.id", ondelete="CASCADE"), nullable=False, index=True)
    )
    prompt_id: str = Field(max_length=80)
    mode: str = Field(max_length=8)
    due_at: dt.datetime = Field(sa_type=UTCDateTime)
    skipped: bool = Field(default=False)
    created_at: dt.datetime = Field(sa_type=UTCDateTime)


class OutboxItem(SQLModel, table=True):
    """One delivery to one destination at one due time (docs/architecture.md §6).

    `dedupe_key` makes enqueueing idempotent."""

    __tablename__ = "outbox"
    __table_args__ = (
        UniqueConstraint("dedupe_key", name="uq_outbox_dedupe_key"),
        Index("ix_outbox_ready", "status", "due_at", "id"),
        Index("ix_outbox_destination", "destination", "sent_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    dedupe_key: str = Field(max_length=200)
    kind: str = Field(max_length=32)
    platform: str = Field(max_length=16)
    workspace_id: str = Field(max_length=64)
    community_id: int | None = Field(default=None, index=True)
    occurrence_id: int | None = Field(default=None, index=True)
    member_id: int | None = Field(default=None)
    destination: str = Field(max_length=140)  # "channel:<id>", "user:<id>" or "group:<id>,<id>…"
    payload: str = Field(sa_column=Column(Text, nullable=False))
    due_at: dt.datetime = Field(sa_type=UTCDateTime)
    status: str = Field(default=OutboxStatus.PENDING, max_length=16)
    attempts: int = Field(default=0)
    next_attempt_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    lease_until: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    claimed_by: str | None = Field(default=None, max_length=64)
    platform_message_id: str | None = Field(default=None, max_length=128)
    platform_channel_id: str | None = Field(default=None, max_length=128)
    sent_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_error: str | None = Field(default=None, max_length=64)
    created_at: dt.datetime = Field(sa_type=UTCDateTime)


class CustomPrompt(SQLModel, table=True):
    """A prompt a facilitator added (`/cop prompt add`), PII-checked before it was stored."""

    __tablename__ = "custom_prompt"

    id: int | None = Field(default=None, primary_key=True)
    community_id: int = Field(
        sa_column=Column(Integer, ForeignKey("community.id", ondelete="CASCADE"), nullable=False, index=True)
    )
    text: str = Field(max_length=500)
    created_by: int | None = Field(default=None)
    created_at: dt.datetime = Field(sa_type=UTCDateTime)


class Reflection(SQLModel, table=True):
    """A reply to a delivered prompt, PII-guarded before it was stored; never logged."""

    __tablename__ = "reflection"
    __table_args__ = (UniqueConstraint("source_channel", "source_message", name="uq_reflection_source"),)

    id: int | None = Field(default=None, primary_key=True)
    occurrence_id: int = Field(
        sa_column=Column(Integer, ForeignKey("prompt_occurrence.id", ondelete="CASCADE"), nullable=False, index=True)
    )
    outbox_id: int | None = Field(default=None)
    community_id: int = Field(
        sa_column=Column(Integer, ForeignKey("community.id", ondelete="CASCADE"), nullable=False, index=True)
    )
    member_id: int = Field(
        sa_column=Column(Integer, ForeignKey("member.id", ondelete="CASCADE"), nullable=False, index=True)
    )
    text: str = Field(sa_column=Column(Text, nullable=False))
    source_channel: str = Field(max_length=128)
    source_message: str = Field(max_length=128)
    created_at: dt.datetime = Field(sa_type=UTCDateTime)
    promoted_story_id: int | None = Field(default=None)


# --- occurrences ---------------------------------------------------------------------------------------------------


def add_occurrence(
    *, db: Session, key: str, community_id: int, prompt_id: str, mode: str, due_at: dt.datetime, skipped: bool,
    now: dt.datetime,
) -> PromptOccurrence | None:  # fmt: skip
    """Record an occurrence; None when one with this key exists already (so a tick is idempotent)."""
    if db.exec(select(PromptOccurrence).where(PromptOccurrence.key == key)).first() is not None:
        return None
    occurrence = PromptOccurrence(
        key=key, community_id=community_id, prompt_id=prompt_id, mode=mode, due_at=due_at, skipped=skipped,
        created_at=now,
    )  # fmt: skip
    if not insert_or_ignore(db=db, row=occurrence, keys=("key",)):  # another instance made it after our check
        return None
    return db.exec(select(PromptOccurrence).where(PromptOccurrence.key == key)).one()


def existing_occurrence_keys(*, db: Session, keys: Sequence[str]) -> set[str]:
    """Which of these occurrence keys exist already (one query per 500 keys)."""
    found: set[str] = set()
    for start in range(0, len(keys), 500):
        chunk = list(keys[start : start + 500])
        found.update(db.exec(select(PromptOccurrence.key).where(col(PromptOccurrence.key).in_(chunk))))
    return found


def occurrence_history(*, db: Session, community_id: int) -> list[str]:
    """Prompt ids sent to a community, oldest first (rotation input)."""
    rows = db.exec(
        select(PromptOccurrence.prompt_id)
        .where(PromptOccurrence.community_id == community_id)
        .order_by(col(PromptOccurrence.due_at), col(PromptOccurrence.id))
    )
    return list(rows)


def latest_occurrence(*, db: Session, community_id: int) -> PromptOccurrence | None:
    """The community's most recent occurrence."""
    return db.exec(
        select(PromptOccurrence)
        .where(PromptOccurrence.community_id == community_id)
        .order_by(col(PromptOccurrence.due_at).desc(), col(PromptOccurrence.id).desc())
    ).first()


# --- outbox --------------------------------------------------------------------------------------------------------


def enqueue(
    *,
    db: Session,
    dedupe_key: str,
    kind: str,
    platform: str,
    workspace_id: str,
    destination: str,
    payload: dict[str, Any],
    due_at: dt.datetime,
    now: dt.datetime,
    community_id: int | None = None,
    occurrence_id: int | None = None,
    member_id: int | None = None,
) -> bool:
    """Insert-or-ignore one delivery; False when a row with `dedupe_key` already exists."""
    row = OutboxItem(
        dedupe_key=dedupe_key, kind=kind, platform=platform, workspace_id=workspace_id, destination=destination,
        payload=json.dumps(payload, sort_keys=True), due_at=due_at, status=OutboxStatus.PENDING, attempts=0,
        created_at=now, community_id=community_id, occurrence_id=occurrence_id, member_id=member_id,
    )  # fmt: skip
    return insert_or_ignore(db=db, row=row, keys=("dedupe_key",))


def claim(*, db: Session, worker: str, now: dt.datetime, lease: dt.timedelta, limit: int) -> list[OutboxItem]:
    """Atomically take up to `limit` due rows (pending, or sending with an expired lease) for `worker`.

    PostgreSQL: `FOR UPDATE SKIP LOCKED`, so any number of dispatchers can claim concurrently without overlap.
    SQLite: the ids are read without a lock, then the UPDATE, which runs under the database's single write lock,
    tests each row is still due, so a row another dispatcher sharing the file took meanwhile is skipped; when
    every row read was taken so, the read is repeated (a few times), so a busy neighbour never looks like no work.
    """
    ready = or_(
        (col(OutboxItem.status) == OutboxStatus.PENDING)
        & (col(OutboxItem.due_at) <= now)
        & (col(OutboxItem.next_attempt_at).is_(None) | (col(OutboxItem.next_attempt_at) <= now)),
        (col(OutboxItem.status) == OutboxStatus.SENDING) & (col(OutboxItem.lease_until) < now),
    )
    pick = select(OutboxItem.id).where(ready).order_by(col(OutboxItem.due_at), col(OutboxItem.id)).limit(limit)
    if db.get_bind().dialect.name == "postgresql":
        pick = pick.with_for_update(skip_locked=True)
    for _ in range(_CLAIM_TRIES):
        ids = list(db.exec(pick))
        if not ids:
            db.commit()
            return []
        db.execute(
            update(OutboxItem)
            .where(col(OutboxItem.id).in_(ids), ready)
            .values(
                status=OutboxStatus.SENDING, lease_until=now + lease, claimed_by=worker,
                attempts=OutboxItem.attempts + 1,
            )
        )  # fmt: skip
        db.commit()
        rows = list(
            db.exec(
                select(OutboxItem)
                .where(
                    col(OutboxItem.id).in_(ids),
                    OutboxItem.status == OutboxStatus.SENDING,
                    OutboxItem.claimed_by == worker,
                    OutboxItem.lease_until == now + lease,
                )
                .order_by(col(OutboxItem.due_at), col(OutboxItem.id))
            )
        )
        if rows:
            return rows
    return []


_CLAIM_TRIES = 5


def mark_sent(
    *, db: Session, item_id: int, worker: str, message_id: str, channel_id: str | None, now: dt.datetime
) -> None:
    """Record a successful send (only if this worker still holds the row), committed at once."""
    table = OutboxItem.__table__  # type: ignore[attr-defined]
    db.connection().execute(
        table.update()
        .where(table.c.id == item_id, table.c.claimed_by == worker)
        .values(status=OutboxStatus.SENT, platform_message_id=message_id, platform_channel_id=channel_id, sent_at=now,
                lease_until=None, last_error=None)
    )  # fmt: skip
    db.commit()


def release(
    *, db: Session, item_id: int, worker: str, retry_at: dt.datetime | None, error: str, give_up: bool = False
) -> None:
    """Put a claimed row back (to retry at `retry_at`), or finish it as failed/cancelled when `give_up`."""
    status = (
        OutboxStatus.PENDING
        if not give_up
        else (OutboxStatus.CANCELLED if error == "cancelled" else OutboxStatus.FAILED)
    )
    table = OutboxItem.__table__  # type: ignore[attr-defined]
    db.connection().execute(
        table.update()
        .where(table.c.id == item_id, table.c.claimed_by == worker)
        .values(status=status, next_attempt_at=retry_at, lease_until=None, last_error=error[:64])
    )
    db.commit()


def pending_count(*, db: Session) -> int:
    """Rows not yet sent, failed or cancelled."""
    return int(
        db.exec(
            select(func.count())
            .select_from(OutboxItem)
            .where(col(OutboxItem.status).in_([OutboxStatus.PENDING, OutboxStatus.SENDING]))
        ).one()
    )


def latest_sent_to(*, db: Session, destination: str, kinds: Sequence[str], since: dt.datetime) -> OutboxItem | None:
    """The newest delivery of these kinds sent to a destination since a time (for DM reply attribution)."""
    return db.exec(
        select(OutboxItem)
        .where(
            OutboxItem.destination == destination,
            col(OutboxItem.kind).in_(list(kinds)),
            col(OutboxItem.sent_at) >= since,
        )
        .order_by(col(OutboxItem.sent_at).desc(), col(OutboxItem.id).desc())
    ).first()


def sent_with_message(*, db: Session, channel_id: str, message_id: str) -> OutboxItem | None:
    """The delivery whose platform message is (channel, message id): what a thread reply answers."""
    return db.exec(
        select(OutboxItem).where(
            OutboxItem.platform_channel_id == channel_id, OutboxItem.platform_message_id == message_id
        )
    ).first()


# --- custom prompts and reflections --------------------------------------------------------------------------------


def custom_prompts(*, db: Session, community_id: int) -> list[CustomPrompt]:
    """A community's own prompts, oldest first."""
    return list(
        db.exec(select(CustomPrompt).where(CustomPrompt.community_id == community_id).order_by(col(CustomPrompt.id)))
    )


def add_reflection(
    *, db: Session, occurrence_id: int, outbox_id: int | None, community_id: int, member_id: int, text: str,
    source_channel: str, source_message: str, now: dt.datetime,
) -> Reflection | None:  # fmt: skip
    """Store a reflection once per source message; None when this message was captured already."""
    existing = db.exec(
        select(Reflection).where(
            Reflection.source_channel == source_channel, Reflection.source_message == source_message
        )
    ).first()
    if existing is not None:
        return None
    row = Reflection(
        occurrence_id=occurrence_id, outbox_id=outbox_id, community_id=community_id, member_id=member_id, text=text,
        source_channel=source_channel, source_message=source_message, created_at=now,
    )  # fmt: skip
    # A platform retry of the same message, handled by another process at the same moment, loses here.
    if not insert_or_ignore(db=db, row=row, keys=("source_channel", "source_message")):
        return None
    return db.exec(
        select(Reflection).where(
            Reflection.source_channel == source_channel, Reflection.source_message == source_message
        )
    ).one()


def reflections_since(*, db: Session, community_id: int, since: dt.datetime) -> list[Reflection]:
    """Reflections in a community since a time."""
    return list(
        db.exec(
            select(Reflection)
            .where(Reflection.community_id == community_id, col(Reflection.created_at) >= since)
            .order_by(col(Reflection.id))
        )
    )
