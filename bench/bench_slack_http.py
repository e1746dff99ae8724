"""Slack HTTP: acknowledgement and completion latency of the real `copbot` under signed mixed load, against a bare
Bolt app, with and without a CPU hog; and a kill test of the inbox worker (issue 14).

Open-loop load (requests go out on a fixed schedule whatever the server does; latency is measured from the
scheduled send time, so a slow server cannot hide its queueing: no coordinated omission). Mix: 40% `/cop list`,
20% `/cop help`, 20% `/cop join bench-community` from many people, 20% events (member_joined_channel in the
community's channel, app_home_opened), each event with a unique event_id. Slack Web API calls and response_url
posts go to an in-process FakeSlack on loopback, a fresh one (and a fresh SQLite database) for every leg.

Four legs, the same load each: copbot (`copbot --workers <cores> run`: the server and its inbox worker child) and
the bare app, each with a CPU hog (a busy-loop process pinned to one core for the whole leg) and without.
Acknowledgement: the HTTP answer, from the scheduled send. Completion: from the scheduled send until the command's
reply reaches its own response_url on the fake (arrivals are timed by wrapping the fake's `receive_response`);
after the load the bench waits until every acknowledged command is answered and the inbox has no open row (giving
up after DRAIN_STALL seconds in which neither moved), then counts commands answered never (lost) and more than once
(duplicated).

Kill test: `copbot run --no-worker` and a separate `copbot worker` that the bench SIGKILLs every KILL_EVERY seconds
and starts again at once, under the same load; a killed worker's rows come back when their lease runs out.

`python -m bench.bench_slack_http --serve-bare PORT SLACK_API_URL` serves the comparison app: a bare Bolt app
that only acks, behind the same Starlette/uvicorn front (`bot.web.create_web_app`), so the difference is
copbot's own work. `--load ...` is the load generator, run as its own process (see `_main`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from bench.common import Figure, percentile

BENCH = "slack_http"
ROOT = Path(__file__).resolve().parents[1]
COMMUNITY = "Bench community"
SLUG = "bench-community"
STARTUP_TIMEOUT = 30.0
REQUEST_TIMEOUT = 10.0
MAX_CONNECTIONS = 256  # keep-alive connections the generator may hold open (Slack itself opens many)
DRAIN_TIMEOUT = 15.0  # after the last scheduled send, how long the generator waits for the stragglers
# After the load the bench waits for every reply and an empty inbox as long as either moves (a killed worker's rows
# come back when their 15 s lease runs out); it gives up after DRAIN_STALL seconds without a change, or DRAIN_LIMIT.
DRAIN_STALL = 60.0
DRAIN_LIMIT = 900.0
KILL_EVERY = 5.0  # seconds between the kill test's SIGKILLs of the worker
WORKER_THREADS = 4  # the kill test's `copbot worker --threads`, as `copbot run` starts its own
# People cycle every USERS requests: in the full run (6,000 requests) 400 people join, each three times (the first
# join is real work: a membership row and an invite; the others answer "already a member"), and 200 people's
# member_joined_channel events each arrive three times with distinct event ids (one welcome DM each).
USERS = 2000
WORKERS = max(1, os.cpu_count() or 1)
EXCEPTION_LINE = re.compile(r"([A-Za-z_][\w.]*(?:Error|Exception|Unavailable|Failed))(?::|$)")  # a traceback's end
# The CPU hog: a busy loop, pinned to the core given as its argument where the OS allows it.
HOG = (
    "import os, sys\n"
    "if hasattr(os, 'sched_setaffinity'):\n"
    "    os.sched_setaffinity(0, {int(sys.argv[1])})\n"
    "while True:\n"
    "    pass\n"
)


@dataclass
class LoadResult:
    rate: float
    duration: float
    sent: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0
    error_kinds: dict[str, int] = field(default_factory=dict)
    failed: list[int] = field(default_factory=list)  # positions of the requests not answered 200
    send_lag_ms: list[float] = field(default_factory=list)  # how late the generator itself was (its own health)
    start: float = 0.0  # time.monotonic() of the first scheduled send (the same clock in every process on Linux)
    elapsed: float = 0.0
    server_cpu_s: float = float("nan")  # CPU time the server process used from the first send until drained
    server_wall_s: float = float("nan")  # the wall time that CPU time was measured over

    @property
    def throughput(self) -> float:
        """Successful answers per second, from the first scheduled send to the last answer."""
        return len(self.latencies_ms) / self.elapsed if self.elapsed else 0.0

    def p(self, pct: float) -> float:
        return percentile(self.latencies_ms, pct) if self.latencies_ms else float("nan")


# --- the comparison server ---------------------------------------------------------------------------------------


def serve_bare(port: int, api_url: str) -> None:
    """Serve a Bolt app that only acks `/cop` and the benchmark's events, behind copbot's web front.

    Its client points at `api_url` (the fake), as Bolt calls auth.test once on the first request.
    """
    import uvicorn
    from slack_bolt import App
    from slack_sdk import WebClient

    from bot.web import create_web_app
    from tests.fakes import slack_signing as signing
    from tests.fakes.slack_api import BOT_TOKEN

    app = App(
        client=WebClient(token=BOT_TOKEN, base_url=api_url),
        signing_secret=signing.SIGNING_SECRET,
        token_verification_enabled=False,
        raise_error_for_unhandled_request=False,
        # As copbot's own app: ack on the request thread. Bolt's default (False) runs the listener on its executor
        # and polls for the ack every 10 ms, which would put a ~12 ms floor under the comparison's latency.
        process_before_response=True,
    )

    @app.command("/cop")
    def cop(ack: Any) -> None:
        ack()

    @app.event("member_joined_channel")
    def joined() -> None:
        return None

    @app.event("app_home_opened")
    def home() -> None:
        return None

    web = create_web_app(slack_app=app, healthy=lambda: True, slack_signing_secret=signing.SIGNING_SECRET)
    uvicorn.run(web, host="127.0.0.1", port=port, log_level="warning", access_log=False)


# --- processes ---------------------------------------------------------------------------------------------------


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "TEAMS_", "COPBOT_", "DATABASE_URL"))}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    env["LOG_LEVEL"] = "WARNING"
    return env


@contextlib.contextmanager
def _process(command: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A child process, terminated (then killed) on the way out whatever happened."""
    with log.open("wb") as out:
        proc = subprocess.Popen(command, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)


