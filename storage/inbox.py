"""The inbox: every acknowledged platform request, written down before the acknowledgement, until a worker has run it.

The HTTP path verifies a request, `put`s one row and commits, then acknowledges; workers `claim` rows, run the core,
and `finish` or `fail` them. The rules (issue 14, point 3):

- **At least once, never lost.** A claim is a lease: a worker that dies mid-row leaves it `working` with a lease that
  runs out, and the next claim after that takes it again. Handlers are idempotent on the inbox id.
- **One person's requests in arrival order, one at a time.** Rows share an `order_key` (one person: "slack:T1:U1");
  only the oldest row of an order key that is not yet done or parked can be claimed, and only when it is due. So a
  later row waits while an earlier one is being worked on or is backing off after a failure. "Arrival" is the id
  order: a row whose INSERT has not committed yet is invisible, so two requests of one person that arrive at the same
  instant may run either way round.
- **Fair across workspaces, round-robin by age.** Within one claim, due rows are ranked inside their workspace by id
  and handed out by rank: every workspace's oldest first, then every workspace's second-oldest, and so on, up to
  `limit`. With W workspaces waiting no workspace gets more than ceil(limit / W) of a full claim, and a workspace
  alone gets the whole claim. A flood of a thousand rows from one workspace therefore delays another workspace's
  next row by at most one claim.
- **Poison rows are parked, not retried for ever.** `attempts` counts claims. A failure backs off (2 s, doubling, at
  most 5 minutes) until the row has been tried `max_attempts` times, then it is parked with its error code and the
  caller replies "please try again" once. A row whose workers keep dying (the lease runs out each time) is parked by
  the claim that would have handed it out for the extra time, and comes back from that claim with status `parked`.

**Exactly once, as far as a platform allows** (issue 14, point 2). A worker runs the core for a row with two
records that make a retry repeat nothing:

- its **results** (`InboxResult`, one per unit of the core the row ran): the deliveries the core's replies became
  (JSON steps, e.g. "post this in the channel"), written by `record_result` *in the core's own transaction*, so the
  core's writes and the steps are stored together or not at all. A retry skips every unit with a result and only
  delivers what is not delivered. A result is unique per (row, unit): of two workers that ran one row (a lease ran
  out), the second to commit finds the first's result and rolls its own work back (`LeaseLost`).
- the **effect journal** (`InboxEffect`): every platform call a row makes (the core's channel posts and invitations,
  then each delivery step), numbered in the order made, recorded as soon as the platform has answered. A retry runs
  the same code on the same state (the core's transaction was rolled back), so the same calls come in the same
  order, and each one already journaled returns its recorded answer instead of being made again. Only a call that
  was in flight at the crash (the platform did it, the journal did not hear) can happen twice.

**Where the tables live** (`open_queue`, `open_journal`). On PostgreSQL all three are in the database. On SQLite the
queue is the side file `<db>-inbox`, the journal the side file `<db>-effects`, and only the results are in the
database itself: SQLite has one writer per file, and the core's transactions hold the database's lock while they
call the platform, so an acknowledgement's INSERT there would wait behind the work (measured: ack p99 over 300 ms
at 200 requests/s), and a journal entry would wait for the very transaction it must outlive; the journal has a file
of its own because it is written once per platform call, the queue about once per request. The side files' tables
are made by `_side` (CREATE IF NOT EXISTS), not by the migrations, which make the same tables in the database for
PostgreSQL (unused in a SQLite database); a change to these tables must also change `_side`'s callers.

`payload` and the results hold what the person typed: they are excluded from reprs, dropped when the row is done,
and never logged; `last_error` is a short code, never a message (`fail` refuses anything else).
"""

from __future__ import annotations

import datetime as dt
import json
import re
import threading
import weakref
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    Column,
    ColumnElement,
    Engine,
    Index,
    Select,
    Table,
    Text,
    UniqueConstraint,
    and_,
    delete,
    event,
    func,
    or_,
)
from sqlalchemy import select as core_select
from sqlalchemy.schema import CreateIndex, CreateTable
from sqlmodel import Field, Session, SQLModel, col, select

from storage.repository import insert_or_ignore
from storage.types import UTCDateTime

MAX_ATTEMPTS = 5
FIRST_RETRY = dt.timedelta(seconds=2)
LONGEST_RETRY = dt.timedelta(minutes=5)

_CODE = re.compile(r"[a-z0-9][a-z0-9_.:-]{0,63}")  # an error code or a kind: never free text


