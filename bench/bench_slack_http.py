"""Slack HTTP acknowledgement latency: the real `copbot` server under signed mixed load, against a bare Bolt app.

Open-loop load (requests go out on a fixed schedule whatever the server does; latency is measured from the
scheduled send time, so a slow server cannot hide its queueing: no coordinated omission). Mix: 40% `/cop list`,
20% `/cop help`, 20% `/cop join bench-community` from many people, 20% events (member_joined_channel in the
community's channel, app_home_opened), each event with a unique event_id. Slack Web API calls and response_url
posts go to an in-process FakeSlack on loopback.

`python -m bench.bench_slack_http --serve-bare PORT SLACK_API_URL` serves the comparison app: a bare Bolt app
that only acks, behind the same Starlette/uvicorn front (`bot.web.create_web_app`), so the difference is
copbot's own work. `--load ...` is the load generator, run as its own process (see `_main`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
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
# People cycle every USERS requests: in the full run (6,000 requests) 400 people join, each three times (the first
# join is real work: a membership row and an invite; the others answer "already a member"), and 200 people's
# member_joined_channel events each arrive three times with distinct event ids (one welcome DM each).
USERS = 2000


@dataclass
class LoadResult:
    rate: float
    duration: float
    sent: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0
    error_kinds: dict[str, int] = field(default_factory=dict)
    send_lag_ms: list[float] = field(default_factory=list)  # how late the generator itself was (its own health)
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


# --- load ----------------------------------------------------------------------------------------------------------

Request = tuple[str, bytes, dict[str, str]]  # kind, body, headers


# A fixed 10-slot mix: 4 list, 2 help, 2 join, 1 member_joined_channel, 1 app_home_opened.
PATTERN = ("list", "help", "join", "list", "event_joined", "list", "help", "join", "list", "event_home")


def _requests(total: int, *, fake_base: str, channel_id: str, tag: str = "B", start: int = 0) -> list[Request]:
    """`total` signed requests in the PATTERN mix from position `start`; `tag` (a capital letter) keeps people and
    event ids apart."""
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
                text, user_id=user, channel_id="C0GENERAL", response_url=f"{fake_base}/response/{tag}{i}"
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
    last_answer = start

    async def send(body: bytes, headers: dict[str, str], scheduled: float) -> None:
        nonlocal last_answer
        result.send_lag_ms.append((loop.time() - scheduled) * 1000)
        try:
            status = await asyncio.wait_for(connections.post(body, headers), REQUEST_TIMEOUT)
            done = loop.time()
            last_answer = max(last_answer, done)
            if status == 200:
                result.latencies_ms.append((done - scheduled) * 1000)
            else:
                result.errors += 1
                key = f"HTTP {status}"
                result.error_kinds[key] = result.error_kinds.get(key, 0) + 1
        except (OSError, ValueError, IndexError, asyncio.IncompleteReadError, TimeoutError) as exc:
            result.errors += 1
            key = type(exc).__name__
            result.error_kinds[key] = result.error_kinds.get(key, 0) + 1

    tasks = []
    for i, (_kind, body, headers) in enumerate(requests):
        scheduled = start + i / rate
        delay = scheduled - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(send(body, headers, scheduled)))
    result.sent = len(tasks)
    _done, pending = await asyncio.wait(tasks, timeout=DRAIN_TIMEOUT)
    result.elapsed = last_answer - start
    for task in pending:  # a bounded run: whatever is still unanswered counts as an error
        task.cancel()
    if pending:
        await asyncio.wait(pending)
        result.errors += len(pending)
        result.error_kinds[f"no answer {DRAIN_TIMEOUT:.0f} s after the last send"] = len(pending)
    connections.close()
    return result


def _load_in_child(url: str, *, rate: float, total: int, fake_base: str, channel_id: str) -> LoadResult:
    """Run the load generator in its own process, so the in-process FakeSlack cannot hold up its sends."""
    command = [sys.executable, "-m", "bench.bench_slack_http", "--load", url, str(rate), str(total), fake_base]
    done = subprocess.run(
        [*command, channel_id], env=_clean_env(), cwd=ROOT, capture_output=True, timeout=total / rate + 120
    )
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


# --- the benchmark -------------------------------------------------------------------------------------------------


@dataclass
class Copbot:
    """A running copbot server with the benchmark's community made and first-call costs paid."""

    base: str
    proc: subprocess.Popen[bytes]
    log: Path
    channel_id: str


