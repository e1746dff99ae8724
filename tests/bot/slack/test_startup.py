"""Start-up against a Slack that refuses the token or cannot be reached: a clear message and exit code, no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from slack_sdk import WebClient
from sqlalchemy import Engine

from bot.cli import EXIT_CONFIG, main
from bot.slack.app import SlackDeps, SlackUnavailable, start_app
from handlers.app import CopBot
from handlers.context import CoreConfig
from tests.conftest import FixedClock
from tests.fakes import slack_signing as signing
from tests.fakes.recording import RecordingPlatform
from tests.fakes.server_process import free_port
from tests.fakes.slack_api import BOT_TOKEN, FakeSlack

SETTINGS = ("SLACK_", "TEAMS_", "COPBOT_", "DATABASE_URL")


@pytest.fixture
def env_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    import os

    for name in list(os.environ):
        if name.startswith(SETTINGS):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path / ".env"


@pytest.mark.parametrize("mode", ["http", "socket"])
def test_a_refused_token_stops_with_a_clear_message(
    mode: str, env_file: Path, fake_slack: FakeSlack, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_slack.fail_next("auth.test", error="invalid_auth")
    lines = [f"SLACK_BOT_TOKEN={BOT_TOKEN}", f"SLACK_API_URL={fake_slack.url}", f"COPBOT_PORT={free_port()}"]
    lines.append(
        "SLACK_APP_TOKEN=xapp-1-A0-0-fake" if mode == "socket" else f"SLACK_SIGNING_SECRET={signing.SIGNING_SECRET}"
    )
    env_file.write_text("\n".join(lines) + "\n")

    code = main(["--env-file", str(env_file)])

    err = capsys.readouterr().err
    assert code == EXIT_CONFIG
    assert "Slack rejected the bot token (invalid_auth): check SLACK_BOT_TOKEN" in err
    assert "Traceback" not in err
    assert BOT_TOKEN not in err


def test_an_unreachable_slack_is_named_with_its_url(engine: Engine, clock: FixedClock) -> None:
    closed = f"http://127.0.0.1:{free_port()}/api/"
    client = WebClient(token=BOT_TOKEN, base_url=closed, timeout=2)  # no retry handlers: fail at once
    bot = CopBot(engine=engine, platform=RecordingPlatform(), clock=clock, config=CoreConfig())

    with pytest.raises(SlackUnavailable) as raised:
        start_app(deps=SlackDeps(bot=bot, engine=engine, clock=clock), client=client, signing_secret="s")

    message = str(raised.value)
    assert message.startswith(f"cannot reach Slack's Web API at {closed} (")
    assert "check SLACK_API_URL" in message
