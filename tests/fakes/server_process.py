"""Runs the real `copbot` process on a free loopback port for end-to-end tests, and stops it afterwards."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
PLATFORM_PREFIXES = ("SLACK_", "TEAMS_", "COPBOT_", "GRAPH_")


def free_port() -> int:
    """A port nothing listens on right now (bound and released on 127.0.0.1)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def copbot_env(settings: Mapping[str, str], *, cwd: Path) -> dict[str, str]:
    """The environment of a `copbot` process with exactly these platform settings (and its SQLite file in `cwd`)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(PLATFORM_PREFIXES)}
    env.update(settings, PYTHONPATH=str(ROOT))
    env.setdefault("DATABASE_URL", f"sqlite:///{cwd}/copbot.db")
    return env


def copbot_process(settings: Mapping[str, str], *, cwd: Path, args: tuple[str, ...]) -> subprocess.Popen[bytes]:
    """`python -m bot.cli *args` with exactly these platform settings, its output to `cwd/<first arg>.log`."""
    log = (cwd / f"{args[0].lstrip('-')}.log").open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "bot.cli", *args], cwd=cwd, env=copbot_env(settings, cwd=cwd), stdout=log,
        stderr=subprocess.STDOUT,
    )  # fmt: skip


@contextlib.contextmanager
def copbot_server(settings: Mapping[str, str], *, cwd: Path, args: tuple[str, ...] = ()) -> Iterator[str]:
    """Start `python -m bot.cli *args` with exactly these platform settings; yield its base URL once /healthz is 200."""
    port = free_port()
    env = copbot_env(settings, cwd=cwd) | {"COPBOT_PORT": str(port)}
    process = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", *args], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            if process.poll() is not None or time.monotonic() > deadline:
                output = process.stdout.read().decode() if process.stdout else ""
                pytest.fail(f"copbot did not start (exit {process.returncode}):\n{output}")
            time.sleep(0.1)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
