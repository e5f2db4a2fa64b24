"""Which item indexes a first load keeps up as it writes: those its rows arrive in the
order of, as SQLite and PostgreSQL themselves order them."""

from __future__ import annotations

import random
import sqlite3
from types import SimpleNamespace

from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine

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
    db = sqlite3.connect(":memory:")
    unwritten = [c for c in columns if c not in _ITEM_COLUMNS]  # NULL in every row
    db.execute(f"CREATE TABLE items ({', '.join([*_ITEM_COLUMNS, *unwritten])})")
    marks = ", ".join("?" * len(_ITEM_COLUMNS))
    db.executemany(f"INSERT INTO items ({', '.join(_ITEM_COLUMNS)}) VALUES ({marks})", rows)
    order = [
        r for (r,) in db.execute(f"SELECT rowid FROM items ORDER BY {', '.join(columns)}, rowid")
    ]
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


def test_the_order_is_postgresqls_own(pg_database: str) -> None:
    """NULL last, numbers by value, text in the C collation (by code point)."""
    pick = random.Random(14)
    pools = {"bigint": [None, -1, 0, 2, 7], 'text COLLATE "C"': [None, "", "a", "ab", "B", "я"]}
    names = ("platform_id", "host")  # two columns an item row writes
    index = SimpleNamespace(columns=[SimpleNamespace(name=n) for n in names])
    engine = create_engine(pg_database)
    with engine.begin() as conn:
        for trial in range(300):  # a table each: statements are prepared by their text
            types = [pick.choice(sorted(pools)) for _ in names]
            pairs = [[pick.choice(pools[t]) for t in types] for _ in range(pick.randrange(6))]
            t = f"t{trial}"
            conn.exec_driver_sql(
                f"CREATE TEMPORARY TABLE {t} (n serial, a {types[0]}, b {types[1]})"
            )
            for pair in pairs:
                conn.exec_driver_sql(f"INSERT INTO {t} (a, b) VALUES (%s, %s)", tuple(pair))
            order = [n for (n,) in conn.exec_driver_sql(f"SELECT n FROM {t} ORDER BY a, b, n")]
            rows = [_item_row(dict(zip(names, pair, strict=True))) for pair in pairs]
            in_order = order == list(range(1, len(pairs) + 1))
            seen = in_index_order(index, rows, nulls_last=True)  # type: ignore[arg-type]
            assert seen == in_order, (types, pairs)
    engine.dispose()