@contextlib.contextmanager
def copbot_server(tmp: Path, fake: Any, *, database: Path, log_level: str = "WARNING") -> Iterator[Copbot]:
    """Start `copbot --workers WORKERS` in HTTP mode on `database` against the fake Slack; make the community; warm."""
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
    # Deployed as the README advises under load: one HTTP process per core.
    command = [sys.executable, "-m", "bot.cli", "--env-file", str(tmp / "absent.env"), "--workers", str(WORKERS)]
    with _process(command, env, log) as proc:
        _wait_healthy(base, proc, log)
        create = signing.signed_slash_command(
            f"create {COMMUNITY} | Benchmark traffic",
            user_id="U0ALICE",
            channel_id="C0GENERAL",
            response_url=f"{fake.base}/response/create",
        )
        httpx.post(f"{base}/slack/events", content=create.body, headers=create.headers, timeout=REQUEST_TIMEOUT)
        fake.wait_for_responses(1, timeout=10)
        channel = fake.channel_named(f"cop-{SLUG}")
        if channel is None:
            raise RuntimeError(f"/cop create did not create #{SLUG}: {fake.responses[-1:]}\n{log.read_text()[-2000:]}")
        warm = _requests(20, fake_base=fake.base, channel_id=channel.id, tag="W")
        _warm_up(f"{base}/slack/events", [(k, b, h) for k, b, h in warm if k != "join"])
        yield Copbot(base=base, proc=proc, log=log, channel_id=channel.id)


def _run_copbot(tmp: Path, fake: Any, rate: float, total: int) -> tuple[LoadResult, dict[str, int]]:
    with copbot_server(tmp, fake, database=tmp / "bench.db") as server:
        calls_before = len(fake.calls)
        responses_before = len(fake.responses)
        cpu_before, wall_before = _cpu_seconds(server.proc.pid), time.monotonic()
        result = _load_in_child(
            f"{server.base}/slack/events", rate=rate, total=total, fake_base=fake.base, channel_id=server.channel_id
        )
        # Listeners keep working after the ack: give them a moment to finish their Slack calls.
        expected = responses_before + sum(1 for i in range(total) if not PATTERN[i % 10].startswith("event"))
        with contextlib.suppress(AssertionError):
            fake.wait_for_responses(expected, timeout=30)
        result.server_cpu_s = _cpu_seconds(server.proc.pid) - cpu_before
        result.server_wall_s = time.monotonic() - wall_before
        methods: dict[str, int] = {}
        for call in fake.calls[calls_before:]:
            methods[call.method] = methods.get(call.method, 0) + 1
        methods["response_url posts"] = len(fake.responses) - responses_before
        methods["contract violations"] = len(fake.violations)
        if server.proc.poll() is not None:
            raise RuntimeError(f"copbot exited during the run:\n{server.log.read_text()[-2000:]}")
    return result, methods


def _run_bare(tmp: Path, fake: Any, rate: float, total: int) -> LoadResult:
    from tests.fakes.server_process import free_port

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp / "bare.log"
    command = [sys.executable, "-m", "bench.bench_slack_http", "--serve-bare", str(port), fake.url]
    with _process(command, _clean_env(), log) as proc:
        _wait_healthy(base, proc, log)
        _warm_up(f"{base}/slack/events", _requests(20, fake_base=fake.base, channel_id="C0GENERAL", tag="W"))
        cpu_before, wall_before = _cpu_seconds(proc.pid), time.monotonic()
        result = _load_in_child(
            f"{base}/slack/events", rate=rate, total=total, fake_base=fake.base, channel_id="C0GENERAL"
        )
        result.server_cpu_s = _cpu_seconds(proc.pid) - cpu_before
        result.server_wall_s = time.monotonic() - wall_before
        return result