def _wait_healthy(base: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{log.read_text()[-2000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{base}/healthz", timeout=1.0).status_code == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"server not healthy within {STARTUP_TIMEOUT:.0f} s:\n{log.read_text()[-2000:]}")


@dataclass
class Hog:
    """The busy-loop process of a leg."""

    proc: subprocess.Popen[bytes]
    started: float

    def share(self) -> float:
        """The CPU it has had so far, as a share of one core (about 1.0 when it really held a core)."""
        return _cpu_seconds(self.proc.pid) / (time.monotonic() - self.started)


@contextlib.contextmanager
def _maybe_hog(on: bool, log: Path) -> Iterator[Hog | None]:
    """With `on`, a process spinning on the last core this process may use, for the duration of the block."""
    if not on:
        yield None
        return
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else [0]
    with _process([sys.executable, "-c", HOG, str(cores[-1])], _clean_env(), log) as proc:
        yield Hog(proc=proc, started=time.monotonic())


class KillableWorker:
    """A `copbot worker` the bench runs itself, so it can SIGKILL it and start it again at once."""

    def __init__(self, command: list[str], env: dict[str, str], log: Path) -> None:
        self.command, self.env, self.log = command, env, log
        self.kills = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(self.command, env=self.env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)

    def kill_and_restart(self) -> None:
        with self._lock:
            assert self.proc is not None
            self.proc.kill()  # SIGKILL: no clean-up, rows in hand stay leased
            self.proc.wait(timeout=10)
            self.kills += 1
            self.start()

    def kill_every(self, seconds: float, stop: threading.Event) -> threading.Thread:
        """A thread that kills and restarts the worker every `seconds` until `stop` is set."""

        def loop() -> None:
            while not stop.wait(seconds):
                self.kill_and_restart()

        thread = threading.Thread(target=loop, name="worker-killer", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        with self._lock:
            if self.proc is not None and self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(timeout=10)


# --- load ----------------------------------------------------------------------------------------------------------

Request = tuple[str, bytes, dict[str, str]]  # kind, body, headers


# A fixed 10-slot mix: 4 list, 2 help, 2 join, 1 member_joined_channel, 1 app_home_opened.
PATTERN = ("list", "help", "join", "list", "event_joined", "list", "help", "join", "list", "event_home")


def _is_command(i: int) -> bool:
    return not PATTERN[i % len(PATTERN)].startswith("event")


def _response_path(tag: str, i: int) -> str:
    """The path of request `i`'s response_url on the fake."""
    return f"/response/{tag}{i}"


def _requests(total: int, *, fake_base: str, channel_id: str, tag: str = "B", start: int = 0) -> list[Request]:
    """`total` signed requests in the PATTERN mix from position `start`; `tag` (a capital letter) keeps people,
    event ids, trigger ids and response_urls apart."""
    from tests.fakes import slack_signing as signing

    out: list[Request] = []
    for i in range(start, start + total):
        kind = PATTERN[i % len(PATTERN)]
        user = f"U0{tag}{i % USERS:05d}"
        if kind.startswith("event"):
            if kind == "event_joined":
                body = signing.event_callback(
                    "member_joined_channel", event_id=f"Ev{tag}BENCH{i:08d}", user=user, channel=channel_id
                )
            else:
                body = signing.event_callback("app_home_opened", event_id=f"Ev{tag}BENCH{i:08d}", user=user)
            req = signing.signed_event(body)
        else:
            text = {"list": "list", "help": "help", "join": f"join {SLUG}"}[kind]
            req = signing.signed_slash_command(
                text,
                user_id=user,
                channel_id="C0GENERAL",
                response_url=f"{fake_base}{_response_path(tag, i)}",
                # Explicit: the signing helper's serial restarts in every process, and copbot dedupes commands by
                # trigger_id, so the generator's first commands would otherwise repeat the set-up's.
                trigger_id=f"{i}.{tag}.bench{i:08d}",
            )
        out.append((kind, req.body.encode(), dict(req.headers)))
    return out


class _Connections:
    """A minimal HTTP/1.1 keep-alive client on asyncio streams.

    httpx's pool scans every queued request against every connection, which at a few hundred requests in flight
    costs the generator more CPU than the server under test; this costs next to nothing per request.
    """

    def __init__(self, url: str, limit: int) -> None:
        parts = urlsplit(url)
        self.host, self.port, self.path = parts.hostname or "127.0.0.1", parts.port or 80, parts.path or "/"
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.slots = asyncio.Semaphore(limit)

    async def post(self, body: bytes, headers: dict[str, str]) -> int:
        async with self.slots:
            while self.idle:  # the server may have closed an idle keep-alive connection: then use a fresh one
                reader, writer = self.idle.pop()
                with contextlib.suppress(ConnectionError):
                    status = await self._exchange(reader, writer, body, headers)
                    if status:
                        return status
            reader, writer = await asyncio.open_connection(self.host, self.port)
            status = await self._exchange(reader, writer, body, headers)
            if not status:
                raise ConnectionError("the server closed the connection without answering")
            return status

    async def _exchange(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, body: bytes, headers: dict[str, str]
    ) -> int:
        """One request and response on a connection; 0 if the server had closed it before answering."""
        try:
            lines = [f"POST {self.path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
            lines += [f"{k}: {v}" for k, v in headers.items() if k.lower() not in ("host", "content-length")]
            lines.append(f"Content-Length: {len(body)}")
            writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
            await writer.drain()
            status_line = await reader.readline()
            if not status_line:
                writer.close()
                return 0
            status = int(status_line.split()[1])
            length, chunked, close = 0, False, False
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                name, value = name.strip().lower(), value.strip().lower()
                if name == "content-length":
                    length = int(value)
                elif name == "transfer-encoding":
                    chunked = "chunked" in value
                elif name == "connection":
                    close = value == "close"
            if chunked:
                while size := int((await reader.readline()).strip() or b"0", 16):
                    await reader.readexactly(size + 2)
                await reader.readline()
            elif length:
                await reader.readexactly(length)
        except BaseException:
            writer.close()
            raise
        if close:
            writer.close()
        else:
            self.idle.append((reader, writer))
        return status

    def close(self) -> None:
        for _reader, writer in self.idle:
            writer.close()


async def _load(url: str, requests: list[Request], *, rate: float) -> LoadResult:
    result = LoadResult(rate=rate, duration=len(requests) / rate)
    connections = _Connections(url, limit=MAX_CONNECTIONS)
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.2
    result.start = start
    last_answer = start

    def failed(i: int, key: str) -> None:
        result.errors += 1
        result.error_kinds[key] = result.error_kinds.get(key, 0) + 1
        result.failed.append(i)

    async def send(i: int, body: bytes, headers: dict[str, str], scheduled: float) -> None:
        nonlocal last_answer
        result.send_lag_ms.append((loop.time() - scheduled) * 1000)
        try:
            status = await asyncio.wait_for(connections.post(body, headers), REQUEST_TIMEOUT)
            done = loop.time()
            last_answer = max(last_answer, done)
            if status == 200:
                result.latencies_ms.append((done - scheduled) * 1000)
            else:
                failed(i, f"HTTP {status}")
        except (OSError, ValueError, IndexError, asyncio.IncompleteReadError, TimeoutError) as exc:
            failed(i, type(exc).__name__)

    tasks = []
    for i, (_kind, body, headers) in enumerate(requests):
        scheduled = start + i / rate
        delay = scheduled - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(send(i, body, headers, scheduled)))
    result.sent = len(tasks)
    _done, pending = await asyncio.wait(tasks, timeout=DRAIN_TIMEOUT)
    result.elapsed = last_answer - start
    for task in pending:  # a bounded run: whatever is still unanswered counts as an error
        task.cancel()
    if pending:
        await asyncio.wait(pending)
        for i, task in enumerate(tasks):
            if task in pending:
                failed(i, f"no answer {DRAIN_TIMEOUT:.0f} s after the last send")
    connections.close()
    return result


def _load_in_child(
    url: str, *, rate: float, total: int, fake_base: str, channel_id: str, tag: str, during: KillableWorker | None
) -> LoadResult:
    """Run the load generator in its own process, so the in-process FakeSlack cannot hold up its sends; `during`,
    a worker to SIGKILL and restart every KILL_EVERY seconds while it runs."""
    command = [sys.executable, "-m", "bench.bench_slack_http", "--load", url, str(rate), str(total), fake_base]
    stop = threading.Event()
    killer = during.kill_every(KILL_EVERY, stop) if during is not None else None
    try:
        done = subprocess.run(
            [*command, channel_id, tag], env=_clean_env(), cwd=ROOT, capture_output=True, timeout=total / rate + 120
        )
    finally:
        stop.set()
        if killer is not None:
            killer.join(timeout=30)
    if done.returncode != 0:
        raise RuntimeError(f"load generator failed ({done.returncode}):\n{done.stderr.decode()[-2000:]}")
    data = json.loads(done.stdout.decode().strip().splitlines()[-1])
    return LoadResult(**data)


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time so far of a process and its live descendants (Linux /proc); NaN where unavailable.

    `--workers N` serves from child processes, so the parent alone would show next to nothing.
    """
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        for task in Path(f"/proc/{pid}/task").iterdir():
            for child in (task / "children").read_text().split():
                total += _cpu_seconds(int(child))
        return total
    except (OSError, ValueError, IndexError):
        return float("nan")


def _warm_up(url: str, requests: list[Request]) -> None:
    """A few requests at a gentle pace, so first-call costs (imports, caches, connections) are not measured."""
    with httpx.Client(timeout=REQUEST_TIMEOUT) as client:
        for _kind, body, headers in requests:
            client.post(url, content=body, headers=headers)


# --- completion ----------------------------------------------------------------------------------------------------


class Arrivals:
    """When each response_url post reached the fake: FakeSlack keeps no times, so its `receive_response` is wrapped
    (on this instance only) to note time.monotonic() per path, and whether the post was the "please try again"."""

    def __init__(self, fake: Any) -> None:
        from bot.worker import SORRY_PARKED

        self.times: dict[str, list[float]] = {}
        self.apologies = 0
        self._lock = threading.Lock()
        inner = fake.receive_response

        def timed(path: str, raw: bytes) -> None:
            now = time.monotonic()
            with contextlib.suppress(ValueError, AttributeError):
                if SORRY_PARKED in str(json.loads(raw or b"{}").get("text", "")):
                    with self._lock:
                        self.apologies += 1
            with self._lock:
                self.times.setdefault(path, []).append(now)
            inner(path, raw)

        fake.receive_response = timed

    def count(self, path: str) -> int:
        with self._lock:
            return len(self.times.get(path, ()))

    def first(self, path: str) -> float | None:
        with self._lock:
            found = self.times.get(path)
            return found[0] if found else None


def _open_rows(database: Path) -> tuple[int, int, int]:
    """The inbox's open (pending or working) rows, parked rows, and rows claimed more than once; (-1, -1, -1) when
    the database could not be read just now."""
    try:
        with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5)) as db:
            row = db.execute(
                "SELECT COALESCE(SUM(status IN ('pending', 'working')), 0), COALESCE(SUM(status = 'parked'), 0),"
                " COALESCE(SUM(attempts > 1), 0) FROM inbox"
            ).fetchone()
        return int(row[0]), int(row[1]), int(row[2])
    except sqlite3.Error:
        return -1, -1, -1


@dataclass
class Completion:
    """What became of a leg's commands after the load: answered how often, and how long after their send time."""

    commands: int = 0
    acknowledged: int = 0
    once: int = 0
    lost: int = 0  # acknowledged, never answered
    duplicated: int = 0  # answered more than once
    latencies_ms: list[float] = field(default_factory=list)  # first answer − scheduled send
    drained: bool = False
    waited_s: float = 0.0
    open_rows: int = 0
    parked: int = 0
    retried: int = 0  # inbox rows claimed more than once (a killed worker's, or a failure's retry)
    apologies: int = 0
    reply_rate: float = 0.0  # commands answered per second, from the first scheduled send to the last first answer

    def p(self, pct: float) -> float:
        return percentile(self.latencies_ms, pct) if self.latencies_ms else float("nan")


def _completion(arrivals: Arrivals, load: LoadResult, *, tag: str, total: int, database: Path) -> Completion:
    """Wait until every acknowledged command is answered and the inbox has no open row (see DRAIN_STALL); count."""
    failed = set(load.failed)
    commands = [i for i in range(total) if _is_command(i)]
    acked = [i for i in commands if i not in failed]
    started = moved = time.monotonic()
    seen: tuple[int, int] = (-1, -1)
    while True:
        answered = sum(1 for i in acked if arrivals.count(_response_path(tag, i)))
        open_rows, parked, retried = _open_rows(database)
        now = time.monotonic()
        if (answered, open_rows) != seen:
            seen, moved = (answered, open_rows), now
        drained = answered == len(acked) and open_rows == 0
        if drained or now - moved > DRAIN_STALL or now - started > DRAIN_LIMIT:
            break
        time.sleep(0.2)
    out = Completion(commands=len(commands), acknowledged=len(acked), drained=drained)
    out.waited_s, out.open_rows, out.parked, out.retried = time.monotonic() - started, open_rows, parked, retried
    out.apologies = arrivals.apologies
    for i in acked:
        path = _response_path(tag, i)
        n = arrivals.count(path)
        out.once += n == 1
        out.lost += n == 0
        out.duplicated += n > 1
        first = arrivals.first(path)
        if first is not None:
            out.latencies_ms.append((first - (load.start + i / load.rate)) * 1000)
    last = max((arrivals.first(_response_path(tag, i)) or load.start for i in acked), default=load.start)
    out.reply_rate = (out.once + out.duplicated) / (last - load.start) if last > load.start else 0.0
    return out


# --- the benchmark -------------------------------------------------------------------------------------------------


@dataclass
class Copbot:
    """A running copbot server with the benchmark's community made and first-call costs paid."""

    base: str
    proc: subprocess.Popen[bytes]
    log: Path
    channel_id: str
    worker: KillableWorker | None = None  # the separate `copbot worker` (with `own_worker=False`)


@contextlib.contextmanager
def copbot_server(
    tmp: Path, fake: Any, *, database: Path, log_level: str = "WARNING", own_worker: bool = True
) -> Iterator[Copbot]:
    """Start `copbot --workers WORKERS run` in HTTP mode on `database` against the fake Slack (with `own_worker`
    False: `run --no-worker` and a separate `copbot worker` the bench can kill); make the community; warm."""
    from tests.fakes import slack_signing as signing
    from tests.fakes.server_process import free_port
    from tests.fakes.slack_api import BOT_TOKEN

    port = free_port()
    env = _clean_env() | {
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": signing.SIGNING_SECRET,
        "SLACK_API_URL": fake.url,
        "COPBOT_HOST": "127.0.0.1",
        "COPBOT_PORT": str(port),
        "DATABASE_URL": f"sqlite:///{database}",
        "LOG_LEVEL": log_level,
    }
    base = f"http://127.0.0.1:{port}"
    log = tmp / "copbot.log"
    cli = [sys.executable, "-m", "bot.cli", "--env-file", str(tmp / "absent.env")]
    # Deployed as the README advises under load: one HTTP process per core.
    command = [*cli, "--workers", str(WORKERS), "run", *([] if own_worker else ["--no-worker"])]
    worker = None
    with _process(command, env, log) as proc:
        try:
            _wait_healthy(base, proc, log)
            if not own_worker:  # started once the server has migrated the database
                threads = ["worker", "--threads", str(WORKER_THREADS)]
                worker = KillableWorker([*cli, *threads], env, tmp / "worker.log")
                worker.start()
            create = signing.signed_slash_command(
                f"create {COMMUNITY} | Benchmark traffic",
                user_id="U0ALICE",
                channel_id="C0GENERAL",
                response_url=f"{fake.base}/response/create",
                trigger_id="0.create.bench",
            )
            httpx.post(f"{base}/slack/events", content=create.body, headers=create.headers, timeout=REQUEST_TIMEOUT)
            fake.wait_for_responses(1, timeout=15)
            channel = fake.channel_named(f"cop-{SLUG}")
            if channel is None:
                raise RuntimeError(
                    f"/cop create did not make #{SLUG}: {fake.responses[-1:]}\n{log.read_text()[-2000:]}"
                )
            warm = _requests(20, fake_base=fake.base, channel_id=channel.id, tag="W")
            _warm_up(f"{base}/slack/events", [(k, b, h) for k, b, h in warm if k != "join"])
            yield Copbot(base=base, proc=proc, log=log, channel_id=channel.id, worker=worker)
        finally:
            if worker is not None:
                worker.stop()


def _log_problems(*logs: Path) -> str:
    """The logs' WARNING and ERROR lines counted by level and logger, and the exception types their tracebacks end
    in (chained ones too); never their text, which may quote people."""
    lines: dict[str, int] = {}
    raised: dict[str, int] = {}
    for log in logs:
        for line in log.read_text(errors="replace").splitlines() if log.exists() else []:
            words = line.split()  # "2026-01-01 12:00:00,000 WARNING logger.name: message"
            if len(words) >= 4 and words[2] in ("WARNING", "ERROR", "CRITICAL"):
                key = f"{words[2]} {words[3].rstrip(':')}"
                lines[key] = lines.get(key, 0) + 1
            elif found := EXCEPTION_LINE.match(line):
                raised[found[1]] = raised.get(found[1], 0) + 1

    def listed(counts: dict[str, int]) -> str:
        return ", ".join(f"{k} x{v}" for k, v in sorted(counts.items())) or "none"

    return f"log lines at WARNING or above: {listed(lines)}; exceptions in tracebacks: {listed(raised)}"


@dataclass
class Leg:
    """One load run against one server, and what became of its commands (copbot only)."""

    load: LoadResult
    completion: Completion | None = None
    methods: dict[str, int] = field(default_factory=dict)
    hog_share: float = float("nan")
    kills: int = 0
    problems: str = ""
    load_average: float = float("nan")  # the machine's 1-minute load average as the load began (others' work too)


def _run_copbot(tmp: Path, rate: float, total: int, *, tag: str, hog: bool, kill: bool = False) -> Leg:
    """One copbot leg on a fresh database and fake: the load, then the wait for its replies."""
    from tests.fakes.slack_api import FakeSlack
    from tests.fakes.slack_manifest import declared

    tmp.mkdir()
    database = tmp / "bench.db"
    with (
        FakeSlack(scopes=set(declared().bot_scopes)) as fake,
        _maybe_hog(hog, tmp / "hog.log") as hogged,
        copbot_server(tmp, fake, database=database, own_worker=not kill) as server,
    ):
        arrivals = Arrivals(fake)
        load_average = _load_average()
        calls_before = len(fake.calls)
        responses_before = len(fake.responses)
        cpu_before, wall_before = _cpu_seconds(server.proc.pid), time.monotonic()
        load = _load_in_child(
            f"{server.base}/slack/events",
            rate=rate,
            total=total,
            fake_base=fake.base,
            channel_id=server.channel_id,
            tag=tag,
            during=server.worker if kill else None,
        )
        completion = _completion(arrivals, load, tag=tag, total=total, database=database)
        load.server_cpu_s = _cpu_seconds(server.proc.pid) - cpu_before
        load.server_wall_s = time.monotonic() - wall_before
        methods: dict[str, int] = {}
        for call in fake.calls[calls_before:]:
            methods[call.method] = methods.get(call.method, 0) + 1
        methods["response_url posts"] = len(fake.responses) - responses_before
        methods["contract violations"] = len(fake.violations)
        if server.proc.poll() is not None:
            raise RuntimeError(f"copbot exited during the run:\n{server.log.read_text()[-2000:]}")
        share = hogged.share() if hogged is not None else float("nan")
        kills = server.worker.kills if server.worker is not None else 0
    problems = _log_problems(tmp / "copbot.log", tmp / "worker.log")
    return Leg(load, completion, methods, hog_share=share, kills=kills, problems=problems, load_average=load_average)


def _run_bare(tmp: Path, rate: float, total: int, *, tag: str, hog: bool) -> Leg:
    from tests.fakes.server_process import free_port
    from tests.fakes.slack_api import FakeSlack

    tmp.mkdir()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp / "bare.log"
    with FakeSlack() as fake, _maybe_hog(hog, tmp / "hog.log") as hogged:
        command = [sys.executable, "-m", "bench.bench_slack_http", "--serve-bare", str(port), fake.url]
        with _process(command, _clean_env(), log) as proc:
            _wait_healthy(base, proc, log)
            _warm_up(f"{base}/slack/events", _requests(20, fake_base=fake.base, channel_id="C0GENERAL", tag="W"))
            load_average = _load_average()
            cpu_before, wall_before = _cpu_seconds(proc.pid), time.monotonic()
            load = _load_in_child(
                f"{base}/slack/events",
                rate=rate,
                total=total,
                fake_base=fake.base,
                channel_id="C0GENERAL",
                tag=tag,
                during=None,
            )
            load.server_cpu_s = _cpu_seconds(proc.pid) - cpu_before
            load.server_wall_s = time.monotonic() - wall_before
        share = hogged.share() if hogged is not None else float("nan")
    return Leg(load, hog_share=share, load_average=load_average)


def run(*, quick: bool) -> list[Figure]:
    rate, duration = (100.0, 5.0) if quick else (200.0, 30.0)
    kill_duration = 12.0 if quick else 30.0  # at least two kills in the quick run
    total, kill_total = int(rate * duration), int(rate * kill_duration)
    mix = (
        f"{rate:.0f} req/s for {duration:.0f} s ({total} signed POST /slack/events, open loop): 40% /cop list, "
        "20% /cop help, 20% /cop join (a third of them first joins), "
        "20% events (member_joined_channel, app_home_opened); "
        f"copbot runs --workers {WORKERS} run (server + inbox worker child)"
    )
    legs: dict[tuple[str, bool], Leg] = {}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        for n, hog in enumerate((False, True)):
            legs["copbot", hog] = _run_copbot(tmp / f"copbot-{n}", rate, total, tag="BC"[n], hog=hog)
            legs["bare", hog] = _run_bare(tmp / f"bare-{n}", rate, total, tag="DE"[n], hog=hog)
        killed = _run_copbot(tmp / "kill", rate, kill_total, tag="K", hog=False, kill=True)
    figures: list[Figure] = []
    for hog in (False, True):
        figures += _leg_figures(legs["copbot", hog], legs["bare", hog], hog=hog, mix=mix)
    figures += _kill_figures(killed, rate=rate, duration=kill_duration)
    return figures


def _load_average() -> float:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


def _lag(r: LoadResult) -> str:
    return f"generator send lag p99 {percentile(r.send_lag_ms, 99):.1f} ms" if r.send_lag_ms else ""


def _cpu(r: LoadResult) -> str:
    per_request = r.server_cpu_s / r.sent * 1000 if r.sent else float("nan")
    busy = r.server_cpu_s / r.server_wall_s
    return f"server CPU {per_request:.1f} ms/request ({busy:.0%} of one core over {r.server_wall_s:.0f} s)"


def _kinds(r: LoadResult) -> str:
    return ", ".join(f"{k}: {v}" for k, v in sorted(r.error_kinds.items()))


def _drain(c: Completion) -> str:
    state = "drained" if c.drained else f"NOT drained ({c.open_rows} rows open, the bench gave up)"
    return (
        f"inbox {state} {c.waited_s:.1f} s after the load; replies arrived at {c.reply_rate:.0f}/s; parked "
        f"{c.parked}, rows claimed more than once {c.retried}, 'please try again' replies {c.apologies}"
    )


def _leg_figures(copbot: Leg, bare: Leg, *, hog: bool, mix: str) -> list[Figure]:
    c, b, done = copbot.load, bare.load, copbot.completion
    assert done is not None
    when = "CPU hog" if hog else "no hog"
    ack_ratio = c.p(99) / b.p(99) if b.latencies_ms else float("inf")
    ratio = c.throughput / b.throughput if b.throughput else 0.0
    hogged = (
        f"; a busy loop pinned to one of {os.cpu_count()} cores for the whole leg, it had "
        f"{copbot.hog_share:.0%} (copbot leg) / {bare.hog_share:.0%} (bare leg) of a core"
        if hog
        else ""
    )
    calls = ", ".join(f"{k} {v}" for k, v in sorted(copbot.methods.items()))
    machine = (
        f"; machine load average {copbot.load_average:.1f} (copbot leg) / {bare.load_average:.1f} (bare leg) as "
        f"the load began, on {os.cpu_count()} cores"
    )
    return [
        Figure(BENCH, f"copbot ack latency p50 ({when})", c.p(50), "ms", note=mix + hogged + machine),
        Figure(
            BENCH,
            f"copbot ack latency p99 ({when})",
            c.p(99),
            "ms",
            target="< 50 ms",
            ok=c.p(99) < 50,
            note=f"max {c.p(100):.1f} ms; {_lag(c)}",
        ),
        Figure(BENCH, f"copbot ack latency max ({when})", c.p(100), "ms"),
        Figure(BENCH, f"bare Bolt ack latency p50 ({when})", b.p(50), "ms", note="ack-only Bolt app, same web front"),
        Figure(BENCH, f"bare Bolt ack latency p99 ({when})", b.p(99), "ms", note=f"max {b.p(100):.1f} ms; {_lag(b)}"),
        Figure(
            BENCH,
            f"ack p99 ratio copbot / bare Bolt ({when})",
            ack_ratio,
            "x",
            target="<= 3x",
            ok=ack_ratio <= 3,
        ),
        Figure(
            BENCH,
            f"copbot errors ({when})",
            c.errors,
            "requests",
            target="0",
            ok=c.errors == 0,
            note="; ".join(x for x in (_kinds(c), copbot.problems) if x),
        ),
        Figure(
            BENCH,
            f"copbot throughput ({when})",
            c.throughput,
            "req/s",
            note=f"{_cpu(c)}; Slack Web API calls from the first send until drained: {calls}",
        ),
        Figure(
            BENCH,
            f"bare Bolt throughput ({when})",
            b.throughput,
            "req/s",
            note="; ".join(x for x in (f"errors {b.errors}", _kinds(b), _cpu(b)) if x),
        ),
        Figure(
            BENCH,
            f"throughput ratio copbot / bare Bolt ({when})",
            ratio * 100,
            "%",
            target=">= 95%",
            ok=ratio >= 0.95,
            note=f"offered {c.rate:.0f} req/s to both",
        ),
        Figure(
            BENCH,
            f"copbot completion p50 ({when})",
            done.p(50),
            "ms",
            note=f"{done.acknowledged} acknowledged commands: scheduled send to the reply on their response_url; "
            + _drain(done),
        ),
        Figure(BENCH, f"copbot completion p99 ({when})", done.p(99), "ms"),
        Figure(BENCH, f"copbot completion max ({when})", done.p(100), "ms"),
        Figure(
            BENCH,
            f"copbot commands lost ({when})",
            done.lost,
            "commands",
            target="0",
            ok=done.lost == 0,
            note=f"acknowledged, never answered, of {done.acknowledged}",
        ),
        Figure(
            BENCH,
            f"copbot commands duplicated ({when})",
            done.duplicated,
            "commands",
            target="0",
            ok=done.duplicated == 0,
            note="answered more than once",
        ),
    ]


def _kill_figures(leg: Leg, *, rate: float, duration: float) -> list[Figure]:
    load, done = leg.load, leg.completion
    assert done is not None
    joins = {i % USERS for i in range(load.sent) if PATTERN[i % len(PATTERN)] == "join" and i not in load.failed}
    invites = leg.methods.get("conversations.invite", 0)
    how = (
        f"{rate:.0f} req/s for {duration:.0f} s, same mix; copbot --workers {WORKERS} run --no-worker, and one "
        f"`copbot worker --threads {WORKER_THREADS}` SIGKILLed every {KILL_EVERY:.0f} s and started again at once; "
        f"machine load average {leg.load_average:.1f} as the load began"
    )
    return [
        Figure(BENCH, "kill test commands sent", done.commands, "commands", note=how),
        Figure(
            BENCH,
            "kill test commands acknowledged",
            done.acknowledged,
            "commands",
            target=f"{done.commands}",
            ok=done.acknowledged == done.commands,
            note="; ".join(x for x in (f"errors {load.errors}", _kinds(load), f"ack p99 {load.p(99):.1f} ms") if x),
        ),
        Figure(BENCH, "kill test commands answered exactly once", done.once, "commands", note=_drain(done)),
        Figure(BENCH, "kill test commands lost", done.lost, "commands", target="0", ok=done.lost == 0),
        Figure(
            BENCH,
            "kill test commands duplicated",
            done.duplicated,
            "commands",
            target="0",
            ok=done.duplicated == 0,
            note=f"answered more than once; Slack calls made: conversations.invite {invites} for {len(joins)} "
            "first joins (a call in flight at a kill may be made again)",
        ),
        Figure(BENCH, "kill test worker kills", leg.kills, "kills", note=leg.problems),
        Figure(BENCH, "kill test completion p99", done.p(99), "ms", note=f"p50 {done.p(50):.0f} ms"),
        Figure(BENCH, "kill test completion max", done.p(100), "ms"),
    ]


def _main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[0] == "--serve-bare":
        serve_bare(int(argv[1]), argv[2])
        return 0
    if len(argv) == 7 and argv[0] == "--load":
        url, rate, total, fake_base, channel_id, tag = argv[1:]
        requests = _requests(int(total), fake_base=fake_base, channel_id=channel_id, tag=tag)
        result = asyncio.run(_load(url, requests, rate=float(rate)))
        print(json.dumps(asdict(result)))
        return 0
    print(
        "usage: python -m bench.bench_slack_http --serve-bare PORT SLACK_API_URL\n"
        "       python -m bench.bench_slack_http --load URL RATE TOTAL FAKE_BASE CHANNEL_ID TAG",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
