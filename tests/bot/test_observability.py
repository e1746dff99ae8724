"""What an operator watches: `/readyz` (database, migrations, scheduler), `/metrics` in Prometheus text format, and
LOG_FORMAT=json log lines that never carry what a person typed."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import io
import json
import logging
import secrets
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine, create_engine
from sqlmodel import Session
from starlette.applications import Starlette

from bot.config import ConfigError, Settings, load_settings
from bot.dispatcher import Dispatcher
from bot.logging_setup import configure_logging, uninstall_scrubber
from bot.metrics import REGISTRY
from bot.server import build_web, build_worker, readiness
from bot.slack.platform import SlackPlatform, make_client
from bot.web import create_web_app
from bot.worker import running
from handlers.ports import SystemClock
from storage import rhythm
from storage.engine import make_engine, migrate
from tests.bot.teams import conftest as teams_conftest
from tests.bot.teams.conftest import TeamsWorld
from tests.bot.test_dispatcher import seed_dm_fanout
from tests.fakes import slack_signing as signing
from tests.fakes.server_process import free_port
from tests.fakes.slack_api import BOT_TOKEN, FakeSlack

world = teams_conftest.world  # the Teams adapter tests' fixture, shared rather than copied

MARK = "zqxobserved"


def slack_settings(fake: FakeSlack, database: Path, **extra: str) -> Settings:
    return load_settings(
        {
            "SLACK_BOT_TOKEN": BOT_TOKEN,
            "SLACK_SIGNING_SECRET": signing.SIGNING_SECRET,
            "SLACK_API_URL": fake.url,
            "DATABASE_URL": f"sqlite:///{database}",
            **extra,
        },
        env_file=None,
    )


@pytest.fixture
def web(fake_slack: FakeSlack, tmp_path: Path) -> Iterator[Starlette]:
    """The production ASGI app for Slack over HTTP (bot.server.build_web) on a fresh SQLite file, and the inbox
    worker `copbot run` starts beside it (here on a thread of this process, so its counts are in this registry)."""
    settings = slack_settings(fake_slack, tmp_path / "copbot.db")
    app = build_web(settings, send_rate=1000)
    worker, close = build_worker(settings, threads=2)
    with running(worker):
        yield app
    close()


class Client:
    """Requests to an ASGI app in process, one at a time (Bolt and the Teams adapter still run in worker threads)."""

    def __init__(self, app: Starlette) -> None:
        self.app = app

    def get(self, path: str) -> httpx.Response:
        return self.request("GET", path)

    def post(self, path: str, *, content: bytes, headers: dict[str, str]) -> httpx.Response:
        return self.request("POST", path, content=content, headers=headers)

    def request(self, method: str, path: str, **kwargs: object) -> httpx.Response:
        async def send() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="https://copbot.test") as client:
                return await client.request(method, path, **kwargs)  # type: ignore[arg-type]

        return asyncio.run(send())


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(client: Client) -> Samples:
    """Every sample `/metrics` gives, parsed as Prometheus parses it."""
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"] == CONTENT_TYPE_LATEST
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def slack_command(client: Client, fake: FakeSlack, text: str) -> str:
    """A signed `/cop <text>`; the reply the person sees."""
    before = len(fake.responses)
    request = signing.signed_slash_command(text, response_url=fake.response_url(f"obs{before}"))
    assert client.post("/slack/events", content=request.content, headers=request.headers).status_code == 200
    return str(fake.wait_for_responses(before + 1)[before]["text"])


# --- /readyz -------------------------------------------------------------------------------------------------------


def test_readyz_is_200_once_the_server_runs_on_a_migrated_database(web: Starlette) -> None:
    async def while_serving() -> httpx.Response:
        async with web.router.lifespan_context(web):  # as uvicorn does: the scheduler starts, and stops after
            transport = httpx.ASGITransport(app=web)
            async with httpx.AsyncClient(transport=transport, base_url="https://copbot.test") as client:
                return await client.get("/readyz")

    response = asyncio.run(while_serving())

    assert response.status_code == 200
    assert response.json() == {"ok": True, "checks": {"database": True, "migrations": True, "scheduler": True}}


def test_readyz_is_503_while_the_scheduler_is_not_running(web: Starlette) -> None:
    response = Client(web).get("/readyz")  # no lifespan: nothing started the scheduler

    assert response.status_code == 503
    assert response.json() == {"ok": False, "checks": {"database": True, "migrations": True, "scheduler": False}}


RUNNING = SimpleNamespace(running=True)


def readyz(engine: Engine) -> tuple[int, dict[str, object]]:
    app = create_web_app(slack_app=None, healthy=lambda: True, readiness=readiness(engine, schedulers=[RUNNING]))
    response = Client(app).get("/readyz")
    return response.status_code, response.json()


@pytest.mark.parametrize("revision", [None, "0007_merge_heads"], ids=["never-migrated", "behind-head"])
def test_readyz_is_503_when_the_schema_is_not_at_head(tmp_path: Path, revision: str | None) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/copbot.db")
    if revision is not None:
        migrate(engine, revision=revision)

    status, body = readyz(engine)

    assert status == 503
    assert body == {"ok": False, "checks": {"database": True, "migrations": False, "scheduler": True}}
    engine.dispose()


def test_readyz_is_503_when_the_sqlite_file_cannot_be_opened(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    engine = create_engine(f"sqlite:///{tmp_path}/no-such-folder/copbot.db")  # make_engine would create the folder

    status, body = readyz(engine)

    assert status == 503
    assert body == {"ok": False, "checks": {"database": False, "migrations": False, "scheduler": True}}
    assert [r.getMessage() for r in caplog.records] == ["readiness: the database cannot be used (OperationalError)"]


def test_readyz_is_503_for_an_unreachable_postgresql_and_names_no_secret(caplog: pytest.LogCaptureFixture) -> None:
    password = secrets.token_hex(8)
    engine = make_engine(f"postgresql+psycopg://copbot:{password}@127.0.0.1:{free_port()}/copbot")

    app = create_web_app(slack_app=None, healthy=lambda: True, readiness=readiness(engine, schedulers=[RUNNING]))
    response = Client(app).get("/readyz")

    assert response.status_code == 503
    assert response.json()["checks"]["database"] is False
    assert password not in response.text and "127.0.0.1" not in response.text
    assert all(password not in r.getMessage() for r in caplog.records)


# --- /metrics ------------------------------------------------------------------------------------------------------


def test_metrics_count_a_slack_command_its_ack_its_outcome_and_a_refused_request(
    web: Starlette, fake_slack: FakeSlack
) -> None:
    client = Client(web)
    before = scrape(client)

    assert "/cop create" in slack_command(client, fake_slack, "help")
    forged = signing.signed_slash_command("help", sign_options={"bad_signature": True})
    assert client.post("/slack/events", content=forged.content, headers=forged.headers).status_code == 401

    after = scrape(client)
    counted = {
        (name, labels): after[(name, labels)] - before.get((name, labels), 0.0)
        for name, labels in after
        if name in ("copbot_http_requests_total", "copbot_acks_total", "copbot_commands_total")
        and after[(name, labels)] != before.get((name, labels), 0.0)
    }
    assert counted == {
        ("copbot_http_requests_total", (("endpoint", "/slack/events"), ("status", "200"))): 1.0,
        ("copbot_http_requests_total", (("endpoint", "/slack/events"), ("status", "401"))): 1.0,
        ("copbot_http_requests_total", (("endpoint", "/metrics"), ("status", "200"))): 1.0,  # the first scrape
        ("copbot_acks_total", (("kind", "command"), ("platform", "slack"))): 1.0,
        ("copbot_commands_total", (("outcome", "ok"),)): 1.0,
    }


def test_a_refused_command_is_counted_as_refused(web: Starlette, fake_slack: FakeSlack) -> None:
    client = Client(web)
    before = value(scrape(client), "copbot_commands_total", outcome="refused")

    assert "I don't know" in slack_command(client, fake_slack, "frobnicate")

    assert value(scrape(client), "copbot_commands_total", outcome="refused") == before + 1


def test_metrics_show_the_outbox_depth_and_how_long_its_oldest_row_has_been_due(
    fake_slack: FakeSlack, tmp_path: Path
) -> None:
    database = tmp_path / "copbot.db"
    web = build_web(slack_settings(fake_slack, database), send_rate=1000)
    engine = make_engine(f"sqlite:///{database}")
    now = dt.datetime.now(dt.UTC)
    with Session(engine) as db:
        for hours, key in ((3, "old"), (1, "newer"), (-1, "not-yet-due")):
            rhythm.enqueue(
                db=db, dedupe_key=key, kind="notice", platform="slack", workspace_id="T0COPBOT",
                destination="user:U0ALICE", payload={"text": "hi"}, due_at=now - dt.timedelta(hours=hours), now=now,
            )  # fmt: skip
        db.commit()

    samples = scrape(Client(web))

    assert value(samples, "copbot_outbox_depth") == 3
    assert value(samples, "copbot_outbox_oldest_due_seconds") >= 3 * 3600  # the oldest row, not the newest
    assert value(samples, "copbot_outbox_oldest_due_seconds") < 4 * 3600
    engine.dispose()


def test_a_teams_message_is_counted_as_a_message_ack(world: TeamsWorld) -> None:
    client = Client(world.app)
    before = scrape(client)

    assert "/cop create" in world.say("help")

    after = scrape(client)
    acks = ("copbot_acks_total", (("kind", "message"), ("platform", "teams")))
    assert after[acks] - before.get(acks, 0.0) == 1
    ok = ("copbot_commands_total", (("outcome", "ok"),))
    assert after[ok] - before.get(ok, 0.0) == 1


def delivery(result: str) -> float:
    return REGISTRY.get_sample_value("copbot_outbox_deliveries_total", {"result": result}) or 0.0


def test_the_dispatcher_counts_deliveries_retries_failures_429s_and_its_duration(
    fake_slack: FakeSlack, engine: Engine
) -> None:
    seed_dm_fanout(engine, 4)  # four DM prompts due now
    fake_slack.rate_limit("chat.postMessage", retry_after=0, times=1)
    fake_slack.fail_next("chat.postMessage", error="internal_error")  # transient: retried later
    fake_slack.fail_next("chat.postMessage", error="user_not_found")  # permanent: failed
    platform = SlackPlatform(make_client(token=BOT_TOKEN, base_url=fake_slack.url, wait_on_rate_limit=False))
    dispatcher = Dispatcher(
        engine=engine, platform=platform, clock=SystemClock(), workspace_rate=1000, channel_rate=1000
    )
    before = {r: delivery(r) for r in ("sent", "retried", "failed")}
    limited = REGISTRY.get_sample_value("copbot_rate_limited_total") or 0.0
    runs = REGISTRY.get_sample_value("copbot_job_seconds_count", {"job": "dispatch"}) or 0.0

    dispatcher.run()

    with Session(engine) as db:
        rows = sorted(r.status for r in db.exec(rhythm.select(rhythm.OutboxItem)))  # type: ignore[attr-defined]
    assert rows == ["failed", "pending", "sent", "sent"]
    assert {r: delivery(r) - before[r] for r in before} == {"sent": 2, "retried": 1, "failed": 1}
    assert (REGISTRY.get_sample_value("copbot_rate_limited_total") or 0.0) == limited + 1
    assert REGISTRY.get_sample_value("copbot_job_seconds_count", {"job": "dispatch"}) == runs + 1


# --- LOG_FORMAT=json -----------------------------------------------------------------------------------------------


@contextlib.contextmanager
def bare_root_logging() -> Iterator[None]:
    """A root logger with no handlers (as at a real entry point), the global logging state put back afterwards.

    A context manager, not a fixture: pytest adds its own handlers to the root for each test's call phase."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    levels = {n: lg.level for n, lg in root.manager.loggerDict.items() if isinstance(lg, logging.Logger)}
    for handler in handlers:
        root.removeHandler(handler)
    try:
        yield
    finally:
        uninstall_scrubber()
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level)
        for name, lg in list(root.manager.loggerDict.items()):
            if isinstance(lg, logging.Logger):
                lg.setLevel(levels.get(name, logging.NOTSET))


