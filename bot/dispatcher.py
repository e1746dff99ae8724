"""Outbox delivery: claim due rows, send them within rate budgets, record the platform's message id.

Guarantees (docs/architecture.md §6): a row is sent by one dispatcher at a time (claims are atomic; PostgreSQL uses
SKIP LOCKED), a crash loses nothing (a claimed row's lease expires and another claim picks it up), and a crash
repeats at most the one row that was in flight. On a 429 the row's next attempt moves by Retry-After and the
dispatcher pauses, so rows keep their order per destination.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import Engine
from sqlmodel import Session

from bot.metrics import DELIVERIES, JOB_SECONDS, RATE_LIMITED
from handlers import introductions, outbox, reflections
from handlers.errors import PlatformError, RateLimited
from handlers.ports import ChatPlatform, Clock
from storage import rhythm
from storage.rhythm import OutboxItem

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 8


class RateBudget:
    """A token bucket: at most `rate` sends a second on average, bursts up to `burst`."""

    def __init__(self, rate: float, *, burst: float = 1.0, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = max(burst, 1.0)
        self._tokens = self.burst
        self._monotonic = monotonic
        self._last = monotonic()

    def wait_time(self) -> float:
        """Seconds until one send is allowed (0 when allowed now)."""
        if self.rate == float("inf"):
            return 0.0
        now = self._monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        return 0.0 if self._tokens >= 1 else (1 - self._tokens) / self.rate

    def take(self) -> None:
        if self.rate != float("inf"):
            self._tokens -= 1


@dataclass
class Dispatcher:
    """Sends what the outbox holds. One instance per process; any number of processes may share a database."""

    engine: Engine
    platform: ChatPlatform
    clock: Clock
    workspace_rate: float = 20.0
    workspace_burst: float | None = None  # default: one second's worth
    channel_rate: float = 1.0
    batch: int = 50
    lease: dt.timedelta = dt.timedelta(seconds=60)
    sleep: Callable[[float], None] = time.sleep
    monotonic: Callable[[], float] = time.monotonic
    worker: str = field(default_factory=lambda: f"dispatcher-{uuid.uuid4().hex[:10]}")
    _workspace: RateBudget = field(init=False)
    _channels: dict[str, RateBudget] = field(init=False, default_factory=dict)
    _paused_until: float = field(init=False, default=0.0)
    _lock: threading.Lock = field(init=False, default_factory=threading.Lock)

    def __post_init__(self) -> None:
        burst = self.workspace_burst if self.workspace_burst is not None else self.workspace_rate
        self._workspace = RateBudget(self.workspace_rate, burst=max(1.0, burst), monotonic=self.monotonic)

    def run(self, *, max_seconds: float | None = None) -> int:
        """Send until nothing is due (or `max_seconds` pass); returns how many were sent. Never raises."""
        if not self._lock.acquire(blocking=False):
            return 0  # another tick of this process is already sending
        try:
            with JOB_SECONDS.labels(job="dispatch").time():
                return self._run(max_seconds)
        finally:
            self._lock.release()

    def _run(self, max_seconds: float | None) -> int:
        started = self.monotonic()
        sent = 0
        while max_seconds is None or self.monotonic() - started < max_seconds:
            # After a 429 nothing is claimed until the pause is over, so the deferred row (due first) is claimed
            # first again and no later row to the same person can overtake it.
            pause = self._paused_until - self.monotonic()
            if pause > 0:
                self.sleep(pause + 0.05)
            with Session(self.engine, expire_on_commit=False) as db:
                items = rhythm.claim(
                    db=db, worker=self.worker, now=self.clock.now(), lease=self.lease, limit=self.batch
                )
                if not items:
                    return sent
                for index, item in enumerate(items):
                    outcome = self._deliver(db, item)
                    if outcome == "sent":
                        sent += 1
                    elif outcome == "paused":
                        for rest in items[index + 1 :]:  # hand back what we claimed, in order, for after the pause
                            rhythm.release(
                                db=db, item_id=rest.id or 0, worker=self.worker, retry_at=None, error="deferred"
                            )
                        break
        return sent

    def _deliver(self, db: Session, item: OutboxItem) -> str:
        assert item.id is not None
        now = self.clock.now()
        if not reflections.still_wanted(db=db, item=item, now=now):
            rhythm.release(db=db, item_id=item.id, worker=self.worker, retry_at=None, error="cancelled", give_up=True)
            DELIVERIES.labels(result="cancelled").inc()
            return "cancelled"
        self._wait_for_budget(item.destination)
        message = outbox.decode(json.loads(item.payload))
        kind, _, target = item.destination.partition(":")
        try:
            if kind == "channel":
                message_id = self.platform.post(channel_id=target, message=message)
                channel_id: str | None = target
            elif kind == "group":
                message_id = self.platform.send_group_dm(user_ids=target.split(","), message=message)
                channel_id = None
            else:
                message_id = self.platform.send_dm(user_id=target, message=message)
                channel_id = None
        except RateLimited as exc:
            retry_at = self.clock.now() + dt.timedelta(seconds=exc.retry_after)
            self._paused_until = self.monotonic() + exc.retry_after
            log.info("outbox %s rate limited; retry in %.1fs", item.id, exc.retry_after)
            rhythm.release(db=db, item_id=item.id, worker=self.worker, retry_at=retry_at, error=exc.code)
            RATE_LIMITED.inc()
            return "paused"
        except PlatformError as exc:
            if kind == "group" and not exc.transient:
                # No group conversation here (Teams) or not for these people: each gets their own, in the same
                # transaction that finishes this row.
                added = introductions.split_group(db=db, item=item, now=self.clock.now())
                log.info("outbox %s: no group conversation (%s); %d single messages queued", item.id, exc.code, added)
                rhythm.release(db=db, item_id=item.id, worker=self.worker, retry_at=None, error="cancelled",
                               give_up=True)  # fmt: skip
                DELIVERIES.labels(result="split").inc()
                return "split"
            give_up = not exc.transient or item.attempts >= MAX_ATTEMPTS
            backoff = dt.timedelta(seconds=min(3600, 30 * 2 ** max(0, item.attempts - 1)))
            log.warning("outbox %s (%s) failed: %s%s", item.id, item.kind, exc.code, " (giving up)" if give_up else "")
            rhythm.release(
                db=db, item_id=item.id, worker=self.worker, retry_at=self.clock.now() + backoff, error=exc.code,
                give_up=give_up,
            )  # fmt: skip
            DELIVERIES.labels(result="failed" if give_up else "retried").inc()
            return "failed"
        rhythm.mark_sent(
            db=db, item_id=item.id, worker=self.worker, message_id=message_id, channel_id=channel_id,
            now=self.clock.now(),
        )  # fmt: skip
        DELIVERIES.labels(result="sent").inc()
        return "sent"

    def _wait_for_budget(self, destination: str) -> None:
        channel = self._channels.get(destination)
        if channel is None:
            channel = self._channels[destination] = RateBudget(self.channel_rate, monotonic=self.monotonic)
        while True:
            pause = max(0.0, self._paused_until - self.monotonic())
            wait = max(pause, self._workspace.wait_time(), channel.wait_time())
            if wait <= 0:
                break
            self.sleep(wait)
        self._workspace.take()
        channel.take()
        if len(self._channels) > 10_000:  # DM fan-outs touch many destinations once; keep memory flat
            self._channels.clear()
