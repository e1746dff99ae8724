"""copbot's Prometheus metrics (`GET /metrics`): one registry, named here, so every part counts the same way.

Labels are fixed vocabularies (an endpoint, a kind, an outcome), never anything a person typed or an id.
"""

from __future__ import annotations

import datetime as dt
import logging
import math

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from sqlalchemy import Engine, func
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, col, select

from storage import inbox, rhythm
from storage.rhythm import OutboxItem, OutboxStatus

log = logging.getLogger(__name__)

REGISTRY = CollectorRegistry(auto_describe=True)

REQUESTS = Counter(
    "copbot_http_requests", "HTTP requests answered, by endpoint and status code.", ["endpoint", "status"],
    registry=REGISTRY,
)  # fmt: skip
ACKS = Counter("copbot_acks", "Platform requests acknowledged, by kind.", ["platform", "kind"], registry=REGISTRY)
COMMANDS = Counter(
    "copbot_commands", "Commands, actions and forms run by the core, by outcome (ok, refused, failed).", ["outcome"],
    registry=REGISTRY,
)  # fmt: skip
DELIVERIES = Counter(
    "copbot_outbox_deliveries", "Outbox deliveries, by result (sent, retried, failed, cancelled, split).", ["result"],
    registry=REGISTRY,
)  # fmt: skip
RATE_LIMITED = Counter("copbot_rate_limited", "429 answers waited out (Retry-After).", registry=REGISTRY)
JOB_SECONDS = Histogram(
    "copbot_job_seconds", "How long scheduled work took, by job (tick, dispatch, housekeeping).", ["job"],
    registry=REGISTRY,
)  # fmt: skip
HOUSEKEEPING_DELETED = Counter(
    "copbot_housekeeping_deleted", "Rows removed by the daily housekeeping, by table.", ["table"], registry=REGISTRY
)
OUTBOX_DEPTH = Gauge(
    "copbot_outbox_depth", "Outbox rows waiting to be sent (pending or being sent), read at scrape.", registry=REGISTRY
)
OUTBOX_OLDEST_DUE = Gauge(
    "copbot_outbox_oldest_due_seconds",
    "Seconds since the longest-waiting unsent outbox row fell due (0 when none is due), read at scrape.",
    registry=REGISTRY,
)
INBOX_RUNS = Counter(
    "copbot_inbox_runs",
    "Inbox rows run by workers, by kind and outcome (done, retry, parked). Workers count in their own process.",
    ["kind", "outcome"],
    registry=REGISTRY,
)
INBOX_DEPTH = Gauge(
    "copbot_inbox_depth", "Acknowledged requests not yet run (pending or being run), read at scrape.", registry=REGISTRY
)
INBOX_PARKED = Gauge(
    "copbot_inbox_parked",
    "Requests parked after failing too often (the person was asked to try again), read at scrape.",
    registry=REGISTRY,
)
INBOX_OLDEST = Gauge(
    "copbot_inbox_oldest_seconds",
    "Seconds since the oldest request not yet run was acknowledged (0 when none), read at scrape.",
    registry=REGISTRY,
)


def count_command(outcome: str) -> None:
    """The core's outcome hook (`CopBot(observe=...)`): one command, action, form or event, by outcome."""
    COMMANDS.labels(outcome=outcome).inc()


def observe_outbox(*, engine: Engine, now: dt.datetime) -> None:
    """Set the outbox gauges from the database; when it cannot be read they are NaN (unknown), not stale."""
    waiting = col(OutboxItem.status).in_([OutboxStatus.PENDING, OutboxStatus.SENDING])
    try:
        with Session(engine) as db:
            depth = rhythm.pending_count(db=db)
            oldest = db.exec(select(func.min(col(OutboxItem.due_at))).where(waiting, col(OutboxItem.due_at) <= now))
            due_at = oldest.one()
    except SQLAlchemyError as exc:
        log.warning("outbox figures unavailable for /metrics: %s", type(exc).__name__)
        OUTBOX_DEPTH.set(math.nan)
        OUTBOX_OLDEST_DUE.set(math.nan)
        return
    OUTBOX_DEPTH.set(depth)
    OUTBOX_OLDEST_DUE.set((now - due_at).total_seconds() if due_at is not None else 0.0)


def observe_inbox(*, engine: Engine, now: dt.datetime) -> None:
    """Set the inbox gauges from the database; NaN (unknown) when it cannot be read."""
    gauges = (INBOX_DEPTH, INBOX_PARKED, INBOX_OLDEST)
    try:
        with Session(inbox.open_queue(engine)) as db:
            values: tuple[float, float, float] = (
                float(inbox.depth(db=db)),
                float(inbox.parked_count(db=db)),
                inbox.oldest_pending_age(db=db, now=now),
            )
    except SQLAlchemyError as exc:
        log.warning("inbox figures unavailable for /metrics: %s", type(exc).__name__)
        values = (math.nan, math.nan, math.nan)
    for gauge, value in zip(gauges, values, strict=True):
        gauge.set(value)
