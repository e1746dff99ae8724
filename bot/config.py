"""Settings: every name in docs/architecture.md §5, read once from the environment and `.env`, validated together."""

from __future__ import annotations

import io
import os
import re
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Literal

from dotenv.parser import parse_stream

Platform = Literal["console", "slack", "teams"]
HOLIDAY_REGIONS = ("england", "wales", "scotland", "northern-ireland", "none")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LogFormat = Literal["text", "json"]
LOG_FORMATS = ("text", "json")


class Secret:
    """A secret value: shown as '**********' in reprs, str() and logs; `.value` to use it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    @property
    def value(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)


class ConfigError(ValueError):
    """Start-up configuration is wrong; `problems` lists every one of them."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"copbot cannot start: {len(problems)} configuration problem(s):\n{lines}")


@dataclass(frozen=True)
class Settings:
    """Validated settings. Secrets are `Secret`s; nothing here is read from the environment after start-up."""

    platform: Platform = "console"
    database_url: str = field(default="sqlite:///copbot.db", repr=False)
    host: str = "127.0.0.1"
    port: int = 3000
    timezone: str = "Europe/London"
    holidays: str = "england"
    story_emoji: str = "bulb"
    incident_url: str | None = None
    creators: frozenset[str] = frozenset()
    retention_days: int | None = None
    log_level: str = "INFO"
    log_format: LogFormat = "text"  # the HTTP server's log lines; the console and the CLI always write text
    slack_bot_token: Secret | None = None
    slack_app_token: Secret | None = None
    slack_signing_secret: Secret | None = None
    slack_api_url: str = "https://slack.com/api/"
    teams_app_id: str | None = None
    teams_app_password: Secret | None = None
    teams_tenant_id: str | None = None
    teams_team_id: str | None = None
    teams_login_url: str = "https://login.microsoftonline.com"
    teams_openid_metadata_url: str = "https://login.botframework.com/v1/.well-known/openidconfiguration"
    graph_api_url: str = "https://graph.microsoft.com/v1.0"

    @property
    def slack_socket_mode(self) -> bool:
        """Socket Mode when an app-level token is configured, HTTP otherwise."""
        return self.slack_app_token is not None

    def safe_summary(self) -> dict[str, str]:
        """Settings as text for logs and `copbot config`: secrets masked, the database password hidden."""
        from sqlalchemy.engine import make_url

        out: dict[str, str] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "database_url":
                value = make_url(value).render_as_string(hide_password=True)
            elif isinstance(value, frozenset):
                value = ",".join(sorted(value))
            out[f.name] = "" if value is None else str(value)
        return out


ENV_NAMES = (
    "COPBOT_PLATFORM",
    "DATABASE_URL",
    "COPBOT_HOST",
    "COPBOT_PORT",
    "COPBOT_TIMEZONE",
    "COPBOT_HOLIDAYS",
    "COPBOT_STORY_EMOJI",
    "COPBOT_INCIDENT_URL",
    "COPBOT_CREATORS",
    "COPBOT_RETENTION_DAYS",
    "LOG_LEVEL",
    "LOG_FORMAT",
    "SLACK_BOT_TOKEN",
    "SLACK_APP_TOKEN",
    "SLACK_SIGNING_SECRET",
    "SLACK_API_URL",
    "TEAMS_APP_ID",
    "TEAMS_APP_PASSWORD",
    "TEAMS_TENANT_ID",
    "TEAMS_TEAM_ID",
    "TEAMS_LOGIN_URL",
    "TEAMS_OPENID_METADATA_URL",
    "GRAPH_API_URL",
)


def read_env_file(path: Path) -> tuple[dict[str, str], list[str]]:
    """Values from a `.env` file and the lines python-dotenv could not parse (as problems)."""
    if not path.exists():
        return {}, []
    values: dict[str, str] = {}
    problems: list[str] = []
    text = path.read_text(encoding="utf-8", errors="replace")
    for binding in parse_stream(io.StringIO(text)):
        if binding.error:
            problems.append(f"{path}: line {binding.original.line} cannot be read (expected NAME=value)")
        elif binding.key is not None and binding.value is not None:
            values[binding.key] = binding.value
    return values, problems


