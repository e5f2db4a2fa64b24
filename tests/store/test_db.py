"""Database URLs, initialisation and the migration matching the schema."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from takedown.errors import InputError, TakedownError
from takedown.store.db import Database, resolve_url
from takedown.store.migrate import current_revision, head_revision, upgrade
from takedown.store.schema import Base


def test_bare_path_means_sqlite(tmp_path: Path) -> None:
    assert resolve_url(str(tmp_path / "x.db")) == f"sqlite:///{tmp_path / 'x.db'}"
    assert resolve_url(None).endswith("/takedown.db")
    assert resolve_url("postgresql+psycopg://u@h/d") == "postgresql+psycopg://u@h/d"
    with pytest.raises(InputError):
        resolve_url("nonsense://::")


def test_sqlite_is_wal(sqlite_db: Database) -> None:
    with sqlite_db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_uninitialised_database_is_named(tmp_path: Path) -> None:
    db = Database(str(tmp_path / "empty.db"))
    with pytest.raises(TakedownError, match="takedown init"):
        db.require_schema()


def test_upgrade_is_idempotent_and_matches_models(db_url: str) -> None:
    db = Database(db_url)
    assert current_revision(db) == head_revision()
    assert upgrade(db) == (head_revision(), head_revision())
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == [], f"migration and schema.py disagree: {diff}"
    db.close()
