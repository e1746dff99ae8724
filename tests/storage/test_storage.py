"""Storage on SQLite and PostgreSQL: migrations, constraints, aware UTC datetimes, repository behaviour."""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, text
from sqlalchemy.exc import IntegrityError, StatementError
from sqlmodel import Session, SQLModel

import storage.schema  # noqa: F401  (every table, for the drift check)
from storage import repository as repo
from storage import teams
from storage.engine import DatabaseUnavailable, current_tables, downgrade, make_engine, migrate
from storage.models import Member, Role
from storage.stories import include_object

NOW = dt.datetime(2026, 11, 25, 9, 30, tzinfo=dt.UTC)


def _member(db: Session, user: str) -> Member:
    return repo.ensure_member(db=db, platform="slack", workspace_id="T1", user_id=user, display_name=user, now=NOW)


def test_migrations_create_the_schema_and_match_the_models(any_engine: Engine) -> None:
    assert {"community", "member", "membership", "audit_event", "alembic_version"} <= current_tables(any_engine)
    with any_engine.connect() as conn:
        # The same filter as storage/migrations/env.py: search indexes are made by migrations, not models.
        context = MigrationContext.configure(conn, opts={"include_object": include_object})
        diff = compare_metadata(context, SQLModel.metadata)
    assert diff == [], "models and migrations disagree: write a migration"


def test_member_identity_is_unique_and_ensure_is_idempotent(any_engine: Engine) -> None:
    with Session(any_engine) as db:
        first = _member(db, "U1")
        again = repo.ensure_member(
            db=db, platform="slack", workspace_id="T1", user_id="U1", display_name="New", now=NOW
        )
        assert first.id == again.id
        assert again.display_name == "New"
        db.commit()
    with Session(any_engine) as db:
        db.add(Member(platform="slack", workspace_id="T1", user_id="U1", created_at=NOW, updated_at=NOW))
        with pytest.raises(IntegrityError):
            db.commit()


def test_datetimes_come_back_aware_utc(any_engine: Engine) -> None:
    london = dt.timezone(dt.timedelta(hours=1))
    with Session(any_engine) as db:
        member = repo.ensure_member(
            db=db, platform="slack", workspace_id="T1", user_id="U9", now=dt.datetime(2026, 6, 1, 10, 0, tzinfo=london)
        )
        db.commit()
        member_id = member.id
    with Session(any_engine) as db:
        loaded = db.get(Member, member_id)
        assert loaded is not None
        assert loaded.created_at == dt.datetime(2026, 6, 1, 9, 0, tzinfo=dt.UTC)
        assert loaded.created_at.tzinfo is not None
    with Session(any_engine) as db, pytest.raises(StatementError, match="naive datetime"):
        repo.ensure_member(db=db, platform="slack", workspace_id="T1", user_id="U10", now=dt.datetime(2026, 1, 1))


def test_community_lifecycle_memberships_roles_and_counts(any_engine: Engine) -> None:
    with Session(any_engine) as db:
        alice, bob = _member(db, "UA"), _member(db, "UB")
        falls = repo.create_community(
            db=db, platform="slack", workspace_id="T1", slug="falls", name="Falls", purpose="p", channel_id="C1",
            channel_name="cop-falls", timezone="Europe/London", creator=alice, now=NOW,
        )  # fmt: skip
        repo.add_membership(db=db, community=falls, member=bob, now=NOW)
        repo.add_membership(db=db, community=falls, member=bob, now=NOW)  # idempotent
        assert [m.user_id for m in repo.facilitators(db=db, community=falls)] == ["UA"]
        assert repo.member_counts(db=db, community_ids=[falls.id or 0]) == {falls.id: 2}
        assert repo.community_by_channel(db=db, platform="slack", workspace_id="T1", channel_id="C1") == falls
        repo.add_membership(db=db, community=falls, member=bob, role=Role.FACILITATOR, now=NOW)
        assert len(repo.facilitators(db=db, community=falls)) == 2
        assert repo.remove_membership(db=db, community=falls, member=bob) is True
        assert repo.remove_membership(db=db, community=falls, member=bob) is False
        repo.archive_community(db=db, community=falls, now=NOW)
        assert repo.communities(db=db, platform="slack", workspace_id="T1") == []
        assert len(repo.communities(db=db, platform="slack", workspace_id="T1", include_archived=True)) == 1
        db.commit()


