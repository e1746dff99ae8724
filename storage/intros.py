"""Introduction tables and storage functions: rounds, groups, pairing history and follow-ups."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from sqlalchemy import Column, ForeignKey, Integer, UniqueConstraint, func, update
from sqlalchemy.sql.expression import Executable
from sqlmodel import Field, Session, SQLModel, col, select

from storage.engine import dialect_insert
from storage.repository import insert_or_ignore
from storage.types import UTCDateTime

ANSWERS = ("yes", "not_yet", "no")


class IntroRound(SQLModel, table=True):
    """One matching run in one community (scheduled or `intros run`); `key` makes planning idempotent."""

    __tablename__ = "intro_round"
    __table_args__ = (UniqueConstraint("key", name="uq_intro_round_key"),)

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(max_length=120)
    community_id: int = Field(
        sa_column=Column(Integer, ForeignKey("community.id", ondelete="CASCADE"), nullable=False, index=True)
    )
    number: int
    seed: int
    status: str = Field(default="planned", max_length=12)  # planned -> matching -> matched
    due_at: dt.datetime = Field(sa_type=UTCDateTime)
    followup_at: dt.datetime = Field(sa_type=UTCDateTime)
    created_at: dt.datetime = Field(sa_type=UTCDateTime)
    matched_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    participants: int = Field(default=0)
    unpaired: int = Field(default=0)


class IntroSkip(SQLModel, table=True):
    """A member's "Skip this round" for one round."""

    __tablename__ = "intro_skip"
    __table_args__ = (UniqueConstraint("round_id", "member_id", name="uq_intro_skip"),)

    id: int | None = Field(default=None, primary_key=True)
    round_id: int = Field(
        sa_column=Column(Integer, ForeignKey("intro_round.id", ondelete="CASCADE"), nullable=False, index=True)
    )
    member_id: int = Field(
        sa_column=Column(Integer, ForeignKey("member.id", ondelete="CASCADE"), nullable=False, index=True)
    )
    created_at: dt.datetime = Field(sa_type=UTCDateTime)


class IntroEnrolment(SQLModel, table=True):
    """A member's own choice for one community ("in" or "out"), which beats the community's default."""

    __tablename__ = "intro_enrolment"
    __table_args__ = (UniqueConstraint("community_id", "member_id", name="uq_intro_enrolment"),)

    id: int | None = Field(default=None, primary_key=True)
    community_id: int = Field(
        sa_column=Column(Integer, ForeignKey("community.id", ondelete="CASCADE"), nullable=False, index=True)
    )
    member_id: int = Field(
        sa_column=Column(Integer, ForeignKey("member.id", ondelete="CASCADE"), nullable=False, index=True)
    )
    choice: str = Field(max_length=4)
    updated_at: dt.datetime = Field(sa_type=UTCDateTime)


class IntroGroup(SQLModel, table=True):
    """A pair (or the round's one trio) introduced to each other."""

    __tablename__ = "intro_group"

    id: int | None = Field(default=None, primary_key=True)
    round_id: int = Field(
        sa_column=Column(Integer, ForeignKey("intro_round.id", ondelete="CASCADE"), nullable=False, index=True)
    )
    starter_id: str = Field(max_length=80)


class IntroGroupMember(SQLModel, table=True):
    """One person in a group, their profile as it was when matched (for the figures) and their follow-up answer."""

    __tablename__ = "intro_group_member"
    __table_args__ = (UniqueConstraint("group_id", "member_id", name="uq_intro_group_member"),)

    id: int | None = Field(default=None, primary_key=True)
    group_id: int = Field(
        sa_column=Column(Integer, ForeignKey("intro_group.id", ondelete="CASCADE"), nullable=False, index=True)
    )
    member_id: int = Field(
        sa_column=Column(Integer, ForeignKey("member.id", ondelete="CASCADE"), nullable=False, index=True)
    )
    profession: str | None = Field(default=None, max_length=100)
    organisation: str | None = Field(default=None, max_length=100)
    answer: str | None = Field(default=None, max_length=8)
    answered_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)


# --- rounds --------------------------------------------------------------------------------------------------------


def add_round(
    *, db: Session, key: str, community_id: int, due_at: dt.datetime, followup_at: dt.datetime, now: dt.datetime
) -> IntroRound | None:
    """Create the round with this key (numbered after the community's last one); None when it exists already."""
    if round_by_key(db=db, key=key) is not None:
        return None
    last = db.exec(select(func.max(IntroRound.number)).where(IntroRound.community_id == community_id)).one()
    number = int(last or 0) + 1
    row = IntroRound(
        key=key, community_id=community_id, number=number, seed=community_id * 100_003 + number, due_at=due_at,
        followup_at=followup_at, created_at=now,
    )  # fmt: skip
    if not insert_or_ignore(db=db, row=row, keys=("key",)):  # another instance made it between our check and insert
        return None
    return round_by_key(db=db, key=key)


def round_by_key(*, db: Session, key: str) -> IntroRound | None:
    """The round with this key, if any."""
    return db.exec(select(IntroRound).where(IntroRound.key == key)).first()


