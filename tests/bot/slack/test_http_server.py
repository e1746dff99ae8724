"""End to end over HTTP: the real `copbot` process (uvicorn + Bolt) driven by signed requests, against fake Slack."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.fakes import slack_signing as signing
from tests.fakes.server_process import copbot_server
from tests.fakes.slack_api import BOT_TOKEN, FakeSlack

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(params=[1, 2], ids=["one-process", "two-workers"])
def server(fake_slack: FakeSlack, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    settings = {
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": signing.SIGNING_SECRET,
        "SLACK_API_URL": fake_slack.url,
    }
    with copbot_server(settings, cwd=tmp_path, args=("--workers", str(request.param))) as base:
        yield base


def post(base: str, request: signing.SignedRequest) -> httpx.Response:
    return httpx.post(f"{base}/slack/events", content=request.content, headers=request.headers, timeout=10)


def test_the_real_server_runs_every_foundation_command(server: str, fake_slack: FakeSlack) -> None:
    def command(text: str, user: str = "U0ALICE") -> str:
        before = len(fake_slack.responses)
        request = signing.signed_slash_command(text, user_id=user, response_url=fake_slack.response_url())
        assert post(server, request).status_code == 200
        return str(fake_slack.wait_for_responses(before + 1)[before]["text"])

    assert "Created *Falls prevention*" in command("create Falls prevention | Sharing what works")
    assert "You're now a member" in command("join falls-prevention", user="U0BOB")
    assert "2 members" in command("list")
    assert "Profession: Physiotherapist" in command('profile profession=Physiotherapist organisation="NHS Trust"')
    assert "is now a facilitator" in command("facilitator add <@U0BOB> in:falls-prevention")
    assert "You've left" in command("leave falls-prevention")
    assert "Archive *Falls prevention*?" in command("archive falls-prevention", user="U0BOB")
    assert "Archived *Falls prevention*" in command("archive falls-prevention confirm", user="U0BOB")
    assert "/cop create" in command("help")
    assert fake_slack.calls_to("conversations.archive")


def test_the_real_server_rejects_bad_signatures_and_answers_health(server: str, fake_slack: FakeSlack) -> None:
    bad = signing.signed_slash_command(
        "create Falls", response_url=fake_slack.response_url(), sign_options={"bad_signature": True}
    )
    assert post(server, bad).status_code == 401
    stale = signing.signed_slash_command(
        "create Falls", response_url=fake_slack.response_url(), sign_options={"age_seconds": 600}
    )
    assert post(server, stale).status_code == 401
    assert fake_slack.calls_to("conversations.create") == []
    assert httpx.get(f"{server}/healthz").json() == {"ok": True}
    challenge = signing.signed_event(signing.url_verification("abc123"))
    assert post(server, challenge).json() == {"challenge": "abc123"}
