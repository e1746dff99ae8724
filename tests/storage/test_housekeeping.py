"""The daily purge: old inbound-event keys and old sent outbox rows go, in committed batches sized to a write budget;
everything an operator or a person still needs stays. On SQLite and on PostgreSQL."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from sqlalchemy import Engine, func
from sqlmodel import Session, select

from storage import housekeeping, inbox, rhythm
from storage import repository as repo
from storage.housekeeping import MAX_BATCH, MIN_BATCH, next_batch_size, purge
from storage.inbox import InboxItem, InboxStatus
from storage.models import InboundEvent
from storage.rhythm import OutboxItem, OutboxStatus

NOW = dt.datetime(2026, 11, 25, 3, 30, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_engine(request: pytest.FixtureRequest) -> Engine:
    chosen: Engine = request.getfixturevalue("engine" if request.param == "sqlite" else "pg_engine")
    return chosen


def no_pause(_seconds: float) -> None:
    return None


def add_keys(engine: Engine, *, count: int, age: dt.timedelta, prefix: str) -> None:
    with Session(engine) as db:
        for n in range(count):
            repo.claim_inbound_event(db=db, key=f"{prefix}:{n}", now=NOW - age + dt.timedelta(seconds=n))
        db.commit()


def add_delivery(engine: Engine, key: str, *, status: OutboxStatus, age: dt.timedelta) -> int:
    """An outbox row due and (when sent) sent `age` ago; its id."""
    at = NOW - age
    with Session(engine) as db:
        rhythm.enqueue(
            db=db, dedupe_key=key, kind="prompt_dm", platform="slack", workspace_id="T1", destination="user:U1",
            payload={"text": "What went well this week?"}, due_at=at - dt.timedelta(minutes=1), now=at,
        )  # fmt: skip
        row = db.exec(select(OutboxItem).where(OutboxItem.dedupe_key == key)).one()
        row.status = status
        row.sent_at = at if status == OutboxStatus.SENT else None
        db.add(row)
        db.commit()
        assert row.id is not None
        return row.id


def add_reflection_to(engine: Engine, outbox_id: int) -> None:
    """A person's reply to the delivery `outbox_id` (so the delivery is what the reflection answered)."""
    with Session(engine) as db:
        member = repo.ensure_member(db=db, platform="slack", workspace_id="T1", user_id="U1", now=NOW)
        community = repo.create_community(
            db=db, platform="slack", workspace_id="T1", slug="falls", name="Falls", purpose="", channel_id="C1",
            channel_name="cop-falls", timezone="Europe/London", creator=member, now=NOW - 90 * DAY,
        )  # fmt: skip
        assert community.id is not None and member.id is not None
        occurrence = rhythm.add_occurrence(
            db=db, key="prompt:falls:w1", community_id=community.id, prompt_id="p1", mode="dm",
            due_at=NOW - 40 * DAY, skipped=False, now=NOW - 40 * DAY,
        )  # fmt: skip
        assert occurrence is not None and occurrence.id is not None
        rhythm.add_reflection(
            db=db, occurrence_id=occurrence.id, outbox_id=outbox_id, community_id=community.id, member_id=member.id,
            text="The huddle helped.", source_channel="D1", source_message="1.1", now=NOW - 39 * DAY,
        )  # fmt: skip
        db.commit()


def keys_left(engine: Engine) -> set[str]:
    with Session(engine) as db:
        return set(db.exec(select(InboundEvent.key)))


def deliveries_left(engine: Engine) -> set[str]:
    with Session(engine) as db:
        return set(db.exec(select(OutboxItem.dedupe_key)))


class SteppingTimer:
    """A clock each write batch reads twice (start, end): every batch appears to take `per_batch` seconds."""

    def __init__(self, per_batch: float) -> None:
        self.per_batch = per_batch
        self.now = 0.0
        self.calls = 0

    def __call__(self) -> float:
        self.calls += 1
        if self.calls % 2 == 0:
            self.now += self.per_batch
        return self.now