def test_slug_is_unique_per_workspace_only(any_engine: Engine) -> None:
    with Session(any_engine) as db:
        alice = _member(db, "UA")
        for workspace in ("T1", "T2"):
            repo.create_community(
                db=db, platform="slack", workspace_id=workspace, slug="falls", name="Falls", purpose="",
                channel_id="C1", channel_name="cop-falls", timezone="UTC", creator=alice, now=NOW,
            )  # fmt: skip
        db.commit()
        taken = repo.reserve_community(
            db=db, platform="slack", workspace_id="T1", slug="falls", name="Falls 2", purpose="", timezone="UTC",
            creator=alice, now=NOW,
        )  # fmt: skip
        assert taken is None  # refused without an error, so the transaction goes on
        assert [c.name for c in repo.communities(db=db, platform="slack", workspace_id="T1")] == ["Falls"]


def test_foreign_keys_cascade_memberships(any_engine: Engine) -> None:
    with Session(any_engine) as db:
        alice = _member(db, "UA")
        falls = repo.create_community(
            db=db, platform="slack", workspace_id="T1", slug="falls", name="Falls", purpose="", channel_id="C1",
            channel_name="cop-falls", timezone="UTC", creator=alice, now=NOW,
        )  # fmt: skip
        db.commit()
        db.delete(alice)
        db.commit()
        assert repo.members_of(db=db, community=falls) == []
        db.refresh(falls)
        assert falls.created_by is None


def test_audit_events_keep_ids_not_text(any_engine: Engine) -> None:
    with Session(any_engine) as db:
        alice = _member(db, "UA")
        repo.record_audit(db=db, action="export", now=NOW, actor=alice, detail={"format": "csv", "rows": 3})
        db.commit()
        [event] = repo.audit_events(db=db)
        assert (event.action, event.actor_member_id, event.detail) == (
            "export",
            alice.id,
            '{"format": "csv", "rows": 3}',
        )


def test_downgrade_to_base_and_back(engine: Engine) -> None:
    downgrade(engine, revision="base")
    assert current_tables(engine) <= {"alembic_version"}
    migrate(engine)
    assert "community" in current_tables(engine)


def test_sqlite_files_get_wal_busy_timeout_and_foreign_keys(tmp_path: Path) -> None:
    eng = make_engine(f"sqlite:///{tmp_path}/copbot.db", busy_timeout_ms=1234)
    with eng.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() == 1234
    eng.dispose()


def test_a_file_that_is_not_a_database_gives_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "copbot.db"
    bad.write_bytes(b"this is a spreadsheet, honest" * 100)
    with pytest.raises(DatabaseUnavailable, match=r"not a copbot SQLite database"):
        migrate(make_engine(f"sqlite:///{bad}"))


def test_a_locked_database_gives_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "copbot.db"
    holder = sqlite3.connect(path)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(DatabaseUnavailable, match=r"locked.*Another program holds a write lock"):
            migrate(make_engine(f"sqlite:///{path}", busy_timeout_ms=100))
    finally:
        holder.rollback()
        holder.close()


def test_unsupported_url_scheme() -> None:
    with pytest.raises(DatabaseUnavailable, match="unsupported DATABASE_URL"):
        make_engine("mysql://localhost/copbot")


def test_teams_sign_in_names_come_from_the_connector_and_an_email_only_fills_a_gap(any_engine: Engine) -> None:
    def save(**kwargs: str | None) -> None:
        with Session(any_engine) as db:
            teams.save_user(db=db, tenant_id="T", bot_user_id="29:jo", service_url="https://smba.example/", now=NOW,
                            aad_object_id="aad-jo", **kwargs)  # fmt: skip
            db.commit()

    def stored() -> str | None:
        with Session(any_engine) as db:
            row = teams.user_by_aad(db=db, tenant_id="T", aad_object_id="aad-jo")
        assert row is not None
        return row.upn

    def email(address: str) -> int:
        with Session(any_engine) as db:
            changed = teams.save_upn(db=db, tenant_id="T", aad_object_id="aad-jo", upn=address)
            db.commit()
        return changed

    save(name="Jo")
    assert stored() is None
    assert email("jo@example.nhs.uk") == 1  # Graph's e-mail fills the gap
    save(upn="jo.bloggs@example.nhs.uk")  # the Connector's userPrincipalName wins
    assert stored() == "jo.bloggs@example.nhs.uk"
    assert email("other@example.nhs.uk") == 0
    save(name="Jo Bloggs")  # refreshing other details keeps it
    assert stored() == "jo.bloggs@example.nhs.uk"
