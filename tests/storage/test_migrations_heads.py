"""One Alembic head: `alembic revision` works and `migrate()` lands on it (the drift check is in test_storage.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from storage.engine import MIGRATIONS, alembic_config


def script_heads(*, script_location: Path) -> list[str]:
    """The head revisions of the migration scripts in `script_location`, as `alembic heads` lists them."""
    config = Config()
    config.set_main_option("script_location", str(script_location))
    return sorted(ScriptDirectory.from_config(config).get_heads())


def test_the_migrations_have_exactly_one_head() -> None:
    heads = script_heads(script_location=MIGRATIONS)

    assert len(heads) == 1, (
        f"migration heads {heads}: add a merge revision (alembic -c storage/alembic.ini merge -m 'merge' heads)"
    )


def test_a_second_head_is_caught(tmp_path: Path) -> None:
    # Prove the check above can fail: a new revision branching off an old one makes a second head.
    copy = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS, copy, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "versions" / "9999_branch.py").write_text(
        'revision = "9999_branch"\ndown_revision = "0002"\nbranch_labels = None\ndepends_on = None\n\n\n'
        "def upgrade() -> None:\n    pass\n\n\ndef downgrade() -> None:\n    pass\n"
    )

    heads = script_heads(script_location=copy)

    assert len(heads) == 2
    assert "9999_branch" in heads


def test_a_migrated_database_stands_at_the_single_head(engine: Engine) -> None:
    head = ScriptDirectory.from_config(alembic_config(engine)).get_current_head()
    with engine.connect() as conn:
        current = MigrationContext.configure(conn).get_current_heads()

    assert head is not None
    assert current == (head,)
