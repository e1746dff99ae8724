"""The inbox on SQLite and PostgreSQL: idempotent puts, leases, one person's requests in order and one at a time,
fairness across workspaces, poison rows parked, and two workers at once handling every row exactly once."""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections import Counter, defaultdict

import pytest
from sqlalchemy import Engine, text
from sqlmodel import Session, select

from storage import inbox
from storage.inbox import InboxItem, InboxStatus
from tests.fakes.slack_signing import slash_command_fields

NOW = dt.datetime(2026, 12, 2, 10, 0, tzinfo=dt.UTC)
LEASE = dt.timedelta(seconds=30)
SECOND = dt.timedelta(seconds=1)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_engine(request: pytest.FixtureRequest) -> Engine:
    chosen: Engine = request.getfixturevalue("engine" if request.param == "sqlite" else "pg_engine")
    return chosen


@pytest.fixture(params=["sqlite-file", pytest.param("postgresql", marks=pytest.mark.postgres)])
def shared_engine(request: pytest.FixtureRequest) -> Engine:
    """A database two threads use through their own connections, as two worker processes would."""
    chosen: Engine = request.getfixturevalue("file_engine" if request.param == "sqlite-file" else "pg_engine")
    return chosen


def put(db: Session, key: str, *, user: str = "U0ALICE", team: str = "T1", said: str = "join safety",
        at: dt.datetime = NOW) -> bool:  # fmt: skip
    """`/cop <said>` from `user` in workspace `team`, as the HTTP path would write it down."""
    return inbox.put(
        db=db, dedupe_key=key, kind="slack.command", platform="slack", workspace_id=team,
        order_key=f"slack:{team}:{user}", payload=slash_command_fields(said, user_id=user, team_id=team), now=at,
    )  # fmt: skip


def put_all(engine: Engine, keys: list[str], *, user: str = "U0ALICE", said: str = "join safety") -> None:
    with Session(engine) as db:
        for key in keys:
            assert put(db, key, user=user, said=said)
        db.commit()


def claim(engine: Engine, worker: str, *, at: dt.datetime = NOW, limit: int = 10) -> list[InboxItem]:
    with Session(engine) as db:
        return inbox.claim(db=db, worker=worker, now=at, lease=LEASE, limit=limit)


def keys(items: list[InboxItem]) -> list[str]:
    return [item.dedupe_key for item in items]


def finish(engine: Engine, item: InboxItem, worker: str, *, at: dt.datetime = NOW) -> bool:
    assert item.id is not None
    with Session(engine) as db:
        return inbox.finish(db=db, item_id=item.id, worker=worker, now=at)


def fail(engine: Engine, item: InboxItem, worker: str, code: str = "slack_error", *, at: dt.datetime = NOW,
         park_now: bool = False) -> bool:  # fmt: skip
    assert item.id is not None
    with Session(engine) as db:
        return inbox.fail(db=db, item_id=item.id, worker=worker, error_code=code, now=at, park_now=park_now)


def stored(engine: Engine, key: str) -> InboxItem:
    with Session(engine) as db:
        return db.exec(select(InboxItem).where(InboxItem.dedupe_key == key)).one()


# --- put -----------------------------------------------------------------------------------------------------------


def test_a_platform_retry_of_a_request_is_not_written_twice(db_engine: Engine) -> None:
    with Session(db_engine) as db:
        first = put(db, "slack:cmd:1", said="join safety")
        retry = put(db, "slack:cmd:1", said="join safety", at=NOW + SECOND)
        db.commit()

    assert (first, retry) == (True, False)
    with Session(db_engine) as db:
        rows = list(db.exec(select(InboxItem)))
    assert len(rows) == 1
    row = rows[0]
    assert (row.status, row.attempts, row.next_attempt_at, row.created_at) == (InboxStatus.PENDING, 0, NOW, NOW)
    assert (row.platform, row.workspace_id, row.kind) == ("slack", "T1", "slack.command")
    assert row.order_key == "slack:T1:U0ALICE"
    assert json.loads(row.payload)["text"] == "join safety"
    assert "join safety" not in repr(row), "the row's repr (what a log line would show) holds the typed text"