class InboxStatus(StrEnum):
    """Where an inbox row is in its life; `done` and `parked` are final."""

    PENDING = "pending"
    WORKING = "working"
    DONE = "done"
    PARKED = "parked"


class InboxItem(SQLModel, table=True):
    """One platform request to run later; `dedupe_key` is the platform's own id for it (retries carry the same)."""

    __tablename__ = "inbox"
    __table_args__ = (
        UniqueConstraint("dedupe_key", name="uq_inbox_dedupe_key"),
        Index("ix_inbox_ready", "status", "next_attempt_at", "id"),  # due pending rows; working rows by status
        Index("ix_inbox_order", "order_key", "status", "id"),  # "is an earlier row of this person still open?"
        Index("ix_inbox_done_at", "done_at"),  # the purge
    )

    id: int | None = Field(default=None, primary_key=True)
    dedupe_key: str = Field(max_length=200)
    platform: str = Field(max_length=16)
    workspace_id: str = Field(max_length=64)
    kind: str = Field(max_length=32)
    order_key: str = Field(max_length=200)
    payload: str = Field(sa_column=Column(Text, nullable=False), repr=False)
    status: str = Field(default=InboxStatus.PENDING, max_length=16)
    attempts: int = Field(default=0)
    next_attempt_at: dt.datetime = Field(sa_type=UTCDateTime)
    lease_until: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    claimed_by: str | None = Field(default=None, max_length=64)
    last_error: str | None = Field(default=None, max_length=64)
    created_at: dt.datetime = Field(sa_type=UTCDateTime)
    done_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)


