"""Plumbing shared by the Bot Connector and Microsoft Graph clients, above all the one retrying HTTP call.

Both services throttle with 429 + `Retry-After` and have transient 412/502/503/504 answers. `send` retries those a
bounded number of times, sleeping through an injected function (so tests never really wait), and turns every other
failure into a typed `TeamsApiError` that carries the HTTP status and the service's error *code* — never the
service's message, which may quote the text we sent.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import ipaddress
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

log = logging.getLogger(__name__)

RETRYABLE_STATUSES = frozenset({412, 429, 502, 503, 504})
"""412 (Teams: conversation busy), 429 (throttled), 502/503/504 (gateway trouble)."""

Sleep = Callable[[float], None]
TokenFn = Callable[[], str]


class TeamsApiError(Exception):
    """A Bot Connector or Graph call that failed for good.

    `status` is the HTTP status (0 when no response arrived), `code` the service's error code (e.g.
    `ServiceError`, `NameAlreadyExists`) or a short word of ours, and `retry_after` the seconds the service asked us
    to wait when we gave up on a throttled call (so a caller such as the outbox can reschedule instead of blocking).
    """

    def __init__(self, status: int, code: str, *, retry_after: float | None = None) -> None:
        super().__init__(status, code)
        self.status = status
        self.code = code
        self.retry_after = retry_after

    def __str__(self) -> str:
        hint = f", retry after {self.retry_after:g}s" if self.retry_after is not None else ""
        return f"{type(self).__name__}: HTTP {self.status} {self.code}{hint}"


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try: `max_attempts` in all (first try included), exponential backoff from `base_delay`
    (doubling, capped at `max_delay`) unless the service says `Retry-After`; a `Retry-After` longer than
    `max_retry_after` is not slept through — the call fails at once with `retry_after` set."""

    max_attempts: int = 4
    base_delay: float = 1.0
    max_delay: float = 30.0
    max_retry_after: float = 120.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")

    def backoff(self, attempt: int) -> float:
        """The wait before try number `attempt + 1` when the service gave no `Retry-After`."""
        return float(min(self.max_delay, self.base_delay * (2 ** (attempt - 1))))


def parse_retry_after(value: str | None, *, now: dt.datetime | None = None) -> float | None:
    """Seconds from a `Retry-After` header: delta-seconds or an HTTP date; None when absent or unreadable."""
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    current = now or dt.datetime.now(dt.UTC)
    return max(0.0, (when - current).total_seconds())


def require_secure_url(url: str, *, what: str) -> str:
    """Refuse to send a bearer token anywhere but HTTPS, or plain HTTP to this machine (test fakes)."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return url
    if parts.scheme == "http" and parts.hostname and _is_loopback(parts.hostname):
        return url
    raise ValueError(f"{what} must be an https URL (plain http only for loopback): {parts.scheme}://{parts.netloc}")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def optional_str(value: Any) -> str | None:
    """A non-empty string from a JSON field, else None (Teams omits or blanks optional fields freely)."""
    return value if isinstance(value, str) and value else None


def error_code(response: httpx.Response) -> str:
    """The `error.code` of a Bot Framework / Graph error body, or `http_<status>` when there is none."""
    try:
        body = response.json()
    except ValueError:
        return f"http_{response.status_code}"
    if isinstance(body, Mapping):
        error = body.get("error")
        if isinstance(error, Mapping) and isinstance(error.get("code"), str) and error["code"]:
            return str(error["code"])
        if isinstance(error, str) and error:  # OAuth-style bodies
            return error
    return f"http_{response.status_code}"


def send(
    http: httpx.Client,
    method: str,
    url: str,
    *,
    token: TokenFn | None,
    error: type[TeamsApiError],
    policy: RetryPolicy,
    sleep: Sleep = time.sleep,
    json: Any = None,
    params: Mapping[str, str] | None = None,
    content: bytes | None = None,
    headers: Mapping[str, str] | None = None,
) -> httpx.Response:
    """Make one logical call, retrying throttling and transient failures; return the 2xx response or raise `error`.

    A fresh token is asked for on every attempt so a retry after a long wait never carries an expired one; `token`
    None sends no `Authorization` (a pre-authenticated URL, such as a OneDrive upload session).
    Connection failures (nothing was sent) are retried; a read timeout is not, because the service may have acted.
    """
    for attempt in range(1, policy.max_attempts + 1):
        sent = {"Accept": "application/json", **(headers or {})}
        if token is not None:
            sent["Authorization"] = f"Bearer {token()}"
        try:
            response = http.request(method, url, headers=sent, json=json, params=params, content=content)
        except httpx.ConnectError as exc:
            if attempt == policy.max_attempts:
                raise error(0, "connect_error") from exc
            delay = policy.backoff(attempt)
            log.warning("%s %s: connect failed (attempt %d), retrying in %.1fs", method, _path(url), attempt, delay)
            sleep(delay)
            continue
        except httpx.HTTPError as exc:
            raise error(0, type(exc).__name__) from exc

        if response.is_success:
            return response
        status = response.status_code
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        if status not in RETRYABLE_STATUSES:
            raise error(status, error_code(response))
        if retry_after is not None and retry_after > policy.max_retry_after:
            raise error(status, error_code(response), retry_after=retry_after)
        if attempt == policy.max_attempts:
            raise error(status, error_code(response), retry_after=retry_after)
        delay = retry_after if retry_after is not None else policy.backoff(attempt)
        log.warning(
            "%s %s: HTTP %d (attempt %d of %d), retrying in %.1fs",
            method,
            _path(url),
            status,
            attempt,
            policy.max_attempts,
            delay,
        )
        sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover - the loop always returns or raises


def _path(url: str) -> str:
    """The path only: query strings can hold paging tokens, and hosts are noise in logs."""
    return urlsplit(url).path
