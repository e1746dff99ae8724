"""Slack's side of the inbox: what a listener writes down before it acknowledges, and how a worker runs it.

On the request thread (`enqueue`, called by the Bolt listeners in bot/slack/app.py) nothing but a payload check and
one committed INSERT: the body Slack sent, keyed by Slack's own id for it, so a retry is stored once. In a worker
(`SlackKinds`) the rest: the Web API reads a capture needs, the core, and the replies, rendered into steps:

| step        | sent with                              | when it cannot be                                        |
|-------------|----------------------------------------|----------------------------------------------------------|
| `modal`     | views.open (the request's trigger_id)  | the trigger expired (3 s): an "Open the form" button     |
| `respond`   | the request's response_url (ephemeral) | older than 30 minutes, or refused: a DM instead          |
| `post`      | chat.postMessage in the channel        | logged by error code, skipped                            |
| `dm`        | chat.postMessage to the person         | logged by error code, skipped                            |
| `ephemeral` | chat.postEphemeral                     | logged by error code, skipped                            |
| `publish`   | views.publish (the App Home)           | logged by error code, skipped                            |

A transient failure (a network error, Slack's 5xx, a 429 not waited out) raises, so the row is retried; the steps
already delivered are not repeated (bot/worker.py).
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from dataclasses import dataclass
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.webhook import WebhookClient
from sqlalchemy import Engine
from sqlmodel import Session

from bot.slack.platform import platform_error
from bot.slack.render import form_view, home_view, message_payload
from bot.worker import SORRY_PARKED, Run, Step, StepFailed
from handlers.app import CopBot, reopen_button
from handlers.ports import Actor, Clock, Invocation, Message, Reply
from storage import inbox

log = logging.getLogger(__name__)

PLATFORM = "slack"
RESPONSE_URL_LIFETIME = dt.timedelta(minutes=30)
RESPONSE_URL_MARGIN = dt.timedelta(minutes=1)  # a response_url this close to expiry is not trusted: DM instead
TRANSIENT = frozenset(
    {"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout", "team_added_to_org"}
)
FORM_TOO_SLOW = "Slack gave me only three seconds to open your form and I was too slow. Press the button to open it."

KINDS = ("slack.command", "slack.action", "slack.view", "slack.shortcut", "slack.event")


# --- the request thread ------------------------------------------------------------------------------------------


def dedupe_key(kind: str, body: dict[str, Any]) -> str:
    """Slack's own id for a request, so a retry (or a double click) is stored once.

    Events carry `event_id` (the same on every retry); a modal submission its view's id and content hash (a double
    click on Save sends the same); commands, buttons and shortcuts a `trigger_id` unique to the click."""
    if kind == "slack.event" and body.get("event_id"):
        return f"slack:event:{body['event_id']}"
    if kind == "slack.view":
        view = body.get("view") or {}
        if view.get("id"):
            return f"slack:view:{view['id']}:{view.get('hash')}"
    if body.get("trigger_id"):
        return f"{kind}:{body['trigger_id']}"
    return f"{kind}:{uuid.uuid4().hex}"  # nothing to match a retry by: store it (Slack does not retry these)


def enqueue(
    *, engine: Engine, clock: Clock, kind: str, body: dict[str, Any], actor: Actor, extra: dict[str, Any]
) -> bool:
    """Write one request down (in the inbox: `storage.inbox.open_queue(engine)`), committed; False when it was there
    already (a retry). Raises when the database cannot take it: the listener then answers 503 and Slack retries, so
    nothing is acknowledged unwritten."""
    with Session(inbox.open_queue(engine)) as db:
        stored = inbox.put(
            db=db,
            dedupe_key=dedupe_key(kind, body),
            kind=kind,
            platform=PLATFORM,
            workspace_id=actor.workspace_id,
            order_key=f"slack:{actor.workspace_id}:{actor.user_id}",
            payload={"body": body, **extra},
            now=clock.now(),
        )
        db.commit()
    return stored


# --- the worker --------------------------------------------------------------------------------------------------


def plan(
    replies: list[Reply],
    *,
    user_id: str,
    channel_id: str | None,
    response_url: str | None = None,
    trigger_id: str | None = None,
) -> list[Step]:
    """The steps that show `replies` to the person: forms as modals, public messages in the channel, private ones
    ephemeral through the response_url (or as a DM when there is none)."""
    steps: list[Step] = []
    for reply in replies:
        if reply.form is not None:
            if trigger_id:
                fallback = Message(text=FORM_TOO_SLOW, buttons=(reopen_button(reply.form),))
                steps.append(
                    {"op": "modal", "trigger_id": trigger_id, "view": form_view(reply.form), "user": user_id,
                     "response_url": response_url, "fallback": message_payload(fallback)}
                )  # fmt: skip
            continue
        message = reply.message
        if message is None:
            continue
        payload = message_payload(message)
        if reply.visibility == "public" and channel_id:
            steps.append({"op": "post", "channel": channel_id, "message": payload})
        elif response_url:
            steps.append({"op": "respond", "response_url": response_url, "user": user_id, "message": payload})
        else:
            steps.append({"op": "dm", "user": user_id, "message": payload})
    return steps


@dataclass
class SlackKinds:
    """Runs Slack's inbox rows (every kind in KINDS) with `core`, and delivers their steps with `client`."""

    core: CopBot
    client: WebClient
    story_emoji: str

    def kinds(self) -> dict[str, SlackKinds]:
        return dict.fromkeys(KINDS, self)

    # -- running

    def run(self, run: Run) -> None:
        from bot.slack import app as slack_app

        body = _dict(run.payload.get("body"))
        kind = run.item.kind
        if kind == "slack.event":
            self._event(run, body)
            return
        actor = slack_app.actor_from(body)
        channel_id = body.get("channel_id") if kind == "slack.command" else _dict(body.get("channel")).get("id")
        response_url = _str(body.get("response_url"))
        trigger_id = _str(body.get("trigger_id"))

        def render(replies: list[Reply]) -> list[Step]:
            return plan(
                replies, user_id=actor.user_id, channel_id=_str(channel_id) if kind != "slack.view" else None,
                response_url=response_url, trigger_id=trigger_id,
            )  # fmt: skip

        bot = run.bot(self.core, render)
        if kind == "slack.command":
            bot.handle_command(Invocation(actor=actor, text=str(body.get("text", "")), channel_id=_str(channel_id)))
        elif kind == "slack.action":
            action = _dict((body.get("actions") or [{}])[0])
            bot.handle_action(
                actor=actor,
                action_id=str(action.get("action_id", "")),
                value=str(action.get("value", "")),
                channel_id=_str(channel_id),
            )
        elif kind == "slack.view":
            from bot.slack.render import view_values

            view = _dict(body.get("view"))
            bot.handle_submission(
                actor=actor,
                form_id=str(view.get("callback_id", "")),
                values=view_values(view.get("state") or {}),
                context=str(view.get("private_metadata") or ""),
            )
        elif kind == "slack.shortcut":
            source = slack_app.story_source(
                self.client,
                channel_id=str(channel_id or ""),
                message=_dict(body.get("message")),
                bot_user_id=_str(run.payload.get("bot_user_id")),
            )
            bot.story_shortcut(actor=actor, message=source)

    def _event(self, run: Run, body: dict[str, Any]) -> None:
        from bot.slack import app as slack_app

        event = _dict(body.get("event"))
        name = event.get("type")
        actor = slack_app.actor_from(body, user_id=_str(event.get("user")))

        def private(replies: list[Reply]) -> list[Step]:
            return plan(replies, user_id=actor.user_id, channel_id=None)

        bot = run.bot(self.core, private)
        channel = str(event.get("channel") or "")
        if name == "member_joined_channel":
            bot.member_joined(actor=actor, channel_id=channel)
        elif name == "member_left_channel":
            bot.member_left(actor=actor, channel_id=channel)
        elif name == "app_home_opened":
            home = run.bot(self.core, lambda replies: _home_steps(replies, actor.user_id))
            home.home(actor=actor)
        elif name == "app_mention":
            mention = run.bot(self.core, lambda replies: _ephemeral_steps(replies, channel, actor.user_id))
            mention.handle_command(Invocation(actor=actor, text="help", channel_id=channel))
        elif name == "reaction_added":
            self._reaction(run, bot, body, event, actor)
        elif name == "message":
            thread = event.get("thread_ts")
            bot.handle_message(
                actor=actor, channel_id=channel, message_id=str(event.get("ts", "")),
                thread_id=str(thread) if thread else None, text=str(event.get("text") or ""),
                is_dm=event.get("channel_type") == "im",
            )  # fmt: skip

    def _reaction(self, run: Run, bot: CopBot, body: dict[str, Any], event: dict[str, Any], actor: Actor) -> None:
        from bot.slack import app as slack_app

        item = _dict(event.get("item"))
        channel_id, ts = str(item.get("channel") or ""), str(item.get("ts") or "")
        try:
            found = slack_app.fetch_message(self.client, channel_id=channel_id, ts=ts)
        except SlackApiError as exc:
            if _transient(exc):
                raise
            error = platform_error("conversations.history", exc)
            run.record(plan([Reply.private(error.user_text())], user_id=actor.user_id, channel_id=None))
            return
        if found is None:
            text = "I couldn't find the message you reacted to; it may have been deleted."
            run.record(plan([Reply.private(text)], user_id=actor.user_id, channel_id=None))
            return
        source = slack_app.story_source(
            self.client,
            channel_id=channel_id,
            message=found,
            bot_user_id=_str(run.payload.get("bot_user_id")),
            item_user=str(event.get("item_user") or ""),
        )
        bot.story_reaction(actor=actor, message=source, emoji=str(event.get("reaction") or ""))

    # -- delivering

    def deliver(self, step: Step, run: Run) -> None:
        op = step.get("op")
        try:
            if op == "modal":
                self._modal(step, run)
            elif op == "respond":
                self._respond(step, run)
            elif op == "post":
                self.client.chat_postMessage(channel=step["channel"], **step["message"])
            elif op == "dm":
                self.client.chat_postMessage(channel=step["user"], **step["message"])
            elif op == "ephemeral":
                self.client.chat_postEphemeral(channel=step["channel"], user=step["user"], **step["message"])
            elif op == "publish":
                self.client.views_publish(user_id=step["user"], view=step["view"])
            else:
                raise StepFailed(f"unknown step {str(op)[:20]!r}")
        except SlackApiError as exc:
            if _transient(exc):
                raise
            platform_error(str(op), exc)
            raise StepFailed(str(exc.response.get("error", "unknown"))) from exc

    def _modal(self, step: Step, run: Run) -> None:
        try:
            self.client.views_open(trigger_id=step["trigger_id"], view=step["view"])
        except SlackApiError as exc:
            if exc.response.get("error") not in ("expired_trigger_id", "invalid_trigger_id", "exchanged_trigger_id"):
                raise
            log.info("a form's trigger expired before a worker reached it; offered a button instead")
            fallback = {"op": "respond", "response_url": step.get("response_url"), "user": step["user"],
                        "message": step["fallback"]}  # fmt: skip
            self._respond(fallback, run)

    def _respond(self, step: Step, run: Run) -> None:
        """Ephemeral through the response_url while it is valid, else (or when Slack refuses it) a DM."""
        url = _str(step.get("response_url"))
        if url and run.age < RESPONSE_URL_LIFETIME - RESPONSE_URL_MARGIN:
            response = WebhookClient(url, timeout=10).send(**step["message"], response_type="ephemeral")
            if 200 <= response.status_code < 300:
                return
            if response.status_code >= 500 or response.status_code == 429:
                raise SlackClientError(f"response_url answered {response.status_code}")
            log.info("response_url refused (%d); sent as a DM instead", response.status_code)
        self.client.chat_postMessage(channel=step["user"], **step["message"])

    def apologise(self, run: Run) -> None:
        from bot.slack import app as slack_app

        body = _dict(run.payload.get("body"))
        event = _dict(body.get("event"))
        actor = slack_app.actor_from(body, user_id=_str(event.get("user")))
        if not actor.user_id:
            return
        step = {"op": "respond", "response_url": _str(body.get("response_url")), "user": actor.user_id,
                "message": message_payload(Message(text=SORRY_PARKED))}  # fmt: skip
        self._respond(step, run)


def _home_steps(replies: list[Reply], user_id: str) -> list[Step]:
    return [{"op": "publish", "user": user_id, "view": home_view(r.message)} for r in replies if r.message is not None]


def _ephemeral_steps(replies: list[Reply], channel_id: str, user_id: str) -> list[Step]:
    return [
        {"op": "ephemeral", "channel": channel_id, "user": user_id, "message": message_payload(r.message)}
        for r in replies
        if r.message is not None
    ]


def _transient(exc: SlackApiError) -> bool:
    status = getattr(exc.response, "status_code", 200)
    return status >= 500 or status == 429 or exc.response.get("error") in TRANSIENT


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _str(value: Any) -> str | None:
    return str(value) if isinstance(value, str | int) and str(value) else None
