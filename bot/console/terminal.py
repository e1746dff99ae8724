"""Reading the console's lines: readline editing and a history file on a terminal, plain reads from a pipe."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import TextIO

from bot.console.text import line_problem
from handlers.privacy import check_fields

HISTORY_LENGTH = 1000


def default_history_file() -> Path:
    """Where an interactive console keeps its history: `~/.copbot_history`."""
    return Path.home() / ".copbot_history"


def _load_readline() -> ModuleType | None:
    try:
        import readline
    except ImportError:  # Windows without pyreadline, or a Python built without it: plain input still works
        return None
    return readline


class LineReader:
    """One line at a time from `inp`; with readline when `inp` is this process's terminal.

    Only commands go into the history (never form answers, which hold story text), and no line the PII guard
    flags or the console refuses: the history file is plain text in the person's home directory.
    """

    def __init__(self, *, inp: TextIO, out: TextIO, interactive: bool, history_file: Path | None) -> None:
        self.inp = inp
        self.out = out
        self.interactive = interactive
        self.history_file = history_file
        # input() only edits a line when it reads the real stdin and writes the real stdout, both terminals.
        uses_terminal = interactive and inp is sys.stdin and out is sys.stdout
        self.readline = _load_readline() if uses_terminal else None
        if self.readline is not None:
            self.readline.set_auto_history(False)
            self.readline.set_history_length(HISTORY_LENGTH)
            if history_file is not None:
                with contextlib.suppress(OSError):  # no history yet, or unreadable: start empty
                    self.readline.read_history_file(history_file)

    def read(self, prompt: str, *, remember: bool = False) -> str | None:
        """The next line without its line ending, or None at the end of input."""
        if self.readline is not None:
            try:
                line = input(prompt)
            except EOFError:
                self.out.write("\n")
                return None
            if remember and line.strip() and line_problem(line) is None and not check_fields({"line": line}):
                self.readline.add_history(line)
            return line
        if self.interactive:
            self.out.write(prompt)
            self.out.flush()
        raw = self.inp.readline()
        if raw == "":
            return None
        return raw.removesuffix("\n").removesuffix("\r")  # a file saved on Windows ends its lines with \r\n

    def close(self) -> None:
        """Save the history (readable by its owner only); a failure to write it is not worth stopping for."""
        if self.readline is None or self.history_file is None:
            return
        try:
            os.close(os.open(self.history_file, os.O_WRONLY | os.O_CREAT, 0o600))  # never readable by others
            os.chmod(self.history_file, 0o600)  # also when an older file was made with wider rights
            self.readline.write_history_file(self.history_file)
        except OSError:
            pass