def test_a_kind_must_be_a_short_code(db_engine: Engine) -> None:
    with Session(db_engine) as db, pytest.raises(ValueError, match="short code"):
        inbox.put(
            db=db, dedupe_key="k", kind="Slack command from Alice", platform="slack", workspace_id="T1",
            order_key="slack:T1:U1", payload={}, now=NOW,
        )  # fmt: skip


# --- claim, lease, finish ------------------------------------------------------------------------------------------


def test_a_claim_leases_a_row_and_an_expired_lease_is_claimed_again(db_engine: Engine) -> None:
    put_all(db_engine, ["slack:cmd:1"])

    taken = claim(db_engine, "w1")
    assert keys(taken) == ["slack:cmd:1"]
    lease = (taken[0].status, taken[0].claimed_by, taken[0].lease_until, taken[0].attempts)
    assert lease == (InboxStatus.WORKING, "w1", NOW + LEASE, 1)
    assert claim(db_engine, "w2", at=NOW + LEASE - SECOND) == [], "a leased row was handed out again"

    # w1 died: once its lease has run out the row goes to whoever claims next.
    retaken = claim(db_engine, "w2", at=NOW + LEASE + SECOND)
    assert keys(retaken) == ["slack:cmd:1"]
    assert (retaken[0].claimed_by, retaken[0].attempts) == ("w2", 2)

    assert not finish(db_engine, taken[0], "w1", at=NOW + LEASE + 2 * SECOND), "w1 no longer holds the row"
    assert stored(db_engine, "slack:cmd:1").status == InboxStatus.WORKING
    assert finish(db_engine, retaken[0], "w2", at=NOW + LEASE + 3 * SECOND)
    done = stored(db_engine, "slack:cmd:1")
    assert (done.status, done.done_at, done.lease_until) == (InboxStatus.DONE, NOW + LEASE + 3 * SECOND, None)
    assert json.loads(done.payload) == {}, "a handled request keeps the person's words"
    assert claim(db_engine, "w1", at=NOW + 10 * LEASE) == []


def test_a_claim_takes_no_more_than_its_limit_oldest_first(db_engine: Engine) -> None:
    for n in range(5):
        put_all(db_engine, [f"slack:cmd:{n}"], user=f"U{n}")

    assert keys(claim(db_engine, "w1", limit=3)) == ["slack:cmd:0", "slack:cmd:1", "slack:cmd:2"]
    assert keys(claim(db_engine, "w2", limit=3)) == ["slack:cmd:3", "slack:cmd:4"]


# --- order per person ----------------------------------------------------------------------------------------------


def test_one_persons_requests_are_handed_out_one_at_a_time_in_arrival_order(db_engine: Engine) -> None:
    put_all(db_engine, ["alice:1", "alice:2", "alice:3"], user="U0ALICE")
    put_all(db_engine, ["bob:1"], user="U0BOB")
    handed_out: list[tuple[str, str]] = []

    first = claim(db_engine, "w1")
    assert keys(first) == ["alice:1", "bob:1"], "one row per person, the earliest"
    assert claim(db_engine, "w2") == [], "alice's second request ran beside her first"
    handed_out += [("w1", "alice:1")]
    assert finish(db_engine, first[0], "w1")

    second = claim(db_engine, "w2")
    assert keys(second) == ["alice:2"]
    handed_out += [("w2", "alice:2")]
    # A failed run backs off; alice's third request waits behind it rather than overtaking it.
    assert not fail(db_engine, second[0], "w2")
    assert claim(db_engine, "w1", at=NOW + SECOND) == []

    again = claim(db_engine, "w1", at=NOW + inbox.retry_delay(1))
    assert keys(again) == ["alice:2"]
    handed_out += [("w1", "alice:2")]
    assert finish(db_engine, again[0], "w1", at=NOW + inbox.retry_delay(1))

    last = claim(db_engine, "w2", at=NOW + inbox.retry_delay(1))
    handed_out += [("w2", key) for key in keys(last)]
    assert handed_out == [("w1", "alice:1"), ("w2", "alice:2"), ("w1", "alice:2"), ("w2", "alice:3")]


