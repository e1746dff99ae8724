"""The console adapter: the same `/cop` grammar in a terminal or a pipe, plus meta-commands to simulate a team."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import TextIO

from sqlmodel import Session, select

from bot.clock import AdjustableClock, parse_duration
from bot.config import Settings
from bot.console.platform import ConsolePlatform, Posted
from bot.container import Container, build
from handlers.ports import Actor, Form, Invocation, Reply
from handlers.stories import SourceMessage
from storage.models import Community, Member, Membership

META_HELP = """Console commands (everything else starting with /cop goes to copbot):
  :as <name>             act as another person (default: you)
  :in #channel | :in dm  run commands in a channel (so the community can be left out) or in a DM
  :post [#channel] text  post a message as the current person
  :reply <m-id> text     reply to a message (in its thread, or in the DM): how members answer prompts
  :react <m-id> [emoji]  react to a message (the story emoji asks its author to approve it as a story)
  :shortcut <m-id>       “Save as a story” on a message: the story form, pre-filled from it
  :click <n> [<m-id>]    press button n of the last message with buttons (or of message m-id)
  :advance <30m|2h|1d|1w> move the clock forward and run whatever is due
  :time                  show the simulated time
  :whoami                who and where you are
  :help                  this help
  :quit                  leave (end of input works too)"""


class ConsoleApp:
    """Reads lines, runs them as the current person, prints copbot's answers."""

    def __init__(
        self,
        *,
        container: Container,
        platform: ConsolePlatform,
        clock: AdjustableClock,
        inp: TextIO,
        out: TextIO,
        interactive: bool,
    ) -> None:
        self.container = container
        self.platform = platform
        self.clock = clock
        self.inp = inp
        self.out = out
        self.interactive = interactive
        self.user = "you"
        self.channel: str | None = None

    # --- loop -------------------------------------------------------------------------------------------------

    def run(self) -> int:
        self.seed_from_database()
        self.run_due_work()
        if self.interactive:
            self.out.write("copbot console: type /cop help for commands, :help for console commands, :quit to leave.\n")
        while True:
            line = self._read(self._prompt())
            if line is None or not self.handle_line(line):
                return 0

    def _prompt(self) -> str:
        where = f" in #{self.platform.channels[self.channel].name}" if self.channel in self.platform.channels else ""
        return f"{self.user}{where}> "

    def _read(self, prompt: str) -> str | None:
        if self.interactive:
            self.out.write(prompt)
            self.out.flush()
        line = self.inp.readline()
        return None if line == "" else line.rstrip("\n")

    def handle_line(self, line: str) -> bool:
        """Run one line; False means quit."""
        text = line.strip()
        if not text or text.startswith("#!"):
            return True
        if text.startswith(":"):
            return self.meta(text[1:])
        if text.lower().startswith("/cop"):
            replies = self.container.bot.handle_command(
                Invocation(actor=self.actor(), text=text, channel_id=self.channel)
            )
            self.show(replies)
            self.run_due_work()
            return True
        self.out.write("(not a command: start with /cop, or type :help for console commands)\n")
        return True

    def actor(self) -> Actor:
        return Actor(platform="console", workspace_id="console", user_id=self.user, display_name=self.user)

    # --- replies and forms ------------------------------------------------------------------------------------

    def show(self, replies: list[Reply]) -> None:
        for reply in replies:
            if reply.form is not None:
                self.fill(reply.form)
            elif reply.message is not None:
                public_in = self.channel if reply.visibility == "public" else None
                self.platform.show_reply(to=self.user, message=reply.message, public_in=public_in)

    def fill(self, form: Form) -> None:
        """Ask each field in turn; an empty answer keeps the current value, end of input cancels."""
        self.out.write(f"· {form.title} (empty answer keeps what is shown in [brackets])\n")
        values: dict[str, str] = {}
        for f in form.fields:
            hint = f" ({f.hint})" if f.hint and self.interactive else ""
            answer = self._read(f"  {f.label}{hint} [{f.initial}]: ")
            if answer is None:
                self.out.write("· form cancelled\n")
                return
            if not self.interactive:
                self.out.write(f"  {f.label}: {answer.strip() or f.initial}\n")
            values[f.name] = answer.strip() or f.initial
        self.show(
            self.container.bot.handle_submission(
                actor=self.actor(), form_id=form.form_id, values=values, context=form.context
            )
        )

    # --- meta-commands ----------------------------------------------------------------------------------------

    def meta(self, text: str) -> bool:
        try:
            words = shlex.split(text)
        except ValueError:
            words = text.split()
        if not words:
            self.out.write(META_HELP + "\n")
            return True
        verb, args = words[0].lower(), words[1:]
        if verb in ("quit", "exit", "q"):
            return False
        handler = {
            "help": self._help,
            "as": self._as,
            "in": self._in,
            "post": self._post,
            "react": self._react,
            "shortcut": self._shortcut,
            "reply": self._reply,
            "click": self._click,
            "advance": self._advance,
            "time": self._time,
            "whoami": self._whoami,
        }.get(verb)
        if handler is None:
            self.out.write(f"(unknown console command :{verb}; type :help)\n")
        else:
            handler(args)
        return True

    def _help(self, args: list[str]) -> None:
        self.out.write(META_HELP + "\n")

    def _as(self, args: list[str]) -> None:
        if len(args) != 1 or not args[0].lstrip("@").replace("-", "").replace("_", "").isalnum():
            self.out.write("(usage: :as <name>, e.g. :as sam — letters, digits, - and _)\n")
            return
        self.user = args[0].lstrip("@").lower()
        self.out.write(f"· you are now @{self.user}\n")

    def _in(self, args: list[str]) -> None:
        if not args or args[0].lower() == "dm":
            self.channel = None
            self.out.write("· now in a direct message with copbot\n")
            return
        channel = self.platform.channel_by_name(args[0])
        if channel is None:
            known = ", ".join(f"#{c.name}" for c in self.platform.channels.values()) or "none yet"
            self.out.write(f"(no channel {args[0]}; channels: {known})\n")
            return
        self.channel = channel.id
        self.out.write(f"· now in #{channel.name}\n")

    def _post(self, args: list[str]) -> None:
        channel_id = self.channel
        if args and args[0].startswith("#"):
            found = self.platform.channel_by_name(args[0])
            if found is None:
                self.out.write(f"(no channel {args[0]})\n")
                return
            channel_id, args = found.id, args[1:]
        if channel_id is None or not args:
            self.out.write("(usage: :post #channel your message — or :in #channel first)\n")
            return
        self.platform.human_post(channel_id=channel_id, author=self.user, text=" ".join(args))

    def _react(self, args: list[str]) -> None:
        if not args or args[0] not in self.platform.posts:
            self.out.write("(usage: :react m3 [emoji] — the id in [brackets] before a message)\n")
            return
        emoji = (args[1] if len(args) > 1 else self.container.settings.story_emoji).strip(":")
        self.out.write(f"· @{self.user} reacted :{emoji}: to {args[0]}\n")
        source = self._story_source(self.platform.posts[args[0]])
        self.show(self.container.bot.story_reaction(actor=self.actor(), message=source, emoji=emoji))

    def _shortcut(self, args: list[str]) -> None:
        if not args or args[0] not in self.platform.posts:
            self.out.write("(usage: :shortcut m3 — “Save as a story” on the message with that id)\n")
            return
        source = self._story_source(self.platform.posts[args[0]])
        self.show(self.container.bot.story_shortcut(actor=self.actor(), message=source))

    def _story_source(self, post: Posted) -> SourceMessage:
        """A console message as the core sees a captured message (copbot's own messages count as a bot's)."""
        return SourceMessage(
            channel_id=post.where,
            message_id=f"{post.id}.{self.platform.run_id}",
            author_user_id=post.author,
            text=post.text,
            link=f"console message {post.id}",
            from_bot=post.author == "copbot",
        )

    def _reply(self, args: list[str]) -> None:
        post = self.platform.posts.get(args[0]) if args else None
        if post is None or len(args) < 2:
            self.out.write("(usage: :reply m3 your answer — the id in [brackets] before a message)\n")
            return
        is_dm = post.where.startswith("dm:")
        if is_dm and post.where != f"dm:{self.user}":
            self.out.write("(that DM isn't yours: :as its recipient first)\n")
            return
        mine = self.platform.human_post(
            channel_id=post.where, author=self.user, text=" ".join(args[1:]), thread_of=post.id
        )
        self.show(
            self.container.bot.handle_message(
                actor=self.actor(), channel_id=post.where, message_id=mine.id, thread_id=post.id, text=mine.text,
                is_dm=is_dm,
            )
        )  # fmt: skip

    def _click(self, args: list[str]) -> None:
        if not args or not args[0].isdigit():
            self.out.write("(usage: :click <button number> [message id])\n")
            return
        if len(args) > 1:
            post = self.platform.posts.get(args[1])
        else:
            # The newest message with buttons that this person can see: their own DMs, or a channel's.
            post = next(
                (
                    p
                    for p in reversed(self.platform.posts.values())
                    if p.buttons and (not p.where.startswith("dm:") or p.where == f"dm:{self.user}")
                ),
                None,
            )
        index = int(args[0]) - 1
        if post is None or not 0 <= index < len(post.buttons):
            self.out.write("(no such button)\n")
            return
        button = post.buttons[index]
        self.show(
            self.container.bot.handle_action(
                actor=self.actor(), action_id=button.action_id, value=button.value, channel_id=self.channel
            )
        )

    def _advance(self, args: list[str]) -> None:
        try:
            by = parse_duration(" ".join(args))
        except ValueError as exc:
            self.out.write(f"({exc})\n")
            return
        now = self.clock.advance(by)
        self.out.write(f"· clock is now {now:%a %d %b %Y %H:%M} UTC\n")
        done = self.run_due_work()
        if not done:
            self.out.write("· nothing was due\n")

    def run_due_work(self) -> dict[str, int]:
        """Run the tick and send what is due now; report what happened."""
        done = {name: n for name, n in self.container.run_due_work().items() if n}
        if done:
            self.out.write("· due work: " + ", ".join(f"{n} {name}" for name, n in done.items()) + "\n")
        return done

    def _time(self, args: list[str]) -> None:
        self.out.write(f"· {self.clock.now():%a %d %b %Y %H:%M} UTC\n")

    def _whoami(self, args: list[str]) -> None:
        where = f"#{self.platform.channels[self.channel].name}" if self.channel in self.platform.channels else "a DM"
        self.out.write(f"· you are @{self.user}, in {where}\n")

    # --- state from earlier runs ------------------------------------------------------------------------------

    def seed_from_database(self) -> None:
        """Recreate the simulated channels of communities made in earlier runs."""
        with Session(self.container.engine) as db:
            rows = db.exec(select(Community).where(Community.platform == "console")).all()
            for community in rows:
                if not community.channel_id:
                    continue
                members = db.exec(
                    select(Member.user_id)
                    .join(Membership, Membership.member_id == Member.id)  # type: ignore[arg-type]
                    .where(Membership.community_id == community.id)
                ).all()
                self.platform.know_channel(
                    channel_id=community.channel_id,
                    name=community.channel_name,
                    members=members,
                    archived=community.archived_at is not None,
                )


def build_console(
    settings: Settings, *, inp: TextIO, out: TextIO, interactive: bool, exports_dir: Path = Path("exports")
) -> ConsoleApp:
    """The console on the configured database: a simulated workspace, a clock `:advance` moves, no rate limits."""
    platform = ConsolePlatform(out, exports_dir=exports_dir)
    clock = AdjustableClock()
    container = build(settings, platform=platform, clock=clock, send_rate=float("inf"))
    if container.dispatcher is not None:
        container.dispatcher.channel_rate = float("inf")  # a terminal has no rate limits
    return ConsoleApp(container=container, platform=platform, clock=clock, inp=inp, out=out, interactive=interactive)
