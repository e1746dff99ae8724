"""The core's front door: each platform adapter hands it neutral invocations and renders what comes back."""

from __future__ import annotations

import copy
import dataclasses
import logging
import re
from collections.abc import Callable, Mapping
from typing import Literal

from sqlalchemy import Engine
from sqlmodel import Session

from handlers import commands, communities, introductions, reflections, stories
from handlers.context import Context, CoreConfig, row_id
from handlers.errors import DomainError, FieldErrors, UsageError
from handlers.grammar import parse
from handlers.ports import Actor, Button, ChatPlatform, Clock, Form, Invocation, Reply
from storage import repository as repo
from storage.models import Community

log = logging.getLogger(__name__)

SORRY = "Sorry, something went wrong on my side and nothing was changed. It has been logged; please try again."


Outcome = Literal["ok", "refused", "failed"]

Record = Callable[[Session, list[Reply]], None]
"""Stores a unit's replies in the unit's own transaction, before it commits (see `CopBot.for_request`)."""
Replay = Callable[[], list[Reply] | None]
"""Called as a unit begins: None to run it, or the stand-in answer of a unit an earlier attempt already ran."""


class CopBot:
    """Runs commands, button actions and form submissions, one database transaction each.

    `observe`, when given, is told each unit's outcome: "ok", "refused" (a domain error the person was told about)
    or "failed" (an unexpected error). The read-only checks a form makes before it is stored are told only when they
    fail, so a form submitted once counts once. The entry point decides what it counts with (bot/metrics.py).
    """

    def __init__(
        self,
        *,
        engine: Engine,
        platform: ChatPlatform,
        clock: Clock,
        config: CoreConfig,
        observe: Callable[[Outcome], None] | None = None,
    ) -> None:
        self.engine = engine
        self.platform = platform
        self.clock = clock
        self.config = config
        self.observe = observe
        self._record: Record | None = None
        self._replay: Replay | None = None

    def for_request(self, *, platform: ChatPlatform, record: Record, replay: Replay | None = None) -> CopBot:
        """This core, for one durable request (an inbox row): platform calls go through `platform` (a journal that
        makes each call once however often the row is retried), `record` stores each unit's replies in the unit's
        transaction, so the unit's writes and its replies commit together or not at all, and `replay`, asked as
        each unit begins, answers instead of running a unit an earlier attempt committed.

        An unexpected error is raised (after the rollback) instead of becoming the "something went wrong" reply, so
        the caller can retry the request and, when it keeps failing, tell the person once."""
        clone = copy.copy(self)
        clone.platform = platform
        clone._record = record
        clone._replay = replay
        return clone

    def handle_command(self, invocation: Invocation) -> list[Reply]:
        """Parse and run one `/cop …` command; never raises."""
        cmd = parse(invocation.text)
        # The log names the command from the grammar's list, never a word the person typed.
        name = cmd.name or "help"
        label = f"command:{name}" if name in commands.COMMANDS else "command:unknown"
        return self._unit(invocation, label, lambda ctx: commands.route(ctx, cmd))

    def handle_action(self, *, actor: Actor, action_id: str, value: str, channel_id: str | None = None) -> list[Reply]:
        """Run a button press (`action_id` from a neutral `Button`); never raises."""
        invocation = Invocation(actor=actor, text="", channel_id=channel_id)
        handler = ACTIONS.get(action_id)
        if handler is None:
            log.warning("unknown action (%d characters)", len(action_id))  # ids come from the client
            return [Reply.private("That button no longer does anything; please run the command again.")]
        return self._unit(invocation, f"action:{action_id}", lambda ctx: handler(ctx, value))

    def handle_submission(
        self, *, actor: Actor, form_id: str, values: Mapping[str, str], context: str = ""
    ) -> list[Reply]:
        """Store what a person entered in a form; never raises."""
        invocation = Invocation(actor=actor, text="", extra={"context": context})
        handler = FORMS.get(form_id)
        if handler is None:
            log.warning("unknown form (%d characters)", len(form_id))
            return [Reply.private("That form has expired; please open it again.")]
        return self._unit(invocation, f"form:{form_id}", lambda ctx: handler(ctx, dict(values)))

    def validate_submission(
        self, *, actor: Actor, form_id: str, values: Mapping[str, str], context: str = ""
    ) -> dict[str, str]:
        """A form's problems by field name (empty: valid), checked without storing or posting anything, so a
        platform can keep the form open with everything typed; never raises."""
        validator = VALIDATORS.get(form_id)
        if validator is None:
            return {}
        invocation = Invocation(actor=actor, text="", extra={"context": context})
        errors: dict[str, str] = {}

        def check(ctx: Context) -> list[Reply]:
            try:
                validator(ctx, dict(values))
            except FieldErrors as exc:
                errors.update(exc.errors)
            return []

        self._unit(invocation, f"validate:{form_id}", check, commit=False)
        return errors

    def form_again(self, *, actor: Actor, form_id: str, values: Mapping[str, str], context: str = "") -> Form | None:
        """The form a submission came from, with what the person typed filled in, for a platform that must draw it
        again to show its errors (a Teams dialog); None when the form has expired. Never raises."""
        builder = FORM_BUILDERS.get(form_id)
        if builder is None:
            return None
        invocation = Invocation(actor=actor, text="", extra={"context": context})
        built: list[Form] = []

        def build(ctx: Context) -> list[Reply]:
            built.append(refilled(builder(ctx, context), values))
            return []

        self._unit(invocation, f"form_again:{form_id}", build, commit=False)
        return built[0] if built else None

    def member_joined(self, *, actor: Actor, channel_id: str) -> list[Reply]:
        """A person joined a channel on the platform (replies go to them privately)."""
        invocation = Invocation(actor=actor, text="", channel_id=channel_id)
        return self._unit(invocation, "event:member_joined", lambda ctx: communities.member_joined(ctx, channel_id))

    def member_left(self, *, actor: Actor, channel_id: str) -> list[Reply]:
        """A person left a channel on the platform."""
        invocation = Invocation(actor=actor, text="", channel_id=channel_id)
        return self._unit(invocation, "event:member_left", lambda ctx: communities.member_left(ctx, channel_id))

    def handle_message(
        self, *, actor: Actor, channel_id: str, message_id: str, thread_id: str | None, text: str, is_dm: bool
    ) -> list[Reply]:
        """A person's message that may answer a prompt (thread reply or DM); replies go to them privately."""
        invocation = Invocation(actor=actor, text="", channel_id=channel_id)
        return self._unit(
            invocation,
            "event:message",
            lambda ctx: reflections.capture_reply(
                ctx, channel_id=channel_id, message_id=message_id, thread_id=thread_id, text=text, is_dm=is_dm
            ),
        )

    def story_shortcut(self, *, actor: Actor, message: stories.SourceMessage) -> list[Reply]:
        """The "Save as a story" message shortcut: the story form, pre-filled from the message."""
        invocation = Invocation(actor=actor, text="", channel_id=message.channel_id)
        return self._unit(invocation, "event:story_shortcut", lambda ctx: stories.shortcut(ctx, message))

    def story_reaction(self, *, actor: Actor, message: stories.SourceMessage, emoji: str) -> list[Reply]:
        """A reaction on a message; the story emoji in a community channel asks the author to approve a story."""
        invocation = Invocation(actor=actor, text="", channel_id=message.channel_id)
        return self._unit(invocation, "event:story_reaction", lambda ctx: stories.reaction(ctx, message, emoji))

    def home(self, *, actor: Actor) -> list[Reply]:
        """The person's home view (Slack App Home)."""
        return self._unit(Invocation(actor=actor, text=""), "event:home", communities.home)

    def _unit(
        self, invocation: Invocation, what: str, work: Callable[[Context], list[Reply]], *, commit: bool = True
    ) -> list[Reply]:
        if commit and self._replay is not None and (done := self._replay()) is not None:
            return done
        with Session(self.engine, expire_on_commit=False) as db:
            try:
                actor = repo.ensure_member(
                    db=db,
                    platform=invocation.actor.platform,
                    workspace_id=invocation.actor.workspace_id,
                    user_id=invocation.actor.user_id,
                    display_name=invocation.actor.display_name,
                    now=self.clock.now(),
                )
                ctx = Context(
                    db=db,
                    platform=self.platform,
                    clock=self.clock,
                    config=self.config,
                    invocation=invocation,
                    actor=actor,
                )
                replies = work(ctx)
                if commit:
                    if self._record is not None:
                        self._record(db, replies)
                    db.commit()
                else:
                    db.rollback()
            except DomainError as exc:
                db.rollback()
                log.info("%s refused: %s", what, type(exc).__name__)
                refusal = [Reply.private(exc.user_text())]
                if commit and self._record is not None:
                    self._record(db, refusal)
                    db.commit()
                self._observe("refused", counted=commit)
                return refusal
            except Exception:
                db.rollback()
                self._observe("failed", counted=True)
                if commit and self._record is not None:
                    log.warning("%s failed; it will be retried", what, exc_info=True)
                    raise
                log.exception("%s failed", what)
                return [Reply.private(SORRY)]
        self._observe("ok", counted=commit)
        return replies

    def _observe(self, outcome: Outcome, *, counted: bool) -> None:
        if self.observe is not None and counted:
            self.observe(outcome)