def test_a_dead_workers_row_still_comes_before_the_persons_next_request(db_engine: Engine) -> None:
    put_all(db_engine, ["alice:1", "alice:2"])
    claim(db_engine, "w1")  # and w1 dies

    assert claim(db_engine, "w2", at=NOW + LEASE - SECOND) == []
    assert keys(claim(db_engine, "w2", at=NOW + LEASE + SECOND)) == ["alice:1"]


# --- fairness ------------------------------------------------------------------------------------------------------


def test_a_flood_from_one_workspace_does_not_starve_another(db_engine: Engine) -> None:
    with Session(db_engine) as db:
        for n in range(1_000):
            put(db, f"flood:{n}", team="TFLOOD", user=f"U{n}")
        for n in range(5):
            put(db, f"quiet:{n}", team="TQUIET", user=f"U{n}")
        db.commit()

    first = claim(db_engine, "w1", limit=10)

    assert sorted(keys(first)) == sorted([f"flood:{n}" for n in range(5)] + [f"quiet:{n}" for n in range(5)])
    # With the quiet workspace served, the flood has the whole of the next claim.
    assert keys(claim(db_engine, "w1", limit=10)) == [f"flood:{n}" for n in range(5, 15)]


def test_each_workspace_gets_its_share_of_a_claim(db_engine: Engine) -> None:
    with Session(db_engine) as db:
        for team, count in (("TA", 50), ("TB", 50), ("TC", 1)):
            for n in range(count):
                put(db, f"{team}:{n}", team=team, user=f"U{n}")
        db.commit()

    per_workspace = Counter(item.workspace_id for item in claim(db_engine, "w1", limit=9))

    assert per_workspace == {"TA": 4, "TB": 4, "TC": 1}


# --- failures and poison rows --------------------------------------------------------------------------------------


def test_a_row_that_keeps_failing_backs_off_then_is_parked_and_the_persons_next_request_runs(db_engine: Engine) -> None:
    put_all(db_engine, ["alice:1", "alice:2"])
    at = NOW
    waits: list[dt.timedelta] = []
    parked: list[bool] = []
    for _attempt in range(inbox.MAX_ATTEMPTS):
        (item,) = claim(db_engine, "w1", at=at)
        assert item.dedupe_key == "alice:1"
        parked.append(fail(db_engine, item, "w1", "slack_error", at=at))
        row = stored(db_engine, "alice:1")
        if row.status == InboxStatus.PENDING:
            waits.append(row.next_attempt_at - at)
            assert claim(db_engine, "w1", at=row.next_attempt_at - SECOND) == [], "retried before its back-off"
            at = row.next_attempt_at

    assert parked == [False, False, False, False, True], "the caller replies 'please try again' once"
    assert waits == [2 * SECOND, 4 * SECOND, 8 * SECOND, 16 * SECOND]
    row = stored(db_engine, "alice:1")
    assert (row.status, row.attempts, row.last_error, row.done_at) == (InboxStatus.PARKED, 5, "slack_error", at)
    with Session(db_engine) as db:
        assert (inbox.parked_count(db=db), inbox.depth(db=db)) == (1, 1)
    assert keys(claim(db_engine, "w1", at=at + 100 * LEASE)) == ["alice:2"], "a parked row blocks nobody"


def test_retries_wait_at_most_five_minutes() -> None:
    assert inbox.retry_delay(1) == 2 * SECOND
    assert inbox.retry_delay(8) == 256 * SECOND
    assert inbox.retry_delay(9) == inbox.retry_delay(40) == dt.timedelta(minutes=5)


