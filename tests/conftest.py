"""Shared fixtures: a real database on SQLite (always) and PostgreSQL (when reachable).

PostgreSQL: ``TAKEDOWN_TEST_PG`` (a server URL without database) or the default
``postgresql+psycopg://postgres@127.0.0.1:5432``. Each run creates its own database and
drops it at the end. Unreachable → PostgreSQL tests are skipped, except under CI=true,
where .ci/run must have started one, so they fail.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from takedown.store.db import Database
from takedown.store.migrate import upgrade
from takedown.store.schema import Base

PG_SERVER = os.environ.get("TAKEDOWN_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432")
IN_CI = os.environ.get("CI", "").lower() == "true"
REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def _pg_admin_url() -> str:
    return f"{PG_SERVER}/postgres"


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """Create a throw-away PostgreSQL database for this run; yield its URL."""
    name = f"takedown_test_{os.getpid()}_{secrets.token_hex(3)}"
    try:
        admin = create_engine(_pg_admin_url(), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        if IN_CI:
            pytest.fail(f"PostgreSQL not reachable at {PG_SERVER} under CI: {exc}")
        pytest.skip(f"PostgreSQL not reachable at {PG_SERVER}: {exc.__class__.__name__}")
    url = f"{PG_SERVER}/{name}"
    db = Database(url)
    upgrade(db)
    db.close()
    yield url
    with admin.connect() as conn:
        conn.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = :n AND pid <> pg_backend_pid()"
            ),
            {"n": name},
        )
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
    admin.dispose()


def _truncate_all(db: Database) -> None:
    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    with db.engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An initialised, empty database URL on each backend."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'takedown.db'}"
        db = Database(url)
        upgrade(db)
        db.close()
        yield url
        return
    url = request.getfixturevalue("pg_database")
    yield url
    db = Database(url)
    _truncate_all(db)
    db.close()


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    """A Database handle on an initialised, empty database (SQLite and PostgreSQL)."""
    database = Database(db_url)
    yield database
    database.close()


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Iterator[Database]:
    """SQLite only, for tests about the embedded default."""
    database = Database(str(tmp_path / "takedown.db"))
    upgrade(database)
    yield database
    database.close()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data beside the checkout (tests may read it; nothing users run may)."""
    if not SHARED_DATA.is_dir():
        if IN_CI:
            pytest.fail(f"{SHARED_DATA} missing under CI")
        pytest.skip(f"{SHARED_DATA} not present")
    return SHARED_DATA
