"""Third-party reference artifacts the tests read, copied here so a clone is self-contained.

See SOURCES.md in this folder for each file's origin and licence.
"""

from __future__ import annotations

from pathlib import Path

REFERENCE_ROOT = Path(__file__).parent


def reference_path(*parts: str) -> Path:
    """Return the path of a reference file (or folder) under tests/reference, which must exist."""
    path = REFERENCE_ROOT.joinpath(*parts)
    if not path.exists():
        # Name the file and the fix: a missing artifact must not look like a test failure.
        raise FileNotFoundError(
            f"reference file {path} is missing: copy it into tests/reference/ and record its origin in "
            "tests/reference/SOURCES.md"
        )
    return path
