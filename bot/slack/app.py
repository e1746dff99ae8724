"""The Bolt app: each listener acks, translates the Slack payload into a neutral call, and renders the replies."""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from slack_bolt import App, BoltContext
from slack_bolt.context.respond import Respond
from slack_bolt.error import BoltError
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from sqlalchemy import Engine
from sqlmodel import Session

from bot.slack.platform import platform_error
from bot.slack.render import form_view, home_view, message_payload, view_values
from handlers.app import CopBot
from handlers.ports import Actor, Clock, Invocation, Reply
from handlers.stories import SourceMessage
from storage import repository as repo

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
        # Ack on the request thread at once; the listener itself runs as a lazy listener afterwards (see deferred).
        process_before_response=True,
    )
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


def deferred(register: Callable[..., Any]) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Register a listener to run after the acknowledgement (a Bolt lazy listener): Slack gets its 200 at once,
    the request thread does not wait on the listener, and the work runs on Bolt's executor."""

    def decorate(listener: Callable[..., None]) -> Callable[..., None]:
        register(ack=_ack_at_once, lazy=[listener])
        return listener

    return decorate


def _ack_at_once(ack: Callable[..., None]) -> None:
    ack()


# --- de-duplication ----------------------------------------------------------------------------------------------


def _first_time(deps: SlackDeps, body: dict[str, Any]) -> bool:
    """Claim the event's `event_id`: True once, False for Slack's retries (X-Slack-Retry-Num) or a racing instance.

    It runs in the (lazy) listener, not on the acknowledgement path, so acks never wait on the database."""
    event_id = body.get("event_id")
    if not event_id:
        return True
    with Session(deps.engine) as db:
        first = repo.claim_inbound_event(db=db, key=f"slack:event:{event_id}", now=deps.clock.now())
        db.commit()
    if not first:
        log.info("slack event %s already handled; skipped", event_id)
    return first


def _first_submission(deps: SlackDeps, view: dict[str, Any]) -> bool:
    """Claim one submission of a modal (its id and content hash): a double click saves the form once."""
    view_id, version = view.get("id"), view.get("hash")
    if not view_id:
        return True
    with Session(deps.engine) as db:
        first = repo.claim_inbound_event(db=db, key=f"slack:view:{view_id}:{version}", now=deps.clock.now())
        db.commit()
    return first


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


def deliver(
    replies: list[Reply],
    *,
    client: WebClient,
    user_id: str,
    channel_id: str | None,
    respond: Respond | None = None,
    trigger_id: str | None = None,
) -> None:
    """Render replies: forms as modals, public messages in the channel, private ones ephemeral (or as a DM)."""
    for reply in replies:
        try:
            if reply.form is not None:
                if trigger_id:
                    client.views_open(trigger_id=trigger_id, view=form_view(reply.form))
                continue
            message = reply.message
            if message is None:
                continue
            if reply.visibility == "public" and channel_id:
                client.chat_postMessage(channel=channel_id, **message_payload(message))
            elif respond is not None:
                respond(**message_payload(message), response_type="ephemeral")
            else:
                client.chat_postMessage(channel=user_id, **message_payload(message))
        except SlackClientError as exc:
            # The person gets what Slack allowed; the log gets the method and error code only.
            platform_error("reply", exc)


# --- listeners ---------------------------------------------------------------------------------------------------


def register_commands(app: App, deps: SlackDeps) -> None:
    """`/cop …`: the whole grammar goes to the core."""

    @deferred(app.command(COMMAND))
    def cop(ack: Callable[..., None], body: dict[str, Any], respond: Respond, client: WebClient) -> None:
        ack()
        actor = actor_from(body)
        replies = deps.bot.handle_command(
            Invocation(actor=actor, text=str(body.get("text", "")), channel_id=body.get("channel_id"))
        )
        deliver(
            replies,
            client=client,
            user_id=actor.user_id,
            channel_id=body.get("channel_id"),
            respond=respond,
            trigger_id=body.get("trigger_id"),
        )


