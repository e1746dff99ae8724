"""Database upkeep: the daily purge of what copbot no longer needs, online backups, and integrity checks.

The purge deletes platform de-duplication keys and inbox rows done longer ago than the platforms' retry window
(parked inbox rows stay, for an operator), the inbox's effect journal after a day, and sent outbox rows older
than a month, in small batches sized so that no batch holds the write lock for long (on SQLite one writer blocks
every other, including the listeners recording a new member or an event key). Failed and cancelled outbox rows are
kept (they are what an operator investigates), and so is every sent row a reflection still points at
(`reflection.outbox_id`): that is the record of which delivery a person answered, and keeping it means later replies
in the same prompt's thread still become reflections. A sent prompt nobody answered within the month loses its row,
so a reply to it after that is no longer captured.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Delete, Engine, Integer, Select, Table, bindparam, delete, select, text, tuple_
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlmodel import Session

from storage import inbox
from storage.engine import alembic_config
from storage.inbox import InboxItem, InboxStatus
from storage.models import InboundEvent
from storage.rhythm import OutboxItem, OutboxStatus, Reflection
from storage.types import UTCDateTime

INBOUND_KEEP = dt.timedelta(days=7)  # Slack retries for about an hour, Bot Framework for less: a week is ample
SENT_KEEP = dt.timedelta(days=30)
WRITE_BUDGET_S = 0.050  # the longest a batch may hold the write lock
FIRST_BATCH = 500  # small: the first batch of each table meets a cold cache; fast batches double
MIN_BATCH = 100
MAX_BATCH = 20_000  # well under SQLite's 32,766 bound parameters per statement

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)  # before every row: the first batch's keyset
_ADVISORY_KEY = 0x636F70626F74  # "copbot": the PostgreSQL advisory lock that keeps purges one at a time

_INBOUND: Table = InboundEvent.__table__  # type: ignore[attr-defined]
_OUTBOX: Table = OutboxItem.__table__  # type: ignore[attr-defined]
_REFLECTION: Table = Reflection.__table__  # type: ignore[attr-defined]
_INBOX: Table = InboxItem.__table__  # type: ignore[attr-defined]
EFFECTS_KEEP = dt.timedelta(days=1)  # journal and results: a row is retried only while open, and it lives minutes


# --- the purge -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Batch:
    """One committed delete: how many rows were asked for, how many went, and how long the write took."""

    table: str
    size: int
    deleted: int
    seconds: float


@dataclass
class PurgeResult:
    """Every batch of one purge, in order, and the write budget they were sized for."""

    budget_s: float = WRITE_BUDGET_S
    batches: list[Batch] = field(default_factory=list)

    @property
    def deleted(self) -> dict[str, int]:
        """Rows deleted per table (every table purged appears, with 0 when nothing was old enough)."""
        counts = {"inbound_event": 0, "inbox": 0, "inbox_effect": 0, "inbox_result": 0, "outbox": 0}
        for batch in self.batches:
            counts[batch.table] += batch.deleted
        return counts

    @property
    def longest_write_s(self) -> float:
        return max((b.seconds for b in self.batches), default=0.0)

    @property
    def over_budget(self) -> int:
        """Batches that held the write lock longer than the budget."""
        return sum(1 for b in self.batches if b.seconds > self.budget_s)


def next_batch_size(*, size: int, deleted: int, seconds: float, budget_s: float = WRITE_BUDGET_S) -> int:
    """The next batch's size: aim at a third of the budget at the rate just measured, at most doubling per batch.

    A third, because the same batch size can take three times as long from one batch to the next (pages not in
    the cache, the operating system flushing, the listeners' threads holding the interpreter): aimed at half, one
    batch in fifty ran over 50 ms in a 2,000,000-row purge on a two-core machine; aimed at a third, fewer than one
    in a hundred, with the server under load (bench_housekeeping).
    """
    if deleted <= 0:
        return size
    if seconds <= 0:
        return min(size * 2, MAX_BATCH)
    fitting = int(budget_s / 3 / (seconds / deleted))
    return max(MIN_BATCH, min(fitting, size * 2, MAX_BATCH))


def purge(
    *,
    engine: Engine,
    now: dt.datetime,
    inbound_keep: dt.timedelta = INBOUND_KEEP,
    sent_keep: dt.timedelta = SENT_KEEP,
    budget_s: float = WRITE_BUDGET_S,
    first_batch: int = FIRST_BATCH,
    timer: Callable[[], float] = time.perf_counter,
    pause: Callable[[float], None] = time.sleep,
) -> PurgeResult:
    """Delete inbound-event keys older than `inbound_keep` and sent outbox rows older than `sent_keep` (by sent_at).

    Each batch selects ids (outside any write), then deletes those ids in a transaction of its own; the DELETE
    checks again that no reflection points at an outbox row, so a reply stored in between keeps its row.
    After each batch the purge pauses as long as the batch wrote, so other writers get the lock at least half the
    time. Correct in several processes at once (each deletes what the others have not and counts only its own), but
    the scheduler runs it under `exclusive`, so the lock is not shared between purges taking turns.
    """
    with engine.connect() as conn, _Purger(conn, budget_s=budget_s, timer=timer, pause=pause) as purger:
        purger.inbound(now - inbound_keep, size=first_batch)
        purger.sent(now - sent_keep, size=first_batch)
        result = purger.result
    with Session(engine) as db:  # a worker drops a row's results as it finishes: these are a dead worker's
        while gone := inbox.purge_results(db=db, before=now - EFFECTS_KEEP, batch=MAX_BATCH):
            result.batches.append(Batch(table="inbox_result", size=MAX_BATCH, deleted=gone, seconds=0.0))
    queue = inbox.open_queue(engine)  # on SQLite a side file (storage/inbox.py)
    with queue.connect() as conn, _Purger(conn, budget_s=budget_s, timer=timer, pause=pause, result=result) as purger:
        purger.inbox_done(now - inbound_keep, size=first_batch)
    with Session(inbox.open_journal(engine)) as db:
        while gone := inbox.purge_effects(db=db, before=now - EFFECTS_KEEP, batch=MAX_BATCH):
            result.batches.append(Batch(table="inbox_effect", size=MAX_BATCH, deleted=gone, seconds=0.0))
    return result


class _Purger:
    """One purge's batches on one connection.

    On SQLite the write lock is taken up front (`BEGIN IMMEDIATE`), so a batch's time is the time it holds the
    lock, not the time it waited for it; and this connection does not checkpoint the WAL inside its COMMIT (a
    checkpoint writes the pages back and syncs the file, which would make a batch look ten times longer and stall
    the caller): it runs a PASSIVE checkpoint after each batch instead, which waits for nobody and keeps the WAL
    short for everyone else.
    """

    def __init__(
        self,
        conn: Connection,
        *,
        budget_s: float,
        timer: Callable[[], float],
        pause: Callable[[float], None],
        result: PurgeResult | None = None,
    ) -> None:
        self.conn, self.budget_s, self.timer, self.pause = conn, budget_s, timer, pause
        self.sqlite = conn.dialect.name == "sqlite"
        self.result = result if result is not None else PurgeResult(budget_s=budget_s)  # given: added to it
        self._autocheckpoint: int | None = None

    def __enter__(self) -> _Purger:
        if self.sqlite:
            self._autocheckpoint = int(self.conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar_one())
            self.conn.exec_driver_sql("PRAGMA wal_autocheckpoint = 0")
            self.conn.commit()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.conn.rollback()
        if self._autocheckpoint is not None:  # the connection goes back to the pool as it came
            self.conn.exec_driver_sql(f"PRAGMA wal_autocheckpoint = {self._autocheckpoint:d}")
            self.conn.commit()

    # The statements are built once per table and take their values as parameters, so each batch reuses the
    # compiled SQL; the SELECTs return ids only and read one timestamp per batch (the keyset), because turning
    # thousands of timestamps into datetimes would be most of the purge's Python time, competing with the
    # listeners for the interpreter.

    def inbound(self, cutoff: dt.datetime, *, size: int) -> None:
        pick = (
            select(_INBOUND.c.key)
            .where(_INBOUND.c.received_at < cutoff, _INBOUND.c.received_at >= bindparam("floor", type_=UTCDateTime()))
            .order_by(_INBOUND.c.received_at)
        )
        when = select(_INBOUND.c.received_at).where(_INBOUND.c.key == bindparam("key"))
        gone = delete(_INBOUND).where(_INBOUND.c.key.in_(bindparam("keys", expanding=True)))  # keys never change
        floor = _EPOCH  # where the last batch ended: the index scan starts there, past dead entries
        while True:
            asked = size
            keys = self._select(pick.limit(asked), {"floor": floor})
            if not keys:
                return
            floor = next(iter(self._select(when, {"key": keys[-1]})), floor)  # gone: another purge took it
            size = self._delete(_INBOUND, gone, {"keys": keys}, size=asked)
            if len(keys) < asked:
                return

    def inbox_done(self, cutoff: dt.datetime, *, size: int) -> None:
        pick = (
            select(_INBOX.c.id)
            .where(_INBOX.c.done_at < cutoff, _INBOX.c.status == InboxStatus.DONE)
            .order_by(_INBOX.c.done_at)
        )
        gone = delete(_INBOX).where(_INBOX.c.id.in_(bindparam("ids", expanding=True)))  # a done row stays done
        while True:
            asked = size
            ids = self._select(pick.limit(asked), {})
            if not ids:
                return
            size = self._delete(_INBOX, gone, {"ids": ids}, size=asked)
            if len(ids) < asked:
                return

    def sent(self, cutoff: dt.datetime, *, size: int) -> None:
        answered = select(_REFLECTION.c.outbox_id).where(_REFLECTION.c.outbox_id.is_not(None))
        # Walk ix_outbox_ready (status, due_at, id) from where the last batch ended, so the rows kept (answered
        # prompts) are read once, not once per batch.
        after = tuple_(bindparam("due", type_=UTCDateTime()), bindparam("id", type_=Integer()))
        pick = (
            select(_OUTBOX.c.id)
            .where(
                _OUTBOX.c.status == OutboxStatus.SENT,
                _OUTBOX.c.sent_at < cutoff,
                _OUTBOX.c.id.not_in(answered),
                tuple_(_OUTBOX.c.due_at, _OUTBOX.c.id) > after,
            )
            .order_by(_OUTBOX.c.due_at, _OUTBOX.c.id)
        )
        when = select(_OUTBOX.c.due_at).where(_OUTBOX.c.id == bindparam("one"))
        # A sent row stays sent: only a reflection made since the SELECT can have changed the verdict. (Repeating
        # the status test here would lead SQLite to scan ix_outbox_ready instead of looking the ids up.)
        gone = delete(_OUTBOX).where(_OUTBOX.c.id.in_(bindparam("ids", expanding=True)), _OUTBOX.c.id.not_in(answered))
        due, last = _EPOCH, 0
        while True:
            asked = size
            ids = self._select(pick.limit(asked), {"due": due, "id": last})
            if not ids:
                return
            found = self._select(when, {"one": ids[-1]})
            if found:  # else another purge took it: start from the same place again
                due, last = found[0], ids[-1]
            size = self._delete(_OUTBOX, gone, {"ids": ids}, size=asked)
            if len(ids) < asked:
                return

    def _select(self, query: Select[Any], values: dict[str, Any]) -> list[Any]:
        """The first column of every row; no read transaction stays open between batches."""
        found = list(self.conn.execute(query, values).scalars().all())
        self.conn.rollback()
        return found

    def _delete(self, table: Table, statement: Delete, values: dict[str, Any], *, size: int) -> int:
        """Delete one batch in its own transaction, record it, pause; returns the next batch's size."""
        if self.sqlite:
            self.conn.exec_driver_sql("BEGIN IMMEDIATE")
        started = self.timer()
        deleted = self.conn.execute(statement, values).rowcount
        self.conn.commit()
        seconds = self.timer() - started
        if self.sqlite:
            self.conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)").all()
            self.conn.rollback()
        self.result.batches.append(Batch(table=table.name, size=size, deleted=deleted, seconds=seconds))
        self.pause(seconds)
        return next_batch_size(size=size, deleted=deleted, seconds=seconds, budget_s=self.budget_s)


