"""Sending a file to someone on Teams: the file-consent flow of the bot's 1:1 chat.

A Teams bot cannot attach a file to a message. It sends a *file-consent card* naming the file and its size; when the
person presses **Allow**, Teams makes a placeholder in their OneDrive and sends the bot a `fileConsent/invoke` with a
pre-authenticated upload URL; the bot PUTs the bytes there and then posts a *file info card* that opens the file.
**Decline** sends the same invoke with `action: decline`. Between the card and the answer the bytes wait in
`storage.teams` (`TeamsPendingFile`), so any copbot process can finish the upload, and they are deleted as soon as the
person answers (or after `PENDING_FILE_DAYS`).

The shapes follow Microsoft's "Send and receive files using bots" (Teams bot APIs, personal scope) and the recorded
consent card in the shared reference folder; the manifest's bot must declare `supportsFiles`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from bot.teams._http import RetryPolicy, Sleep, TeamsApiError, optional_str, send

FILE_CONSENT = "application/vnd.microsoft.teams.card.file.consent"
FILE_INFO = "application/vnd.microsoft.teams.card.file.info"
INVOKE = "fileConsent/invoke"
PENDING_FILE_DAYS = 7
MAX_BYTES = 25 * 1024 * 1024  # exports are far smaller; this bounds what waits in the database
CHUNK = 4 * 1024 * 1024  # OneDrive wants fragments in multiples of 320 KiB and under 60 MiB; 4 MiB is 13 × 320 KiB


class UploadError(TeamsApiError):
    """The PUT of a file's bytes to the person's OneDrive failed for good."""


def consent_attachment(*, filename: str, description: str, size: int, key: str) -> dict[str, Any]:
    """The card asking the person to allow the file into their OneDrive; `key` comes back in the invoke."""
    context = {"copbotFile": key}
    return {
        "contentType": FILE_CONSENT,
        "name": filename,
        "content": {
            "description": description,
            "sizeInBytes": size,
            "acceptContext": context,
            "declineContext": context,
        },
    }


@dataclass(frozen=True)
class ConsentAnswer:
    """A `fileConsent/invoke`: which pending file, the person's answer and, when they accepted, where to upload."""

    key: str
    accepted: bool
    upload: UploadInfo | None


@dataclass(frozen=True)
class UploadInfo:
    upload_url: str
    content_url: str
    name: str
    unique_id: str
    file_type: str


def parse_answer(value: Any) -> ConsentAnswer | None:
    """The invoke's `value`, or None when it is not an answer to one of copbot's cards."""
    if not isinstance(value, Mapping) or value.get("type") != "fileUpload":
        return None
    context = value.get("context")
    key = optional_str(context.get("copbotFile")) if isinstance(context, Mapping) else None
    action = value.get("action")
    if key is None or action not in ("accept", "decline"):
        return None
    upload = None
    info = value.get("uploadInfo")
    if action == "accept" and isinstance(info, Mapping):
        fields = [optional_str(info.get(name)) for name in ("uploadUrl", "contentUrl", "name", "uniqueId")]
        if all(fields):
            upload_url, content_url, name, unique_id = (str(f) for f in fields)
            file_type = optional_str(info.get("fileType")) or name.rsplit(".", 1)[-1]
            upload = UploadInfo(upload_url, content_url, name, unique_id, file_type)
    return ConsentAnswer(key=key, accepted=action == "accept", upload=upload)


def file_info_attachment(info: UploadInfo) -> dict[str, Any]:
    """The card that shows the uploaded file in the chat (open, preview, download)."""
    return {
        "contentType": FILE_INFO,
        "contentUrl": info.content_url,
        "name": info.name,
        "content": {"uniqueId": info.unique_id, "fileType": info.file_type},
    }


def upload(
    http: httpx.Client,
    info: UploadInfo,
    content: bytes,
    *,
    policy: RetryPolicy | None = None,
    sleep: Sleep = time.sleep,
) -> None:
    """PUT `content` to the upload session in `CHUNK`-sized fragments, each retried on throttling and 5xx.

    The upload URL carries its own authority: no bearer token is sent (OneDrive may answer 401 to one).
    """
    total = len(content)
    if total == 0:
        raise ValueError("an upload session cannot take an empty file")
    for first in range(0, total, CHUNK):
        part = content[first : first + CHUNK]
        last = first + len(part) - 1
        send(
            http,
            "PUT",
            info.upload_url,
            token=None,
            error=UploadError,
            policy=policy or RetryPolicy(),
            sleep=sleep,
            content=part,
            headers={"Content-Range": f"bytes {first}-{last}/{total}", "Content-Length": str(len(part))},
        )