class InboxResult(SQLModel, table=True):
    """What one unit of the core produced for an inbox row (its delivery steps), committed with that unit."""

    __tablename__ = "inbox_result"
    __table_args__ = (
        UniqueConstraint("inbox_id", "unit", name="uq_inbox_result_unit"),
        Index("ix_inbox_result_created_at", "created_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    inbox_id: int
    unit: int
    steps: str = Field(sa_column=Column(Text, nullable=False), repr=False)
    created_at: dt.datetime = Field(sa_type=UTCDateTime)


class InboxEffect(SQLModel, table=True):
    """One platform call an inbox row made, numbered in order (`seq`), with the platform's answer as JSON."""

    __tablename__ = "inbox_effect"
    __table_args__ = (
        UniqueConstraint("inbox_id", "seq", name="uq_inbox_effect_seq"),
        Index("ix_inbox_effect_created_at", "created_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    inbox_id: int
    seq: int
    method: str = Field(max_length=200)  # the call and its target ("post C0123"): a retry that calls
    # something else at this place (its control flow changed) is not given this answer
    answer: str = Field(sa_column=Column(Text, nullable=False), repr=False)
    created_at: dt.datetime = Field(sa_type=UTCDateTime)


class LeaseLost(RuntimeError):
    """The worker no longer holds the row (its lease ran out and another worker took it): roll back, stop."""


_INBOX: Table = InboxItem.__table__  # type: ignore[attr-defined]
_OPEN = (InboxStatus.PENDING, InboxStatus.WORKING)


def put(
    *,
    db: Session,
    dedupe_key: str,
    kind: str,
    platform: str,
    workspace_id: str,
    order_key: str,
    payload: dict[str, Any],
    now: dt.datetime,
) -> bool:
    """Insert-or-ignore one request, due at once; False when `dedupe_key` is there already (a platform retry).

    Not committed: the caller commits, then acknowledges, so nothing is acknowledged that was not written."""
    if not _CODE.fullmatch(kind) or len(kind) > 32:
        raise ValueError("an inbox kind is a short code such as 'slack.command'")
    values = {
        "dedupe_key": dedupe_key, "platform": platform, "workspace_id": workspace_id, "kind": kind,
        "order_key": order_key, "payload": json.dumps(payload, sort_keys=True), "status": InboxStatus.PENDING.value,
        "attempts": 0, "next_attempt_at": now, "created_at": now,
    }  # fmt: skip
    result = db.connection().execute(_put_statement(db), values, execution_options={"preserve_rowcount": True})
    return result.rowcount > 0


_PUTS: dict[str, Any] = {}


def _put_statement(db: Session) -> Any:
    """`put`'s INSERT … ON CONFLICT DO NOTHING, built once per dialect with its values as parameters: it is on every
    acknowledgement's path, where building the statement (and a model object) each time cost four times the write."""
    dialect = db.get_bind().dialect.name
    statement = _PUTS.get(dialect)
    if statement is None:
        from storage.engine import dialect_insert

        statement = _PUTS[dialect] = dialect_insert(db, _INBOX).on_conflict_do_nothing(index_elements=["dedupe_key"])
    return statement


def lease_new(*, db: Session, dedupe_key: str, worker: str, now: dt.datetime, lease: dt.timedelta) -> InboxItem:
    """Lease the row this transaction has just `put` to `worker` (a request that runs its own row at once), so no
    worker can claim it in between; not committed. Its first attempt, as if `claim` had handed it out."""
    item = db.exec(select(InboxItem).where(col(InboxItem.dedupe_key) == dedupe_key)).one()
    item.status, item.claimed_by, item.attempts, item.lease_until = InboxStatus.WORKING, worker, 1, now + lease
    db.add(item)
    return item


def claim(
    *, db: Session, worker: str, now: dt.datetime, lease: dt.timedelta, limit: int, max_attempts: int = MAX_ATTEMPTS
) -> list[InboxItem]:
    """Atomically take up to `limit` due rows for `worker`, under the module's order and fairness rules; by id.

    Due: pending and past `next_attempt_at`, or working with an expired lease. Every row returned is `working`,
    leased to `worker` until `now + lease`, except rows whose workers died `max_attempts` times: those come back
    `parked` (error code "lease_expired") so the caller sends the one "please try again" reply instead of running
    them. Commits the session (anything the caller had pending in it too).

    The fair order is read first, without locks, then the rows in it are locked and tested again: being the
    oldest open row of its order key cannot change in between (open rows only ever become done or parked), being
    due can. PostgreSQL: `FOR UPDATE SKIP LOCKED`, so any number of workers claim at once without overlap: rows
    another worker is claiming are passed over, and the due test is repeated on each row once it is locked, so a
    row another worker took since the read is dropped (reading twice `limit` leaves room for one concurrent
    claim). SQLite: the test is repeated under the database's write lock (BEGIN IMMEDIATE), which is held only for
    that and the UPDATE.
    """
    t = _INBOX.c
    expired = and_(t.status == InboxStatus.WORKING, t.lease_until < now)
    due = or_(and_(t.status == InboxStatus.PENDING, t.next_attempt_at <= now), expired)
    if db.connection().execute(core_select(t.id).where(due).limit(1)).first() is None:
        db.commit()  # an idle poll takes no lock (on SQLite the write lock is the whole database's)
        return []
    # Read without locks: on SQLite this costs the HTTP path nothing, however long the backlog.
    order = list(db.connection().execute(_fair_order(now=now, max_attempts=max_attempts, limit=2 * limit)).scalars())
    postgresql = db.connection().dialect.name == "postgresql"
    if not postgresql:
        _begin_immediate(db)
    dead = _held(db, core_select(t.id).where(expired, t.attempts >= max_attempts), skip_locked=postgresql)
    if dead:
        db.connection().execute(
            _INBOX.update()
            .where(t.id.in_(dead))
            .values(status=InboxStatus.PARKED, lease_until=None, last_error="lease_expired", done_at=now)
        )
    held = set(_held(db, core_select(t.id).where(t.id.in_(order), due), skip_locked=postgresql)) if order else set()
    taken = [row_id for row_id in order if row_id in held][:limit]
    if taken:
        db.connection().execute(
            _INBOX.update()
            .where(t.id.in_(taken))
            .values(status=InboxStatus.WORKING, lease_until=now + lease, claimed_by=worker, attempts=t.attempts + 1)
        )
    db.commit()
    if not dead and not taken:
        return []
    return list(db.exec(select(InboxItem).where(col(InboxItem.id).in_(dead + taken)).order_by(col(InboxItem.id))))


def _fair_order(*, now: dt.datetime, max_attempts: int, limit: int) -> Select[Any]:
    """The ids of up to `limit` claimable rows in the order they should be handed out (see the module docstring).

    Claimable: the oldest open row of its order key (`place` 1), due, and not dead (see `claim`). Window functions
    over one scan of the open rows rather than a self-join: a queue table's statistics are often stale, and a
    join planned on "one row" estimates ran in time quadratic in the backlog.
    """
    t = _INBOX.c
    place = func.row_number().over(partition_by=t.order_key, order_by=t.id).label("place")
    open_rows = (
        core_select(t.id, t.platform, t.workspace_id, t.status, t.next_attempt_at, t.lease_until, t.attempts, place)
        .where(t.status.in_(_OPEN))
        .subquery("open_rows")
    )
    o = open_rows.c
    due = or_(
        and_(o.status == InboxStatus.PENDING, o.next_attempt_at <= now),
        and_(o.status == InboxStatus.WORKING, o.lease_until < now, o.attempts < max_attempts),
    )
    turn = func.row_number().over(partition_by=(o.platform, o.workspace_id), order_by=o.id).label("turn")
    heads = core_select(o.id, turn).where(o.place == 1, due).subquery("heads")
    return core_select(heads.c.id).order_by(heads.c.turn, heads.c.id).limit(limit)


def _held(db: Session, query: Select[Any], *, skip_locked: bool) -> list[int]:
    """The ids `query` selects, each row locked for this transaction; with `skip_locked`, rows other transactions
    hold are left out (PostgreSQL), and the WHERE clause is evaluated again on each row once it is locked."""
    if skip_locked:
        query = query.with_for_update(of=_INBOX, skip_locked=True)
    return list(db.connection().execute(query).scalars())


def _begin_immediate(db: Session) -> None:
    """Take SQLite's write lock now, unless this transaction holds it already."""
    raw = db.connection().connection.driver_connection
    if raw is not None and not raw.in_transaction:
        db.connection().exec_driver_sql("BEGIN IMMEDIATE")


def finish(*, db: Session, item_id: int, worker: str, now: dt.datetime) -> bool:
    """Mark a row done (and drop its payload, the person's words), committed; False if `worker` no longer holds it."""
    t = _INBOX.c
    result = db.connection().execute(
        _INBOX.update()
        .where(t.id == item_id, t.claimed_by == worker, t.status == InboxStatus.WORKING)
        .values(status=InboxStatus.DONE, payload="{}", lease_until=None, last_error=None, done_at=now)
    )
    db.commit()
    return result.rowcount > 0


def fail(
    *, db: Session, item_id: int, worker: str, error_code: str, now: dt.datetime, max_attempts: int = MAX_ATTEMPTS,
    park_now: bool = False,
) -> bool:  # fmt: skip
    """Record a failed run, committed: retry after a back-off, or park the row once it has been tried `max_attempts`
    times or at once with `park_now` (a payload that no longer parses will not parse on a retry either).

    True when the row is now parked: the caller sends the person one "please try again" reply. False when it will
    be retried, or when `worker` no longer holds it (its lease ran out and another worker has it).
    """
    if not _CODE.fullmatch(error_code):
        raise ValueError("an inbox error is a short code such as 'bad_payload', never a message")
    t = _INBOX.c
    held = and_(t.id == item_id, t.claimed_by == worker, t.status == InboxStatus.WORKING)
    attempts = db.connection().execute(core_select(t.attempts).where(held)).scalar()
    if attempts is None:
        db.commit()
        return False
    park = park_now or attempts >= max_attempts
    values: dict[str, Any] = {"lease_until": None, "last_error": error_code}
    if park:
        values.update(status=InboxStatus.PARKED, done_at=now)
    else:
        values.update(status=InboxStatus.PENDING, next_attempt_at=now + retry_delay(attempts))
    result = db.connection().execute(_INBOX.update().where(held, t.attempts == attempts).values(**values))
    db.commit()
    return park and result.rowcount > 0


def record_result(*, db: Session, inbox_id: int, unit: int, steps: list[dict[str, Any]], now: dt.datetime) -> None:
    """Store the delivery steps unit `unit` of a row produced, in the caller's transaction (the core's), not
    committed. Raises LeaseLost when that unit's result is there already: another worker ran the row too (its lease
    ran out) and committed first; the caller rolls back, so this run's writes are undone."""
    row = InboxResult(inbox_id=inbox_id, unit=unit, steps=json.dumps(steps, sort_keys=True), created_at=now)
    if not insert_or_ignore(db=db, row=row, keys=("inbox_id", "unit")):
        raise LeaseLost(f"inbox row {inbox_id}: unit {unit} was run by another worker")


def results(*, db: Session, inbox_id: int) -> list[list[dict[str, Any]]]:
    """Each unit's stored steps for a row, in unit order (a unit with steps that no longer parse has none)."""
    found = db.exec(
        select(InboxResult).where(col(InboxResult.inbox_id) == inbox_id).order_by(col(InboxResult.unit))
    ).all()
    db.commit()
    return [_steps(r.steps) for r in found]


def _steps(text: str) -> list[dict[str, Any]]:
    try:
        value = json.loads(text)
    except ValueError:
        return []
    return [s for s in value if isinstance(s, dict)] if isinstance(value, list) else []


def forget_results(*, db: Session, inbox_id: int) -> None:
    """Drop a finished row's results (they hold what was typed), committed."""
    db.connection().execute(delete(InboxResult.__table__).where(InboxResult.__table__.c.inbox_id == inbox_id))  # type: ignore[attr-defined]
    db.commit()


def purge_results(*, db: Session, before: dt.datetime, batch: int) -> int:
    """Delete up to `batch` results stored before `before` (left by a worker that died after finishing), committed."""
    table: Table = InboxResult.__table__  # type: ignore[attr-defined]
    return _delete_oldest(db, table, table.c.created_at, before=before, batch=batch)


def renew(*, db: Session, worker: str, now: dt.datetime, lease: dt.timedelta) -> int:
    """Extend the lease of every row `worker` is working on (its heartbeat), committed; how many."""
    t = _INBOX.c
    result = db.connection().execute(
        _INBOX.update().where(t.claimed_by == worker, t.status == InboxStatus.WORKING).values(lease_until=now + lease)
    )
    db.commit()
    return result.rowcount


def holders(*, db: Session, prefix: str) -> list[str]:
    """The workers (by name) holding rows now whose names start with `prefix`, committed."""
    t = _INBOX.c
    found = db.connection().execute(
        core_select(t.claimed_by).where(t.status == InboxStatus.WORKING, t.claimed_by.startswith(prefix)).distinct()
    )
    names = [str(name) for name in found.scalars()]
    db.commit()
    return names


def release(*, db: Session, worker: str, now: dt.datetime) -> int:
    """End the leases of every row `worker` holds (it is known to be dead), committed: the next claim takes them."""
    t = _INBOX.c
    result = db.connection().execute(
        _INBOX.update()
        .where(t.claimed_by == worker, t.status == InboxStatus.WORKING)
        .values(lease_until=now - dt.timedelta(seconds=1))  # expired: claims take leases that ended before now
    )
    db.commit()
    return result.rowcount


def effect(*, db: Session, inbox_id: int, seq: int) -> tuple[str, Any] | None:
    """The journaled call `seq` of a row: (method, answer), or None when it was never answered."""
    found = db.exec(
        select(InboxEffect).where(col(InboxEffect.inbox_id) == inbox_id, col(InboxEffect.seq) == seq)
    ).first()
    db.commit()
    return (found.method, json.loads(found.answer)) if found is not None else None


def record_effect(*, db: Session, inbox_id: int, seq: int, method: str, answer: Any, now: dt.datetime) -> None:
    """Journal call `seq` of a row as made, committed at once (first record wins)."""
    row = InboxEffect(inbox_id=inbox_id, seq=seq, method=method, answer=json.dumps(answer), created_at=now)
    insert_or_ignore(db=db, row=row, keys=("inbox_id", "seq"))
    db.commit()


def purge_effects(*, db: Session, before: dt.datetime, batch: int) -> int:
    """Delete up to `batch` journal entries recorded before `before`, committed; how many went. A row is retried
    only while it is open, and rows live minutes, so entries a day old answer nothing."""
    table: Table = InboxEffect.__table__  # type: ignore[attr-defined]
    return _delete_oldest(db, table, table.c.created_at, before=before, batch=batch)


def side_url(database_url: str, suffix: str) -> str:
    """Where a side file of a SQLite database is (`copbot.db` → `copbot.db-<suffix>`; a private in-memory database
    for `:memory:`); the database itself on PostgreSQL (see the module docstring). Never `journal`, `wal` or `shm`:
    those names are SQLite's own files of the database."""
    from sqlalchemy.engine import make_url

    if suffix in ("journal", "wal", "shm"):
        raise ValueError(f"-{suffix} is SQLite's own file of the database")
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite":
        return database_url
    database = url.database or ""
    if database in ("", ":memory:") or "mode=memory" in str(url.query):
        return "sqlite://"
    return url.set(database=f"{database}-{suffix}").render_as_string(hide_password=False)


_SIDES: weakref.WeakKeyDictionary[Engine, dict[str, Engine]] = weakref.WeakKeyDictionary()
_SIDES_LOCK = threading.Lock()


def open_queue(engine: Engine) -> Engine:
    """The engine for the queue (`inbox`): `engine` itself on PostgreSQL, the side file `<db>-inbox` on SQLite."""
    return _side(engine, "inbox", _INBOX)


def open_journal(engine: Engine) -> Engine:
    """The engine for the effect journal: `engine` itself on PostgreSQL, the side file `<db>-effects` on SQLite
    (a file of its own, so the journal's writes, one per platform call, never hold up an acknowledgement)."""
    return _side(engine, "effects", InboxEffect.__table__)  # type: ignore[attr-defined]


def close_queue(engine: Engine) -> None:
    """Dispose of `engine`'s side-file engines (SQLite)."""
    with _SIDES_LOCK:
        sides = _SIDES.pop(engine, {})
    for side in sides.values():
        side.dispose()


def _no_autocheckpoint(dbapi_connection: Any, _record: object) -> None:
    """A side file's connections never checkpoint as they commit (the commit that crosses SQLite's threshold would
    copy the WAL back and sync, tens of milliseconds on an acknowledgement's path); `checkpoint` does it instead."""
    dbapi_connection.execute("PRAGMA wal_autocheckpoint = 0")


def checkpoint(engine: Engine) -> None:
    """Copy the side files' WALs back into them without waiting for anyone (PASSIVE), so they stay short; a worker's
    heartbeat calls this every few seconds. Nothing to do on PostgreSQL."""
    if engine.dialect.name != "sqlite":
        return
    for side in (open_queue(engine), open_journal(engine)):
        if side.url.database:  # a file, not memory
            with side.connect() as conn:
                conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)").all()
                conn.rollback()


def _side(engine: Engine, suffix: str, table: Table) -> Engine:
    """One engine per database engine and side file in a process (so an in-memory database has one queue); the
    file's table is made here (IF NOT EXISTS: several processes may open it at once)."""
    if engine.dialect.name != "sqlite":
        return engine
    with _SIDES_LOCK:
        sides = _SIDES.setdefault(engine, {})
        side = sides.get(suffix)
        if side is None:
            from storage.engine import make_engine

            side = make_engine(side_url(engine.url.render_as_string(hide_password=False), suffix))
            event.listen(side, "connect", _no_autocheckpoint)
            with side.begin() as conn:
                conn.execute(CreateTable(table, if_not_exists=True))
                for index in table.indexes:
                    conn.execute(CreateIndex(index, if_not_exists=True))
            sides[suffix] = side
    return side


def retry_delay(attempts: int) -> dt.timedelta:
    """How long a row waits after its `attempts`-th failed run: 2 s, doubling, at most 5 minutes."""
    return min(FIRST_RETRY * (1 << max(attempts - 1, 0)), LONGEST_RETRY)


def depth(*, db: Session) -> int:
    """Rows not yet handled (pending or working), for /metrics."""
    return _count(db, col(InboxItem.status).in_(_OPEN))


def parked_count(*, db: Session) -> int:
    """Rows parked after failing too often, for /metrics (an operator looks at their `last_error`)."""
    return _count(db, col(InboxItem.status) == InboxStatus.PARKED)


def oldest_pending_age(*, db: Session, now: dt.datetime) -> float:
    """Seconds since the oldest row not yet handled (pending or working) arrived; 0 when there is none."""
    oldest = db.exec(select(func.min(col(InboxItem.created_at))).where(col(InboxItem.status).in_(_OPEN))).one()
    return max((now - oldest).total_seconds(), 0.0) if oldest is not None else 0.0


def _count(db: Session, where: ColumnElement[bool]) -> int:
    return int(db.exec(select(func.count()).select_from(InboxItem).where(where)).one())


def purge_done(*, db: Session, before: dt.datetime, batch: int) -> int:
    """Delete up to `batch` rows done before `before`, committed; how many went. Parked rows stay.

    A done row is kept after its run only so that a late platform retry of the same request is still recognised
    (`put` returns False), so `before` should lie beyond the platforms' retry window.
    """
    return _delete_oldest(db, _INBOX, _INBOX.c.done_at, _INBOX.c.status == InboxStatus.DONE, before=before, batch=batch)


def _delete_oldest(
    db: Session, table: Table, when: Any, *where: ColumnElement[bool], before: dt.datetime, batch: int
) -> int:
    """Delete up to `batch` rows of `table` whose `when` is before `before` (oldest first), committed; how many."""
    oldest = core_select(table.c.id).where(when < before, *where).order_by(when).limit(batch)
    result = db.connection().execute(delete(table).where(table.c.id.in_(oldest)))
    db.commit()
    return result.rowcount
