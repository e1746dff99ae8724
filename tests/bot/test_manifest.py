"""manifest.yaml is a valid Slack app manifest (slackapi/manifest-schema v0.5.0) and declares what copbot needs."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from bot.slack.platform import SlackPlatform, make_client
from handlers.errors import PlatformError
from handlers.ports import Message
from tests.fakes.slack_api import BOT_TOKEN, BOT_USER_ID, FakeSlack
from tests.fakes.slack_manifest import MANIFEST_PATH, declared, errors, load, validator
from tests.reference import reference_path


def test_manifest_is_valid_against_slacks_schema() -> None:
    assert errors(load()) == []


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("settings", "bad_param"), True),  # unknown property, like the schema repo's own invalid example
        (("features", "slash_commands", 0, "command"), "cop"),  # must start with "/"
        (("features", "shortcuts", 0, "name"), "Save this message as a story for later"),  # > 24 characters
    ],
)
def test_a_broken_copy_fails_validation(path: tuple[str | int, ...], value: object) -> None:
    broken = copy.deepcopy(load())
    target: Any = broken
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value

    assert errors(broken) != []


def test_schema_refs_resolve_offline_against_the_published_examples() -> None:
    examples = reference_path("slack-manifest-schema", "examples")
    for version in ("v1", "v2"):
        valid = json.loads((examples / version / "manifest.valid.json").read_text())
        invalid = json.loads((examples / version / "manifest.invalid.json").read_text())
        assert validator().is_valid(valid), version
        assert not validator().is_valid(invalid), version


def test_declared_commands_shortcuts_and_events() -> None:
    found = declared(MANIFEST_PATH)

    assert found.commands == {"/cop"}
    assert found.shortcut_callback_ids == {"save_as_story"}
    assert found.bot_events == {
        "app_home_opened",
        "app_mention",
        "member_joined_channel",
        "member_left_channel",
        "message.channels",
        "message.im",
        "reaction_added",
    }


def test_every_bot_event_has_the_scope_slack_requires_for_it() -> None:
    needs = {
        "app_mention": "app_mentions:read",
        "member_joined_channel": "channels:read",
        "member_left_channel": "channels:read",
        "message.channels": "channels:history",
        "message.groups": "groups:history",
        "message.im": "im:history",
        "message.mpim": "mpim:history",
        "reaction_added": "reactions:read",
    }
    found = declared()

    assert {needs[e] for e in found.bot_events if e in needs} <= found.bot_scopes
    assert "commands" in found.bot_scopes  # slash commands and shortcuts


def test_socket_mode_and_the_one_http_endpoint() -> None:
    manifest = load()
    urls = [
        manifest["features"]["slash_commands"][0]["url"],
        manifest["settings"]["event_subscriptions"]["request_url"],
        manifest["settings"]["interactivity"]["request_url"],
    ]

    assert manifest["settings"]["socket_mode_enabled"] is True
    assert all(url.endswith("/slack/events") for url in urls)
    assert manifest["features"]["app_home"]["home_tab_enabled"] is True
    assert manifest["features"]["app_home"]["messages_tab_enabled"] is True


def test_introductions_open_a_group_dm_so_the_manifest_asks_for_mpim_write(fake_slack: FakeSlack) -> None:
    """The fake grants exactly the manifest's scopes: a group DM opens with them, and is refused without mpim:write."""
    assert "mpim:write" in declared().bot_scopes
    slack = SlackPlatform(make_client(token=BOT_TOKEN, base_url=fake_slack.url))
    intro = Message(text="Meet <@U0ALICE> and <@U0BOB>")

    slack.send_group_dm(user_ids=["U0ALICE", "U0BOB"], message=intro)  # as installed from manifest.yaml
    [group] = [c for c in fake_slack.channels.values() if c.kind == "mpim"]
    assert set(group.members) == {BOT_USER_ID, "U0ALICE", "U0BOB"}

    assert fake_slack.scopes is not None
    fake_slack.scopes.discard("mpim:write")  # a manifest without it
    with pytest.raises(PlatformError):
        slack.send_group_dm(user_ids=["U0ALICE", "U0CAROL"], message=intro)
    [refused] = fake_slack.take_violations()
    assert (refused.method, refused.kind) == ("conversations.open", "missing_scope")
    assert "mpim:write" in refused.detail
    assert len(fake_slack.calls_to("chat.postMessage")) == 1  # only the first group's message
