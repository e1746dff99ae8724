"""A loopback fake of the OneDrive upload session Teams hands a bot when someone accepts a file.

When a person presses **Allow** on a file-consent card, Teams creates a placeholder in their OneDrive and sends the bot
a `fileConsent/invoke` whose `uploadInfo.uploadUrl` is a pre-authenticated upload-session URL. The bot PUTs the bytes
there. `FakeOneDrive.session()` makes such an `uploadInfo` (pointing at this loopback server); the server checks each
PUT as OneDrive documents it — no `Authorization` header (the URL carries the authority), a `Content-Range` of
`bytes <first>-<last>/<total>` that matches the body and `Content-Length` — and records the assembled file.
"""

from __future__ import annotations

import re
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any

from tests.fakes.teams import FakeRequest, FakeResponse, FaultScript, LoopbackServer, error_body

_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+)$")


@dataclass
class Upload:
    """One upload session: what Teams told the bot, and the bytes that arrived."""

    info: dict[str, Any]
    received: bytearray = field(default_factory=bytearray)
    total: int | None = None
    complete: bool = False


class FakeOneDrive:
    def __init__(self) -> None:
        self.faults = FaultScript()
        self.violations: list[str] = []
        self.uploads: dict[str, Upload] = {}
        self._lock = threading.Lock()
        self._server = LoopbackServer(self._app)
        self.base_url = self._server.base_url

    def close(self) -> None:
        self._server.close()

    def __enter__(self) -> FakeOneDrive:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def all_violations(self) -> list[str]:
        return [*self.violations, *self._server.errors]

    def session(self, name: str) -> dict[str, Any]:
        """A fresh `uploadInfo`, as in a `fileConsent/invoke` accept."""
        token = uuid.uuid4().hex
        info = {
            "contentUrl": f"{self.base_url}/personal/user/Documents/Applications/copbot/{name}",
            "name": name,
            "uploadUrl": f"{self.base_url}/upload/{token}",
            "uniqueId": str(uuid.uuid4()).upper(),
            "fileType": name.rsplit(".", 1)[-1] if "." in name else "",
            "etag": "1",
        }
        with self._lock:
            self.uploads[token] = Upload(info=info)
        return info

    def file(self, info: dict[str, Any]) -> bytes | None:
        """The bytes uploaded to `info`'s session, once complete (else None)."""
        token = str(info["uploadUrl"]).rsplit("/", 1)[-1]
        upload = self.uploads.get(token)
        return bytes(upload.received) if upload is not None and upload.complete else None

    def _violation(self, request: FakeRequest, problem: str) -> FakeResponse:
        self.violations.append(f"{request.method} {request.path}: {problem}")
        return FakeResponse(400, error_body("invalidRequest", problem))

    def _app(self, request: FakeRequest) -> FakeResponse:
        if not request.path.startswith("/upload/"):
            return FakeResponse(404, error_body("itemNotFound", "no such path"))
        if request.method != "PUT":
            return self._violation(request, f"{request.method} on an upload session (PUT expected)")
        fault = self.faults.take(request)
        if fault is not None:
            return fault
        token = request.path.rsplit("/", 1)[-1]
        with self._lock:
            upload = self.uploads.get(token)
            if upload is None:
                return FakeResponse(404, error_body("itemNotFound", "unknown upload session"))
            if "authorization" in request.headers:
                return self._violation(request, "Authorization header sent to a pre-authenticated upload URL")
            match = _RANGE.match(request.headers.get("content-range", ""))
            if match is None:
                return self._violation(request, "Content-Range missing or not `bytes first-last/total`")
            first, last, total = (int(g) for g in match.groups())
            if first != len(upload.received) or last - first + 1 != len(request.body) or last >= total:
                return self._violation(request, f"Content-Range {first}-{last}/{total} does not fit the bytes")
            if upload.total not in (None, total):
                return self._violation(request, "total size changed between fragments")
            upload.total = total
            upload.received.extend(request.body)
            if len(upload.received) < total:
                return FakeResponse(202, {"nextExpectedRanges": [f"{len(upload.received)}-"]})
            upload.complete = True
            info = upload.info
            item = {"id": info["uniqueId"], "name": info["name"], "size": total, "webUrl": info["contentUrl"]}
            return FakeResponse(201, item)