def rounds_of(*, db: Session, community_id: int, matched_only: bool = True) -> list[IntroRound]:
    """A community's rounds, oldest first."""
    query = select(IntroRound).where(IntroRound.community_id == community_id)
    if matched_only:
        query = query.where(IntroRound.status == "matched")
    return list(db.exec(query.order_by(col(IntroRound.number))))


def claim_round(*, db: Session, round_id: int) -> bool:
    """Move a planned round to `matching`; False when another process (or an earlier tick) already took it."""
    result = db.execute(
        update(IntroRound)
        .where(col(IntroRound.id) == round_id, col(IntroRound.status) == "planned")
        .values(status="matching")
    )
    return bool(getattr(result, "rowcount", 0))


def finish_round(*, db: Session, row: IntroRound, participants: int, unpaired: int, now: dt.datetime) -> None:
    """Mark a round as matched, with how many took part and how many were left without a partner."""
    row.status, row.matched_at, row.participants, row.unpaired = "matched", now, participants, unpaired
    db.add(row)


# --- participation ---------------------------------------------------------------------------------------------------


def skip(*, db: Session, round_id: int, member_id: int, now: dt.datetime) -> bool:
    """Record "skip this round"; False when it was recorded already (a double click lands here too)."""
    row = IntroSkip(round_id=round_id, member_id=member_id, created_at=now)
    return insert_or_ignore(db=db, row=row, keys=("round_id", "member_id"))


def skipped(*, db: Session, round_id: int) -> set[int]:
    """Members who asked to skip this round."""
    return set(db.exec(select(IntroSkip.member_id).where(IntroSkip.round_id == round_id)))


def set_enrolment(*, db: Session, community_id: int, member_id: int, choice: str, now: dt.datetime) -> None:
    """Record a member's own "in" or "out" for a community (one atomic upsert, so two at once cannot collide)."""
    table = IntroEnrolment.__table__  # type: ignore[attr-defined]
    statement = dialect_insert(db, table).values(
        community_id=community_id, member_id=member_id, choice=choice, updated_at=now
    )
    upsert: Executable = statement.on_conflict_do_update(
        index_elements=["community_id", "member_id"],
        set_={"choice": statement.excluded.choice, "updated_at": statement.excluded.updated_at},
    )
    db.execute(upsert)


def enrolments(*, db: Session, community_id: int) -> dict[int, str]:
    """Member id -> their own choice ("in" / "out") for this community."""
    rows = db.exec(
        select(IntroEnrolment.member_id, IntroEnrolment.choice).where(IntroEnrolment.community_id == community_id)
    )
    return {member_id: choice for member_id, choice in rows}


# --- groups, history and answers -------------------------------------------------------------------------------------


def add_group(
    *, db: Session, round_id: int, starter_id: str, people: Sequence[tuple[int, str | None, str | None]]
) -> IntroGroup:
    """Store one group: (member id, profession, organisation) for each person in it."""
    group = IntroGroup(round_id=round_id, starter_id=starter_id)
    db.add(group)
    db.flush()
    assert group.id is not None
    for member_id, profession, organisation in people:
        db.add(
            IntroGroupMember(group_id=group.id, member_id=member_id, profession=profession, organisation=organisation)
        )
    db.flush()
    return group


def group_rows(*, db: Session, round_ids: Sequence[int]) -> list[tuple[IntroGroup, IntroGroupMember]]:
    """Every (group, person) of these rounds, by group then member."""
    if not round_ids:
        return []
    rows = db.exec(
        select(IntroGroup, IntroGroupMember)
        .join(IntroGroupMember, col(IntroGroupMember.group_id) == col(IntroGroup.id))
        .where(col(IntroGroup.round_id).in_(list(round_ids)))
        .order_by(col(IntroGroup.id), col(IntroGroupMember.member_id))
    )
    return [(g, m) for g, m in rows]


def history(*, db: Session, community_id: int) -> dict[frozenset[int], int]:
    """Who has met in this community: a pair of member ids -> the number of the latest round they shared."""
    rounds = {r.id: r.number for r in rounds_of(db=db, community_id=community_id)}
    by_group: dict[int, tuple[int, list[int]]] = {}
    for group, person in group_rows(db=db, round_ids=[i for i in rounds if i is not None]):
        assert group.id is not None
        by_group.setdefault(group.id, (rounds[group.round_id], []))[1].append(person.member_id)
    met: dict[frozenset[int], int] = {}
    for number, people in by_group.values():
        for i, a in enumerate(people):
            for b in people[i + 1 :]:
                key = frozenset((a, b))
                met[key] = max(met.get(key, 0), number)
    return met


def group_member(*, db: Session, group_id: int, member_id: int) -> IntroGroupMember | None:
    """A person's place in a group (where their follow-up answer is kept)."""
    return db.exec(
        select(IntroGroupMember).where(IntroGroupMember.group_id == group_id, IntroGroupMember.member_id == member_id)
    ).first()


def record_answer(*, db: Session, row: IntroGroupMember, answer: str, now: dt.datetime) -> bool:
    """Store a follow-up answer; False when it is the answer already stored (a duplicate click)."""
    if answer not in ANSWERS:
        raise ValueError(f"unknown answer {answer!r}")
    if row.answer == answer:
        return False
    row.answer, row.answered_at = answer, now
    db.add(row)
    db.flush()
    return True
