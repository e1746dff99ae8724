"""The inbox worker with a kind of its own (bot/worker.py): the effect journal, delivery steps across a crash, the
heartbeat, and two workers at once on a SQLite file and on PostgreSQL."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from bot.worker import _LOCAL, LEASE, Journal, Run, StepFailed, Worker, running
from handlers.ports import SystemClock
from storage import inbox
from storage.inbox import InboxItem, open_journal, open_queue
from tests.conftest import FixedClock

WAIT = 30.0


class WorkerDied(BaseException):
    """Stands for SIGKILL: the worker stops mid-row, leaving it as a killed process would."""


@dataclass
class Recorder:
    """A kind whose work is one journaled "platform call" and whose steps go to `delivered`."""

    calls: list[str] = field(default_factory=list)
    delivered: list[str] = field(default_factory=list)
    die_at_step: int | None = None
    refuse: set[str] = field(default_factory=set)
    apologies: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self, run: Run) -> None:
        name = str(run.payload["name"])

        def call() -> str:
            with self.lock:
                self.calls.append(name)
            return f"made {name}"

        made = run.journal.once(f"make {name}", call, encode=str, decode=str)
        run.record([{"say": f"{made} (1)"}, {"say": f"{made} (2)"}])

    def deliver(self, step: dict[str, Any], run: Run) -> None:
        text = str(step["say"])
        if self.die_at_step is not None and len(self.delivered) == self.die_at_step:
            raise WorkerDied
        if text in self.refuse:
            raise StepFailed("channel_not_found")
        with self.lock:
            self.delivered.append(text)

    def apologise(self, run: Run) -> None:
        assert run.item.id is not None
        self.apologies.append(run.item.id)


def put(engine: Engine, key: str, *, person: str, now: dt.datetime, workspace: str = "T1") -> None:
    with Session(open_queue(engine)) as db:
        inbox.put(
            db=db, dedupe_key=key, kind="test.make", platform="test", workspace_id=workspace,
            order_key=f"test:{workspace}:{person}", payload={"name": key}, now=now,
        )  # fmt: skip
        db.commit()


def worker(engine: Engine, kind: Recorder, clock: Any, *, threads: int = 1) -> Worker:
    return Worker(engine=engine, queue=open_queue(engine), kinds={"test.make": kind}, clock=clock, threads=threads)


def statuses(engine: Engine) -> list[str]:
    with Session(open_queue(engine)) as db:
        return [r.status for r in db.exec(select(InboxItem).order_by(InboxItem.id))]  # type: ignore[arg-type]


def test_a_worker_killed_between_two_steps_sends_only_the_second_after_restart(
    file_engine: Engine, clock: FixedClock
) -> None:
    put(file_engine, "a", person="U1", now=clock.now())
    kind = Recorder(die_at_step=1)
    with pytest.raises(WorkerDied):
        worker(file_engine, kind, clock).run_once()
    assert kind.delivered == ["made a (1)"] and statuses(file_engine) == ["working"]

    kind.die_at_step = None
    clock.advance(LEASE + dt.timedelta(seconds=1))
    assert worker(file_engine, kind, clock).drain() == 1

    assert kind.delivered == ["made a (1)", "made a (2)"]
    assert kind.calls == ["a"]  # the journaled call was made once, the core's work not repeated
    assert statuses(file_engine) == ["done"]


def test_a_journaled_call_is_made_once_however_often_the_row_is_retried(file_engine: Engine, clock: FixedClock) -> None:
    journal_engine = open_journal(file_engine)
    made: list[int] = []

    def call() -> str:
        made.append(1)
        return "C123"

    for _ in range(3):
        journal = Journal(engine=journal_engine, inbox_id=7, clock=clock)
        assert journal.once("create_channel cop-falls", call, encode=str, decode=str) == "C123"
    assert made == [1]
    # A retry whose path changed meets a different call at that place: it is made, not answered from the journal.
    other = Journal(engine=journal_engine, inbox_id=7, clock=clock)
    assert other.once("find_channel cop-falls", lambda: "C999", encode=str, decode=str) == "C999"


def test_a_step_the_platform_refuses_for_good_is_skipped_and_the_row_finishes(
    file_engine: Engine, clock: FixedClock
) -> None:
    put(file_engine, "a", person="U1", now=clock.now())
    kind = Recorder(refuse={"made a (1)"})

    assert worker(file_engine, kind, clock).drain() == 1

    assert kind.delivered == ["made a (2)"] and statuses(file_engine) == ["done"] and kind.apologies == []


def test_a_lease_the_heartbeat_renews_keeps_a_long_row_from_another_worker(file_engine: Engine) -> None:
    clock = SystemClock()
    put(file_engine, "slow", person="U1", now=clock.now())
    with Session(open_queue(file_engine)) as db:
        assert len(inbox.claim(db=db, worker="w1", now=clock.now(), lease=dt.timedelta(seconds=2), limit=1)) == 1
    later = clock.now() + dt.timedelta(seconds=5)
    with Session(open_queue(file_engine)) as db:
        assert inbox.renew(db=db, worker="w1", now=clock.now() + dt.timedelta(seconds=4), lease=LEASE) == 1
    with Session(open_queue(file_engine)) as db:
        assert inbox.claim(db=db, worker="w2", now=later, lease=LEASE, limit=1) == []


@pytest.fixture(params=["sqlite-file", pytest.param("postgresql", marks=pytest.mark.postgres)])
def shared_engine(request: pytest.FixtureRequest) -> Engine:
    """A database several workers use through their own connections, as several processes would."""
    chosen: Engine = request.getfixturevalue("file_engine" if request.param == "sqlite-file" else "pg_engine")
    return chosen


def test_two_workers_run_every_row_once_and_each_persons_rows_in_order(shared_engine: Engine) -> None:
    clock = SystemClock()
    people = [f"U{n}" for n in range(8)]
    for turn in range(10):
        for person in people:
            put(shared_engine, f"{person}-{turn:02d}", person=person, now=clock.now(), workspace=f"T{person[-1]}")
    kind = Recorder()
    workers = [worker(shared_engine, kind, clock, threads=4) for _ in range(2)]
    with running(workers[0]), running(workers[1]):
        deadline = time.monotonic() + WAIT
        while len(kind.delivered) < 2 * 80 and time.monotonic() < deadline:
            time.sleep(0.05)

    assert Counter(kind.calls) == Counter(f"{p}-{t:02d}" for p in people for t in range(10))  # each once
    assert len(kind.delivered) == 160 and len(set(kind.delivered)) == 160
    for person in people:
        mine = [c for c in kind.calls if c.startswith(f"{person}-")]
        assert mine == sorted(mine)  # one person's requests in arrival order
    assert set(statuses(shared_engine)) == {"done"}


def test_a_restarted_worker_takes_back_at_once_the_rows_of_a_dead_worker_on_this_machine(
    file_engine: Engine, clock: FixedClock
) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    put(file_engine, "orphan", person="U1", now=clock.now())
    put(file_engine, "busy", person="U2", now=clock.now())
    with Session(open_queue(file_engine)) as db:
        inbox.claim(db=db, worker=f"{_LOCAL}{dead.pid}:aaaaaa", now=clock.now(), lease=LEASE, limit=1)
        inbox.claim(db=db, worker=f"{_LOCAL}{os.getpid()}:bbbbbb", now=clock.now(), lease=LEASE, limit=1)
        inbox.claim(db=db, worker="elsewhere:1:1:cccccc", now=clock.now(), lease=LEASE, limit=1)
    kind = Recorder()
    restarted = worker(file_engine, kind, clock)

    assert restarted.release_dead_neighbours() == 1  # the live process's row and another machine's stay leased
    assert restarted.drain() == 1 and kind.calls == ["orphan"]


@dataclass
class TwoUnits:
    """A kind whose row is two units (as a Teams sentence that is tried as a reflection, then as a command)."""

    runs: list[int] = field(default_factory=list)
    delivered: list[str] = field(default_factory=list)
    die_between: bool = False

    def run(self, run: Run) -> None:
        for unit in (1, 2):
            before = len(run.steps)
            run.record([{"say": f"unit {unit}"}])
            if len(run.steps) > before:
                self.runs.append(unit)  # recorded by this attempt, not replayed
            if self.die_between:
                raise WorkerDied

    def deliver(self, step: dict[str, Any], run: Run) -> None:
        self.delivered.append(str(step["say"]))

    def apologise(self, run: Run) -> None:
        raise AssertionError("nothing fails here")


def test_a_retry_runs_only_the_units_the_dead_worker_had_not_committed(file_engine: Engine, clock: FixedClock) -> None:
    put(file_engine, "a", person="U1", now=clock.now())
    kind = TwoUnits(die_between=True)
    queue = open_queue(file_engine)
    first = Worker(engine=file_engine, queue=queue, kinds={"test.make": kind}, clock=clock)
    with pytest.raises(WorkerDied):
        first.run_once()
    assert kind.runs == [1] and kind.delivered == []

    kind.die_between = False
    clock.advance(LEASE + dt.timedelta(seconds=1))
    again = Worker(engine=file_engine, queue=queue, kinds={"test.make": kind}, clock=clock)
    assert again.drain() == 1

    assert kind.runs == [1, 2]  # unit 1 once, unit 2 once
    assert kind.delivered == ["unit 1", "unit 2"]
    with Session(file_engine) as db:
        assert inbox.results(db=db, inbox_id=1) == []  # dropped once the row was done