def test_old_keys_and_old_sent_rows_go_and_the_rest_stays(db_engine: Engine) -> None:
    add_keys(db_engine, count=3, age=8 * DAY, prefix="slack:event:old")
    add_keys(db_engine, count=2, age=6 * DAY, prefix="slack:event:recent")
    add_delivery(db_engine, "sent-31-days", status=OutboxStatus.SENT, age=31 * DAY)
    add_delivery(db_engine, "sent-45-days", status=OutboxStatus.SENT, age=45 * DAY)
    add_delivery(db_engine, "sent-29-days", status=OutboxStatus.SENT, age=29 * DAY)
    add_delivery(db_engine, "failed-60-days", status=OutboxStatus.FAILED, age=60 * DAY)
    add_delivery(db_engine, "cancelled-60-days", status=OutboxStatus.CANCELLED, age=60 * DAY)
    add_delivery(db_engine, "pending-60-days", status=OutboxStatus.PENDING, age=60 * DAY)
    answered = add_delivery(db_engine, "sent-40-days-answered", status=OutboxStatus.SENT, age=40 * DAY)
    add_reflection_to(db_engine, answered)

    result = purge(engine=db_engine, now=NOW, pause=no_pause)

    assert result.deleted == {"inbound_event": 3, "inbox": 0, "inbox_effect": 0, "inbox_result": 0, "outbox": 2}
    assert keys_left(db_engine) == {"slack:event:recent:0", "slack:event:recent:1"}
    assert deliveries_left(db_engine) == {
        "sent-29-days", "failed-60-days", "cancelled-60-days", "pending-60-days", "sent-40-days-answered",
    }  # fmt: skip
    with Session(db_engine) as db:
        [reflection] = db.exec(select(rhythm.Reflection))
    assert reflection.outbox_id == answered


def add_request(engine: Engine, key: str, *, status: InboxStatus, age: dt.timedelta) -> int:
    """An inbox row that arrived (and, unless open, ended) `age` ago, with one journaled platform call; its id."""
    at = NOW - age
    with Session(inbox.open_queue(engine)) as db:
        inbox.put(
            db=db, dedupe_key=key, kind="slack.command", platform="slack", workspace_id="T1", order_key=f"o:{key}",
            payload={"text": "create Falls"}, now=at,
        )  # fmt: skip
        row = db.exec(select(InboxItem).where(InboxItem.dedupe_key == key)).one()
        row.status = status
        row.done_at = None if status in (InboxStatus.PENDING, InboxStatus.WORKING) else at
        db.add(row)
        db.commit()
        assert row.id is not None
        row_id = row.id
    journal = inbox.open_journal(engine)
    with Session(journal) as db:
        inbox.record_effect(db=db, inbox_id=row_id, seq=0, method="post C1", answer="1.1", now=at)
    return row_id


def test_done_requests_go_after_a_week_parked_and_open_ones_stay_and_the_journal_goes_after_a_day(
    file_engine: Engine,
) -> None:
    old_done = add_request(file_engine, "done-8-days", status=InboxStatus.DONE, age=8 * DAY)
    add_request(file_engine, "done-6-days", status=InboxStatus.DONE, age=6 * DAY)
    add_request(file_engine, "parked-30-days", status=InboxStatus.PARKED, age=30 * DAY)
    add_request(file_engine, "pending-2-days", status=InboxStatus.PENDING, age=2 * DAY)
    fresh = add_request(file_engine, "working-now", status=InboxStatus.WORKING, age=dt.timedelta(minutes=1))

    result = purge(engine=file_engine, now=NOW, pause=no_pause)

    assert (result.deleted["inbox"], result.deleted["inbox_effect"]) == (1, 4)
    with Session(inbox.open_queue(file_engine)) as db:
        left = set(db.exec(select(InboxItem.dedupe_key)))
    assert left == {"done-6-days", "parked-30-days", "pending-2-days", "working-now"}
    journal = inbox.open_journal(file_engine)
    with Session(journal) as db:
        assert inbox.effect(db=db, inbox_id=fresh, seq=0) == ("post C1", "1.1")
        assert inbox.effect(db=db, inbox_id=old_done, seq=0) is None


def test_a_second_run_finds_nothing_more(db_engine: Engine) -> None:
    add_keys(db_engine, count=2, age=10 * DAY, prefix="teams:conv:activity")
    add_delivery(db_engine, "sent-31-days", status=OutboxStatus.SENT, age=31 * DAY)
    purge(engine=db_engine, now=NOW, pause=no_pause)

    again = purge(engine=db_engine, now=NOW, pause=no_pause)

    assert again.deleted == {"inbound_event": 0, "inbox": 0, "inbox_effect": 0, "inbox_result": 0, "outbox": 0}
    assert again.batches == []


