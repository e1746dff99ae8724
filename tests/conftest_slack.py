"""Pytest fixtures for Slack tests: the fake Web API, the Socket Mode fake, and a WebClient pointed at them.

Registered from tests/conftest.py with ``pytest_plugins = ["tests.conftest_slack"]``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from slack_sdk import WebClient

from tests.fakes.slack_api import BOT_TOKEN, FakeSlack
from tests.fakes.slack_manifest import declared
from tests.fakes.slack_socket import FakeSocketMode


@pytest.fixture
def fake_slack() -> Iterator[FakeSlack]:
    """A fresh fake Slack Web API (state, records) per test, granting exactly manifest.yaml's bot scopes.

    The test fails at teardown if any call broke Slack's contract (unknown method/param, missing required param,
    missing scope); tests that provoke violations on purpose call `fake_slack.take_violations()`.
    """
    fake = FakeSlack(scopes=set(declared().bot_scopes))
    with fake:
        yield fake
    if fake.violations:
        listed = "\n  ".join(str(v) for v in fake.violations)
        pytest.fail(f"Slack API contract violations:\n  {listed}", pytrace=False)


@pytest.fixture
def fake_slack_socket(fake_slack: FakeSlack) -> Iterator[FakeSocketMode]:
    """A Socket Mode fake attached to `fake_slack`: apps.connections.open returns its ws:// URL."""
    with FakeSocketMode(app_id=fake_slack.app_id) as sock:
        fake_slack.attach_socket(sock)
        yield sock


@pytest.fixture
def slack_client(fake_slack: FakeSlack) -> WebClient:
    """A slack_sdk WebClient with the bot token, talking to `fake_slack`."""
    return WebClient(token=BOT_TOKEN, base_url=fake_slack.url)