_MENTION = re.compile(r"<@([^<>|\s]+)(?:\|[^<>]*)?>")


def refilled(form: Form, values: Mapping[str, str]) -> Form:
    """`form` with each submitted value as its field's initial value (people pickers get ids back from mentions)."""
    fields = []
    for f in form.fields:
        if f.name not in values:
            fields.append(f)
            continue
        typed = values[f.name]
        if f.kind == "users":
            typed = " ".join(_MENTION.sub(r"\1", typed).replace(",", " ").split())
        fields.append(dataclasses.replace(f, initial=typed))
    return dataclasses.replace(form, fields=tuple(fields))


def _archive_action(ctx: Context, value: str) -> list[Reply]:
    number = row_id(value)
    community = ctx.db.get(Community, number) if number is not None else None
    if community is None:
        raise UsageError("That community no longer exists.")
    return communities.archive_confirmed(ctx, community)


FORM_OPEN = "form.open"


def reopen_button(form: Form) -> Button:
    """A button that opens `form` afresh: for a platform that could not open it when asked (Slack's trigger_id
    lasts 3 seconds; a click gives a new one)."""
    return Button("Open the form", FORM_OPEN, value=f"{form.form_id} {form.context}".strip(), style="primary")


def _open_form(ctx: Context, value: str) -> list[Reply]:
    form_id, _, context = value.partition(" ")
    builder = FORM_BUILDERS.get(form_id)
    if builder is None:
        return [Reply.private("That form has expired; please run the command again.")]
    return [Reply(form=builder(ctx, context))]