def register_interactivity(app: App, deps: SlackDeps) -> None:
    """Buttons, modal submissions and the message shortcut."""

    @deferred(app.action(re.compile(r"^[a-z_]+\.[a-z_.]+$")))
    def button(ack: Callable[..., None], body: dict[str, Any], action: dict[str, Any], client: WebClient) -> None:
        ack()
        actor = actor_from(body)
        channel_id = (body.get("channel") or {}).get("id")
        replies = deps.bot.handle_action(
            actor=actor, action_id=action["action_id"], value=str(action.get("value", "")), channel_id=channel_id
        )
        respond = Respond(response_url=body["response_url"]) if body.get("response_url") else None
        deliver(
            replies,
            client=client,
            user_id=actor.user_id,
            channel_id=channel_id,
            respond=respond,
            trigger_id=body.get("trigger_id"),
        )

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

    def check_then_ack(
        ack: Callable[..., None], body: dict[str, Any], view: dict[str, Any], context: BoltContext
    ) -> None:
        """On the request thread, inside Slack's 3 s: the core's checks (no Web API call). A wrong field keeps the
        modal open with everything typed and the message under that field; only a valid form is acknowledged."""
        errors = problems(body, view, context.bot_user_id)
        if errors:
            ack(response_action="errors", errors=view_errors(view, errors))
        else:
            ack()

    def submitted(body: dict[str, Any], view: dict[str, Any], client: WebClient, context: BoltContext) -> None:
        # Bolt runs this after every acknowledgement, also one that kept the modal open with errors: that one has
        # nothing to save (the person is fixing it), and must not use up the submission's claim below.
        if problems(body, view, context.bot_user_id) or not _first_submission(deps, view):
            return  # still wrong, or a double click on a form already saved once
        actor = actor_from(body)
        replies = deps.bot.handle_submission(
            actor=actor,
            form_id=str(view.get("callback_id", "")),
            values=view_values(view.get("state") or {}),
            context=str(view.get("private_metadata") or ""),
        )
        deliver(replies, client=client, user_id=actor.user_id, channel_id=None)

    app.view(re.compile(r".+"))(ack=check_then_ack, lazy=[submitted])

    @deferred(app.shortcut(SHORTCUT_SAVE_AS_STORY))
    def save_as_story(
        ack: Callable[..., None], body: dict[str, Any], context: dict[str, Any], client: WebClient
    ) -> None:
        ack()
        actor = actor_from(body)
        channel_id = str((body.get("channel") or {}).get("id") or "")
        source = story_source(
            client, channel_id=channel_id, message=body.get("message") or {}, bot_user_id=context.get("bot_user_id")
        )
        replies = deps.bot.story_shortcut(actor=actor, message=source)
        respond = Respond(response_url=body["response_url"]) if body.get("response_url") else None
        deliver(
            replies,
            client=client,
            user_id=actor.user_id,
            channel_id=None,
            respond=respond,
            trigger_id=body.get("trigger_id"),
        )


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
    """Channel membership, the Home tab, mentions, story reactions and prompt replies; each event once."""

    def on_event(name: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
        def decorate(listener: Callable[..., None]) -> Callable[..., None]:
            @functools.wraps(listener)  # Bolt injects arguments by the wrapped listener's parameter names
            def once(**kwargs: Any) -> None:
                if _first_time(deps, kwargs["body"]):
                    listener(**kwargs)

            deferred(app.event(name))(once)
            return listener

        return decorate

    def is_self(event: dict[str, Any], context: dict[str, Any]) -> bool:
        return bool(event.get("user")) and event.get("user") == context.get("bot_user_id")

    @on_event("member_joined_channel")
    def joined(body: dict[str, Any], event: dict[str, Any], context: dict[str, Any], client: WebClient) -> None:
        if is_self(event, context):
            return
        actor = actor_from(body, user_id=event["user"])
        replies = deps.bot.member_joined(actor=actor, channel_id=str(event["channel"]))
        deliver(replies, client=client, user_id=actor.user_id, channel_id=None)

    @on_event("member_left_channel")
    def left(body: dict[str, Any], event: dict[str, Any], context: dict[str, Any]) -> None:
        if is_self(event, context):
            return
        deps.bot.member_left(actor=actor_from(body, user_id=event["user"]), channel_id=str(event["channel"]))

    @on_event("app_home_opened")
    def home(body: dict[str, Any], event: dict[str, Any], client: WebClient) -> None:
        if event.get("tab", "home") != "home":
            return
        actor = actor_from(body, user_id=event["user"])
        for reply in deps.bot.home(actor=actor):
            if reply.message is not None:
                try:
                    client.views_publish(user_id=actor.user_id, view=home_view(reply.message))
                except SlackClientError as exc:
                    platform_error("views.publish", exc)

    @on_event("app_mention")
    def mentioned(body: dict[str, Any], event: dict[str, Any], client: WebClient) -> None:
        actor = actor_from(body, user_id=event.get("user"))
        replies = deps.bot.handle_command(Invocation(actor=actor, text="help", channel_id=event.get("channel")))
        for reply in replies:
            if reply.message is not None:
                try:
                    client.chat_postEphemeral(
                        channel=event["channel"],
                        user=actor.user_id,
                        **message_payload(reply.message),
                    )
                except SlackClientError as exc:
                    platform_error("chat.postEphemeral", exc)

    @on_event("reaction_added")
    def reacted(body: dict[str, Any], event: dict[str, Any], context: dict[str, Any], client: WebClient) -> None:
        item = event.get("item") or {}
        emoji = str(event.get("reaction") or "")
        if item.get("type") != "message" or is_self(event, context):
            return
        if emoji.split("::")[0] != deps.bot.config.story_emoji:
            return  # any other reaction is none of copbot's business (and costs no API call)
        actor = actor_from(body, user_id=event.get("user"))
        channel_id, ts = str(item.get("channel") or ""), str(item.get("ts") or "")
        try:
            found = fetch_message(client, channel_id=channel_id, ts=ts)
        except SlackClientError as exc:
            error = platform_error("conversations.history", exc)
            deliver([Reply.private(error.user_text())], client=client, user_id=actor.user_id, channel_id=None)
            return
        if found is None:
            text = "I couldn't find the message you reacted to; it may have been deleted."
            deliver([Reply.private(text)], client=client, user_id=actor.user_id, channel_id=None)
            return
        source = story_source(
            client,
            channel_id=channel_id,
            message=found,
            bot_user_id=context.get("bot_user_id"),
            item_user=str(event.get("item_user") or ""),
        )
        replies = deps.bot.story_reaction(actor=actor, message=source, emoji=emoji)
        deliver(replies, client=client, user_id=actor.user_id, channel_id=None)

    @on_event("message")
    def message(body: dict[str, Any], event: dict[str, Any], client: WebClient) -> None:
        # Replies to prompts (in the prompt's thread, or in the DM) become reflections. Text is never logged.
        if event.get("bot_id") or event.get("subtype") not in (None, "thread_broadcast") or not event.get("user"):
            return
        thread = event.get("thread_ts")
        is_dm = event.get("channel_type") == "im"
        if not is_dm and (not thread or thread == event.get("ts")):
            return  # an ordinary channel message: not copbot's business
        actor = actor_from(body, user_id=str(event["user"]))
        replies = deps.bot.handle_message(
            actor=actor, channel_id=str(event.get("channel", "")), message_id=str(event.get("ts", "")),
            thread_id=str(thread) if thread else None, text=str(event.get("text") or ""), is_dm=is_dm,
        )  # fmt: skip
        deliver(replies, client=client, user_id=actor.user_id, channel_id=None)
