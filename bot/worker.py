"""Inbox workers: claim acknowledged requests, run them through the core, deliver the replies (issue 14).

The HTTP (or Socket Mode) process only writes requests down (storage/inbox.py); everything else happens here, in
another process: `copbot run` starts one beside the server, `copbot worker` runs more, on any machine that reaches
the same PostgreSQL. A row runs like this:

1. `claim` leases it (PostgreSQL: SKIP LOCKED; SQLite: a lease under the write lock); a heartbeat renews the
   leases this worker holds, so only a worker that died or hung lets its rows go, after `LEASE` at most.
2. Its kind (`slack.command`, `teams.message`, …) runs the core with `CopBot.for_request`: every platform call goes
   through the row's effect journal (`Journal`), and each unit's replies are rendered into delivery steps stored
   with the unit's own commit (`inbox.record_result`). A unit whose steps are stored is never run again.
3. Each step is delivered once through the journal (steps are numbered -1, -2, … there, so they never collide with
   the core's calls), then the row is `finish`ed and its payload blanked.

A failure backs off and retries; a row that keeps failing is parked, counted in `/metrics`, and its person gets one
"please try again". A row that no longer parses (written by another version) is parked at once.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from sqlalchemy import Engine
from sqlmodel import Session

from bot.metrics import INBOX_RUNS
from handlers.app import CopBot
from handlers.ports import ChannelRef, ChatPlatform, Clock, Message, Reply
from storage import inbox
from storage.inbox import InboxItem, InboxStatus, LeaseLost

log = logging.getLogger(__name__)

T = TypeVar("T")

LEASE = dt.timedelta(seconds=15)
"""How long a claimed row stays with its worker without a heartbeat: the longest a dead worker's row waits."""
HEARTBEAT_SECONDS = 4.0
PREFETCH = 2  # rows in hand per thread: one running, one ready
IDLE_POLL_SECONDS = 0.05
"""How often an idle worker looks for new rows: the usual wait between an acknowledgement and its work starting
(an idle claim is one indexed SELECT that takes no lock)."""

Step = dict[str, Any]


class StepFailed(Exception):
    """A delivery step the platform refused for good (an invalid channel, a closed DM): logged by code, skipped."""


# --- the effect journal ------------------------------------------------------------------------------------------


@dataclass
class Journal:
    """One row's platform calls, numbered in the order made; a call already answered is not made again."""

    engine: Engine
    inbox_id: int
    clock: Clock
    seq: int = 0
    fresh: bool = False  # the row's first attempt: nothing can be journaled yet, so nothing is looked up

    def once(self, method: str, call: Callable[[], T], *, encode: Callable[[T], Any], decode: Callable[[Any], T]) -> T:
        """The answer to the row's next call: the journaled one on a retry, else `call()`'s, journaled now."""
        seq = self.seq
        self.seq += 1
        return self.at(seq, method, call, encode=encode, decode=decode)

    def at(
        self, seq: int, method: str, call: Callable[[], T], *, encode: Callable[[T], Any], decode: Callable[[Any], T]
    ) -> T:
        method = method[:200]
        if not self.fresh:
            with Session(self.engine) as db:
                found = inbox.effect(db=db, inbox_id=self.inbox_id, seq=seq)
            if found is not None and found[0] == method:
                return decode(found[1])
        answer = call()  # a PlatformError is not journaled: nothing was done, a retry tries again
        with Session(self.engine) as db:
            inbox.record_effect(
                db=db, inbox_id=self.inbox_id, seq=seq, method=method, answer=encode(answer), now=self.clock.now()
            )
        return answer


def _none(_: Any) -> None:
    return None


def _text(value: Any) -> str:
    return str(value)


def _channel_out(ref: ChannelRef | None) -> Any:
    return None if ref is None else {"id": ref.id, "name": ref.name, "url": ref.url}


def _channel_in(value: Any) -> ChannelRef | None:
    return None if value is None else ChannelRef(id=value["id"], name=value["name"], url=value.get("url"))


def _channel_in_required(value: Any) -> ChannelRef:
    ref = _channel_in(value)
    assert ref is not None
    return ref


