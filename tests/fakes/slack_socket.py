"""A fake Slack Socket Mode endpoint: a loopback WebSocket server that pushes envelopes and returns the app's acks.

Wire format (Slack's, as slack_sdk's Socket Mode clients expect it):

- on connect the server sends ``{"type": "hello", "num_connections": 1, "connection_info": {"app_id": ...}, ...}``;
- it pushes ``{"envelope_id", "type": "events_api" | "slash_commands" | "interactive", "payload",
  "accepts_response_payload", ["retry_attempt", "retry_reason"]}``;
- the app answers ``{"envelope_id": ..., "payload": {...}?}`` (the ack), which `push` returns.
"""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from concurrent.futures import Future
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from tests.fakes.slack_api import APP_ID


class FakeSocketMode:
    """Run with `with FakeSocketMode() as sock:`; attach to a FakeSlack so apps.connections.open returns it."""

    def __init__(self, *, app_id: str = APP_ID):
        self.app_id = app_id
        self.tickets: list[str] = []
        self.received: list[dict[str, Any]] = []  # every JSON message the app sent, acks included
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: Server | None = None
        self._connections: list[ServerConnection] = []
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._connected = threading.Condition()
        self._hellos = 0
        self._port = 0

    # ---- lifecycle -------------------------------------------------------------------------------------------

    def start(self) -> FakeSocketMode:
        ready: Future[None] = Future()
        self._loop = asyncio.new_event_loop()

        def run() -> None:
            assert self._loop is not None
            asyncio.set_event_loop(self._loop)
            try:
                self._loop.run_until_complete(self._open(ready))
            except BaseException as exc:  # pragma: no cover - surfaced through `ready`
                if not ready.done():
                    ready.set_exception(exc)
                return
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="fake-slack-socket", daemon=True)
        self._thread.start()
        ready.result(timeout=5)
        return self

    async def _open(self, ready: Future[None]) -> None:
        self._server = await serve(self._session, "127.0.0.1", 0, ping_interval=None)
        self._port = int(next(iter(self._server.sockets)).getsockname()[1])
        ready.set_result(None)

    def stop(self) -> None:
        loop = self._loop
        if loop is None:
            return

        async def close() -> None:
            if self._server is not None:
                self._server.close()
                await self._server.wait_closed()

        asyncio.run_coroutine_threadsafe(close(), loop).result(timeout=5)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=5)
        loop.close()
        self._loop = None
        self._thread = None

    def __enter__(self) -> FakeSocketMode:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return self._port

    def new_ws_url(self) -> str:
        """A fresh ws:// URL shaped like Slack's (wss://…/link/?ticket=…&app_id=…); apps.connections.open uses it."""
        ticket = str(uuid.uuid4())
        self.tickets.append(ticket)
        return f"ws://127.0.0.1:{self._port}/link/?ticket={ticket}&app_id={self.app_id}"

    # ---- server side -----------------------------------------------------------------------------------------

    async def _session(self, connection: ServerConnection) -> None:
        hello = {
            "type": "hello",
            "num_connections": len(self._connections) + 1,
            "debug_info": {"host": "applink-fake", "build_number": 1, "approximate_connection_time": 18060},
            "connection_info": {"app_id": self.app_id},
        }
        await connection.send(json.dumps(hello))
        self._connections.append(connection)
        with self._connected:
            self._hellos += 1
            self._connected.notify_all()
        try:
            async for raw in connection:
                message = json.loads(raw)
                self.received.append(message)
                future = self._pending.pop(str(message.get("envelope_id")), None)
                if future is not None and not future.done():
                    future.set_result(message)
        except ConnectionClosed:
            pass
        finally:
            self._connections.remove(connection)

    # ---- test side -------------------------------------------------------------------------------------------

    def wait_connected(self, *, count: int = 1, timeout: float = 5.0) -> None:
        """Block until `count` connections have received their hello."""
        with self._connected:
            if not self._connected.wait_for(lambda: self._hellos >= count, timeout=timeout):
                raise AssertionError(f"no Socket Mode connection within {timeout}s (tickets issued: {self.tickets})")

    def push(
        self,
        envelope_type: str,
        payload: dict[str, Any],
        *,
        accepts_response_payload: bool | None = None,
        retry_attempt: int | None = None,
        retry_reason: str = "",
        timeout: float = 5.0,
    ) -> dict[str, Any]:
        """Send one envelope to the newest connection and return the app's ack message."""
        if self._loop is None:
            raise RuntimeError("FakeSocketMode is not started")
        envelope_id = str(uuid.uuid4())
        envelope: dict[str, Any] = {"envelope_id": envelope_id, "type": envelope_type, "payload": payload}
        if accepts_response_payload is None:
            accepts_response_payload = envelope_type != "events_api"
        envelope["accepts_response_payload"] = accepts_response_payload
        if envelope_type == "events_api":
            envelope["retry_attempt"] = retry_attempt or 0
            envelope["retry_reason"] = retry_reason
        return asyncio.run_coroutine_threadsafe(self._push(envelope), self._loop).result(timeout=timeout + 1)

    async def _push(self, envelope: dict[str, Any]) -> dict[str, Any]:
        if not self._connections:
            raise AssertionError("no app is connected to the Socket Mode fake")
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[envelope["envelope_id"]] = future
        await self._connections[-1].send(json.dumps(envelope))
        try:
            return await asyncio.wait_for(future, timeout=5.0)
        except TimeoutError:
            self._pending.pop(envelope["envelope_id"], None)
            raise AssertionError(f"no ack for envelope {envelope['envelope_id']} ({envelope['type']})") from None

    def push_event(self, body: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        """Push an Events API `event_callback` body (see slack_signing.event_callback)."""
        return self.push("events_api", body, **kwargs)

    def push_slash_command(self, fields: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        """Push a slash command; `fields` are the form fields as a dict (see slack_signing.slash_command_fields)."""
        return self.push("slash_commands", fields, **kwargs)

    def push_interactive(self, payload: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        """Push an interactivity payload (block_actions, view_submission, message_action, ...)."""
        return self.push("interactive", payload, **kwargs)

    def push_disconnect(self, reason: str = "refresh_requested") -> None:
        """Ask the app to reconnect, as Slack does every few hours."""
        if self._loop is None:
            raise RuntimeError("FakeSocketMode is not started")

        async def send() -> None:
            if self._connections:
                await self._connections[-1].send(json.dumps({"type": "disconnect", "reason": reason}))

        asyncio.run_coroutine_threadsafe(send(), self._loop).result(timeout=5)