ACTIONS: dict[str, Callable[[Context, str], list[Reply]]] = {
    FORM_OPEN: _open_form,
    "community.archive": _archive_action,
    "intro.met": introductions.answer,
    "intro.skip": introductions.skip_action,
    "profile.open": lambda ctx, _value: [Reply(form=communities.profile_form(ctx.actor))],
    "reflection.promote": reflections.promote,
    stories.ACTION_APPROVE: stories.approve,
    stories.ACTION_APPROVE_NAMED: stories.approve_named,
    stories.ACTION_DECLINE: stories.decline,
    stories.ACTION_EDIT: stories.edit_action,
    stories.ACTION_WITHDRAW: stories.withdraw_action,
}

VALIDATORS: dict[str, Callable[[Context, dict[str, str]], None]] = {
    "profile": communities.validate_profile,
    stories.FORM_ID: stories.validate_form,
}

FORM_BUILDERS: dict[str, Callable[[Context, str], Form]] = {
    "profile": lambda ctx, _context: communities.profile_form(ctx.actor),
    stories.FORM_ID: stories.form_for,
}

FORMS: dict[str, Callable[[Context, dict[str, str]], list[Reply]]] = {
    "profile": lambda ctx, values: communities.save_profile(ctx, values),
    stories.FORM_ID: stories.submit_form,
}