class JournaledPlatform:
    """A ChatPlatform whose every call goes through one row's journal (so a retried row makes each call once).

    Each call is journaled under its name and target (`post C0123`), never the message text: a retry whose path
    changed (a create that now resumes with `find_channel`) meets a different call at that place and makes it."""

    def __init__(self, inner: ChatPlatform, journal: Journal) -> None:
        self.inner = inner
        self.journal = journal
        self.name = inner.name

    def create_channel(self, *, name: str, topic: str, purpose: str) -> ChannelRef:
        return self.journal.once(
            f"create_channel {name}",
            lambda: self.inner.create_channel(name=name, topic=topic, purpose=purpose),
            encode=_channel_out,
            decode=_channel_in_required,
        )

    def find_channel(self, *, name: str) -> ChannelRef | None:
        return self.journal.once(
            f"find_channel {name}", lambda: self.inner.find_channel(name=name), encode=_channel_out, decode=_channel_in
        )

    def invite(self, *, channel_id: str, user_ids: list[str]) -> None:
        self.journal.once(
            f"invite {channel_id} {len(user_ids)}",
            lambda: self.inner.invite(channel_id=channel_id, user_ids=user_ids),
            encode=_none,
            decode=_none,
        )

    def remove(self, *, channel_id: str, user_id: str) -> None:
        self.journal.once(
            f"remove {channel_id} {user_id}",
            lambda: self.inner.remove(channel_id=channel_id, user_id=user_id),
            encode=_none,
            decode=_none,
        )

    def archive_channel(self, *, channel_id: str) -> None:
        self.journal.once(
            f"archive_channel {channel_id}",
            lambda: self.inner.archive_channel(channel_id=channel_id),
            encode=_none,
            decode=_none,
        )

    def post(self, *, channel_id: str, message: Message) -> str:
        return str(
            self.journal.once(
                f"post {channel_id}",
                lambda: self.inner.post(channel_id=channel_id, message=message),
                encode=_text,
                decode=_text,
            )
        )

    def send_dm(self, *, user_id: str, message: Message) -> str:
        return str(
            self.journal.once(
                f"send_dm {user_id}",
                lambda: self.inner.send_dm(user_id=user_id, message=message),
                encode=_text,
                decode=_text,
            )
        )

    def send_group_dm(self, *, user_ids: list[str], message: Message) -> str:
        return str(
            self.journal.once(
                "send_group_dm " + ",".join(user_ids),
                lambda: self.inner.send_group_dm(user_ids=user_ids, message=message),
                encode=_text,
                decode=_text,
            )
        )

    def update_message(self, *, channel_id: str, message_id: str, message: Message) -> None:
        self.journal.once(
            f"update_message {channel_id} {message_id}",
            lambda: self.inner.update_message(channel_id=channel_id, message_id=message_id, message=message),
            encode=_none,
            decode=_none,
        )

    def upload_file(self, *, user_id: str, filename: str, content: bytes, title: str) -> None:
        self.journal.once(
            f"upload_file {user_id}",
            lambda: self.inner.upload_file(user_id=user_id, filename=filename, content=content, title=title),
            encode=_none,
            decode=_none,
        )


# --- one row -----------------------------------------------------------------------------------------------------


@dataclass
class Run:
    """One attempt at one inbox row, as its kind sees it.

    Units are counted as they begin (each core unit through `bot`, each `record`); a unit that an earlier attempt
    committed (`done`, from the row's stored results) is not run again: the core answers with stand-ins (one empty
    reply per step it stored, so a caller that asks "did it answer?" hears the same as the first time)."""

    item: InboxItem
    payload: dict[str, Any]
    journal: Journal
    engine: Engine
    done: list[list[Step]] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    unit: int = 0

    def __post_init__(self) -> None:
        self.steps = [step for unit in self.done for step in unit]

    @property
    def age(self) -> dt.timedelta:
        """How long ago the platform sent the request (Slack's response_url lasts 30 minutes)."""
        return self.journal.clock.now() - self.item.created_at

    def bot(self, core: CopBot, render: Callable[[list[Reply]], list[Step]]) -> CopBot:
        """`core` for this row: calls through the journal, each unit's replies rendered by `render` into steps
        that are stored in the unit's own commit, units an earlier attempt committed not run again."""

        def record(db: Session, replies: list[Reply]) -> None:
            self._store(db, render(replies))

        return core.for_request(
            platform=JournaledPlatform(core.platform, self.journal), record=record, replay=self._replay
        )

    def record(self, steps: list[Step]) -> None:
        """Store steps as a unit of their own, for what a kind answers without the core, committed."""
        if self._replay() is not None:
            return
        with Session(self.engine) as db:
            self._store(db, steps)
            db.commit()

    def _replay(self) -> list[Reply] | None:
        self.unit += 1
        if self.unit > len(self.done):
            return None
        return [Reply() for _ in self.done[self.unit - 1]]

    def _store(self, db: Session, steps: list[Step]) -> None:
        assert self.item.id is not None
        inbox.record_result(db=db, inbox_id=self.item.id, unit=self.unit, steps=steps, now=self.journal.clock.now())
        self.steps = self.steps + steps


