"""The console adapter: the same `/cop` grammar in a terminal or a pipe, plus meta-commands to simulate a team."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TextIO

from sqlmodel import Session, col, select

from bot.clock import AdjustableClock, parse_duration
from bot.config import Settings
from bot.console.forms import (
    CLEAR,
    PEOPLE_HOW,
    as_submitted,
    choice_lines,
    has_choices,
    initial_value,
    refused_fields,
    shown,
)
from bot.console.platform import DM, ConsolePlatform, Posted, printable
from bot.console.terminal import LineReader, default_history_file
from bot.console.text import LINE_MAX, USER_ID, command_mentions, line_problem, message_mentions
from bot.container import Container, build
from handlers.ports import Actor, Form, FormField, Invocation, Reply
from handlers.stories import SourceMessage
from storage.models import Community, Member, Membership

META_HELP = """Console commands (everything else starting with /cop goes to copbot):
  :as <name>             act as another person (default: you)
  :in #channel | :in dm  run commands in a channel (so the community can be left out) or in a DM
  :post [#channel] text  post a message as the current person (in the channel you are :in, or your DM)
  :reply <m-id> text     reply to a message (in its thread, or in the DM): how members answer prompts
  :react <m-id> [emoji]  react to a message (the story emoji asks its author to approve it as a story)
  :shortcut <m-id>       “Save as a story” on a message: the story form, pre-filled from it
  :click <n> [<m-id>]    press button n of the last message with buttons (or of message m-id)
  :advance <30m|2h|1d|1w> move the clock forward and run whatever is due
  :time                  show the simulated time
  :whoami                who and where you are
  :help                  this help
  :quit                  leave (end of input works too)
Text after :post and :reply, and form answers, are taken exactly as typed; @name mentions a person."""

# How many times one form is asked again after the core refused it, so piped input can't go round for ever.
FORM_ROUNDS = 3
_FIRST_WORD = re.compile(r"(\S+)\s*(.*)", re.DOTALL)


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
        history_file: Path | None = None,
    ) -> None:
        self.container = container
        self.platform = platform
        self.clock = clock
        self.inp = inp
        self.out = out
        self.interactive = interactive
        self.history_file = history_file
        self.reader = LineReader(inp=inp, out=out, interactive=interactive, history_file=None)
        self.user = "you"
        self.channel: str | None = None

    # --- loop -------------------------------------------------------------------------------------------------

    def run(self) -> int:
        # The reader is made here, not in __init__, so whatever `inp` holds now is what is read.
        self.reader = LineReader(
            inp=self.inp, out=self.out, interactive=self.interactive, history_file=self.history_file
        )
        try:
            self.seed_from_database()
            self.run_due_work()
            if self.interactive:
                self._write(
                    "copbot console: type /cop help for commands, :help for console commands, :quit to leave.\n"
                )
            while True:
                line = self._read(self._prompt(), remember=True)
                if line is None or not self.handle_line(line):
                    return 0
        finally:
            self.reader.close()

    def _prompt(self) -> str:
        where = f" in #{self.platform.channels[self.channel].name}" if self.channel in self.platform.channels else ""
        return f"{self.user}{where}> "

    def _read(self, prompt: str, *, remember: bool = False) -> str | None:
        return self.reader.read(printable(prompt), remember=remember)

    def _write(self, text: str) -> None:
        """Console output; whatever it quotes (an answer, a channel name typed) is shown, never acted on, as the
        platform shows messages."""
        self.out.write(printable(text))

    def handle_line(self, line: str) -> bool:
        """Run one line; False means quit."""
        problem = line_problem(line)
        if problem is not None:
            self._write(f"({problem}; nothing was done)\n")
            return True
        text = line.strip()
        if not text or text.startswith("#!"):
            return True
        if text.startswith(":"):
            return self.meta(text[1:])
        if text.lower().startswith("/cop"):
            # `@name` is what help shows and what a chat client turns into a mention before copbot sees it.
            replies = self.container.bot.handle_command(
                Invocation(actor=self.actor(), text=command_mentions(text), channel_id=self.channel)
            )
            self.show(replies)
            self.run_due_work()
            return True
        self._write("(not a command: start with /cop, or type :help for console commands)\n")
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
        """Ask each field in turn, then submit; fields the core refuses are asked again, every other answer kept.

        An empty answer keeps the value shown in [brackets], `-` empties it; end of input (or Ctrl-C) cancels.
        """
        self._write(f"· {form.title} (empty answer keeps what is shown in [brackets], {CLEAR} empties it)\n")
        values = {f.name: initial_value(f) for f in form.fields}
        try:
            if not self._ask(form.fields, values=values):
                return
            validate: Callable[..., dict[str, str]] | None = getattr(self.container.bot, "validate_submission", None)
            for attempt in range(FORM_ROUNDS + 1):
                failing: list[FormField] = []
                if validate is not None:
                    errors = validate(actor=self.actor(), form_id=form.form_id, values=values, context=form.context)
                    if errors:
                        failing = self._report_errors(form, errors)
                        if not failing:
                            return  # nothing the person can answer again fixes it
                if not failing:
                    replies = self.container.bot.handle_submission(
                        actor=self.actor(), form_id=form.form_id, values=values, context=form.context
                    )
                    self.show(replies)
                    # Before the core could validate on its own (or if something changed since), the refusal itself
                    # says which fields were wrong.
                    failing = refused_fields(form, replies, values)
                    if not failing:
                        return
                if attempt == FORM_ROUNDS:
                    break
                if not self._ask(failing, values=values, again=True):
                    return
            self._write("· form not saved: it was refused too many times\n")
        except KeyboardInterrupt:
            self._write("\n· form cancelled\n")

    def _report_errors(self, form: Form, errors: dict[str, str]) -> list[FormField]:
        """Print what the core's validation found, field by field; the fields to ask again."""
        by_name = {f.name: f for f in form.fields}
        for name, message in errors.items():
            label = by_name[name].label if name in by_name else name
            self._write(f"  ! {label}: {message}\n")
        failing = [f for f in form.fields if f.name in errors]
        if not failing:
            self._write("· form not saved\n")
        return failing

    def _ask(self, fields: Iterable[FormField], *, values: dict[str, str], again: bool = False) -> bool:
        """Ask these fields, updating `values` (as they will be submitted); False if the person cancelled (end of
        input)."""
        fields = list(fields)
        if again:
            labels = ", ".join(f"*{f.label}*" for f in fields)
            self._write(f"· please answer {labels} again; your other answers are kept\n")
        for f in fields:
            value = self._answer(f, values[f.name])
            if value is None:
                self._write("· form cancelled\n")
                return False
            values[f.name] = value
            if not self.interactive:
                self._write(f"  {f.label}: {shown(f, value)}\n")
        return True

    def _answer(self, field: FormField, current: str) -> str | None:
        """One field's value (its choices, or how to name people, shown first), asked until the answer fits the
        field; None at end of input."""
        if has_choices(field):
            several = field.kind == "multiselect"
            how = "one or more by number or name, separated by commas" if several else "one by number or name"
            self._write(f"  {field.label}: choose {how}\n")
            self._write("\n".join(choice_lines(field)) + "\n")
        elif field.kind == "users":
            self._write(f"  {field.label}: {PEOPLE_HOW}\n")
        hint = f" ({field.hint})" if field.hint and self.interactive else ""
        limit = field.max_length or LINE_MAX
        while True:
            line = self._read(f"  {field.label}{hint} [{shown(field, current)}]: ")
            if line is None:
                return None
            problem = line_problem(line, limit=max(limit, LINE_MAX))
            answer = line.strip()
            if problem is None and len(answer) > limit:
                problem = f"*{field.label}* takes up to {limit:,} characters; that was {len(answer):,}"
            # Kept as it is (not read again as a choice's number: a community's id is a number too), emptied, or new.
            value = current if not answer else "" if answer == CLEAR else as_submitted(field, answer)
            if problem is None and field.required and not value.strip():
                problem = f"*{field.label}* is required"
            if problem is None:
                return value
            self._write(f"  ({problem}; please answer again)\n")

    # --- meta-commands ----------------------------------------------------------------------------------------

    def meta(self, text: str) -> bool:
        """A console command; the words after the verb are split on white space, except where free text follows
        (`:post`, `:reply`), which is kept exactly as typed — no shell quoting, so `Don't` stays `Don't`."""
        found = _FIRST_WORD.match(text.strip())
        if found is None:
            self._write(META_HELP + "\n")
            return True
        verb, rest = found.group(1).lower(), found.group(2)
        if verb in ("quit", "exit", "q"):
            return False
        if verb in ("post", "reply"):
            (self._post if verb == "post" else self._reply)(rest)
            return True
        args = rest.split()
        handler = {
            "help": self._help,
            "as": self._as,
            "in": self._in,
            "react": self._react,
            "shortcut": self._shortcut,
            "click": self._click,
            "advance": self._advance,
            "time": self._time,
            "whoami": self._whoami,
        }.get(verb)
        if handler is None:
            self._write(f"(unknown console command :{verb}; type :help)\n")
        else:
            handler(args)
        return True

    def _help(self, args: list[str]) -> None:
        self._write(META_HELP + "\n")

    def _as(self, args: list[str]) -> None:
        if len(args) != 1 or not re.fullmatch(USER_ID, args[0].removeprefix("@")):
            self._write("(usage: :as <name>, e.g. :as sam — up to 64 letters, digits, - and _)\n")
            return
        self.user = args[0].removeprefix("@").lower()
        self._write(f"· you are now @{self.user}\n")

    def _in(self, args: list[str]) -> None:
        if not args or args[0].lower() == "dm":
            self.channel = None
            self._write("· now in a direct message with copbot\n")
            return
        channel = self.platform.channel_by_name(args[0])
        if channel is None:
            known = ", ".join(f"#{c.name}" for c in self.platform.channels.values()) or "none yet"
            self._write(f"(no channel {args[0]}; channels: {known})\n")
            return
        self.channel = channel.id
        self._write(f"· now in #{channel.name}\n")

    def _post(self, rest: str) -> None:
        channel_id, text = self.channel, rest
        if rest.startswith("#"):
            name, text = _split_first(rest)
            found = self.platform.channel_by_name(name)
            if found is None:
                self._write(f"(no channel {name})\n")
                return
            channel_id = found.id
        if not text:
            self._write("(usage: :post #channel your message — or :in #channel first, or :post text in your DM)\n")
            return
        if channel_id is not None:
            self.platform.human_post(channel_id=channel_id, author=self.user, text=text)
            return
        # In a DM the message goes to copbot, as a Slack or Teams DM does (it may answer a prompt sent by DM).
        where = DM + self.user
        mine = self.platform.human_post(channel_id=where, author=self.user, text=text)
        self.show(
            self.container.bot.handle_message(
                actor=self.actor(), channel_id=where, message_id=mine.id, thread_id=None,
                text=self._as_chat_text(text), is_dm=True,
            )
        )  # fmt: skip

    def _as_chat_text(self, text: str) -> str:
        """A message as a chat client hands it on: `@name` of a known person as the mention `<@name>`."""
        return message_mentions(text, known=self._known_people)

    def _known_people(self, names: Iterable[str]) -> set[str]:
        """Which of these names are people in this simulated workspace (seen by copbot, or in a channel)."""
        wanted = set(names)
        seen = {self.user}.union(*(c.members for c in self.platform.channels.values()))
        with Session(self.container.engine) as db:
            stored = db.exec(
                select(Member.user_id).where(
                    Member.platform == "console",
                    Member.workspace_id == "console",
                    col(Member.user_id).in_(sorted(wanted - seen)),
                )
            ).all()
        return wanted & (seen | set(stored))

    def _react(self, args: list[str]) -> None:
        if not args or args[0] not in self.platform.posts:
            self._write("(usage: :react m3 [emoji] — the id in [brackets] before a message)\n")
            return
        emoji = (args[1] if len(args) > 1 else self.container.settings.story_emoji).strip(":")
        self._write(f"· @{self.user} reacted :{emoji}: to {args[0]}\n")
        source = self._story_source(self.platform.posts[args[0]])
        self.show(self.container.bot.story_reaction(actor=self.actor(), message=source, emoji=emoji))

    def _shortcut(self, args: list[str]) -> None:
        if not args or args[0] not in self.platform.posts:
            self._write("(usage: :shortcut m3 — “Save as a story” on the message with that id)\n")
            return
        source = self._story_source(self.platform.posts[args[0]])
        self.show(self.container.bot.story_shortcut(actor=self.actor(), message=source))

    def _story_source(self, post: Posted) -> SourceMessage:
        """A console message as the core sees a captured message (copbot's own messages count as a bot's, and
        their mentions are already `<@name>`)."""
        return SourceMessage(
            channel_id=post.where,
            message_id=f"{post.id}.{self.platform.run_id}",
            author_user_id=post.author,
            text=post.text if post.author == "copbot" else self._as_chat_text(post.text),
            link=f"console message {post.id}",
            from_bot=post.author == "copbot",
        )

    def _reply(self, rest: str) -> None:
        message_id, text = _split_first(rest)
        post = self.platform.posts.get(message_id)
        if post is None or not text:
            self._write("(usage: :reply m3 your answer — the id in [brackets] before a message)\n")
            return
        is_dm = post.where.startswith(DM)
        if not post.visible_to(self.user):
            self._write("(that DM isn't yours: :as its recipient first)\n" if is_dm else
                        "(that group DM isn't yours: :as one of its people first)\n")  # fmt: skip
            return
        mine = self.platform.human_post(channel_id=post.where, author=self.user, text=text, thread_of=post.id)
        self.show(
            self.container.bot.handle_message(
                actor=self.actor(), channel_id=post.where, message_id=mine.id, thread_id=post.id,
                text=self._as_chat_text(text), is_dm=is_dm,
            )
        )  # fmt: skip

    def _click(self, args: list[str]) -> None:
        if not args or not args[0].isdigit():
            self._write("(usage: :click <button number> [message id])\n")
            return
        if len(args) > 1:
            post = self.platform.posts.get(args[1])
        else:
            # The newest message with buttons that this person can see: a channel's, their DM or their group DMs.
            post = next(
                (p for p in reversed(self.platform.posts.values()) if p.buttons and p.visible_to(self.user)),
                None,
            )
        index = int(args[0]) - 1
        if post is None or not 0 <= index < len(post.buttons):
            self._write("(no such button)\n")
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
            self._write(f"({exc})\n")
            return
        now = self.clock.advance(by)
        self._write(f"· clock is now {now:%a %d %b %Y %H:%M} UTC\n")
        done = self.run_due_work()
        if not done:
            self._write("· nothing was due\n")

    def run_due_work(self) -> dict[str, int]:
        """Run the tick and send what is due now; report what happened."""
        done = {name: n for name, n in self.container.run_due_work().items() if n}
        if done:
            self._write("· due work: " + ", ".join(f"{n} {name}" for name, n in done.items()) + "\n")
        return done

    def _time(self, args: list[str]) -> None:
        self._write(f"· {self.clock.now():%a %d %b %Y %H:%M} UTC\n")

    def _whoami(self, args: list[str]) -> None:
        where = f"#{self.platform.channels[self.channel].name}" if self.channel in self.platform.channels else "a DM"
        self._write(f"· you are @{self.user}, in {where}\n")

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


def _split_first(text: str) -> tuple[str, str]:
    """The first word and everything after it, exactly as typed (less the white space between them)."""
    found = _FIRST_WORD.match(text)
    return (found.group(1), found.group(2)) if found else ("", "")


def build_console(
    settings: Settings,
    *,
    inp: TextIO,
    out: TextIO,
    interactive: bool,
    exports_dir: Path = Path("exports"),
    history_file: Path | None = None,
) -> ConsoleApp:
    """The console on the configured database: a simulated workspace, a clock `:advance` moves, no rate limits.

    On a terminal, lines are edited with readline and kept in `history_file` (default `~/.copbot_history`).
    """
    platform = ConsolePlatform(out, exports_dir=exports_dir)
    clock = AdjustableClock()
    container = build(settings, platform=platform, clock=clock, send_rate=float("inf"))
    if container.dispatcher is not None:
        container.dispatcher.channel_rate = float("inf")  # a terminal has no rate limits
    if interactive and history_file is None:
        history_file = default_history_file()
    return ConsoleApp(
        container=container,
        platform=platform,
        clock=clock,
        inp=inp,
        out=out,
        interactive=interactive,
        history_file=history_file,
    )
