"""Foundation figures: start-up time of `copbot --help`, and console throughput for create/join/list commands."""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import Figure, median, percentile
from bot.config import load_settings
from bot.console.app import build_console


def _startup_seconds(runs: int) -> list[float]:
    exe = shutil.which("copbot")
    command = [exe, "--help"] if exe else [sys.executable, "-m", "bot.cli", "--help"]
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        samples.append(time.perf_counter() - started)
    return samples


def _script(total: int) -> str:
    """create / join / list in equal thirds, spread over several people and communities."""
    lines = []
    for i in range(total):
        kind = i % 3
        if kind == 0:
            lines.append(f":as creator{i % 7}\n/cop create Community {i} | purpose {i}\n")
        elif kind == 1:
            lines.append(f":as member{i % 50}\n/cop join community-{i - 1}\n")
        else:
            lines.append("/cop list\n")
    return "".join(lines)


def run(*, quick: bool) -> list[Figure]:
    startup = _startup_seconds(3 if quick else 10)
    total = 300 if quick else 1000
    with tempfile.TemporaryDirectory() as tmp:
        out = io.StringIO()
        settings = load_settings({"DATABASE_URL": f"sqlite:///{Path(tmp) / 'bench.db'}"}, env_file=None)
        app = build_console(settings, inp=io.StringIO(_script(total)), out=out, interactive=False)
        container = app.container
        started = time.perf_counter()
        app.run()
        elapsed = time.perf_counter() - started
        created = out.getvalue().count("Created *Community")
        container.close()
    return [
        Figure("console", "copbot --help start-up (median)", median(startup) * 1000, "ms", note=f"{len(startup)} runs"),
        Figure("console", "copbot --help start-up (p95)", percentile(startup, 95) * 1000, "ms"),
        Figure(
            "console",
            f"console throughput, {total} create/join/list on SQLite",
            total / elapsed,
            "commands/s",
            ok=created == total // 3 + (1 if total % 3 else 0),
            note=f"{elapsed:.2f} s, {created} communities created",
        ),
    ]
