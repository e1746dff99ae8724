"""The repository stands alone: a copy in an empty folder refers to nothing outside it and imports every test module.

The copy is of the files git would commit (tracked plus new, minus ignored), so it also covers work not yet
committed. Importing runs `pytest --collect-only` in the copy with this virtualenv's Python, under an audit hook
that reports any file opened in the original checkout (outside its virtualenv) or in the old shared folder.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Built from pieces so this file does not itself contain what it looks for.
SHARED = "/work" + "/shared"
FORBIDDEN = re.compile(
    "|".join(
        [
            re.escape(".." + "/shared"),
            re.escape(SHARED),
            # A path joined from parts, as `root.parent / "shared"` followed by the folder name.
            r"""["']shared["']\s*/\s*["'](?:reference|design\.md|style\.md)""",
        ]
    )
)

# Runs inside the copy: every `open` outside the copy is recorded, then the collection's exit code is returned.
_COLLECT = """
import json, os, sys
copy, original, venv, shared, report = sys.argv[1:6]
outside = set()

def hook(event, args):
    if event != "open" or not args or isinstance(args[0], int):
        return
    path = os.path.abspath(os.fsdecode(args[0]))
    inside_original = path.startswith(original + os.sep) and not path.startswith(venv + os.sep)
    if inside_original or path.startswith(shared + os.sep):
        outside.add(path)

sys.path.insert(0, copy)
sys.addaudithook(hook)
import pytest
code = pytest.main(["--collect-only", "-q", "-p", "no:cacheprovider", "tests"])
with open(report, "w") as f:
    json.dump(sorted(outside), f)
sys.exit(int(code))
"""


def _committable_files() -> list[str]:
    """Every file git would commit here: tracked and untracked, without the ignored ones."""
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout: cannot tell which files belong to the repository")
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.decode()
    return [name for name in listed.split("\0") if name and (REPO / name).is_file()]


@pytest.fixture(scope="module")
def copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The repository's files, copied into an empty folder with no shared folder beside them."""
    target = tmp_path_factory.mktemp("clone") / "copbot"
    for name in _committable_files():
        destination = target / name
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, destination)
    return target


def test_no_file_refers_to_the_shared_folder(copy: Path) -> None:
    offenders = []
    for path in sorted(p for p in copy.rglob("*") if p.is_file()):
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue  # binary (icons): no paths in there
        for number, line in enumerate(text.splitlines(), start=1):
            if FORBIDDEN.search(line):
                offenders.append(f"{path.relative_to(copy)}:{number}: {line.strip()}")

    assert offenders == [], "files refer outside the repository:\n" + "\n".join(offenders)


@pytest.mark.slow  # about 10 s: a whole collection of the suite
def test_every_test_module_imports_in_the_copy(copy: Path, tmp_path: Path) -> None:
    report = tmp_path / "outside.json"
    # PYTHONPATH could put the original checkout on the path, and the copy would import the original's modules.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    venv = Path(sys.prefix).resolve()

    result = subprocess.run(
        [sys.executable, "-c", _COLLECT, str(copy), str(REPO), str(venv), SHARED, str(report)],
        cwd=copy,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert json.loads(report.read_text()) == [], "the copy read files outside itself"
