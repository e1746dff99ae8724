"""Outbox claims are exclusive across dispatchers sharing one database: on a SQLite file as on PostgreSQL."""

from __future__ import annotations

import datetime as dt
import threading
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from storage import rhythm
from storage.engine import make_engine, migrate
from storage.rhythm import OutboxItem, OutboxStatus

NOW = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)


def fill(engine: Engine, rows: int) -> None:
    with Session(engine) as db:
        for i in range(rows):
            rhythm.enqueue(
                db=db, dedupe_key=f"k{i}", kind="dm_prompt", platform="slack", workspace_id="T1",
                destination=f"user:U{i}", payload={"text": "x"}, due_at=NOW, now=NOW,
            )  # fmt: skip
        db.commit()


def claim_all(engine: Engine, worker: str, taken: list[int]) -> None:
    """Claim until nothing is pending (a claim that lost every row to the other dispatcher is just tried again)."""
    while True:
        with Session(engine) as db:
            items = rhythm.claim(db=db, worker=worker, now=NOW, lease=dt.timedelta(minutes=5), limit=5)
            if not items and not db.exec(select(OutboxItem).where(OutboxItem.status == OutboxStatus.PENDING)).first():
                return
        taken.extend(i.id or 0 for i in items)


@pytest.fixture(params=["sqlite-file", "postgresql"])
def shared(request: pytest.FixtureRequest, tmp_path: Path) -> Engine:
    if request.param == "postgresql":
        chosen: Engine = request.getfixturevalue("pg_engine")
        return chosen
    engine = make_engine(f"sqlite:///{tmp_path}/shared.db")
    migrate(engine)
    return engine


def test_two_dispatchers_claiming_at_once_never_take_one_row_twice(shared: Engine) -> None:
    fill(shared, 1_000)
    taken: dict[str, list[int]] = {"a": [], "b": []}
    threads = [threading.Thread(target=claim_all, args=(shared, name, taken[name])) for name in taken]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    everything = Counter(taken["a"] + taken["b"])
    assert len(everything) == 1_000
    assert max(everything.values()) == 1, "a row was claimed by both dispatchers"
