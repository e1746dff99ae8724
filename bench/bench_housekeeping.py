"""Housekeeping under load: the daily purge in a live copbot server while the Slack HTTP benchmark's load runs.

The SQLite file is filled first (bulk SQL: ROWS inbound-event keys older than 7 days and ROWS sent outbox rows older
than 30 days, plus a tenth as many recent ones of each, which must stay). Then `copbot --workers N` serves the
`slack_http` load (open loop, same mix, signed as each request leaves) and runs its own housekeeping job, as in
production: once a minute after the start (one worker purges, the others skip), so the purge lands in the middle of
the load. A watcher reads the database to see when the old rows start to go and when they are gone. Figures: rows
deleted per second and the write batches over 50 ms (from the job's own log line), and the ack p99 of requests sent
during the purge beside the p99 of those sent in the same run just before and just after it.

`python -m bench.bench_housekeeping [--rows N]` runs it alone (default 1,000,000; `--quick` in `python -m bench`
uses 20,000). `--load URL RATE FAKE_BASE CHANNEL_ID` is the load generator, run as its own process: it sends until
a line arrives on its stdin, then prints its samples as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import re
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.bench_slack_http import (
    MAX_CONNECTIONS,
    REQUEST_TIMEOUT,
    ROOT,
    WORKERS,
    _clean_env,
    _Connections,
    _requests,
    copbot_server,
)
from bench.common import Figure, percentile

BENCH = "housekeeping"
ROWS_FULL = 1_000_000
ROWS_QUICK = 20_000
# slack_http's quick rate. Its full rate (200/s) saturates copbot on a two-core machine before any purge (p99 in
# seconds with nothing to delete), which would leave nothing to compare; `--rate 200` runs it anyway.
RATE = 100.0
FIRST_RUN_WAIT = 120.0  # the server's job runs a minute after its start; this long, and the bench gives up
DRAIN_TIMEOUT = 15.0
SAMPLE_EVERY = 0.1  # seconds between the watcher's looks at the database
JOB_LINE = re.compile(  # bot/scheduler.py's report of one purge
    r"housekeeping: deleted (\d+) inbound_event, (\d+) inbox, (\d+) inbox_effect and (\d+) outbox rows "
    r"in (\d+) batches \(longest write (\d+) ms, (\d+) over (\d+) ms\) in ([\d.]+) s"
)


# --- the data --------------------------------------------------------------------------------------------------


# Row i is `:base + i * :step` seconds old, in the text form copbot's UTC columns take on SQLite.
_FILL = {
    "inbound_event": """
        WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < :count)
        INSERT INTO inbound_event (key, received_at)
        SELECT :prefix || i, strftime('%Y-%m-%d %H:%M:%S', :base + i * :step, 'unixepoch') || '.000000' FROM n
    """,
    "outbox": """
        WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < :count),
        t(i, at) AS (SELECT i, strftime('%Y-%m-%d %H:%M:%S', :base + i * :step, 'unixepoch') || '.000000' FROM n)
        INSERT INTO outbox (dedupe_key, kind, platform, workspace_id, destination, payload, due_at, status, attempts,
                            created_at, sent_at, platform_message_id, platform_channel_id)
        SELECT :prefix || i, 'prompt_dm', 'slack', 'T0COPBOT', 'user:U' || (i % 5000), :payload, at, 'sent', 1,
               at, at, '1700000000.' || i, 'D' || (i % 5000) FROM t
    """,
}


def _stamp(at: dt.datetime) -> str:
    return at.strftime("%Y-%m-%d %H:%M:%S.%f")


def fill(database: Path, *, rows: int, now: dt.datetime) -> dict[str, int]:
    """Bulk-insert the old rows the purge must delete and the recent rows it must keep; returns the counts kept."""
    from handlers import outbox
    from handlers.ports import Message
    from storage.engine import make_engine, migrate

    engine = make_engine(f"sqlite:///{database}")
    migrate(engine)
    engine.dispose()
    recent = max(1, rows // 10)
    payload = json.dumps(outbox.encode(Message(text="What helped your team work safely this week?")))
    step = min(1.0, 12 * 86_400 / rows)  # old rows span at most 12 days, so every one is past its cutoff
    plans = [  # table, key prefix, how many, from when
        ("inbound_event", "slack:event:EvOLD", rows, now - dt.timedelta(days=20)),
        ("inbound_event", "slack:event:EvNEW", recent, now - dt.timedelta(days=3)),
        ("outbox", "bench:old:", rows, now - dt.timedelta(days=60)),
        ("outbox", "bench:new:", recent, now - dt.timedelta(days=10)),
    ]
    db = sqlite3.connect(database)
    try:
        db.execute("PRAGMA synchronous = OFF")
        for table, prefix, count, base in plans:
            values: dict[str, object] = {"count": count, "prefix": prefix, "base": int(base.timestamp()), "step": step}
            db.execute(_FILL[table], values | ({"payload": payload} if table == "outbox" else {}))
            db.commit()
    finally:
        db.close()
    return {"inbound_event": recent, "outbox": recent}


class Watcher:
    """Looks at the database every SAMPLE_EVERY s: when the old rows start to go, and when none is left."""

    def __init__(self, database: Path, *, now: dt.datetime) -> None:
        self.database = database
        self.inbound_cut = _stamp(now - dt.timedelta(days=7))
        self.outbox_cut = _stamp(now - dt.timedelta(days=30))
        self.started: float | None = None
        self.ended: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> Watcher:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _watch(self) -> None:
        db = sqlite3.connect(self.database, timeout=5)
        try:
            first = self._first_old_key(db)
            while not self._stop.wait(SAMPLE_EVERY):
                key = self._first_old_key(db)
                if self.started is None and key != first:
                    self.started = time.monotonic()
                old_sent = db.execute(  # due_at <= sent_at: this range on ix_outbox_ready stays cheap once empty
                    "SELECT 1 FROM outbox WHERE status = 'sent' AND due_at < ? LIMIT 1", (self.outbox_cut,)
                ).fetchone()
                if self.started is not None and key is None and old_sent is None:
                    self.ended = time.monotonic()
                    return
        finally:
            db.close()

    def _first_old_key(self, db: sqlite3.Connection) -> str | None:
        row = db.execute(
            "SELECT key FROM inbound_event WHERE received_at < ? ORDER BY received_at, key LIMIT 1",
            (self.inbound_cut,),
        ).fetchone()
        return None if row is None else str(row[0])

    def kept(self) -> dict[str, int]:
        with contextlib.closing(sqlite3.connect(self.database, timeout=5)) as db:
            return {
                "inbound_event": db.execute("SELECT count(*) FROM inbound_event WHERE key LIKE '%EvNEW%'").fetchone()[
                    0
                ],
                "outbox": db.execute("SELECT count(*) FROM outbox WHERE dedupe_key LIKE 'bench:new:%'").fetchone()[0],
            }


# --- load ------------------------------------------------------------------------------------------------------


async def _load_until_told(url: str, *, rate: float, fake_base: str, channel_id: str) -> dict[str, Any]:
    """Open-loop requests at `rate`, each signed as it leaves, until a line arrives on stdin; every answer's
    scheduled send time (time.monotonic, which every process on the machine shares) and latency."""
    connections = _Connections(url, limit=MAX_CONNECTIONS)
    loop = asyncio.get_running_loop()
    told = loop.run_in_executor(None, sys.stdin.readline)
    samples: list[tuple[float, float]] = []
    errors: dict[str, int] = {}

    async def send(body: bytes, headers: dict[str, str], scheduled: float) -> None:
        try:
            status = await asyncio.wait_for(connections.post(body, headers), REQUEST_TIMEOUT)
        except (OSError, ValueError, IndexError, asyncio.IncompleteReadError, TimeoutError) as exc:
            errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
            return
        if status == 200:
            samples.append((scheduled, (loop.time() - scheduled) * 1000))
        else:
            errors[f"HTTP {status}"] = errors.get(f"HTTP {status}", 0) + 1

    start = loop.time() + 0.2
    tasks = []
    i = 0
    while not told.done():
        scheduled = start + i / rate
        delay = scheduled - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        [(_kind, body, headers)] = _requests(1, fake_base=fake_base, channel_id=channel_id, start=i)
        tasks.append(asyncio.create_task(send(body, headers, scheduled)))
        i += 1
    _done, pending = await asyncio.wait(tasks, timeout=DRAIN_TIMEOUT)
    for task in pending:
        task.cancel()
    if pending:
        errors["no answer"] = len(pending)
    connections.close()
    return {"sent": i, "samples": samples, "errors": errors}


@dataclass
class Window:
    name: str
    latencies: list[float]

    def p(self, pct: float) -> float:
        return percentile(self.latencies, pct) if self.latencies else float("nan")


# --- the benchmark ---------------------------------------------------------------------------------------------


def run(*, quick: bool, rows: int | None = None, rate: float | None = None) -> list[Figure]:
    from tests.fakes.slack_api import FakeSlack
    from tests.fakes.slack_manifest import declared

    rows = rows or (ROWS_QUICK if quick else ROWS_FULL)
    rate = rate or RATE
    around = 10.0 if quick else 30.0  # seconds of load just before and just after the purge: the comparison
    now = dt.datetime.now(dt.UTC)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp_name, FakeSlack(scopes=set(declared().bot_scopes)) as fake:
        tmp = Path(tmp_name)
        database = tmp / "bench.db"
        filling = time.monotonic()
        expected_kept = fill(database, rows=rows, now=now)
        fill_s = time.monotonic() - filling
        with copbot_server(tmp, fake, database=database, log_level="INFO") as server, Watcher(database, now=now) as w:
            load = subprocess.Popen(
                [sys.executable, "-m", "bench.bench_housekeeping", "--load", f"{server.base}/slack/events",
                 str(rate), fake.base, server.channel_id],
                env=_clean_env(), cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            )  # fmt: skip
            try:
                deadline = time.monotonic() + FIRST_RUN_WAIT
                while w.started is None and time.monotonic() < deadline and load.poll() is None:
                    time.sleep(SAMPLE_EVERY)
                if w.started is None:
                    raise RuntimeError(f"the housekeeping job did not start:\n{server.log.read_text()[-2000:]}")
                deadline = time.monotonic() + 60 + rows / 250  # a busy machine slows it: batches shrink
                while w.ended is None and time.monotonic() < deadline and load.poll() is None:
                    time.sleep(SAMPLE_EVERY)
                if w.ended is None:
                    raise RuntimeError(f"the purge did not finish:\n{server.log.read_text()[-2000:]}")
                time.sleep(around)
                out, err = load.communicate(b"stop\n", timeout=DRAIN_TIMEOUT + 60)
            finally:
                if load.poll() is None:
                    load.kill()
                    load.wait()
            if load.returncode != 0:
                raise RuntimeError(f"load generator failed ({load.returncode}):\n{err.decode()[-2000:]}")
            jobs = _job_lines(server.log)
            log_text = server.log.read_text(errors="replace")
            skipped = log_text.count("housekeeping: another process is running it")
            failed = log_text.count("housekeeping job failed")
            kept = w.kept()
            started, ended = w.started, w.ended
            load_after = os.getloadavg()[0]
    result = json.loads(out.decode().strip().splitlines()[-1])
    samples: list[tuple[float, float]] = [(float(t), float(ms)) for t, ms in result["samples"]]
    during = Window("during", [ms for t, ms in samples if started <= t <= ended])
    before = Window("before", [ms for t, ms in samples if started - around <= t < started])
    after = Window("after", [ms for t, ms in samples if ended < t <= ended + around])
    besides = Window("besides", before.latencies + after.latencies)
    errors = sum(result["errors"].values())
    inbound, sent = sum(j[0] for j in jobs), sum(j[1] for j in jobs)
    batches, longest_ms, over = sum(j[2] for j in jobs), max(j[3] for j in jobs), sum(j[4] for j in jobs)
    deleted = inbound + sent
    purge_s = ended - started
    rate_note = (
        f"{inbound:,} inbound_event + {sent:,} outbox rows in {purge_s:.1f} s ({batches} batches, pauses included) "
        f"by the server's own job: {len(jobs)} run(s) finished, {failed} failed, {skipped} skipped (another worker "
        f"was running it); copbot --workers {WORKERS}; fill took {fill_s:.0f} s"
    )
    load_note = (
        f"{rate:.0f} req/s open loop, slack_http mix, copbot --workers {WORKERS}; machine load average "
        f"{load_before:.1f} before, {load_after:.1f} at the end (on {os.cpu_count()} cores)"
    )
    return [
        Figure(BENCH, "rows deleted per second", deleted / purge_s if purge_s else 0.0, "rows/s", note=rate_note),
        Figure(
            BENCH,
            "write batches over 50 ms",
            over,
            "batches",
            target="< 1% of batches",
            ok=over < batches / 100,
            note=f"of {batches}; a batch is BEGIN IMMEDIATE to COMMIT: the write lock held, waiting for it not counted",
        ),
        Figure(BENCH, "longest write batch", longest_ms, "ms", note="sized for a third of 50 ms; see above"),
        Figure(
            BENCH,
            "ack p99 besides the purge",
            besides.p(99),
            "ms",
            note=f"{len(besides.latencies)} requests in the {around:.0f} s before and after; p50 {besides.p(50):.1f} "
            f"ms; p99 before {before.p(99):.1f} ms, after {after.p(99):.1f} ms; {load_note}",
        ),
        Figure(
            BENCH,
            "ack p99 during the purge",
            during.p(99),
            "ms",
            target="< 100 ms",
            ok=during.p(99) < 100,
            note=f"{len(during.latencies)} requests over {ended - started:.1f} s; p50 {during.p(50):.1f} ms, max "
            f"{during.p(100):.1f} ms",
        ),
        Figure(
            BENCH,
            "ack errors",
            errors,
            "requests",
            target="0",
            ok=errors == 0,
            note=", ".join(f"{k}: {v}" for k, v in sorted(result["errors"].items())) + f" of {result['sent']} sent",
        ),
        Figure(
            BENCH,
            "recent rows kept",
            sum(kept.values()),
            "rows",
            target=f"all {sum(expected_kept.values()):,}",
            ok=kept == expected_kept,
            note=f"{kept}",
        ),
    ]


def _job_lines(log: Path) -> list[tuple[int, int, int, int, int]]:
    """Each finished purge's own report: inbound, outbox, batches, longest ms, over budget (waiting a little, as
    the job logs after its last, empty, look). The bench fills neither the inbox nor its effect journal."""
    deadline = time.monotonic() + 10
    while True:
        found = JOB_LINE.findall(log.read_text(errors="replace"))
        if found:
            return [
                (int(inbound), int(outbox), int(batches), int(longest), int(over))
                for inbound, _inbox, _effects, outbox, batches, longest, over, _budget, _seconds in found
            ]
        if time.monotonic() > deadline:
            raise RuntimeError(f"no housekeeping line in the server's log:\n{log.read_text()[-2000:]}")
        time.sleep(0.2)


def _main(argv: list[str]) -> int:
    if len(argv) == 5 and argv[0] == "--load":
        url, rate, fake_base, channel_id = argv[1:]
        result = asyncio.run(_load_until_told(url, rate=float(rate), fake_base=fake_base, channel_id=channel_id))
        print(json.dumps(result))
        return 0
    from bench.__main__ import print_table

    parser = argparse.ArgumentParser(prog="python -m bench.bench_housekeeping", description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=ROWS_FULL, help=f"old rows of each kind (default {ROWS_FULL:,})")
    parser.add_argument("--rate", type=float, default=RATE, help=f"requests a second (default {RATE:.0f})")
    args = parser.parse_args(argv)
    figures = run(quick=False, rows=args.rows, rate=args.rate)
    print_table(figures)
    print(json.dumps([f.as_dict() for f in figures], indent=2))
    return 0 if all(f.ok is not False for f in figures) else 1


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
