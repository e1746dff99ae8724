"""The Bolt app: each listener acks, translates the Slack payload into a neutral call, and renders the replies."""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from slack_bolt import App, BoltResponse
from slack_bolt.context.respond import Respond
from slack_sdk import WebClient
from slack_sdk.errors import SlackClientError
from sqlalchemy import Engine
from sqlmodel import Session

from bot.slack.platform import platform_error
from bot.slack.render import form_view, message_blocks, view_values
from handlers.app import CopBot
from handlers.ports import Actor, Clock, Invocation, Message, Reply
from storage import repository as repo

log = logging.getLogger(__name__)

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
        client=client,
        signing_secret=signing_secret or "",
        request_verification_enabled=bool(signing_secret),
        token_verification_enabled=token_verification,
        raise_error_for_unhandled_request=False,
    )
    app.middleware(_deduplicate(deps))
    register_commands(app, deps)
    register_interactivity(app, deps)
    register_events(app, deps)
    return app


# --- de-duplication ----------------------------------------------------------------------------------------------


def _deduplicate(deps: SlackDeps) -> Callable[..., Any]:
    """Events are handled once per `event_id`, however often Slack retries (X-Slack-Retry-Num) or instances race."""

    def middleware(body: dict[str, Any], next: Callable[[], BoltResponse], req: Any) -> BoltResponse | None:
        event_id = body.get("event_id") if body.get("type") == "event_callback" else None
        if event_id:
            with Session(deps.engine) as db:
                first = repo.claim_inbound_event(db=db, key=f"slack:event:{event_id}", now=deps.clock.now())
                db.commit()
            if not first:
                retry = req.headers.get("x-slack-retry-num", ["0"])[0] if req is not None else "0"
                log.info("slack event %s already handled (retry %s); skipped", event_id, retry)
                return BoltResponse(status=200, body="")
        return next()

    return middleware


# --- delivery of neutral replies ---------------------------------------------------------------------------------


def actor_from(body: dict[str, Any], user_id: str | None = None) -> Actor:
    """The neutral actor behind a Slack payload (slash command, interaction or event)."""
    user = body.get("user") if isinstance(body.get("user"), dict) else {}
    team = body.get("team") if isinstance(body.get("team"), dict) else {}
    team_id = body.get("team_id") or (team or {}).get("id") or (user or {}).get("team_id") or ""
    uid = user_id or body.get("user_id") or (user or {}).get("id") or ""
    name = body.get("user_name") or (user or {}).get("username") or (user or {}).get("name") or ""
    return Actor(platform="slack", workspace_id=str(team_id), user_id=str(uid), display_name=str(name))


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
                client.chat_postMessage(channel=channel_id, text=message.text, blocks=message_blocks(message))
            elif respond is not None:
                respond(text=message.text, blocks=message_blocks(message), response_type="ephemeral")
            else:
                client.chat_postMessage(channel=user_id, text=message.text, blocks=message_blocks(message))
        except SlackClientError as exc:
            # The person gets what Slack allowed; the log gets the method and error code only.
            platform_error("reply", exc)


# --- listeners ---------------------------------------------------------------------------------------------------


def register_commands(app: App, deps: SlackDeps) -> None:
    """`/cop …`: the whole grammar goes to the core."""

    @app.command(COMMAND)
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

    @app.action(re.compile(r"^[a-z_]+\.[a-z_.]+$"))
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

    @app.view(re.compile(r".+"))
    def submitted(ack: Callable[..., None], body: dict[str, Any], view: dict[str, Any], client: WebClient) -> None:
        ack()
        actor = actor_from(body)
        replies = deps.bot.handle_submission(
            actor=actor,
            form_id=str(view.get("callback_id", "")),
            values=view_values(view.get("state") or {}),
            context=str(view.get("private_metadata") or ""),
        )
        deliver(replies, client=client, user_id=actor.user_id, channel_id=None)

    @app.shortcut(SHORTCUT_SAVE_AS_STORY)
    def save_as_story(ack: Callable[..., None], body: dict[str, Any], client: WebClient) -> None:
        ack()
        notice = Message(text="Saving a message as a story isn't available in this version of copbot yet.")
        view = {
            "type": "modal",
            "title": {"type": "plain_text", "text": "Save as a story"},
            "close": {"type": "plain_text", "text": "Close"},
            "blocks": message_blocks(notice),
        }
        try:
            client.views_open(trigger_id=body["trigger_id"], view=view)
        except SlackClientError as exc:
            platform_error("views.open", exc)


def register_events(app: App, deps: SlackDeps) -> None:
    """Channel membership, the Home tab and mentions; reactions and messages are acknowledged."""

    def is_self(event: dict[str, Any], context: dict[str, Any]) -> bool:
        return bool(event.get("user")) and event.get("user") == context.get("bot_user_id")

    @app.event("member_joined_channel")
    def joined(body: dict[str, Any], event: dict[str, Any], context: dict[str, Any], client: WebClient) -> None:
        if is_self(event, context):
            return
        actor = actor_from(body, user_id=event["user"])
        replies = deps.bot.member_joined(actor=actor, channel_id=str(event["channel"]))
        deliver(replies, client=client, user_id=actor.user_id, channel_id=None)

    @app.event("member_left_channel")
    def left(body: dict[str, Any], event: dict[str, Any], context: dict[str, Any]) -> None:
        if is_self(event, context):
            return
        deps.bot.member_left(actor=actor_from(body, user_id=event["user"]), channel_id=str(event["channel"]))

    @app.event("app_home_opened")
    def home(body: dict[str, Any], event: dict[str, Any], client: WebClient) -> None:
        if event.get("tab", "home") != "home":
            return
        actor = actor_from(body, user_id=event["user"])
        for reply in deps.bot.home(actor=actor):
            if reply.message is not None:
                try:
                    client.views_publish(
                        user_id=actor.user_id, view={"type": "home", "blocks": message_blocks(reply.message)}
                    )
                except SlackClientError as exc:
                    platform_error("views.publish", exc)

    @app.event("app_mention")
    def mentioned(body: dict[str, Any], event: dict[str, Any], client: WebClient) -> None:
        actor = actor_from(body, user_id=event.get("user"))
        replies = deps.bot.handle_command(Invocation(actor=actor, text="help", channel_id=event.get("channel")))
        for reply in replies:
            if reply.message is not None:
                try:
                    client.chat_postEphemeral(
                        channel=event["channel"],
                        user=actor.user_id,
                        text=reply.message.text,
                        blocks=message_blocks(reply.message),
                    )
                except SlackClientError as exc:
                    platform_error("chat.postEphemeral", exc)

    @app.event("reaction_added")
    def reacted(event: dict[str, Any]) -> None:
        # Story capture from reactions arrives with the stories feature; nothing is stored yet.
        log.debug("reaction %s noted", event.get("reaction"))

    @app.event("message")
    def message(event: dict[str, Any]) -> None:
        # Reflections (replies to prompts) arrive with the rhythm feature; message text is never logged.
        log.debug("message event (%s) noted", event.get("subtype") or "plain")


def cleanup_inbound_events(*, engine: Engine, clock: Clock) -> int:
    """Forget de-duplication keys older than a day (Slack stops retrying long before)."""
    with Session(engine) as db:
        removed = repo.forget_inbound_events(db=db, before=clock.now() - dt.timedelta(days=1))
        db.commit()
    return removed
