"""The hash-locked dependency sets agree with pyproject.toml's ranges (refresh them with `scripts/lock`)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
REFRESH = "the lock is out of date with pyproject.toml; refresh it with: scripts/lock"
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")


def pins(lock: str) -> dict[str, tuple[str, int]]:
    """Package -> (pinned version, number of hashes) from a `uv pip compile --generate-hashes` file."""
    found: dict[str, tuple[str, int]] = {}
    current = ""
    for line in (ROOT / lock).read_text().splitlines():
        if m := _PIN.match(line):
            current = canonicalize_name(m.group(1))
            found[current] = (m.group(2), 0)
        elif "--hash=sha256:" in line and current:
            version, hashes = found[current]
            found[current] = (version, hashes + 1)
    return found


def wanted(*, dev: bool) -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = list(project["dependencies"]) + (list(project["optional-dependencies"]["dev"]) if dev else [])
    return [Requirement(n) for n in names]


@pytest.mark.parametrize(("lock", "dev"), [("requirements.lock", False), ("requirements-dev.lock", True)])
def test_every_dependency_is_pinned_within_its_range_with_hashes(lock: str, dev: bool) -> None:
    pinned = pins(lock)
    for requirement in wanted(dev=dev):
        name = canonicalize_name(requirement.name)
        assert name in pinned, f"{requirement.name} is not in {lock}: {REFRESH}"
        version, hashes = pinned[name]
        assert requirement.specifier.contains(version, prereleases=True), (
            f"{name}=={version} vs {requirement}: {REFRESH}"
        )
        assert hashes > 0, f"{name} has no hash in {lock}: {REFRESH}"
    assert all(hashes > 0 for _, hashes in pinned.values()), f"every pin needs a hash: {REFRESH}"


def test_the_runtime_lock_is_the_dev_lock_without_the_tools() -> None:
    runtime, dev = pins("requirements.lock"), pins("requirements-dev.lock")
    assert {name: runtime[name][0] for name in runtime} == {name: dev[name][0] for name in runtime}, REFRESH
