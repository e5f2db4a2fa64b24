"""Engine and sessions: SQLite (WAL) by default, PostgreSQL through psycopg."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from takedown.errors import InputError, TakedownError, Unavailable

DEFAULT_DB = "takedown.db"


def resolve_url(db: str | None) -> str:
    """A SQLAlchemy URL from ``--db``: None → ./takedown.db; a bare path → SQLite file."""
    value = db or DEFAULT_DB
    if "://" in value:
        try:
            make_url(value)
        except (ArgumentError, ValueError) as exc:
            raise InputError(f"not a database URL: {exc}", where="--db") from None
        return value
    return f"sqlite:///{Path(value).expanduser().resolve()}"


def _sqlite_pragmas(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def _sqlite_begin(conn) -> None:  # type: ignore[no-untyped-def]
    read_only = conn.get_execution_options().get("takedown_read_only", False)
    conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def connect(db: str | None = None, *, echo: bool = False) -> Engine:
    """Create an engine for ``db`` (URL or path) with the settings takedown relies on."""
    url = resolve_url(db)
    if url.startswith("sqlite"):
        engine = create_engine(url, echo=echo)
        event.listen(engine, "connect", _sqlite_pragmas)
        # pysqlite's own transaction handling defers BEGIN; emit it ourselves so that a
        # write transaction holds the write lock from its first statement (a deferred one
        # that reads first fails with SQLITE_BUSY when another process wrote meanwhile).
        event.listen(engine, "begin", _sqlite_begin)

        @event.listens_for(engine, "connect")
        def _no_autobegin(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
            dbapi_conn.isolation_level = None

        return engine
    return create_engine(url, echo=echo, pool_pre_ping=True)


class Database:
    """An engine plus a session factory; the handle every library function takes."""

    def __init__(self, db: str | Engine | None = None) -> None:
        self.engine = db if isinstance(db, Engine) else connect(db)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._readers = sessionmaker(
            self.engine.execution_options(takedown_read_only=True), expire_on_commit=False
        )

    @property
    def url(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextlib.contextmanager
    def session(self) -> Iterator[Session]:
        """A session in one transaction: committed on success, rolled back on error."""
        with self._sessions() as session, session.begin():
            yield session

    @contextlib.contextmanager
    def reading(self) -> Iterator[Session]:
        """A read-only session: does not take SQLite's write lock."""
        with self._readers() as session, session.begin():
            yield session

    def ping(self) -> None:
        """Connect once; Unavailable (not a schema problem) if the database cannot be reached."""
        try:
            with self.engine.connect():
                pass
        except (OperationalError, DBAPIError) as exc:
            raise unavailable(self.url, exc) from None

    def require_schema(self) -> None:
        """Fail with a clear message if the database cannot be reached (Unavailable), or if
        ``takedown init`` has not been run."""
        try:
            initialised = inspect(self.engine).has_table("items")  # one connection, not two
        except (OperationalError, DBAPIError) as exc:
            raise unavailable(self.url, exc) from None
        if not initialised:
            raise TakedownError(f"database {self.url} is not initialised; run `takedown init`")

    def close(self) -> None:
        self.engine.dispose()


def unavailable(url: str, exc: BaseException) -> Unavailable:
    """The one-line error for a database that cannot be reached, from the driver's error."""
    orig = getattr(exc, "orig", None) or exc
    lines = [line.strip() for line in str(orig).splitlines() if line.strip()]
    detail = lines[0] if lines else orig.__class__.__name__
    # psycopg: 'connection failed: connection to server at "h", port p failed: Connection refused'
    detail = detail.rsplit(" failed: ", 1)[-1]
    return Unavailable(f"cannot connect to the database {url}: {detail}")


def is_connection_error(exc: BaseException) -> bool:
    """Did ``exc`` (an SQLAlchemy error) come from connecting, not from a statement?"""
    if not isinstance(exc, DBAPIError):
        return False
    if exc.connection_invalidated:
        return True
    text = str(getattr(exc, "orig", exc)).lower()
    return exc.statement is None or any(
        mark in text
        for mark in ("connection refused", "could not connect", "unable to open database file",
                     "connection failed", "server closed the connection", "could not translate")
    )  # fmt: skip


def is_schema_error(exc: BaseException) -> bool:
    """Did ``exc`` come from a missing or old schema (table or column unknown)?"""
    text = str(getattr(exc, "orig", exc)).lower()
    return any(
        mark in text
        for mark in ("no such table", "no such column", "undefinedtable", "undefinedcolumn")
    ) or ("does not exist" in text and ("relation" in text or "column" in text))