def test_json_lines_carry_time_level_logger_and_message_but_never_what_was_typed(
    web: Starlette, fake_slack: FakeSlack
) -> None:
    stream = io.StringIO()
    client = Client(web)
    with bare_root_logging():
        configure_logging(level="DEBUG", stream=stream, log_format="json")
        slack_command(client, fake_slack, f"create {MARK}create | {MARK}purpose")
        slack_command(client, fake_slack, f"stories {MARK}search")
        unsigned = signing.signed_slash_command(f"join {MARK}forged", sign_options={"bad_signature": True})
        assert client.post("/slack/events", content=unsigned.content, headers=unsigned.headers).status_code == 401
        try:
            int(f"{MARK}typed")
        except ValueError:
            logging.getLogger("bot.slack.app").exception("command:profile failed")

    lines = stream.getvalue().splitlines()
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    assert all({"time", "level", "logger", "message"} <= set(r) for r in records)
    assert all(dt.datetime.fromisoformat(r["time"]).utcoffset() == dt.timedelta(0) for r in records)
    assert MARK not in stream.getvalue()
    assert {"level": "WARNING", "logger": "bot.web", "message": "slack request refused (401): bad signature"} in [
        {k: r[k] for k in ("level", "logger", "message")} for r in records
    ]
    [error] = [r for r in records if r["level"] == "ERROR"]
    assert error["message"] == "command:profile failed" and error["exc_type"] == "builtins.ValueError"
    assert "(message withheld)" in error["traceback"]


