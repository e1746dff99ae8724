"""A stand-alone outbox dispatcher process for the fault tests: `python -m tests.bot.outbox_worker DB_URL SLACK_URL`.

It sends until nothing is left to send (waiting out leases of crashed workers), then exits 0.
"""

from __future__ import annotations

import datetime as dt
import sys
import time

from sqlmodel import Session

from bot.dispatcher import Dispatcher
from bot.slack.platform import SlackPlatform, make_client
from handlers.ports import SystemClock
from storage import rhythm
from storage.engine import make_engine
from tests.fakes.slack_api import BOT_TOKEN


def main() -> int:
    database_url, slack_url, rate, lease = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
    engine = make_engine(database_url)
    platform = SlackPlatform(make_client(token=BOT_TOKEN, base_url=slack_url, wait_on_rate_limit=False))
    dispatcher = Dispatcher(
        engine=engine, platform=platform, clock=SystemClock(), workspace_rate=rate, channel_rate=rate,
        lease=dt.timedelta(seconds=lease), batch=20,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        dispatcher.run()
        with Session(engine) as db:
            if rhythm.pending_count(db=db) == 0:
                return 0
        time.sleep(0.2)  # rows held by another worker's lease: wait for them to be sent or to expire
    return 1


if __name__ == "__main__":
    sys.exit(main())