def test_every_batch_is_committed_before_the_next_begins(db_engine: Engine) -> None:
    add_keys(db_engine, count=450, age=8 * DAY, prefix="slack:event")
    seen_by_others: list[int] = []

    def look_from_another_connection(_seconds: float) -> None:
        with Session(db_engine) as db:
            seen_by_others.append(int(db.exec(select(func.count()).select_from(InboundEvent)).one()))

    result = purge(
        engine=db_engine, now=NOW, first_batch=100, timer=SteppingTimer(0.001), pause=look_from_another_connection
    )

    assert result.deleted["inbound_event"] == 450
    assert [b.deleted for b in result.batches] == [100, 200, 150]  # fast batches double, up to what is left
    assert seen_by_others == [350, 150, 0]


def test_batches_shrink_when_writes_run_over_the_budget(engine: Engine) -> None:
    add_keys(engine, count=2_000, age=8 * DAY, prefix="slack:event")

    # 100 ms for every batch: far over the 50 ms budget whatever its size.
    result = purge(engine=engine, now=NOW, first_batch=1_000, timer=SteppingTimer(0.100), pause=no_pause)

    assert [b.size for b in result.batches[:4]] == [1_000, 166, MIN_BATCH, MIN_BATCH]
    assert result.deleted["inbound_event"] == 2_000


def test_batches_grow_while_writes_stay_well_under_the_budget(engine: Engine) -> None:
    add_keys(engine, count=1_500, age=8 * DAY, prefix="slack:event")

    result = purge(engine=engine, now=NOW, first_batch=100, timer=SteppingTimer(0.001), pause=no_pause)

    assert [b.size for b in result.batches] == [100, 200, 400, 800]
    assert result.deleted["inbound_event"] == 1_500


def test_the_next_batch_aims_at_a_third_of_the_budget_and_at_most_doubles() -> None:
    # 2,000 rows in 40 ms: 20 µs a row, so 16.7 ms (a third of 50) fits 833.
    assert next_batch_size(size=2_000, deleted=2_000, seconds=0.040) == 833
    assert next_batch_size(size=2_000, deleted=2_000, seconds=0.001) == 4_000
    assert next_batch_size(size=MAX_BATCH, deleted=MAX_BATCH, seconds=0.001) == MAX_BATCH
    assert next_batch_size(size=2_000, deleted=2_000, seconds=5.0) == MIN_BATCH
    assert next_batch_size(size=2_000, deleted=0, seconds=0.010) == 2_000  # another process took them: no evidence


def test_pauses_between_batches_last_as_long_as_the_writes(engine: Engine) -> None:
    add_keys(engine, count=300, age=8 * DAY, prefix="slack:event")
    pauses: list[float] = []

    result = purge(engine=engine, now=NOW, first_batch=100, timer=SteppingTimer(0.020), pause=pauses.append)

    assert pauses == [b.seconds for b in result.batches]
    assert pauses and all(p == pytest.approx(0.020) for p in pauses)


@pytest.fixture(params=["sqlite-file", pytest.param("postgresql", marks=pytest.mark.postgres)])
def shared_engine(request: pytest.FixtureRequest) -> Engine:
    """A database two threads use through their own connections, as two copbot processes would."""
    chosen: Engine = request.getfixturevalue("file_engine" if request.param == "sqlite-file" else "pg_engine")
    return chosen


def test_two_purges_at_once_share_the_work_and_count_each_row_once(shared_engine: Engine) -> None:
    add_keys(shared_engine, count=1_200, age=8 * DAY, prefix="slack:event")
    for n in range(300):
        add_delivery(shared_engine, f"sent-{n}", status=OutboxStatus.SENT, age=31 * DAY)
    results: list[housekeeping.PurgeResult] = []
    barrier = threading.Barrier(2, timeout=30)

    def run() -> None:
        barrier.wait()
        results.append(purge(engine=shared_engine, now=NOW, first_batch=100, pause=no_pause))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert len(results) == 2
    assert sum(r.deleted["inbound_event"] for r in results) == 1_200
    assert sum(r.deleted["outbox"] for r in results) == 300
    assert keys_left(shared_engine) == set()
    assert deliveries_left(shared_engine) == set()


def test_only_one_process_may_purge_a_database_at_a_time(shared_engine: Engine) -> None:
    with housekeeping.exclusive(shared_engine) as first, housekeeping.exclusive(shared_engine) as second:
        assert (first, second) == (True, False)
    with housekeeping.exclusive(shared_engine) as after_the_first_finished:
        assert after_the_first_finished
