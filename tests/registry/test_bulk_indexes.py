"""Which item indexes a SQLite first load keeps up as it writes: those its rows arrive in
the order of, as SQLite itself orders them."""

from __future__ import annotations

import sqlite3
from contextlib import closing

from hypothesis import given, settings
from hypothesis import strategies as st

from takedown.registry.store import _ITEM_COLUMNS, in_index_order
from takedown.store.schema import Item

INDEXES = {i.name: i for i in Item.__table__.indexes}
# NULL, numbers and text (any code point UTF-8 can carry), so that the ranks between
# storage classes and the order of text are both exercised
VALUES = st.one_of(
    st.none(),
    st.integers(-5, 5),
    st.floats(-5, 5, allow_nan=False),
    st.text(st.characters(exclude_categories=["Cs"]), max_size=3),
)


def _sqlite_keeps_them_in_order(index_name: str, rows: list[tuple]) -> bool:
    """True if SQLite, ordering by the index's columns, gives the rows back as written."""
    columns = [c.name for c in INDEXES[index_name].columns]
    unwritten = [c for c in columns if c not in _ITEM_COLUMNS]  # NULL in every row
    marks = ", ".join("?" * len(_ITEM_COLUMNS))
    with closing(sqlite3.connect(":memory:")) as db:
        db.execute(f"CREATE TABLE items ({', '.join([*_ITEM_COLUMNS, *unwritten])})")
        db.executemany(f"INSERT INTO items ({', '.join(_ITEM_COLUMNS)}) VALUES ({marks})", rows)
        query = f"SELECT rowid FROM items ORDER BY {', '.join(columns)}, rowid"
        order = [r for (r,) in db.execute(query)]
    return order == list(range(1, len(rows) + 1))


def _item_row(values: dict[str, object]) -> tuple:
    """An item row as the writer makes it: these columns set, every other NULL."""
    row: list[object] = [None] * len(_ITEM_COLUMNS)
    for name, value in values.items():
        row[_ITEM_COLUMNS.index(name)] = value
    return tuple(row)


def _rows(values: list[tuple[object, object]], index_name: str) -> list[tuple]:
    """Item rows with the index's first two written columns set, everything else NULL."""
    written = [c.name for c in INDEXES[index_name].columns if c.name in _ITEM_COLUMNS][:2]
    return [_item_row(dict(zip(written, pair, strict=False))) for pair in values]


@settings(max_examples=300, deadline=None)
@given(
    index_name=st.sampled_from(sorted(INDEXES)),
    values=st.lists(st.tuples(VALUES, VALUES), max_size=6),
)
def test_the_order_is_sqlites_own(index_name: str, values: list[tuple[object, object]]) -> None:
    rows = _rows(values, index_name)
    assert in_index_order(INDEXES[index_name], rows) == _sqlite_keeps_them_in_order(
        index_name, rows
    )


def test_a_sync_keeps_what_its_rows_share_and_defers_names() -> None:
    """A register's items: one platform, state and time, rising entry ids, hosts and
    decisions in no order. The platform and entry indexes stay; host and decision wait."""
    rows = [
        _item_row(
            {
                "entry_id": entry_id,
                "host": host,
                "decision_ref": f"D-{4 - entry_id}",
                "category": "other",
                "state": "open",
                "listed_at": "2021-03-10 00:00:00.000000",
                "state_at": "2021-03-10 00:00:00.000000",
            }
        )
        for entry_id, host in enumerate(["b.example", "a.example", "c.example"], start=1)
    ]
    kept = {name for name, index in INDEXES.items() if in_index_order(index, rows)}
    assert kept == {
        "ix_items_category",
        "ix_items_entry_id",
        "ix_items_platform_deadline",
        "ix_items_platform_listing",
        "ix_items_platform_state",
        "ix_items_platform_ttr",
    }
