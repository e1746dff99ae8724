"""The Bolt app: each listener checks what must be checked at once, writes the request to the inbox, and acks.

The work itself (the core, the Web API calls, the replies) runs in an inbox worker: bot/slack/inbox.py."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from slack_bolt import App, BoltContext, BoltResponse
from slack_bolt.error import BoltError
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from sqlalchemy import Engine

from bot.slack import inbox
from bot.slack.render import view_values
from handlers.app import CopBot
from handlers.ports import Actor, Clock
from handlers.stories import SourceMessage

log = logging.getLogger(__name__)

BOLT_LOGGER = "slack_bolt.copbot"
COMMAND = "/cop"
SHORTCUT_SAVE_AS_STORY = "save_as_story"
EVENTS = (
    "member_joined_channel",
    "member_left_channel",
    "reaction_added",
    "message",
    "app_home_opened",
    "app_mention",
)


@dataclass(frozen=True)
class SlackDeps:
    """What the listeners need, built once by the composition root."""

    bot: CopBot
    engine: Engine
    clock: Clock


def build_app(
    *, deps: SlackDeps, client: WebClient, signing_secret: str | None, token_verification: bool = True
) -> App:
    """A Bolt app with every listener registered; HTTP mode verifies signatures, Socket Mode needs no secret."""
    app = App(
        # Bolt's loggers copy the root level unless given a base logger; under `slack_bolt` they stay held at
        # WARNING by the entry point's logging set-up (bot/logging_setup.py), whose scrubber withholds bodies.
        name=BOLT_LOGGER,
        logger=logging.getLogger(BOLT_LOGGER),
        client=client,
        signing_secret=signing_secret or "",
        request_verification_enabled=bool(signing_secret),
        token_verification_enabled=token_verification,
        raise_error_for_unhandled_request=False,
        # The listener writes the request down (bot/slack/inbox.py) before Bolt answers Slack; workers run it.
        process_before_response=True,
    )
    app.error(_database_down)
    register_commands(app, deps)
    register_interactivity(app, deps)
    register_events(app, deps)
    return app


class SlackUnavailable(RuntimeError):
    """At start-up Slack refused the bot token, or its Web API could not be reached: a clear message, no traceback."""


def start_app(*, deps: SlackDeps, client: WebClient, signing_secret: str | None) -> App:
    """`build_app`, whose first call to Slack (Bolt's `auth.test`) turns failures into `SlackUnavailable`."""
    try:
        return build_app(deps=deps, client=client, signing_secret=signing_secret)
    except (BoltError, SlackApiError) as exc:
        refused = exc if isinstance(exc, SlackApiError) else exc.__context__  # Bolt wraps auth.test's error
        if not isinstance(refused, SlackApiError):
            raise
        code = refused.response.get("error", "unknown")
        raise SlackUnavailable(f"Slack rejected the bot token ({code}): check SLACK_BOT_TOKEN") from exc
    except (SlackClientError, OSError) as exc:
        reason = getattr(exc, "reason", None) or type(exc).__name__
        raise SlackUnavailable(
            f"cannot reach Slack's Web API at {client.base_url} ({reason}): check SLACK_API_URL and the network"
        ) from exc


def _database_down(error: Exception, logger: logging.Logger) -> BoltResponse:
    """A listener could not write its request down (the database is unavailable): answer 503, so Slack retries an
    event and the person sees that the command failed, rather than an acknowledgement of something lost."""
    logger.warning("a Slack request was not stored (%s); answered 503", type(error).__name__)
    return BoltResponse(status=503, body="")


def view_errors(view: dict[str, Any], errors: dict[str, str]) -> dict[str, str]:
    """`response_action: errors` keyed by the modal's block ids (a form field's name is its block id). A problem
    with something the modal has no block for is shown under its first input, so Slack never rejects the answer."""
    blocks = [str(b.get("block_id")) for b in view.get("blocks") or [] if b.get("type") == "input"]
    shown: dict[str, str] = {}
    for field, message in errors.items():
        text = message.replace("*", "")[:ERROR_LIMIT]
        if field in blocks:
            shown[field] = text
        elif blocks:
            shown[blocks[0]] = (shown.get(blocks[0], "") + " " + text).strip()[:ERROR_LIMIT]
    return shown


ERROR_LIMIT = 150  # keep each message short enough to read under its field


# --- delivery of neutral replies ---------------------------------------------------------------------------------


INTERACTIVE = frozenset(
    {
        "block_actions",
        "block_suggestion",
        "view_submission",
        "view_closed",
        "shortcut",
        "message_action",
        "interactive_message",
        "dialog_submission",
        "dialog_cancellation",
        "dialog_suggestion",
    }
)
"""Interactivity payload types: the person is the payload's `user` object, the workspace its `team`."""


def actor_from(body: dict[str, Any], user_id: str | None = None) -> Actor:
    """The neutral actor behind a Slack payload, read only from the fields Slack documents for its kind.

    Interactivity payloads name the person in `user.id` and the workspace in `team.id` (`user.team_id` when an
    org-wide install sends `team: null`); a top-level `user_id` or `team_id` there is not Slack's, so it is never
    read. Events name the person inside the event (the caller passes it as `user_id`) and the workspace in the
    envelope's `team_id`; slash commands send flat `user_id`, `team_id` and `user_name` fields.
    """
    kind = body.get("type")
    if kind in INTERACTIVE:
        user = _mapping(body.get("user"))
        team = _mapping(body.get("team"))
        uid = user.get("id")
        team_id = team.get("id") or user.get("team_id")
        name = user.get("username") or user.get("name")
    elif kind == "event_callback":
        uid, team_id, name = user_id, body.get("team_id"), None
    else:  # a slash command: form fields, no `type`
        uid, team_id, name = body.get("user_id"), body.get("team_id"), body.get("user_name")
    return Actor(
        platform="slack", workspace_id=str(team_id or ""), user_id=str(uid or ""), display_name=str(name or "")
    )


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


# --- listeners ---------------------------------------------------------------------------------------------------


def _enqueue(deps: SlackDeps, kind: str, body: dict[str, Any], actor: Actor, **extra: Any) -> None:
    inbox.enqueue(engine=deps.engine, clock=deps.clock, kind=kind, body=body, actor=actor, extra=extra)


def register_commands(app: App, deps: SlackDeps) -> None:
    """`/cop …`: written down, then acknowledged; a worker runs the grammar (bot/slack/inbox.py)."""

    @app.command(COMMAND)
    def cop(ack: Callable[..., None], body: dict[str, Any]) -> None:
        _enqueue(deps, "slack.command", body, actor_from(body))
        ack()


def register_interactivity(app: App, deps: SlackDeps) -> None:
    """Buttons, modal submissions and the message shortcut."""

    @app.action(re.compile(r"^[a-z_]+\.[a-z_.]+$"))
    def button(ack: Callable[..., None], body: dict[str, Any]) -> None:
        _enqueue(deps, "slack.action", body, actor_from(body))
        ack()

    def problems(body: dict[str, Any], view: dict[str, Any], bot_user_id: str | None = None) -> dict[str, str]:
        values = view_values(view.get("state") or {})
        errors = deps.bot.validate_submission(
            actor=actor_from(body),
            form_id=str(view.get("callback_id", "")),
            values=values,
            context=str(view.get("private_metadata") or ""),
        )
        for field, value in values.items():  # Slack's people picker offers copbot too
            if bot_user_id and f"<@{bot_user_id}>" in value.split():
                errors.setdefault(field, "That's copbot itself; choose the colleagues you want to thank.")
        return errors

    @app.view(re.compile(r".+"))
    def submitted(ack: Callable[..., None], body: dict[str, Any], view: dict[str, Any], context: BoltContext) -> None:
        """On the request thread, inside Slack's 3 s: the core's checks (no Web API call). A wrong field keeps the
        modal open with everything typed and the message under that field, and nothing is stored; a valid form is
        written down (once, however often Save is clicked), then acknowledged."""
        errors = problems(body, view, context.bot_user_id)
        if errors:
            ack(response_action="errors", errors=view_errors(view, errors))
            return
        _enqueue(deps, "slack.view", body, actor_from(body))
        ack()

    @app.shortcut(SHORTCUT_SAVE_AS_STORY)
    def save_as_story(ack: Callable[..., None], body: dict[str, Any], context: BoltContext) -> None:
        _enqueue(deps, "slack.shortcut", body, actor_from(body), bot_user_id=context.bot_user_id)
        ack()


def fetch_message(client: WebClient, *, channel_id: str, ts: str) -> dict[str, Any] | None:
    """One message by channel and ts: from the channel's history, else from the thread it is a reply in."""
    history = client.conversations_history(channel=channel_id, latest=ts, inclusive=True, limit=1)
    for found in history.get("messages") or []:
        if found.get("ts") == ts:
            return dict(found)
    thread = client.conversations_replies(channel=channel_id, ts=ts, latest=ts, inclusive=True, limit=200)
    return next((dict(m) for m in thread.get("messages") or [] if m.get("ts") == ts), None)


def story_source(
    client: WebClient, *, channel_id: str, message: dict[str, Any], bot_user_id: str | None, item_user: str = ""
) -> SourceMessage:
    """The neutral SourceMessage for a Slack message (Slack's &lt; &gt; &amp; escapes undone; link fetched)."""
    ts = str(message.get("ts") or "")
    link: str | None = None
    try:
        link = str(client.chat_getPermalink(channel=channel_id, message_ts=ts)["permalink"])
    except (SlackClientError, KeyError) as exc:
        log.info("no permalink for a captured message: %s", type(exc).__name__)
    user = str(message.get("user") or item_user or "")
    text = str(message.get("text") or "").replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    from_bot = bool(message.get("bot_id")) or message.get("subtype") == "bot_message" or user == bot_user_id
    return SourceMessage(
        channel_id=channel_id, message_id=ts, author_user_id=user or None, text=text, link=link, from_bot=from_bot
    )


def register_events(app: App, deps: SlackDeps) -> None:
    """Channel membership, the Home tab, mentions, story reactions and prompt replies: each written down once (by
    its `event_id`), then acknowledged. Only what copbot acts on is stored: the checks below read the payload alone,
    so a channel's ordinary messages and other reactions are acknowledged and forgotten, their text never kept."""

    def is_self(event: dict[str, Any], context: BoltContext) -> bool:
        return bool(event.get("user")) and event.get("user") == context.bot_user_id

    def wanted(event: dict[str, Any], context: BoltContext) -> bool:
        name = event.get("type")
        if name in ("member_joined_channel", "member_left_channel"):
            return not is_self(event, context)
        if name == "app_home_opened":
            return bool(event.get("tab", "home") == "home")
        if name == "reaction_added":
            item = event.get("item") or {}
            emoji = str(event.get("reaction") or "")
            return (
                item.get("type") == "message"
                and not is_self(event, context)
                and emoji.split("::")[0] == deps.bot.config.story_emoji
            )
        if name == "message":  # replies to prompts: in the prompt's thread, or in the DM
            if event.get("bot_id") or event.get("subtype") not in (None, "thread_broadcast") or not event.get("user"):
                return False
            thread = event.get("thread_ts")
            return event.get("channel_type") == "im" or bool(thread and thread != event.get("ts"))
        return name == "app_mention"

    def listener(ack: Callable[..., None], body: dict[str, Any], event: dict[str, Any], context: BoltContext) -> None:
        if wanted(event, context):
            actor = actor_from(body, user_id=str(event.get("user") or ""))
            _enqueue(deps, "slack.event", body, actor, bot_user_id=context.bot_user_id)
        ack()

    for name in EVENTS:
        app.event(name)(listener)