def test_a_row_whose_workers_keep_dying_is_parked_and_reported_once(db_engine: Engine) -> None:
    put_all(db_engine, ["alice:1"])
    at = NOW
    for attempt in range(1, inbox.MAX_ATTEMPTS + 1):
        (item,) = claim(db_engine, f"w{attempt}", at=at)
        assert (item.status, item.attempts) == (InboxStatus.WORKING, attempt)
        at += LEASE + SECOND  # and the worker is killed

    (reported,) = claim(db_engine, "w9", at=at)

    assert (reported.dedupe_key, reported.status) == ("alice:1", InboxStatus.PARKED)
    assert reported.last_error == "lease_expired"
    assert claim(db_engine, "w9", at=at + 100 * LEASE) == [], "the parked row came back a second time"
    with Session(db_engine) as db:
        assert (inbox.parked_count(db=db), inbox.depth(db=db)) == (1, 0)


def test_a_payload_that_no_longer_parses_is_parked_at_once(db_engine: Engine) -> None:
    put_all(db_engine, ["alice:1"])
    (item,) = claim(db_engine, "w1")

    assert fail(db_engine, item, "w1", "bad_payload", park_now=True)

    row = stored(db_engine, "alice:1")
    assert (row.status, row.attempts, row.last_error) == (InboxStatus.PARKED, 1, "bad_payload")


def test_an_error_is_a_code_never_a_message(db_engine: Engine) -> None:
    put_all(db_engine, ["alice:1"], said="my patient Jo Bloggs")
    (item,) = claim(db_engine, "w1")

    with pytest.raises(ValueError, match="short code"):
        fail(db_engine, item, "w1", "KeyError: 'my patient Jo Bloggs'")

    row = stored(db_engine, "alice:1")
    assert (row.status, row.last_error) == (InboxStatus.WORKING, None)


def test_a_worker_that_lost_its_lease_cannot_fail_the_row(db_engine: Engine) -> None:
    put_all(db_engine, ["alice:1"])
    (mine,) = claim(db_engine, "w1")
    claim(db_engine, "w2", at=NOW + LEASE + SECOND)

    assert not fail(db_engine, mine, "w1", park_now=True, at=NOW + LEASE + 2 * SECOND)

    row = stored(db_engine, "alice:1")
    assert (row.status, row.claimed_by, row.last_error) == (InboxStatus.WORKING, "w2", None)


# --- figures and housekeeping --------------------------------------------------------------------------------------


def figures(engine: Engine, at: dt.datetime) -> tuple[int, int, float]:
    """What /metrics shows: (depth, parked, seconds the oldest unhandled row has waited)."""
    with Session(engine) as db:
        return inbox.depth(db=db), inbox.parked_count(db=db), inbox.oldest_pending_age(db=db, now=at)


def test_depth_parked_and_the_oldest_waiting_row_for_metrics(db_engine: Engine) -> None:
    assert figures(db_engine, NOW) == (0, 0, 0.0)
    put_all(db_engine, ["alice:1"], user="U0ALICE")
    put_all(db_engine, ["bob:1"], user="U0BOB")
    with Session(db_engine) as db:
        put(db, "carol:1", user="U0CAROL", at=NOW + 20 * SECOND)
        db.commit()
    alice, bob = claim(db_engine, "w1", at=NOW + 30 * SECOND, limit=2)
    finish(db_engine, alice, "w1", at=NOW + 30 * SECOND)

    # bob (working) arrived first of those not yet handled: 60 s ago.
    assert figures(db_engine, NOW + 60 * SECOND) == (2, 0, 60.0)
    fail(db_engine, bob, "w1", park_now=True, at=NOW + 60 * SECOND)
    assert figures(db_engine, NOW + 60 * SECOND) == (1, 1, 40.0)