class Kind(Protocol):
    """How one kind of inbox row is run, delivered and apologised for (bot/slack/inbox.py, bot/teams/inbox.py)."""

    def run(self, run: Run) -> None:
        """Do the row's work: typically one core call through `run.bot(…)`, which records the delivery steps."""

    def deliver(self, step: Step, run: Run) -> None:
        """Carry out one step; raise StepFailed for a refusal that a retry would not fix."""

    def apologise(self, run: Run) -> None:
        """Tell the person, once, that their request could not be done and they should try again."""


SORRY_PARKED = (
    "Sorry, I couldn't finish what you asked just now, and it was not done. Please try again in a few minutes; "
    "if it keeps happening, tell your facilitator."
)


def error_code(exc: BaseException) -> str:
    """A short code for a failure (its type, and a platform's error code when it has one), never its message."""
    code = getattr(exc, "code", None)
    name = type(exc).__name__.lower()
    text = f"{name}:{code.lower()}" if isinstance(code, str) and code.replace("_", "").isalnum() else name
    return text[:64]


# --- the worker --------------------------------------------------------------------------------------------------


class Worker:
    """Claims inbox rows and runs each on a thread pool; `run_forever` until `stop` is set."""

    def __init__(
        self,
        *,
        engine: Engine,
        queue: Engine,
        kinds: Mapping[str, Kind],
        clock: Clock,
        threads: int = 4,
        lease: dt.timedelta = LEASE,
        name: str | None = None,
    ) -> None:
        self.engine = engine  # the core's database, where the results are
        self.queue = queue  # the inbox (storage.inbox.open_queue)
        self.journal = inbox.open_journal(engine)
        self.kinds = dict(kinds)
        self.clock = clock
        self.threads = threads
        self.lease = lease
        self.name = name or f"{_LOCAL}{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._busy = 0
        self._lock = threading.Lock()

    def run_once(self) -> int:
        """Claim what is due and run it here, one row after another; how many rows were handled (tests, tools)."""
        items = self._claim(self.threads)
        for item in items:
            self.handle(item)
        return len(items)

    def drain(self, *, max_rounds: int = 100) -> int:
        """`run_once` until nothing is due; how many rows were handled."""
        total = 0
        for _ in range(max_rounds):
            handled = self.run_once()
            if not handled:
                break
            total += handled
        return total

    def run_forever(self, stop: threading.Event) -> None:
        """Claim in batches, run rows concurrently (one person's rows stay in order: the claim hands out only the
        oldest open row of each person), renew leases, until `stop` is set.

        Up to `threads` rows wait ready behind the `threads` running, and a claim is made once at least `threads`
        places are free (or the worker is idle): a claim reads the fair order over the whole backlog, so claiming
        one row at a time would cost that read per row just when the backlog is long."""
        heart = threading.Thread(target=self._heartbeat, args=(stop,), name="inbox-heartbeat", daemon=True)
        heart.start()
        with ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix="inbox") as pool:
            while not stop.is_set():
                with self._lock:
                    busy = self._busy
                free = PREFETCH * self.threads - busy
                items = self._claim(free) if free >= self.threads or busy == 0 else []
                for item in items:
                    with self._lock:
                        self._busy += 1
                    pool.submit(self.handle, item).add_done_callback(self._done)
                if not items:
                    stop.wait(IDLE_POLL_SECONDS)

    def _done(self, future: Future[None]) -> None:
        with self._lock:
            self._busy -= 1

    def _heartbeat(self, stop: threading.Event) -> None:
        self.release_dead_neighbours()
        while not stop.wait(HEARTBEAT_SECONDS):
            try:
                with Session(self.queue) as db:
                    inbox.renew(db=db, worker=self.name, now=self.clock.now(), lease=self.lease)
                inbox.checkpoint(self.engine)
            except Exception as exc:  # the next beat tries again; the lease outlasts a few missed beats
                log.warning("inbox heartbeat failed (%s)", type(exc).__name__)
            self.release_dead_neighbours()

    def release_dead_neighbours(self) -> int:
        """Hand back at once the rows of workers that ran on this machine and have died (their process is gone),
        rather than waiting out their leases: a restarted worker picks up where the killed one stopped. Only
        workers of this host *and* process namespace are judged (a process id means nothing elsewhere); a
        reused process id just leaves the row to its lease. How many rows were handed back."""
        released = 0
        try:
            with Session(self.queue) as db:
                for name in inbox.holders(db=db, prefix=_LOCAL):
                    if name != self.name and not _alive(name):
                        released += inbox.release(db=db, worker=name, now=self.clock.now())
        except Exception as exc:
            log.warning("inbox: could not look for dead workers (%s)", type(exc).__name__)
        if released:
            log.info("inbox: %d row(s) of a dead worker on this machine handed back", released)
        return released

    def _claim(self, limit: int) -> list[InboxItem]:
        try:
            with Session(self.queue, expire_on_commit=False) as db:
                return inbox.claim(db=db, worker=self.name, now=self.clock.now(), lease=self.lease, limit=limit)
        except Exception as exc:
            log.warning("inbox claim failed (%s); retrying", type(exc).__name__)
            time.sleep(IDLE_POLL_SECONDS * 10)
            return []

    def handle(self, item: InboxItem) -> None:
        """Run one claimed row to its end (done, retried later, or parked); never raises."""
        assert item.id is not None
        kind = self.kinds.get(item.kind)
        payload = _parsed(item.payload)
        if kind is None or payload is None:
            log.warning("inbox row %s parked: %s", item.id, "unknown_kind" if kind is None else "bad_payload")
            self._fail(item, "unknown_kind" if kind is None else "bad_payload", park_now=True)
            return
        if item.status == InboxStatus.PARKED:  # its workers kept dying: the one "please try again"
            INBOX_RUNS.labels(kind=item.kind, outcome="parked").inc()
            self._apologise(kind, self._run(item, payload, done=[]))
            return
        try:
            done: list[list[Step]] = []
            if item.attempts > 1:  # a first attempt has no results and no journal to look up
                with Session(self.engine) as db:
                    done = inbox.results(db=db, inbox_id=item.id)
            run = self._run(item, payload, done=done)
            kind.run(run)  # units an earlier attempt committed are skipped
            for index, step in enumerate(run.steps):
                deliver = functools.partial(kind.deliver, step, run)
                try:
                    run.journal.at(-1 - index, "deliver", deliver, encode=_none, decode=_none)
                except StepFailed as exc:
                    log.info("inbox row %s: step %d refused (%s)", item.id, index, exc)
            with Session(self.queue) as db:
                inbox.finish(db=db, item_id=item.id, worker=self.name, now=self.clock.now())
            with Session(self.engine) as db:
                inbox.forget_results(db=db, inbox_id=item.id)
            INBOX_RUNS.labels(kind=item.kind, outcome="done").inc()
        except LeaseLost:
            log.warning("inbox row %s: run by another worker too; left to it", item.id)
        except Exception as exc:
            code = error_code(exc)
            log.warning("inbox row %s failed (%s)", item.id, code, exc_info=True)
            if self._fail(item, code):
                self._apologise(kind, self._run(item, payload, done=[]))
            else:
                INBOX_RUNS.labels(kind=item.kind, outcome="retry").inc()

    def _run(self, item: InboxItem, payload: dict[str, Any], *, done: list[list[Step]]) -> Run:
        assert item.id is not None
        journal = Journal(engine=self.journal, inbox_id=item.id, clock=self.clock, fresh=item.attempts <= 1)
        return Run(item=item, payload=payload, journal=journal, engine=self.engine, done=done)

    def _fail(self, item: InboxItem, code: str, *, park_now: bool = False) -> bool:
        assert item.id is not None
        try:
            with Session(self.queue) as db:
                parked = inbox.fail(
                    db=db, item_id=item.id, worker=self.name, error_code=code, now=self.clock.now(), park_now=park_now
                )
        except Exception as exc:
            log.warning("inbox row %s: could not record its failure (%s)", item.id, type(exc).__name__)
            return False
        if parked:
            INBOX_RUNS.labels(kind=item.kind, outcome="parked").inc()
        return parked

    def _apologise(self, kind: Kind, run: Run) -> None:
        try:
            kind.apologise(run)
        except Exception as exc:
            log.warning("inbox row %s: the 'please try again' was not delivered (%s)", run.item.id, error_code(exc))


@contextlib.contextmanager
def running(worker: Worker) -> Iterator[Worker]:
    """`worker.run_forever` on a background thread for the duration of the block (tests; one-process runs)."""
    stop = threading.Event()
    thread = threading.Thread(target=worker.run_forever, args=(stop,), name="inbox-worker", daemon=True)
    thread.start()
    try:
        yield worker
    finally:
        stop.set()
        thread.join(timeout=10)


def _namespace() -> str:
    try:
        return str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        return "-"


_LOCAL = f"{socket.gethostname()}:{_namespace()}:"
"""The start of the names of workers on this machine and in this process namespace: `host:pidns:pid:random`."""


def _alive(name: str) -> bool:
    """Whether the local worker `name` still has a process (by its process id)."""
    try:
        pid = int(name[len(_LOCAL) :].split(":", 1)[0])
    except ValueError:
        return True  # not a name this code made: leave it to its lease
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def _parsed(payload: str) -> dict[str, Any] | None:
    try:
        value = json.loads(payload)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
