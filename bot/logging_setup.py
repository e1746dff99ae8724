"""Logging for every entry point: one format, third-party loggers held at WARNING, nothing people typed let through.

Libraries copbot uses log what they were given: Bolt logs the whole body of a request whose signature fails (at
INFO, as an f-string), its "unhandled request" warnings quote payload fields, slack_sdk logs request bodies at
DEBUG, SQLAlchemy logs statement parameters, and an exception's message often quotes the value that caused it.
So, whatever LOG_LEVEL says:

- the third-party loggers in `HELD` are held at WARNING (a 5 MB unsigned request costs one short line, not 5 MB);
- every record a `HELD` logger still emits keeps where it came from (logger, level, the message's opening words)
  but not what it said (the rest of the message and its arguments are withheld, their length is kept);
- every record with an exception keeps the traceback's frames and the exception's type, not its message.

This is done in the log-record factory, so it holds for every handler (stderr, uvicorn's, pytest's caplog) and for
loggers created after set-up (Bolt creates its loggers when the app is built, copying the root level).

Lines are text (`FORMAT`) or, with LOG_FORMAT=json in the HTTP server, one JSON object each (`JsonLines`) for a log
collector; both carry only what the scrubber let through.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import sys
import traceback
from types import TracebackType
from typing import Any, TextIO

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
HANDLER = "copbot"
"""The name of the stderr handler `configure_logging` installs, so a later call can change its format."""

HELD = (
    "slack_bolt",
    "slack_sdk",
    "slack",
    "urllib3",
    "requests",
    "charset_normalizer",
    "httpx",
    "httpcore",
    "msal",
    "uvicorn.access",
    "sqlalchemy",
    "multipart",
    "python_multipart",
)
"""Loggers (and their children) of libraries that can log a request or response body, a query string or values."""

# A message's opening words are library prose ("Invalid request signature detected"); the first character that is
# not a letter, space or simple punctuation is where interpolated values begin, so nothing after it is kept.
_OPENING = re.compile(r"[A-Za-z][A-Za-z ,'\-]{0,59}")
_WITHHELD = "%s [%d characters withheld]"


def configure_logging(
    *, level: str, quiet_console: bool = False, stream: TextIO | None = None, log_format: str = "text"
) -> None:
    """Set up logging at an entry point; in the console, INFO lines are left out unless DEBUG is asked for.

    Calling it again changes only the format of the handler it installed (the HTTP server's LOG_FORMAT)."""
    # In the console, INFO lines would interleave with the conversation.
    effective = level if not quiet_console or level == "DEBUG" else "WARNING"
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.set_name(HANDLER)
    logging.basicConfig(level=effective, handlers=[handler])  # does nothing when the root has handlers already
    formatter = JsonLines() if log_format == "json" else logging.Formatter(FORMAT)
    for installed in logging.root.handlers:
        if installed.get_name() == HANDLER:
            installed.setFormatter(formatter)
    hold_third_party()
    install_scrubber()


class JsonLines(logging.Formatter):
    """One JSON object a line: `time` (UTC, ISO 8601), `level`, `logger`, `message` (formatted, as scrubbed) and,
    for a record with an exception, `exc_type` and `traceback` (its frames; the exception's message is never kept)."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        exc_type, frames = record.__dict__.get(_EXC_TYPE), record.exc_text
        if record.exc_info and record.exc_info[0] is not None:  # a record the scrubber did not see
            kind, value, tb = record.exc_info
            exc_type, frames = _type_name(kind), _frames_only(kind, value, tb)
        if exc_type:
            line["exc_type"] = exc_type
        if frames:
            line["traceback"] = frames
        return json.dumps(line)  # ASCII only: a newline or odd character in a message stays inside this one line


def hold_third_party() -> None:
    """Hold every `HELD` logger at WARNING, and let loggers already made under them inherit that.

    Bolt sets each logger it makes to the root logger's level at that moment, so a logger made before set-up would
    keep INFO or DEBUG: those are reset to inherit from their held parent.
    """
    for name in HELD:
        logging.getLogger(name).setLevel(logging.WARNING)
    for name, logger in list(logging.root.manager.loggerDict.items()):
        if isinstance(logger, logging.Logger) and name not in HELD and is_held(name):
            logger.setLevel(logging.NOTSET)


def is_held(name: str) -> bool:
    """Whether logger `name` is one of `HELD` or below one (Bolt names app loggers `<app name>:<function>`)."""
    return any(name == held or name.startswith((held + ".", held + ":")) for held in HELD)


def install_scrubber() -> None:
    """Wrap the log-record factory so that every record is scrubbed as it is made (once, however often called)."""
    current = logging.getLogRecordFactory()
    if getattr(current, "copbot_scrubber", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        return scrub(current(*args, **kwargs))

    factory.copbot_scrubber = True  # type: ignore[attr-defined]
    factory.wrapped = current  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)


def uninstall_scrubber() -> None:
    """Put back the factory `install_scrubber` wrapped (for tests that set logging up and must leave it as found)."""
    current = logging.getLogRecordFactory()
    if getattr(current, "copbot_scrubber", False):
        logging.setLogRecordFactory(current.wrapped)  # type: ignore[attr-defined]


def scrub(record: logging.LogRecord) -> logging.LogRecord:
    """Withhold what a held logger's record said, and any exception's message; where it came from is kept."""
    if is_held(record.name):
        try:
            length = len(record.getMessage())
        except Exception:  # a library's malformed format string must not break logging
            length = len(str(record.msg))
        match = _OPENING.match(str(record.msg))
        opening = match.group(0).rstrip(" ,'-") if match else ""
        record.msg = _WITHHELD % (opening or "message", length)
        record.args = ()
    if record.exc_info and record.exc_info[0] is not None:
        kind, value, tb = record.exc_info
        record.exc_text = _frames_only(kind, value, tb)
        record.exc_info = None
        record.__dict__[_EXC_TYPE] = _type_name(kind)
    return record


_EXC_TYPE = "copbot_exc_type"  # where a scrubbed record keeps its exception's type, for `JsonLines`


def _type_name(kind: type[BaseException]) -> str:
    return f"{kind.__module__}.{kind.__qualname__}"


def _frames_only(kind: type[BaseException], value: BaseException | None, tb: TracebackType | None) -> str:
    """A traceback with each exception's type but not its message (which may quote what a person typed)."""
    blocks = [_block(kind, tb)]
    seen: set[int] = set()
    current = value
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
        if current is not None:
            blocks.insert(0, _block(type(current), current.__traceback__))
    return "\n\nwhich led to:\n\n".join(blocks)


def _block(kind: type[BaseException], tb: TracebackType | None) -> str:
    frames = "".join(traceback.format_tb(tb))
    return f"Traceback (most recent call last):\n{frames}{_type_name(kind)} (message withheld)"
