"""An inbox worker for the Slack adapter tests: what the worker process does in production, on a thread."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from slack_sdk import WebClient
from sqlalchemy import Engine

from bot.slack.inbox import SlackKinds
from bot.worker import Worker, running
from handlers.app import CopBot
from handlers.ports import Clock
from storage.inbox import open_queue


def slack_worker(*, bot: CopBot, client: WebClient, engine: Engine, clock: Clock, threads: int = 4) -> Worker:
    kinds = SlackKinds(core=bot, client=client, story_emoji=bot.config.story_emoji).kinds()
    return Worker(engine=engine, queue=open_queue(engine), kinds=kinds, clock=clock, threads=threads)


@contextlib.contextmanager
def worker_running(*, bot: CopBot, client: WebClient, engine: Engine, clock: Clock) -> Iterator[Worker]:
    """A worker that runs every request the Bolt app stores, until the block ends."""
    with running(slack_worker(bot=bot, client=client, engine=engine, clock=clock)) as worker:
        yield worker
