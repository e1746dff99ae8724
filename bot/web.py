"""One ASGI app for every HTTP entry point: Slack events (and, with Teams, /api/messages) plus /healthz."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

from slack_bolt import App, BoltRequest
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

log = logging.getLogger(__name__)

TeamsHandler = Callable[[str | None, Mapping[str, Any]], tuple[int, Any]]
"""Teams: (Authorization header, activity) -> (HTTP status, JSON body or None); see bot/teams/adapter.py."""


def create_web_app(
    *,
    slack_app: App | None,
    healthy: Callable[[], bool],
    teams_handler: TeamsHandler | None = None,
    on_startup: Callable[[], None] | None = None,
    on_shutdown: Callable[[], None] | None = None,
) -> Starlette:
    """The HTTP app. Bolt's dispatch (signature check, ack, listeners) and the Teams adapter (JWT check, handling)
    run in a worker thread, never on the loop."""

    async def slack_events(request: Request) -> Response:
        if slack_app is None:
            return JSONResponse({"error": "Slack is not configured"}, status_code=404)
        body = (await request.body()).decode("utf-8")
        headers: dict[str, str | Sequence[str]] = dict(request.headers.items())
        bolt_request = BoltRequest(body=body, query=request.url.query, headers=headers)
        bolt_response = await run_in_threadpool(slack_app.dispatch, bolt_request)
        return Response(
            content=bolt_response.body,
            status_code=bolt_response.status,
            headers={k: v[0] for k, v in bolt_response.headers.items() if v},
        )

    async def teams_messages(request: Request) -> Response:
        if teams_handler is None:
            return JSONResponse({"error": "Teams is not configured"}, status_code=404)
        try:
            activity = json.loads(await request.body())
        except ValueError:
            activity = None
        if not isinstance(activity, dict):
            return JSONResponse({"error": "the body must be a JSON activity"}, status_code=400)
        status, body = await run_in_threadpool(teams_handler, request.headers.get("authorization"), activity)
        if body is None:
            return Response(status_code=status)
        return JSONResponse(body, status_code=status)

    async def healthz(request: Request) -> Response:
        ok = await run_in_threadpool(healthy)
        return JSONResponse({"ok": ok}, status_code=200 if ok else 503)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # Each server process starts its own background jobs; the outbox makes that safe.
        if on_startup is not None:
            on_startup()
        try:
            yield
        finally:
            if on_shutdown is not None:
                on_shutdown()

    return Starlette(
        routes=[
            Route("/slack/events", slack_events, methods=["POST"]),
            Route("/api/messages", teams_messages, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
