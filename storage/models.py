"""SQLModel tables: communities, members, memberships and audit events."""

from __future__ import annotations

import datetime as dt
from enum import StrEnum

from sqlalchemy import Column, ForeignKey, Index, Integer, UniqueConstraint
from sqlmodel import Field, SQLModel

from storage.types import UTCDateTime


class Role(StrEnum):
    """A member's role in one community."""

    MEMBER = "member"
    FACILITATOR = "facilitator"


class Community(SQLModel, table=True):
    """A community of practice and its channel on one platform."""

    __tablename__ = "community"
    __table_args__ = (
        UniqueConstraint("platform", "workspace_id", "slug", name="uq_community_slug"),
        Index("ix_community_channel", "platform", "workspace_id", "channel_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    platform: str = Field(max_length=16)
    workspace_id: str = Field(max_length=64)
    slug: str = Field(max_length=80)
    name: str = Field(max_length=200)
    purpose: str = Field(default="", max_length=250)
    channel_id: str | None = Field(default=None, max_length=128)
    channel_name: str = Field(default="", max_length=80)
    timezone: str = Field(default="Europe/London", max_length=64)
    created_by: int | None = Field(
        default=None, sa_column=Column(Integer, ForeignKey("member.id", ondelete="SET NULL"), nullable=True)
    )
    created_at: dt.datetime = Field(sa_type=UTCDateTime)
    archived_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    # The reflective-prompt rhythm (docs/architecture.md §6: schedules are data).
    # Weekday 0 = Monday; time is local HH:MM.
    prompt_weekday: int | None = Field(default=None)
    prompt_time: str | None = Field(default=None, max_length=5)
    prompt_mode: str = Field(default="channel", max_length=8)
    prompt_paused: bool = Field(default=False)
    prompt_since: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    holiday_policy: str = Field(default="next-working-day", max_length=20)
    # Peer introductions (handlers/introductions.py): a round every N weeks on a weekday; None = not scheduled.
    intro_every_weeks: int | None = Field(default=None)
    intro_weekday: int | None = Field(default=None)
    intro_enrolment: str = Field(default="opt-out", max_length=8)
    intro_since: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)


class Member(SQLModel, table=True):
    """A person on a platform, their profile and their opt-ins."""

    __tablename__ = "member"
    __table_args__ = (UniqueConstraint("platform", "workspace_id", "user_id", name="uq_member_identity"),)

    id: int | None = Field(default=None, primary_key=True)
    platform: str = Field(max_length=16)
    workspace_id: str = Field(max_length=64)
    user_id: str = Field(max_length=128)
    display_name: str = Field(default="", max_length=200)
    profession: str | None = Field(default=None, max_length=100)
    organisation: str | None = Field(default=None, max_length=100)
    timezone: str | None = Field(default=None, max_length=64)
    prompts_opt_in: bool = Field(default=True)
    intros_opt_in: bool = Field(default=True)
    snoozed_until: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    created_at: dt.datetime = Field(sa_type=UTCDateTime)
    updated_at: dt.datetime = Field(sa_type=UTCDateTime)


class Membership(SQLModel, table=True):
    """A member's place in a community, with their role there."""

    __tablename__ = "membership"
    __table_args__ = (UniqueConstraint("community_id", "member_id", name="uq_membership"),)

    id: int | None = Field(default=None, primary_key=True)
    community_id: int = Field(
        sa_column=Column(Integer, ForeignKey("community.id", ondelete="CASCADE"), nullable=False, index=True)
    )
    member_id: int = Field(
        sa_column=Column(Integer, ForeignKey("member.id", ondelete="CASCADE"), nullable=False, index=True)
    )
    role: str = Field(default=Role.MEMBER, max_length=16)
    joined_at: dt.datetime = Field(sa_type=UTCDateTime)


class AuditEvent(SQLModel, table=True):
    """Who did what to whom, when: ids and counts only, never message text.

    No foreign keys on purpose: the audit outlives erased members and archived communities.
    """

    __tablename__ = "audit_event"
    __table_args__ = (Index("ix_audit_event_community_at", "community_id", "at"),)

    id: int | None = Field(default=None, primary_key=True)
    at: dt.datetime = Field(sa_type=UTCDateTime)
    action: str = Field(max_length=64)
    actor_member_id: int | None = Field(default=None)
    community_id: int | None = Field(default=None)
    target_member_id: int | None = Field(default=None)
    detail: str = Field(default="{}", max_length=2000)


class InboundEvent(SQLModel, table=True):
    """A platform event already handled (Slack `event_id`, a captured message): retries are recognised by key."""

    __tablename__ = "inbound_event"

    key: str = Field(primary_key=True, max_length=200)
    received_at: dt.datetime = Field(sa_type=UTCDateTime, index=True)