def test_purge_removes_done_rows_older_than_the_cutoff_in_batches_and_keeps_parked_ones(db_engine: Engine) -> None:
    put_all(db_engine, [f"old:{n}" for n in range(5)] + ["poison", "recent"], user="U1")
    person_rows = 7
    for n in range(person_rows):
        (item,) = claim(db_engine, "w1", at=NOW + n * SECOND)
        if item.dedupe_key == "poison":
            fail(db_engine, item, "w1", "bad_payload", at=NOW + n * SECOND, park_now=True)
        else:
            finish(db_engine, item, "w1", at=NOW + n * SECOND)
    cutoff = NOW + 6 * SECOND  # "recent" was done at the cutoff

    with Session(db_engine) as db:
        batches = [inbox.purge_done(db=db, before=cutoff, batch=2) for _ in range(4)]

    assert batches == [2, 2, 1, 0]
    with Session(db_engine) as db:
        assert sorted(r.dedupe_key for r in db.exec(select(InboxItem))) == ["poison", "recent"]
        assert not put(db, "recent"), "a retry inside the window is still recognised"


# --- concurrency ---------------------------------------------------------------------------------------------------


def test_two_workers_at_once_handle_every_row_exactly_once_and_each_person_in_order(shared_engine: Engine) -> None:
    # Fewer people than a claim's limit, so that only the order rule keeps a person's rows apart.
    people = [(f"T{p % 2}", f"U{p}") for p in range(6)]
    with Session(shared_engine) as db:
        for n in range(500):
            team, user = people[n % len(people)]
            assert put(db, f"req:{n:03d}", team=team, user=user)
        db.commit()
    handled: list[tuple[str, str]] = []  # (worker, key) in the order the rows were handed out
    by_person: dict[str, list[int]] = defaultdict(list)
    in_hand: set[str] = set()
    overlaps: list[str] = []
    guard = threading.Lock()
    barrier = threading.Barrier(2, timeout=30)
    errors: list[BaseException] = []

    def work(worker: str) -> None:
        try:
            barrier.wait()
            with Session(shared_engine) as db:
                while True:
                    items = inbox.claim(db=db, worker=worker, now=NOW, lease=dt.timedelta(hours=1), limit=8)
                    if not items and inbox.depth(db=db) == 0:
                        return
                    for item in items:
                        assert item.id is not None
                        with guard:
                            if item.order_key in in_hand:
                                overlaps.append(item.dedupe_key)
                            in_hand.add(item.order_key)
                            handled.append((worker, item.dedupe_key))
                            by_person[item.order_key].append(item.id)
                    for item in items:
                        assert item.id is not None
                        with guard:
                            in_hand.discard(item.order_key)
                        assert inbox.finish(db=db, item_id=item.id, worker=worker, now=NOW)
        except BaseException as exc:  # reported below: an exception in a thread would otherwise vanish
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(name,)) for name in ("w1", "w2")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert errors == []
    assert not any(thread.is_alive() for thread in threads)
    counts = Counter(key for _worker, key in handled)
    assert counts == Counter({f"req:{n:03d}": 1 for n in range(500)}), "a row was lost or handled twice"
    assert overlaps == [], "two rows of one person were handed out at once"
    assert all(ids == sorted(ids) for ids in by_person.values()), "a person's requests ran out of order"
    assert set(Counter(worker for worker, _key in handled)) == {"w1", "w2"}, "only one worker got any rows"


@pytest.mark.postgres
def test_postgresql_passes_over_a_row_another_worker_holds(pg_engine: Engine) -> None:
    put_all(pg_engine, ["alice:1", "alice:2"], user="U0ALICE")
    put_all(pg_engine, ["bob:1"], user="U0BOB")
    alice_first = stored(pg_engine, "alice:1").id
    taken: list[InboxItem] = []

    with pg_engine.connect() as other_worker:
        # Another worker is in the middle of claiming alice's first request.
        other_worker.execute(text("SELECT id FROM inbox WHERE id = :id FOR UPDATE"), {"id": alice_first})
        claimer = threading.Thread(target=lambda: taken.extend(claim(pg_engine, "w2")))
        claimer.start()
        claimer.join(timeout=30)  # a claim that waits for the lock instead returns only once it is released
        other_worker.rollback()
    claimer.join(timeout=30)

    assert keys(taken) == ["bob:1"], "the claim waited for the locked row, or took alice's next request"
