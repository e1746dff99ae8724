"""Typed, keyword-only storage functions for communities, members, memberships and the audit log."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence

from sqlalchemy import delete, func
from sqlalchemy.sql.expression import Executable
from sqlmodel import Session, SQLModel, col, select

from storage.engine import dialect_insert
from storage.models import AuditEvent, Community, InboundEvent, Member, Membership, Role

# --- get-or-create ---------------------------------------------------------------------------------------------


def insert_or_ignore(*, db: Session, row: SQLModel, keys: Sequence[str]) -> bool:
    """Insert `row` unless a row with the same `keys` (one of its table's unique constraints) exists; True if inserted.

    Every get-or-create in storage is this followed by a read. `ON CONFLICT DO NOTHING` instead of catching
    `IntegrityError`: on PostgreSQL a failed INSERT aborts the caller's whole transaction, and a SAVEPOINT around it
    is unreliable on pysqlite (outside a transaction its RELEASE commits). A second inserter of the same key waits
    for the first to finish (PostgreSQL: the unique index; SQLite: the write lock), so the read after it sees the
    winner's row. `row` is only a carrier of values: it is not added to the session.
    """
    table = type(row).__table__  # type: ignore[attr-defined]
    values = {
        column.name: getattr(row, column.name)
        for column in table.columns
        if not (column.primary_key and getattr(row, column.name) is None)
    }
    statement: Executable = dialect_insert(db, table).values(**values).on_conflict_do_nothing(index_elements=list(keys))
    # Through the connection (same transaction), because `Session.execute` takes the ORM's bulk-insert path for a
    # mapped table and adds RETURNING; and SQLAlchemy keeps an INSERT's rowcount only when asked (psycopg: -1).
    result = db.connection().execute(statement, execution_options={"preserve_rowcount": True})
    return result.rowcount > 0


# --- members ---------------------------------------------------------------------------------------------------


def get_member(*, db: Session, platform: str, workspace_id: str, user_id: str) -> Member | None:
    """The member with this platform identity, if known."""
    return db.exec(
        select(Member).where(
            Member.platform == platform, Member.workspace_id == workspace_id, Member.user_id == user_id
        )
    ).first()


def ensure_member(
    *, db: Session, platform: str, workspace_id: str, user_id: str, display_name: str = "", now: dt.datetime
) -> Member:
    """The member with this identity, created on first sight; a newer display name is remembered.

    Safe when the same new person arrives twice at once (their join event and their first command): the read
    comes first so a known member costs no write (on SQLite a write would serialise every request).
    """
    member = get_member(db=db, platform=platform, workspace_id=workspace_id, user_id=user_id)
    if member is None:
        first = Member(
            platform=platform,
            workspace_id=workspace_id,
            user_id=user_id,
            display_name=display_name,
            created_at=now,
            updated_at=now,
        )
        insert_or_ignore(db=db, row=first, keys=("platform", "workspace_id", "user_id"))
        member = get_member(db=db, platform=platform, workspace_id=workspace_id, user_id=user_id)
        if member is None:  # only an erasure committed between the two statements gets here
            raise LookupError("the member was erased while being created")
    if display_name and member.display_name != display_name:
        member.display_name = display_name
        member.updated_at = now
        db.add(member)
    return member


def update_profile(*, db: Session, member: Member, changes: Mapping[str, str | None], now: dt.datetime) -> Member:
    """Set profile fields (profession, organisation, timezone); `None` clears one."""
    allowed = {"profession", "organisation", "timezone"}
    unknown = set(changes) - allowed
    if unknown:
        raise ValueError(f"not profile fields: {sorted(unknown)}")
    for key, value in changes.items():
        setattr(member, key, value)
    member.updated_at = now
    db.add(member)
    return member


# --- communities -----------------------------------------------------------------------------------------------


def reserve_community(
    *,
    db: Session,
    platform: str,
    workspace_id: str,
    slug: str,
    name: str,
    purpose: str,
    timezone: str,
    creator: Member,
    now: dt.datetime,
) -> Community | None:
    """A new community with no channel yet (a reservation of its name), whose creator is its first facilitator;
    None when the slug is taken, even by a concurrent create. The caller makes the channel, then `open_community`."""
    row = Community(
        platform=platform, workspace_id=workspace_id, slug=slug, name=name, purpose=purpose, timezone=timezone,
        created_by=creator.id, created_at=now,
    )  # fmt: skip
    if not insert_or_ignore(db=db, row=row, keys=("platform", "workspace_id", "slug")):
        return None
    community = db.exec(
        select(Community).where(
            Community.platform == platform, Community.workspace_id == workspace_id, Community.slug == slug
        )
    ).one()
    add_membership(db=db, community=community, member=creator, role=Role.FACILITATOR, now=now)
    return community


def create_community(
    *, db: Session, platform: str, workspace_id: str, slug: str, name: str, purpose: str, channel_id: str,
    channel_name: str, timezone: str, creator: Member, now: dt.datetime,
) -> Community:  # fmt: skip
    """A new community with its channel already made (imports, tests); raises ValueError when the slug is taken."""
    community = reserve_community(
        db=db, platform=platform, workspace_id=workspace_id, slug=slug, name=name, purpose=purpose,
        timezone=timezone, creator=creator, now=now,
    )  # fmt: skip
    if community is None:
        raise ValueError(f"a community with slug {slug!r} exists")
    open_community(db=db, community=community, channel_id=channel_id, channel_name=channel_name)
    return community


def open_community(*, db: Session, community: Community, channel_id: str, channel_name: str) -> None:
    """Record the channel made for a reserved community: from now on it is listed and can be joined."""
    community.channel_id = channel_id
    community.channel_name = channel_name
    db.add(community)
    db.flush()


def drop_reservation(*, db: Session, community: Community) -> None:
    """Forget a community whose channel could not be made (its memberships go with it)."""
    db.execute(delete(Membership).where(col(Membership.community_id) == community.id))
    db.execute(delete(Community).where(col(Community.id) == community.id))
    db.expunge(community)


def communities(
    *, db: Session, platform: str, workspace_id: str, include_archived: bool = False, include_reserved: bool = False
) -> list[Community]:
    """Communities in a workspace, by name; a reservation whose channel isn't made yet only when asked."""
    query = select(Community).where(Community.platform == platform, Community.workspace_id == workspace_id)
    if not include_reserved:
        query = query.where(col(Community.channel_id).is_not(None))
    if not include_archived:
        query = query.where(col(Community.archived_at).is_(None))
    return list(db.exec(query.order_by(func.lower(Community.name))))


def community_by_channel(*, db: Session, platform: str, workspace_id: str, channel_id: str) -> Community | None:
    """The community whose channel this is, if any."""
    return db.exec(
        select(Community).where(
            Community.platform == platform,
            Community.workspace_id == workspace_id,
            Community.channel_id == channel_id,
        )
    ).first()


def member_counts(*, db: Session, community_ids: Sequence[int]) -> dict[int, int]:
    """How many members each community has."""
    if not community_ids:
        return {}
    rows = db.exec(
        select(Membership.community_id, func.count())
        .where(col(Membership.community_id).in_(community_ids))
        .group_by(col(Membership.community_id))
    )
    return {community_id: count for community_id, count in rows}


def archive_community(*, db: Session, community: Community, now: dt.datetime) -> Community:
    """Mark a community archived (its data stays for the record)."""
    community.archived_at = now
    db.add(community)
    return community


# --- memberships -----------------------------------------------------------------------------------------------


def membership(*, db: Session, community: Community, member: Member) -> Membership | None:
    """The member's membership of the community, if any."""
    return db.exec(
        select(Membership).where(Membership.community_id == community.id, Membership.member_id == member.id)
    ).first()


def add_membership(
    *, db: Session, community: Community, member: Member, role: Role = Role.MEMBER, now: dt.datetime
) -> Membership:
    """Make `member` a member (or raise their role); idempotent, also when two requests add them at once."""
    existing = membership(db=db, community=community, member=member)
    if existing is None:
        assert community.id is not None
        assert member.id is not None
        row = Membership(community_id=community.id, member_id=member.id, role=role, joined_at=now)
        insert_or_ignore(db=db, row=row, keys=("community_id", "member_id"))
        existing = membership(db=db, community=community, member=member)
        if existing is None:  # only a `leave` committed between the two statements gets here
            raise LookupError("the membership was removed while being created")
    if role == Role.FACILITATOR and existing.role != Role.FACILITATOR:
        existing.role = Role.FACILITATOR
        db.add(existing)
    return existing


def remove_membership(*, db: Session, community: Community, member: Member) -> bool:
    """Take `member` out of `community`; False when they were not in it."""
    existing = membership(db=db, community=community, member=member)
    if existing is None:
        return False
    db.delete(existing)
    db.flush()
    return True


def set_role(*, db: Session, row: Membership, role: Role) -> Membership:
    """Change a membership's role."""
    row.role = role
    db.add(row)
    return row


def facilitators(*, db: Session, community: Community) -> list[Member]:
    """The community's facilitators, oldest first."""
    return list(
        db.exec(
            select(Member)
            .join(Membership, col(Membership.member_id) == col(Member.id))
            .where(Membership.community_id == community.id, Membership.role == Role.FACILITATOR)
            .order_by(col(Membership.joined_at), col(Membership.id))
        )
    )


def members_of(*, db: Session, community: Community) -> list[Member]:
    """Everyone in the community."""
    return list(
        db.exec(
            select(Member)
            .join(Membership, col(Membership.member_id) == col(Member.id))
            .where(Membership.community_id == community.id)
            .order_by(col(Member.id))
        )
    )


def communities_of(*, db: Session, member: Member) -> list[tuple[Community, Membership]]:
    """The (live) communities a member belongs to, with their membership."""
    rows = db.exec(
        select(Community, Membership)
        .join(Membership, col(Membership.community_id) == col(Community.id))
        .where(Membership.member_id == member.id, col(Community.archived_at).is_(None))
        .order_by(func.lower(Community.name))
    )
    return [(c, m) for c, m in rows]


# --- audit -----------------------------------------------------------------------------------------------------


def record_audit(
    *,
    db: Session,
    action: str,
    now: dt.datetime,
    actor: Member | None = None,
    community: Community | None = None,
    target: Member | None = None,
    detail: Mapping[str, str | int | bool | None] | None = None,
) -> AuditEvent:
    """Append an audit event; `detail` holds ids, names of things and counts, never message text."""
    event = AuditEvent(
        at=now,
        action=action,
        actor_member_id=actor.id if actor else None,
        community_id=community.id if community else None,
        target_member_id=target.id if target else None,
        detail=json.dumps(dict(detail or {}), sort_keys=True),
    )
    db.add(event)
    return event


def audit_events(*, db: Session, community: Community | None = None, limit: int = 100) -> list[AuditEvent]:
    """The latest audit events, newest first, optionally for one community."""
    query = select(AuditEvent)
    if community is not None:
        query = query.where(AuditEvent.community_id == community.id)
    return list(db.exec(query.order_by(col(AuditEvent.at).desc(), col(AuditEvent.id).desc()).limit(limit)))


# --- inbound de-duplication ------------------------------------------------------------------------------------


def claim_inbound_event(*, db: Session, key: str, now: dt.datetime) -> bool:
    """True the first time `key` is seen (then it is recorded), False for a retry or a duplicate."""
    return insert_or_ignore(db=db, row=InboundEvent(key=key, received_at=now), keys=("key",))
