"""Settings: every docs/architecture.md §5 name, read from the environment and .env, validated, secrets hidden."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bot.config import ENV_NAMES, ConfigError, Secret, load_settings

ROOT = Path(__file__).resolve().parents[2]
DESIGN = ROOT / "docs" / "architecture.md"


def test_defaults_run_the_console_on_sqlite() -> None:
    settings = load_settings({}, env_file=None)
    assert settings.platform == "console"
    assert settings.database_url == "sqlite:///copbot.db"
    assert (settings.timezone, settings.holidays, settings.story_emoji) == ("Europe/London", "england", "bulb")


def test_platform_is_detected_from_credentials() -> None:
    slack = load_settings({"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_SIGNING_SECRET": "s"}, env_file=None)
    assert slack.platform == "slack" and not slack.slack_socket_mode
    socket = load_settings({"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_APP_TOKEN": "xapp-1"}, env_file=None)
    assert socket.slack_socket_mode
    teams = load_settings({"TEAMS_APP_ID": "a", "TEAMS_APP_PASSWORD": "p", "TEAMS_TENANT_ID": "t"}, env_file=None)
    assert teams.platform == "teams"


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(
            {
                "COPBOT_PORT": "eighty",
                "COPBOT_TIMEZONE": "Mars/Olympus",
                "COPBOT_HOLIDAYS": "narnia",
                "LOG_LEVEL": "LOUD",
                "DATABASE_URL": "mysql://x",
                "SLACK_BOT_TOKEN": "xoxp-user-token",
                "COPBOT_RETENTION_DAYS": "-3",
                "COPBOT_INCIDENT_URL": "datix",
            },
            env_file=None,
        )
    problems = caught.value.problems
    assert len(problems) == 9
    message = str(caught.value)
    for name in ("COPBOT_PORT", "COPBOT_TIMEZONE", "COPBOT_HOLIDAYS", "LOG_LEVEL", "DATABASE_URL", "SLACK_BOT_TOKEN"):
        assert name in message
    assert "SLACK_APP_TOKEN (Socket Mode) or SLACK_SIGNING_SECRET" in message


def test_both_platforms_configured_is_ambiguous() -> None:
    with pytest.raises(ConfigError, match="choose one with COPBOT_PLATFORM"):
        load_settings({"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_APP_TOKEN": "xapp-1", "TEAMS_APP_ID": "a"}, env_file=None)


def test_env_file_is_read_and_the_environment_wins(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("COPBOT_TIMEZONE=Europe/Dublin\nCOPBOT_PORT=8080\n# comment\nCOPBOT_CREATORS=U1, U2\n")
    settings = load_settings({"COPBOT_PORT": "9090"}, env_file=env)
    assert settings.timezone == "Europe/Dublin"
    assert settings.port == 9090
    assert settings.creators == frozenset({"U1", "U2"})


def test_a_bad_env_file_line_and_bad_value_are_named(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("COPBOT_PORT=70000\nthis is not a setting\nCOPBOT_TIMEZNE=Europe/London\n")
    with pytest.raises(ConfigError) as caught:
        load_settings({}, env_file=env)
    text = str(caught.value)
    assert "line 2 cannot be read" in text
    assert "COPBOT_TIMEZNE is not a copbot setting" in text
    assert "COPBOT_PORT must be a number from 1 to 65535 (got '70000')" in text


def test_secrets_never_appear_in_reprs_or_summaries() -> None:
    settings = load_settings(
        {
            "SLACK_BOT_TOKEN": "xoxb-supersecret",
            "SLACK_SIGNING_SECRET": "signsecret",
            "DATABASE_URL": "postgresql+psycopg://copbot:dbpassword@db/copbot",
        },
        env_file=None,
    )
    shown = repr(settings) + str(settings.safe_summary())
    for secret in ("supersecret", "signsecret", "dbpassword"):
        assert secret not in shown
    assert isinstance(settings.slack_bot_token, Secret)
    assert settings.slack_bot_token.value == "xoxb-supersecret"


def test_env_example_and_design_list_the_same_names() -> None:
    example = (ROOT / ".env.example").read_text()
    assert set(re.findall(r"^([A-Z_]+)=", example, flags=re.M)) == set(ENV_NAMES)
    section = DESIGN.read_text().split("## 5.")[1].split("## 6.")[0]
    assert set(re.findall(r"`([A-Z][A-Z_]+)`", section)) == set(ENV_NAMES)