@contextlib.contextmanager
def exclusive(engine: Engine) -> Iterator[bool]:
    """Whether this process may purge now: True unless another process is purging the same database.

    Every copbot process (`--workers N`, several hosts) runs the daily job; one purge at a time keeps the write
    lock free between batches, where N purges would take turns and hold it almost always. PostgreSQL: a session
    advisory lock (committed at once, so no transaction stays open for the whole purge). A SQLite file: `flock`
    on a lock file beside it. An in-memory database has only this process.
    """
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            mine = bool(conn.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": _ADVISORY_KEY}).scalar())
            conn.commit()
            try:
                yield mine
            finally:
                if mine:
                    conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": _ADVISORY_KEY})
                    conn.commit()
        return
    database = sqlite_file(engine.url.render_as_string(hide_password=False))
    if database is None or sys.platform == "win32":
        yield True
        return
    import fcntl

    with open(database.with_name(database.name + "-housekeeping.lock"), "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


# --- backups -------------------------------------------------------------------------------------------------------


class BackupFailed(RuntimeError):
    """The backup could not be written; the message says why, without a traceback."""


def sqlite_file(database_url: str) -> Path | None:
    """The database file a SQLite URL names; None for PostgreSQL or an in-memory database."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite":
        return None
    database = url.database or ""
    if database in ("", ":memory:") or "mode=memory" in str(url.query):
        return None
    return Path(database).expanduser()


def backup_sqlite(*, engine: Engine, target: Path, overwrite: bool = False) -> int:
    """Copy the live SQLite database to `target` with SQLite's online backup API; returns the file's size in bytes.

    The copy is one consistent snapshot taken while copbot keeps running (under WAL a reader never blocks the
    writers). It is written to a temporary file beside `target` and renamed into place, so a failed backup never
    leaves a half-written file under the target's name.
    """
    source = sqlite_file(engine.url.render_as_string(hide_password=False))
    if source is not None and target.resolve() == source.resolve():
        raise BackupFailed(f"{target} is the database itself: write the backup somewhere else")
    if target.exists() and not overwrite:
        raise BackupFailed(f"{target} exists already: choose another name, or add --force to replace it")
    if not target.parent.is_dir():
        why = "is not a folder" if target.parent.exists() else "does not exist"
        raise BackupFailed(f"cannot write {target}: {target.parent} {why}")
    try:
        handle, partial_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
    except OSError as exc:
        raise BackupFailed(f"cannot write in {target.parent}: {exc.strerror or exc}") from exc
    os.close(handle)
    partial = Path(partial_name)
    try:
        try:
            raw = engine.raw_connection()
        except (DBAPIError, sqlite3.Error) as exc:
            raise BackupFailed(f"cannot read the database: {_first_line(exc)}") from exc
        try:
            live = raw.driver_connection
            assert isinstance(live, sqlite3.Connection)
            destination = sqlite3.connect(partial)
            try:
                live.backup(destination)
            finally:
                destination.close()
            os.replace(partial, target)
        except sqlite3.DatabaseError as exc:
            raise BackupFailed(f"cannot copy the database to {target}: {_first_line(exc)}") from exc
        except OSError as exc:
            raise BackupFailed(f"cannot write {target}: {exc.strerror or exc}") from exc
        finally:
            raw.close()
    finally:
        partial.unlink(missing_ok=True)
    return target.stat().st_size


def pg_dump_command(*, url: str, target: Path) -> list[str]:
    """The `pg_dump` command line that backs up the PostgreSQL database at `url` to `target` (never the password).

    Custom format (`--format=custom`), which `pg_restore` reads; the password comes from PGPASSWORD or ~/.pgpass.
    """
    parsed = make_url(url)
    command = ["pg_dump", "--format=custom", f"--file={target}"]
    if parsed.host:
        command.append(f"--host={parsed.host}")
    if parsed.port:
        command.append(f"--port={parsed.port}")
    if parsed.username:
        command.append(f"--username={parsed.username}")
    command.append(parsed.database or "postgres")
    return command


# --- checks --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    """One named check of the database and what it found."""

    name: str
    ok: bool
    detail: str


@dataclass(frozen=True)
class SchemaRevision:
    """The migration revision(s) the database records, and the head the code's migrations end at."""

    current: tuple[str, ...]
    head: str

    @property
    def at_head(self) -> bool:
        return self.current == (self.head,)


def schema_revision(engine: Engine) -> SchemaRevision:
    """Where the database's schema stands against the migrations. Raises the driver's error if it cannot be read."""
    head = ScriptDirectory.from_config(alembic_config(engine)).get_current_head()
    assert head is not None, "the migrations have no head"
    with engine.connect() as conn:
        current = tuple(sorted(MigrationContext.configure(conn).get_current_heads()))
    return SchemaRevision(current=current, head=head)


def check_database(engine: Engine) -> list[Check]:
    """Integrity (SQLite: `PRAGMA integrity_check` and `foreign_key_check`; PostgreSQL: a connection) and whether
    the schema is at the migrations' head. Never raises for a broken database: a failure is a failed check."""
    checks: list[Check] = []
    if engine.dialect.name == "sqlite":
        checks.append(_run_check("integrity", lambda: _sqlite_integrity(engine)))
        checks.append(_run_check("foreign keys", lambda: _sqlite_foreign_keys(engine)))
    else:
        checks.append(_run_check("connection", lambda: _connection(engine)))
    checks.append(_run_check("migrations", lambda: _migrations(engine)))
    return checks


def _run_check(name: str, run: Callable[[], tuple[bool, str]]) -> Check:
    try:
        ok, detail = run()
    except (DBAPIError, SQLAlchemyError, sqlite3.Error) as exc:
        return Check(name=name, ok=False, detail=f"cannot read the database: {_first_line(exc)}")
    return Check(name=name, ok=ok, detail=detail)


def _sqlite_integrity(engine: Engine) -> tuple[bool, str]:
    with engine.connect() as conn:
        found = [str(row[0]) for row in conn.execute(text("PRAGMA integrity_check(20)"))]
    if found == ["ok"]:
        return True, "ok"
    return False, f"{len(found)} problem(s): " + "; ".join(found[:3])


def _sqlite_foreign_keys(engine: Engine) -> tuple[bool, str]:
    with engine.connect() as conn:
        rows: Sequence[Any] = conn.execute(text("PRAGMA foreign_key_check")).all()
    if not rows:
        return True, "ok"
    pairs = sorted({f"{row[0]} -> {row[2]}" for row in rows})
    return False, f"{len(rows)} row(s) point at missing rows ({', '.join(pairs[:5])})"


def _connection(engine: Engine) -> tuple[bool, str]:
    with engine.connect() as conn:
        version = str(conn.execute(text("SHOW server_version")).scalar_one())
    return True, f"ok (PostgreSQL {version})"


def _migrations(engine: Engine) -> tuple[bool, str]:
    state = schema_revision(engine)
    if state.at_head:
        return True, f"ok (at head {state.head})"
    where = f"database at {', '.join(state.current)}" if state.current else "no migrations applied"
    return False, f"{where}, head is {state.head}: back up, then run `copbot db upgrade`"


def _first_line(exc: BaseException) -> str:
    message = str(getattr(exc, "orig", None) or exc).strip()
    return message.splitlines()[0] if message else type(exc).__name__
