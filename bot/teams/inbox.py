"""Teams' side of the inbox: what the adapter writes down before it answers, and how a worker runs it.

On the request thread (bot/teams/adapter.py) only the Bot Framework token check, the conversation's address (a
worker sends there) and one committed INSERT per piece of work, keyed by the activity's id (a Bot Framework retry
carries the same); 503 when the database cannot take it, so Bot Framework retries. A retried row skips the units
of the core it already committed (bot/worker.py); one row per person's piece of work keeps their order:

| kind            | one row per                                                                | the core's units      |
|-----------------|----------------------------------------------------------------------------|-----------------------|
| `teams.message` | message for copbot: 1:1 chat, @mention, `/cop`, thread reply, card button  | command, action, reply|
| `teams.update`  | member added or removed; copbot's hello when installed in a 1:1 chat       | member_joined/_left   |
| `teams.submit`  | valid dialog submission, run at once on the request thread (`run_inline`)  | handle_submission     |

A worker (`TeamsKinds`) re-reads the stored activity, runs the adapter's routing with the core, and the replies
become steps, stored with the core's commit:

| step           | sent with                                                                                        |
|----------------|--------------------------------------------------------------------------------------------------|
| `send`         | Bot Connector, to the conversation (a reply in the channel thread with `reply_to`)               |
| `send_to_user` | Bot Connector, to the person's 1:1 chat (opened when needed)                                     |
| `dialog`       | the invoke's answer; run by a worker after the request is gone, the card goes to the 1:1 chat    |

A transient failure (no answer, 408, 412, 429 not waited out, 5xx, login unreachable) raises, so the row is retried
and the steps already delivered are not repeated; a refusal (403 not in the conversation, 404, no address yet) is
logged by its code and skipped.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine
from sqlmodel import Session

from bot.teams.platform import PLATFORM
from bot.worker import LEASE, SORRY_PARKED, Kind, Run, Step, StepFailed, Worker
from handlers.app import CopBot
from handlers.errors import PlatformError
from handlers.ports import Clock, Reply
from storage import inbox
from storage.inbox import InboxItem, InboxStatus

if TYPE_CHECKING:
    from bot.teams.adapter import Inbound, Render, TeamsAdapter
    from bot.teams.runtime import TeamsRuntime

log = logging.getLogger(__name__)

MESSAGE = "teams.message"
UPDATE = "teams.update"
SUBMIT = "teams.submit"
KINDS = (MESSAGE, UPDATE, SUBMIT)


class NotDelivered(Exception):
    """A step Teams may take on a later try (the row is retried); `code` is Teams' error code, lower-cased, as the
    inbox records error codes (Teams' own are CamelCase: `ServiceError`)."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code.lower()


# --- the request thread ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """One row to write for an activity: its kind, its dedupe key, whose it is (their rows run in order), and what
    the worker needs besides the activity."""

    kind: str
    dedupe_key: str
    person: str
    extra: dict[str, Any] = field(default_factory=dict)


def activity_key(inbound: Inbound) -> str:
    """The activity's id, within its conversation: Teams message ids are timestamps, unique only in one chat."""
    if not inbound.activity_id:
        return f"teams:activity:{uuid.uuid4().hex}"  # nothing to match a retry by (Teams always sends an id)
    conversation = hashlib.sha256(inbound.base_conversation_id.encode("utf-8")).hexdigest()[:12]
    return f"teams:activity:{inbound.activity_id[:120]}@{conversation}"


def _put(db: Session, *, entry: Entry, inbound: Inbound, clock: Clock) -> bool:
    return inbox.put(
        db=db,
        dedupe_key=entry.dedupe_key,
        kind=entry.kind,
        platform=PLATFORM,
        workspace_id=inbound.tenant_id,
        order_key=f"teams:{inbound.tenant_id}:{entry.person}",
        payload={"activity": dict(inbound.raw), **entry.extra},
        now=clock.now(),
    )


def enqueue(*, engine: Engine, clock: Clock, inbound: Inbound, entries: list[Entry]) -> int:
    """Write an activity's rows down in one transaction, committed; how many were new (0: a retry). Raises when
    the database cannot take them: the adapter answers 503, so nothing is acknowledged unwritten."""
    with Session(engine) as db:
        new = sum(_put(db, entry=entry, inbound=inbound, clock=clock) for entry in entries)
        db.commit()
    return new


@dataclass(frozen=True)
class Inline:
    """How a submission run on the request thread went: `stored` False when it was there already (a retry or a
    double click); `done` when every step was delivered; `answer` the dialog's next card (None: close it)."""

    stored: bool
    done: bool = False
    answer: dict[str, Any] | None = None


def run_inline(*, adapter: TeamsAdapter, inbound: Inbound, dedupe_key: str) -> Inline:
    """Write a valid submission down as a `teams.submit` row and run it here, through the worker's machinery, so its
    platform calls are journaled and its steps stored with the core's commit: a retried invoke finds the row, and
    a request that dies mid-way leaves it to a worker once the lease runs out, which repeats nothing already done.

    The row is leased to this request in the transaction that writes it, so no worker sees it free meanwhile.
    Raises when the database cannot take it."""
    answer = _Answer(TeamsKinds(adapter))
    worker = Worker(
        engine=adapter.engine,
        queue=adapter.queue,
        kinds={SUBMIT: answer},
        clock=adapter.clock,
        name=f"teams-invoke:{uuid.uuid4().hex[:12]}",
    )
    entry = Entry(kind=SUBMIT, dedupe_key=dedupe_key, person=inbound.actor.user_id)
    now = adapter.clock.now()
    with Session(adapter.queue, expire_on_commit=False) as db:
        if not _put(db, entry=entry, inbound=inbound, clock=adapter.clock):
            db.commit()
            return Inline(stored=False)
        item = inbox.lease_new(db=db, dedupe_key=dedupe_key, worker=worker.name, now=now, lease=LEASE)
        db.commit()
    worker.handle(item)
    with Session(adapter.queue) as db:
        row = db.get(InboxItem, item.id)
        done = row is not None and row.status == InboxStatus.DONE
    return Inline(stored=True, done=done, answer=answer.value)


@dataclass
class _Answer:
    """The kind of a row run on the request thread: its `dialog` step becomes the invoke's answer."""

    kinds: TeamsKinds
    value: dict[str, Any] | None = None

    def run(self, run: Run) -> None:
        self.kinds.run(run)

    def deliver(self, step: Step, run: Run) -> None:
        if step.get("op") == "dialog":
            self.value = dict(step["value"])
            return
        self.kinds.deliver(step, run)

    def apologise(self, run: Run) -> None:
        self.kinds.apologise(run)


# --- the worker --------------------------------------------------------------------------------------------------


@dataclass
class TeamsKinds:
    """Runs Teams' inbox rows (every kind in KINDS) with the adapter's routing and core, and delivers their steps."""

    adapter: TeamsAdapter

    def kinds(self) -> dict[str, Kind]:
        return dict.fromkeys(KINDS, self)

    def _inbound(self, run: Run) -> Inbound:
        from bot.teams.adapter import parse

        activity = run.payload.get("activity")
        return parse(activity if isinstance(activity, dict) else {}, default_tenant=self.adapter.platform.tenant_id)

    def run(self, run: Run) -> None:
        inbound = self._inbound(run)

        def core(render: Render) -> CopBot:
            return run.bot(self.adapter.bot, render)

        kind = run.item.kind
        platform = self.adapter.platform
        with platform.scope(
            service_url=inbound.service_url or None, tenant_id=inbound.tenant_id, team_group_id=inbound.team_group_id
        ):
            if kind == MESSAGE:
                self.adapter.run_message(inbound, core)
            elif kind == UPDATE:
                member = run.payload.get("member")
                change = str(run.payload.get("change") or "")
                self.adapter.run_update(inbound, core, change=change, index=member if isinstance(member, int) else -1)
            elif kind == SUBMIT:
                self.adapter.run_submission(inbound, core)

    def deliver(self, step: Step, run: Run) -> None:
        try:
            self.adapter.send(step)
        except PlatformError as exc:
            if exc.transient:
                raise NotDelivered(exc.code) from exc
            raise StepFailed(exc.code) from exc

    def apologise(self, run: Run) -> None:
        if run.item.kind == UPDATE:
            log.info("inbox row %s: a membership change was given up; nobody asked, so nobody is told", run.item.id)
            return
        inbound = self._inbound(run)
        if not (inbound.aad_object_id or inbound.from_id):
            return
        for step in self.adapter.plan([Reply.private(SORRY_PARKED)], inbound):
            self.adapter.send(step)


def teams_kinds(runtime: TeamsRuntime) -> dict[str, Kind]:
    """The kinds a worker process runs for Teams (`copbot worker`), built from the Teams runtime."""
    return TeamsKinds(runtime.adapter).kinds()
