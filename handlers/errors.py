"""Domain errors: each carries a short message that is safe to show the person who caused it."""

from __future__ import annotations


class DomainError(Exception):
    """A problem the person can fix; `message` is shown to them privately, `example` shows the right form."""

    def __init__(self, message: str, *, example: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.example = example

    def user_text(self) -> str:
        """The private reply: what was wrong, then an example of the right form when there is one."""
        if self.example:
            return f"{self.message}\nFor example: `{self.example}`"
        return self.message


class UsageError(DomainError):
    """The command was malformed (missing argument, bad option)."""


class FieldErrors(DomainError):
    """A form's values are wrong in named fields: `errors` maps each field's name to what is wrong with it, so a form
    can be shown again with every typed value kept and each message under its field."""

    def __init__(self, errors: dict[str, str], *, labels: dict[str, str] | None = None) -> None:
        self.errors = dict(errors)
        names = labels or {}
        listing = "; ".join(f"*{names.get(field, field)}*: {message}" for field, message in self.errors.items())
        super().__init__(f"Please check the form: {listing}")


class UnknownCommunity(DomainError):
    """No community matches the name, slug or channel given."""


class NotAllowed(DomainError):
    """The person may not do this; the message says who can."""


class Conflict(DomainError):
    """The thing already exists or is in a state that forbids the action."""


class NotAvailableYet(DomainError):
    """A documented command whose feature has not been built yet."""


class PlatformError(DomainError):
    """The chat platform refused or failed an action; the message is safe to show.

    `code` is the platform's error code (safe to log); `transient` says whether trying again later may work.
    """

    def __init__(self, message: str, *, code: str = "unknown", transient: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.transient = transient


class RateLimited(PlatformError):
    """The platform asked us to slow down: try again after `retry_after` seconds (never drop the message)."""

    def __init__(self, retry_after: float, *, code: str = "ratelimited") -> None:
        super().__init__("The chat platform is busy; this will be sent shortly.", code=code, transient=True)
        self.retry_after = retry_after