WORKERS = max(1, os.cpu_count() or 1)


def run(*, quick: bool) -> list[Figure]:
    from tests.fakes.slack_api import FakeSlack
    from tests.fakes.slack_manifest import declared

    rate, duration = (100.0, 5.0) if quick else (200.0, 30.0)
    total = int(rate * duration)
    mix = (
        f"{rate:.0f} req/s for {duration:.0f} s ({total} signed POST /slack/events, open loop): 40% /cop list, "
        "20% /cop help, 20% /cop join (a third of them first joins), "
        "20% events (member_joined_channel, app_home_opened); "
        f"copbot runs --workers {WORKERS}"
    )
    with tempfile.TemporaryDirectory() as tmp_name, FakeSlack(scopes=set(declared().bot_scopes)) as fake:
        tmp = Path(tmp_name)
        copbot, methods = _run_copbot(tmp, fake, rate, total)
        bare = _run_bare(tmp, fake, rate, total)
    calls = ", ".join(f"{k} {v}" for k, v in sorted(methods.items()))
    ratio = copbot.throughput / bare.throughput if bare.throughput else 0.0

    def lag(r: LoadResult) -> str:
        return f"generator send lag p99 {percentile(r.send_lag_ms, 99):.1f} ms" if r.send_lag_ms else ""

    def cpu(r: LoadResult) -> str:
        per_request = r.server_cpu_s / r.sent * 1000 if r.sent else float("nan")
        busy = r.server_cpu_s / r.server_wall_s
        return f"server CPU {per_request:.1f} ms/request ({busy:.0%} of one core over {r.server_wall_s:.0f} s)"

    def kinds(r: LoadResult) -> str:
        return ", ".join(f"{k}: {v}" for k, v in sorted(r.error_kinds.items()))

    return [
        Figure(BENCH, "copbot ack latency p50", copbot.p(50), "ms", note=mix),
        Figure(
            BENCH,
            "copbot ack latency p99",
            copbot.p(99),
            "ms",
            target="< 100 ms",
            ok=copbot.p(99) < 100,
            note=f"max {copbot.p(100):.1f} ms; {lag(copbot)}",
        ),
        Figure(BENCH, "copbot ack latency max", copbot.p(100), "ms"),
        Figure(
            BENCH, "copbot errors", copbot.errors, "requests", target="0", ok=copbot.errors == 0, note=kinds(copbot)
        ),
        Figure(
            BENCH,
            "copbot throughput",
            copbot.throughput,
            "req/s",
            note=f"{cpu(copbot)}; Slack Web API calls during the load: {calls}",
        ),
        Figure(BENCH, "bare Bolt ack latency p50", bare.p(50), "ms", note="ack-only Bolt app, same web front"),
        Figure(BENCH, "bare Bolt ack latency p99", bare.p(99), "ms", note=f"max {bare.p(100):.1f} ms; {lag(bare)}"),
        Figure(
            BENCH,
            "bare Bolt throughput",
            bare.throughput,
            "req/s",
            note=f"errors {bare.errors} {kinds(bare)}; {cpu(bare)}",
        ),
        Figure(
            BENCH,
            "throughput ratio copbot / bare Bolt",
            ratio * 100,
            "%",
            target=">= 70%",
            ok=ratio >= 0.7,
            note=f"offered {rate:.0f} req/s to both",
        ),
    ]


def _main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[0] == "--serve-bare":
        serve_bare(int(argv[1]), argv[2])
        return 0
    if len(argv) == 6 and argv[0] == "--load":
        url, rate, total, fake_base, channel_id = argv[1:]
        requests = _requests(int(total), fake_base=fake_base, channel_id=channel_id)
        result = asyncio.run(_load(url, requests, rate=float(rate)))
        print(json.dumps(asdict(result)))
        return 0
    print(
        "usage: python -m bench.bench_slack_http --serve-bare PORT SLACK_API_URL\n"
        "       python -m bench.bench_slack_http --load URL RATE TOTAL FAKE_BASE CHANNEL_ID",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