def test_text_stays_the_default_format() -> None:
    stream = io.StringIO()
    with bare_root_logging():
        configure_logging(level="INFO", stream=stream)
        logging.getLogger("bot.cli").info("copbot: database schema is up to date")

    line = stream.getvalue().rstrip("\n")
    assert line.endswith(" INFO bot.cli: copbot: database schema is up to date")
    with pytest.raises(json.JSONDecodeError):
        json.loads(line)


def test_a_second_set_up_switches_the_same_handler_to_json() -> None:
    # The CLI sets logging up (text) before it knows it will serve HTTP; the server then applies LOG_FORMAT.
    stream = io.StringIO()
    with bare_root_logging():
        configure_logging(level="INFO", stream=stream)
        configure_logging(level="INFO", log_format="json")
        logging.getLogger("bot.server").info("copbot on %s over HTTP", "slack")
        handlers = len(logging.getLogger().handlers)

    assert handlers == 1
    assert json.loads(stream.getvalue())["message"] == "copbot on slack over HTTP"


@pytest.mark.parametrize(("given", "expected"), [(None, "text"), ("json", "json"), ("JSON", "json"), ("text", "text")])
def test_log_format_is_a_setting(given: str | None, expected: str) -> None:
    environ = {"LOG_FORMAT": given} if given is not None else {}

    assert load_settings(environ, env_file=None).log_format == expected


