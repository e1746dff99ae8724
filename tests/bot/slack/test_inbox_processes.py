"""The acceptance test of issue 14, with real processes: `copbot run --no-worker` answers Slack, a separate
`copbot worker` runs the work, and SIGKILL of that worker between the acknowledgement and the reply loses nothing:
the reply arrives after a restart, once."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from tests.fakes import slack_signing as signing
from tests.fakes.server_process import copbot_process, copbot_server, free_port
from tests.fakes.slack_api import BOT_TOKEN, FakeSlack

WAIT = 30.0


def settings(fake: FakeSlack) -> dict[str, str]:
    return {"SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_SIGNING_SECRET": signing.SIGNING_SECRET, "SLACK_API_URL": fake.url}


def post(base: str, request: signing.SignedRequest) -> int:
    return httpx.post(f"{base}/slack/events", content=request.content, headers=request.headers, timeout=10).status_code


def test_sigkill_of_the_worker_mid_request_loses_nothing_and_the_reply_arrives_once_after_restart(
    fake_slack: FakeSlack, tmp_path: Path
) -> None:
    in_slack = threading.Event()
    release = threading.Event()
    make_channel = fake_slack._m_conversations_create

    def slow_create(params: dict[str, Any]) -> dict[str, Any]:
        in_slack.set()
        release.wait(WAIT)  # the worker is killed while Slack is making the channel
        return make_channel(params)

    fake_slack.on("conversations.create", slow_create)
    env = settings(fake_slack)
    with copbot_server(env, cwd=tmp_path, args=("run", "--no-worker")) as base:
        url = fake_slack.response_url("create")
        assert post(base, signing.signed_slash_command("create Falls", response_url=url)) == 200
        first = copbot_process(env, cwd=tmp_path, args=("worker", "--threads", "2"))
        try:
            assert in_slack.wait(WAIT), (tmp_path / "worker.log").read_text()
            first.send_signal(signal.SIGKILL)
            first.wait(WAIT)
        finally:
            release.set()
        assert fake_slack.responses == []  # acknowledged, not yet answered: the request waits in the inbox

        second = copbot_process(env, cwd=tmp_path, args=("worker",))
        try:
            [reply] = fake_slack.wait_for_responses(1, timeout=WAIT)
            # The same person's next request runs only after the first is done, so once its answer is here any
            # second answer to the first would be too.
            assert post(base, signing.signed_slash_command("list", response_url=fake_slack.response_url("list"))) == 200
            fake_slack.wait_for_responses(2, timeout=WAIT)
        finally:
            second.terminate()
            second.wait(WAIT)

    assert "Created *Falls* with the channel `cop-falls`" in str(reply["text"])
    assert [r["text"] for r in fake_slack.responses].count(reply["text"]) == 1
    assert len(fake_slack.calls_to("conversations.create")) == 1  # adopted after the kill, not made again
    assert fake_slack.channel_named("cop-falls-2") is None
    assert "*Falls*" in str(fake_slack.responses[1]["text"])


def children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def test_copbot_run_starts_its_worker_restarts_it_when_killed_and_it_stops_when_the_server_is_killed(
    fake_slack: FakeSlack, tmp_path: Path
) -> None:
    server = copbot_process(settings(fake_slack) | {"COPBOT_PORT": str(free_port())}, cwd=tmp_path, args=("run",))
    try:
        deadline = time.monotonic() + WAIT
        while not (workers := children(server.pid)) and time.monotonic() < deadline:
            time.sleep(0.1)
        [worker] = workers
        os.kill(worker, signal.SIGKILL)
        while (restarted := [p for p in children(server.pid) if p != worker]) == [] and time.monotonic() < deadline:
            time.sleep(0.1)
        [again] = restarted
    finally:
        server.send_signal(signal.SIGKILL)
        server.wait(WAIT)
    deadline = time.monotonic() + WAIT
    while Path(f"/proc/{again}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not Path(f"/proc/{again}").exists()  # an orphaned worker stops by itself
