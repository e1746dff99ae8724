"""The core's front door: each platform adapter hands it neutral invocations and renders what comes back."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from sqlalchemy import Engine
from sqlmodel import Session

from handlers import commands, communities
from handlers.context import Context, CoreConfig
from handlers.errors import DomainError, UsageError
from handlers.grammar import parse
from handlers.ports import Actor, ChatPlatform, Clock, Invocation, Reply
from storage import repository as repo
from storage.models import Community

log = logging.getLogger(__name__)

SORRY = "Sorry, something went wrong on my side and nothing was changed. It has been logged; please try again."


class CopBot:
    """Runs commands, button actions and form submissions, one database transaction each."""

    def __init__(self, *, engine: Engine, platform: ChatPlatform, clock: Clock, config: CoreConfig) -> None:
        self.engine = engine
        self.platform = platform
        self.clock = clock
        self.config = config

    def handle_command(self, invocation: Invocation) -> list[Reply]:
        """Parse and run one `/cop …` command; never raises."""
        cmd = parse(invocation.text)
        return self._unit(invocation, f"command:{cmd.name or 'help'}", lambda ctx: commands.route(ctx, cmd))

    def handle_action(self, *, actor: Actor, action_id: str, value: str, channel_id: str | None = None) -> list[Reply]:
        """Run a button press (`action_id` from a neutral `Button`); never raises."""
        invocation = Invocation(actor=actor, text="", channel_id=channel_id)
        handler = ACTIONS.get(action_id)
        if handler is None:
            log.warning("unknown action %s", action_id)
            return [Reply.private("That button no longer does anything; please run the command again.")]
        return self._unit(invocation, f"action:{action_id}", lambda ctx: handler(ctx, value))

    def handle_submission(
        self, *, actor: Actor, form_id: str, values: Mapping[str, str], context: str = ""
    ) -> list[Reply]:
        """Store what a person entered in a form; never raises."""
        invocation = Invocation(actor=actor, text="", extra={"context": context})
        handler = FORMS.get(form_id)
        if handler is None:
            log.warning("unknown form %s", form_id)
            return [Reply.private("That form has expired; please open it again.")]
        return self._unit(invocation, f"form:{form_id}", lambda ctx: handler(ctx, dict(values)))

    def member_joined(self, *, actor: Actor, channel_id: str) -> list[Reply]:
        """A person joined a channel on the platform (replies go to them privately)."""
        invocation = Invocation(actor=actor, text="", channel_id=channel_id)
        return self._unit(invocation, "event:member_joined", lambda ctx: communities.member_joined(ctx, channel_id))

    def member_left(self, *, actor: Actor, channel_id: str) -> list[Reply]:
        """A person left a channel on the platform."""
        invocation = Invocation(actor=actor, text="", channel_id=channel_id)
        return self._unit(invocation, "event:member_left", lambda ctx: communities.member_left(ctx, channel_id))

    def home(self, *, actor: Actor) -> list[Reply]:
        """The person's home view (Slack App Home)."""
        return self._unit(Invocation(actor=actor, text=""), "event:home", communities.home)

    def _unit(self, invocation: Invocation, what: str, work: Callable[[Context], list[Reply]]) -> list[Reply]:
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
                db.commit()
                return replies
            except DomainError as exc:
                db.rollback()
                log.info("%s refused: %s", what, type(exc).__name__)
                return [Reply.private(exc.user_text())]
            except Exception:
                db.rollback()
                log.exception("%s failed", what)
                return [Reply.private(SORRY)]


def _archive_action(ctx: Context, value: str) -> list[Reply]:
    community = ctx.db.get(Community, int(value)) if value.isdigit() else None
    if community is None:
        raise UsageError("That community no longer exists.")
    return communities.archive_confirmed(ctx, community)


ACTIONS: dict[str, Callable[[Context, str], list[Reply]]] = {
    "community.archive": _archive_action,
    "profile.open": lambda ctx, _value: [Reply(form=communities.profile_form(ctx.actor))],
}

FORMS: dict[str, Callable[[Context, dict[str, str]], list[Reply]]] = {
    "profile": lambda ctx, values: communities.save_profile(ctx, values),
}