def load_settings(environ: Mapping[str, str] | None = None, *, env_file: Path | None = Path(".env")) -> Settings:
    """Read and validate every setting; raise one ConfigError listing all problems. The environment beats `.env`."""
    file_values, problems = read_env_file(env_file) if env_file is not None else ({}, [])
    env = {**file_values, **(os.environ if environ is None else environ)}

    def get(name: str) -> str | None:
        value = env.get(name, "").strip()
        return value or None

    unknown = sorted(k for k in file_values if k.startswith(("COPBOT_", "SLACK_", "TEAMS_")) and k not in ENV_NAMES)
    problems += [f"{name} is not a copbot setting (see .env.example)" for name in unknown]
    values: dict[str, object] = {}

    # platform and its credentials
    slack_bot, slack_app, slack_secret = get("SLACK_BOT_TOKEN"), get("SLACK_APP_TOKEN"), get("SLACK_SIGNING_SECRET")
    teams_id, teams_password, teams_tenant = get("TEAMS_APP_ID"), get("TEAMS_APP_PASSWORD"), get("TEAMS_TENANT_ID")
    platform = (get("COPBOT_PLATFORM") or "").lower()
    if not platform:
        detected = [p for p, present in (("slack", slack_bot), ("teams", teams_id)) if present]
        if len(detected) > 1:
            problems.append("both Slack and Teams credentials are set: choose one with COPBOT_PLATFORM=slack|teams")
        platform = detected[0] if detected else "console"
    if platform not in ("console", "slack", "teams"):
        problems.append(f"COPBOT_PLATFORM must be console, slack or teams (got {platform!r})")
        platform = "console"
    values["platform"] = platform

    if platform == "slack":
        if not slack_bot:
            problems.append("SLACK_BOT_TOKEN is required for Slack (the xoxb-… bot token from OAuth & Permissions)")
        elif not slack_bot.startswith("xoxb-"):
            problems.append("SLACK_BOT_TOKEN must be a bot token starting with xoxb-")
        if slack_app and not slack_app.startswith("xapp-"):
            problems.append("SLACK_APP_TOKEN must be an app-level token starting with xapp- (for Socket Mode)")
        if not slack_app and not slack_secret:
            problems.append(
                "Slack needs SLACK_APP_TOKEN (Socket Mode) or SLACK_SIGNING_SECRET (HTTP mode); neither is set"
            )
    if platform == "teams":
        for name, value in (
            ("TEAMS_APP_ID", teams_id),
            ("TEAMS_APP_PASSWORD", teams_password),
            ("TEAMS_TENANT_ID", teams_tenant),
        ):
            if not value:
                problems.append(f"{name} is required for Teams (from the Azure bot's app registration)")
    for name, secret in (
        ("slack_bot_token", slack_bot),
        ("slack_app_token", slack_app),
        ("slack_signing_secret", slack_secret),
        ("teams_app_password", teams_password),
    ):
        values[name] = Secret(secret) if secret else None
    values["teams_app_id"] = teams_id
    values["teams_tenant_id"] = teams_tenant
    values["teams_team_id"] = get("TEAMS_TEAM_ID")

    # database
    database_url = get("DATABASE_URL") or "sqlite:///copbot.db"
    if not re.match(r"^(sqlite|postgresql)(\+\w+)?://", database_url):
        problems.append("DATABASE_URL must start with sqlite:/// or postgresql+psycopg://")
    values["database_url"] = database_url

    # server
    values["host"] = get("COPBOT_HOST") or "127.0.0.1"
    port = get("COPBOT_PORT")
    if port is not None:
        if port.isdigit() and 1 <= int(port) <= 65535:
            values["port"] = int(port)
        else:
            problems.append(f"COPBOT_PORT must be a number from 1 to 65535 (got {port!r})")

    # behaviour
    timezone = get("COPBOT_TIMEZONE") or "Europe/London"
    try:
        zoneinfo.ZoneInfo(timezone)
        values["timezone"] = timezone
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        problems.append(f"COPBOT_TIMEZONE must be an IANA time zone such as Europe/London (got {timezone!r})")
    holidays = (get("COPBOT_HOLIDAYS") or "england").lower()
    if holidays in HOLIDAY_REGIONS:
        values["holidays"] = holidays
    else:
        problems.append(f"COPBOT_HOLIDAYS must be one of {', '.join(HOLIDAY_REGIONS)} (got {holidays!r})")
    emoji = (get("COPBOT_STORY_EMOJI") or "bulb").strip(":")
    if re.fullmatch(r"[a-z0-9_+\-']{1,100}", emoji):
        values["story_emoji"] = emoji
    else:
        problems.append(f"COPBOT_STORY_EMOJI must be an emoji name such as bulb or star (got {emoji!r})")
    incident_url = get("COPBOT_INCIDENT_URL")
    if incident_url is not None and not re.match(r"^https?://\S+$", incident_url):
        problems.append("COPBOT_INCIDENT_URL must be an http(s) address")
    values["incident_url"] = incident_url
    creators = get("COPBOT_CREATORS")
    values["creators"] = frozenset(c.strip() for c in (creators or "").split(",") if c.strip())
    retention = get("COPBOT_RETENTION_DAYS")
    if retention is not None:
        if retention.isdigit() and int(retention) > 0:
            values["retention_days"] = int(retention)
        else:
            problems.append(f"COPBOT_RETENTION_DAYS must be a whole number of days above 0 (got {retention!r})")
    log_level = (get("LOG_LEVEL") or "INFO").upper()
    if log_level in LOG_LEVELS:
        values["log_level"] = log_level
    else:
        problems.append(f"LOG_LEVEL must be one of {', '.join(LOG_LEVELS)} (got {log_level!r})")
    log_format = (get("LOG_FORMAT") or "text").lower()
    if log_format in LOG_FORMATS:
        values["log_format"] = log_format
    else:
        problems.append(f"LOG_FORMAT must be text or json (got {log_format!r})")

    # platform endpoints (tests point these at loopback fakes)
    for env_name, key, default in (
        ("SLACK_API_URL", "slack_api_url", Settings.slack_api_url),
        ("TEAMS_LOGIN_URL", "teams_login_url", Settings.teams_login_url),
        ("TEAMS_OPENID_METADATA_URL", "teams_openid_metadata_url", Settings.teams_openid_metadata_url),
        ("GRAPH_API_URL", "graph_api_url", Settings.graph_api_url),
    ):
        url = get(env_name) or default
        if not re.match(r"^https?://[^\s/]+", url):
            problems.append(f"{env_name} must be an http(s) address (got {url!r})")
        values[key] = url
    if not str(values["slack_api_url"]).endswith("/"):
        values["slack_api_url"] = str(values["slack_api_url"]) + "/"

    if problems:
        raise ConfigError(problems)
    return Settings(**values)  # type: ignore[arg-type]
