"""The command table: every `/cop` sub-command, who may run it, its help, and the handler it routes to."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from handlers import communities, introductions, reflections, stories
from handlers.context import Context
from handlers.errors import NotAvailableYet, UsageError
from handlers.grammar import ParsedCommand
from handlers.ports import Message, Reply, Section

Handler = Callable[[Context, ParsedCommand], list[Reply]]


@dataclass(frozen=True)
class Command:
    """One sub-command: its usage line, a one-line summary, who may run it, and its handler (None = not built yet)."""

    name: str
    usage: str
    summary: str
    who: Literal["everyone", "facilitators", "creators"]
    example: str
    handler: Handler | None = None
    details: str = ""


COMMANDS: dict[str, Command] = {
    c.name: c
    for c in (
        Command("help", "help [topic]", "Show this help, or help on one command", "everyone", "/cop help create"),
        Command(
            "list",
            "list",
            "Communities here, with purpose, members and channel",
            "everyone",
            "/cop list",
            communities.list_communities,
        ),
        Command(
            "create",
            "create <name> [| <purpose>]",
            "Start a community: makes its channel and makes you its facilitator",
            "creators",
            communities.CREATE_EXAMPLE,
            communities.create,
            "The channel is called `cop-` plus the name in lower case, letters, digits and `-` (80 characters at "
            "most). Put the purpose after a `|`. Quote a name that contains a `|`.",
        ),
        Command(
            "join",
            "join <community>",
            "Join a community and its channel",
            "everyone",
            "/cop join falls-prevention",
            communities.join,
            "Name the community by its name, its short name or its channel.",
        ),
        Command(
            "leave",
            "leave [<community>]",
            "Leave a community (in its channel you can leave the name out)",
            "everyone",
            "/cop leave falls-prevention",
            communities.leave,
        ),
        Command(
            "profile",
            "profile [profession=…] [organisation=…] [timezone=…]",
            "Your profile, used to introduce you across professions; no options opens a form",
            "everyone",
            '/cop profile profession="Staff nurse" organisation="Example NHS Trust"',
            communities.profile,
            "Quote values with spaces. An empty value clears a field: `/cop profile organisation=`.",
        ),
        Command(
            "story",
            "story | story <number> | story edit|withdraw <number>",
            "Share a “what's working” story",
            "everyone",
            "/cop story",
            stories.story_command,
            "No arguments opens the story form (in a community's channel that community is chosen for you). "
            "Anything that looks like patient-identifiable data (NHS numbers, postcodes, dates of birth …) is refused. "
            "You can also save someone's message with the *Save as a story* shortcut or by reacting with the story "
            "emoji; the message's author is asked to approve it first.",
        ),
        Command(
            "stories",
            "stories [words…]",
            "Search the stories (no words: the latest)",
            "everyone",
            "/cop stories handover",
            stories.search,
            'All words must match, in any field; `hand*` matches the start of a word; "safety huddle" matches a '
            "phrase. You see your communities' stories, ones shared with all communities, and your own.",
        ),
        Command(
            "prompts",
            "prompts on|off",
            "Turn the reflective prompts sent to you by DM on or off",
            "everyone",
            "/cop prompts off",
            reflections.prompts_optin,
        ),
        Command(
            "intros",
            "intros on|off|snooze <weeks> | intros enrol|schedule|run|report",
            "Your peer introductions (facilitators: enrolment, schedule, a round now, figures)",
            "everyone",
            "/cop intros snooze 2",
            introductions.intros_command,
            "`on`/`off` (in a community's channel or with `in:<community>`: just that community) and `snooze <weeks>` "
            "(1-12; pauses DM prompts too; ends by itself) are yours. Facilitators: `enrol opt-in|opt-out`, "
            "`schedule every <1|2|4> weeks [<weekday>]` (or `schedule off`), `run` (a round now) and `report` "
            "(figures per round and so far). Introductions are 1:1 DMs naming your partner(s).",
        ),
        Command("me", "me export | me forget", "Your data: download it, or erase it", "everyone", "/cop me export"),
        Command(
            "prompt",
            "prompt now|pause|resume | prompt schedule <weekday> <HH:MM> [channel|dm] [<tz>] | prompt add <text>",
            "Run the community's reflective prompts",
            "facilitators",
            reflections.SCHEDULE_EXAMPLE,
            reflections.prompt_command,
            "`schedule` sets the weekly day and local time, where prompts go (the channel, or each member by DM) "
            "and the community's time zone; add `on-holiday=skip` to skip bank holidays instead of moving to the "
            "next working day. `now` sends one at once; `pause`/`resume`; `add` adds your own prompt (checked for "
            "patient-identifiable details). Replies in the prompt's thread (or DM) are kept as reflections.",
        ),
        Command(
            "digest",
            "digest [in:<community>]",
            "Post a digest of new stories, reflections and the next prompt in the channel",
            "facilitators",
            "/cop digest",
            reflections.digest,
        ),
        Command("report", "report", "Community health figures", "facilitators", "/cop report"),
        Command(
            "export",
            "export [csv|md|html] [in:<community>]",
            "Export the community's stories",
            "facilitators",
            "/cop export csv",
            stories.export,
            "The file is sent to you privately. It holds the community's published stories (withdrawn ones and "
            "ones waiting for their author are left out); names appear only where the author chose to show theirs.",
        ),
        Command(
            "facilitator",
            "facilitator add|remove <@user> [in:<community>]",
            "Share or hand back the facilitator role",
            "facilitators",
            "/cop facilitator add @sam in:falls-prevention",
            communities.facilitator,
        ),
        Command(
            "archive",
            "archive [<community>] [confirm]",
            "Archive a community and its channel (asks to confirm)",
            "facilitators",
            "/cop archive falls-prevention confirm",
            communities.archive,
        ),
    )
}


def route(ctx: Context, cmd: ParsedCommand) -> list[Reply]:
    """Run the command `cmd` names; unknown names get the closest match."""
    if cmd.name in ("", "help"):
        return help_reply(cmd.args[0] if cmd.args else None)
    command = COMMANDS.get(cmd.name)
    if command is None:
        raise UsageError(_unknown(cmd.name), example="/cop help")
    if cmd.problems:
        raise UsageError(" ".join(cmd.problems[:3]), example=command.example)
    if command.handler is None:
        raise NotAvailableYet(
            f"`/cop {command.name}` isn't available in this version of copbot yet. See what works now with `/cop help`."
        )
    return command.handler(ctx, cmd)


def _unknown(name: str) -> str:
    shown = name if len(name) <= 30 else name[:29] + "…"
    close = difflib.get_close_matches(name, list(COMMANDS), n=1, cutoff=0.5)
    hint = f" Did you mean `/cop {close[0]}`?" if close else ""
    return f"I don't know `/cop {shown}`.{hint}"


def help_reply(topic: str | None) -> list[Reply]:
    """Short help for everything, or the detail for one command."""
    if topic:
        command = COMMANDS.get(topic.lower())
        if command is None:
            raise UsageError(_unknown(topic), example="/cop help")
        who = {"everyone": "Anyone", "facilitators": "Facilitators", "creators": "Community creators"}[command.who]
        state = "" if command.handler or command.name == "help" else "\n_Not available in this version yet._"
        text = (
            f"`/cop {command.usage}`\n{command.summary}. {who} can run it.\n"
            + (f"{command.details}\n" if command.details else "")
            + f"For example: `{command.example}`{state}"
        )
        return [Reply(message=Message(text=text, title=f"/cop {command.name}"))]
    sections = []
    for who, heading in (
        ("everyone", "For everyone"),
        ("creators", "Starting communities"),
        ("facilitators", "For facilitators"),
    ):
        lines = [
            f"`/cop {c.usage}` — {c.summary}" + ("" if c.handler or c.name == "help" else " _(coming soon)_")
            for c in COMMANDS.values()
            if c.who == who
        ]
        sections.append(Section(f"*{heading}*\n" + "\n".join(lines)))
    intro = (
        "copbot helps Patient Safety Communities of Practice share what's working. "
        "In a community's channel you can leave the community name out."
    )
    text = intro + "\n" + "\n".join(s.text for s in sections) + "\nMore on one command: `/cop help <command>`."
    return [Reply(message=Message(text=text, title="copbot help", sections=(Section(intro), *sections)))]
