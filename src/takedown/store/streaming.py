"""Reading millions of rows: one ordered query fetched a batch at a time (a server-side
cursor on PostgreSQL), for the exports of a national register."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

from sqlalchemy import Row, Select
from sqlalchemy.orm import Session


def stream_rows(session: Session, query: Select, batch: int) -> Iterator[Row]:
    """The rows of one ordered query, fetched a batch at a time (a server-side cursor on
    PostgreSQL): one plan for the whole export, not a sort per page; Core rows, not ORM
    loading, for millions of them."""
    conn = session.connection().execution_options(stream_results=True, yield_per=batch)
    for part in conn.execute(query).partitions():
        yield from part


_CURSORS = itertools.count()  # names of server-side cursors


def stream_tuples(session: Session, query: Select, batch: int) -> Iterator[tuple]:
    """``stream_rows`` through the driver's own cursor, for a query of columns that need no
    conversion (text, integers): plain tuples, a third of the cost per row of Core rows
    (the exports of a national register read millions)."""
    conn = session.connection()
    compiled = query.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
    params: dict | tuple = compiled.params
    if compiled.positiontup is not None:
        params = tuple(compiled.params[name] for name in compiled.positiontup)
    driver = conn.connection.driver_connection
    if conn.dialect.name == "postgresql":  # server-side: one plan, a batch at a time
        cursor = driver.cursor(name=f"takedown_export_{next(_CURSORS)}")  # type: ignore[union-attr]
    else:
        cursor = driver.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(str(compiled), params)
        while rows := cursor.fetchmany(batch):
            yield from rows
    finally:
        cursor.close()