def test_an_unknown_log_format_is_a_configuration_problem() -> None:
    with pytest.raises(ConfigError) as refused:
        load_settings({"LOG_FORMAT": "yaml"}, env_file=None)

    assert refused.value.problems == ["LOG_FORMAT must be text or json (got 'yaml')"]


def test_readyz_is_503_for_a_sqlite_database_opened_read_only(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "copbot.db"
    migrate(make_engine(f"sqlite:///{path}"))
    engine = create_engine(f"sqlite:///file:{path}?mode=ro&uri=true")  # as on a read-only mount

    status, body = readyz(engine)

    assert status == 503
    assert body["checks"] == {"database": False, "migrations": True, "scheduler": True}
    assert "readiness: the database takes no writes (OperationalError)" in [r.getMessage() for r in caplog.records]


@pytest.mark.postgres
def test_readyz_is_503_for_a_read_only_postgresql(pg_engine: Engine) -> None:
    assert readyz(pg_engine)[0] == 200
    with pg_engine.connect() as conn:
        schema = conn.exec_driver_sql("select current_schema()").scalar()
    options = f"-csearch_path={schema} -cdefault_transaction_read_only=on"  # as on a read-only replica
    read_only = create_engine(pg_engine.url.render_as_string(hide_password=False), connect_args={"options": options})

    status, body = readyz(read_only)

    assert status == 503
    assert body["checks"] == {"database": False, "migrations": True, "scheduler": True}
    read_only.dispose()
