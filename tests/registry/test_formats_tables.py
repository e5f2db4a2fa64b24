"""jsonl and csv: every field out, what the writer produced reads back in.

These are item exports: each line reads back as an entry of its own with one target (its
block type follows the target's kind), never merged with its neighbours.
"""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from takedown.errors import InputError
from takedown.model import (
    BlockType,
    Decision,
    EntryCells,
    EntryRecord,
    ItemRecord,
    ItemState,
    RegisterEntry,
    TargetKind,
)
from takedown.registry.formats import READERS, WRITERS, ReadDefaults, RowError
from takedown.registry.targets import parse_target_flags

WHEN = datetime(2021, 5, 17, 12, 0, tzinfo=UTC)
FORMATS = ["jsonl", "csv"]


def make(target: str, n: int = 1, **kw: object) -> RegisterEntry:
    t, flags = parse_target_flags(target)
    record = ItemRecord(
        target=t,
        category=str(kw.get("category", "suicide")),
        basis=str(kw.get("basis", "Federal law 149-FZ, art. 15.1")),
        decision=Decision(
            "27-31-2021/Ид1-21", kw.get("authority", "Роспотребнадзор"), "2021-03-01"
        ),  # type: ignore[arg-type]
        platform=kw.get("platform", "twitter"),  # type: ignore[arg-type]
        listed_at=kw.get("listed_at", datetime(2021, 3, 2, 8, 30, tzinfo=UTC)),  # type: ignore[arg-type]
        source="dump.csv:7",
        flags=flags,
    )
    return RegisterEntry(n, record, kw.get("state", ItemState.OPEN), kw.get("delisted_at"))  # type: ignore[arg-type]


def export(fmt: str, entries: list[RegisterEntry]) -> bytes:
    out = io.BytesIO()
    assert WRITERS[fmt](entries, out, generated_at=WHEN) == len(entries)
    return out.getvalue()


def read(
    fmt: str, data: bytes, defaults: ReadDefaults | None = None
) -> list[EntryRecord | RowError]:
    return list(READERS[fmt](io.BytesIO(data), source="f", defaults=defaults or ReadDefaults()))


def item(entry: EntryRecord | RowError) -> ItemRecord:
    """The one item of an entry read from an item export."""
    assert isinstance(entry, EntryRecord)
    (record,) = entry.items()
    return record


BLOCK_TYPE = {
    TargetKind.URL: BlockType.URL,
    TargetKind.DOMAIN: BlockType.DOMAIN,
    TargetKind.WILDCARD: BlockType.DOMAIN_MASK,
    TargetKind.IP: BlockType.IP,
    TargetKind.CIDR: BlockType.IP,
}


def test_jsonl_has_every_field() -> None:
    entry = make("*example.com", 42, state=ItemState.DELISTED, delisted_at=WHEN)
    assert json.loads(export("jsonl", [entry])) == {
        "id": 42,
        "target": "*example.com",
        "kind": "domain",
        "category": "suicide",
        "basis": "Federal law 149-FZ, art. 15.1",
        "decision": "27-31-2021/Ид1-21",
        "authority": "Роспотребнадзор",
        "decision_date": "2021-03-01",
        "platform": "twitter",
        "listed_at": "2021-03-02T08:30:00+00:00",
        "delisted_at": "2021-05-17T12:00:00+00:00",
        "state": "delisted",
        "source": "dump.csv:7",
        "flags": ["malformed-mask"],
    }


def test_csv_has_every_field() -> None:
    lines = export("csv", [make("https://t.co/a,b", 3, authority=None)]).decode().splitlines()
    assert lines == [
        "id,target,kind,category,basis,decision,authority,decision_date,platform,listed_at,"
        "delisted_at,state,source,flags",
        '3,"https://t.co/a,b",url,suicide,"Federal law 149-FZ, art. 15.1",27-31-2021/Ид1-21,,'
        "2021-03-01,twitter,2021-03-02T08:30:00+00:00,,open,dump.csv:7,",
    ]


TARGETS = st.sampled_from(
    [
        "twitter.com",
        "*.twimg.com",
        "пример.испытание",
        "*t.co*",
        "192.0.2.1",
        "2001:db8::/32",
        'https://twitter.com/a/status/1?x="y",z|w',
        "https://t.co/a;b\nc".replace("\n", ""),
    ]
)
TEXT = (
    st.text(st.characters(exclude_categories=("Cc", "Cs", "Zl", "Zp")), min_size=1)
    .map(str.strip)
    .filter(bool)
)


@pytest.mark.parametrize("fmt", FORMATS)
@given(st.lists(st.tuples(TARGETS, TEXT, TEXT, st.none() | TEXT), max_size=6))
def test_export_then_import_gives_the_same_records(
    fmt: str, rows: list[tuple[str, str, str, str | None]]
) -> None:
    entries = [
        make(t, n, category=c, basis=b, authority=a, platform=None, listed_at=None)
        for n, (t, c, b, a) in enumerate(rows)
    ]
    found = read(fmt, export(fmt, entries))
    assert not [i for i in found if isinstance(i, RowError)]
    assert [i.__class__ for i in found] == [EntryRecord] * len(entries)
    strip = lambda r: (r.target, r.category, r.basis, r.decision, r.platform, r.listed_at, r.flags)  # noqa: E731
    assert [strip(item(i)) for i in found] == [strip(e.record) for e in entries]
    for got, e in zip(found, entries, strict=True):
        assert isinstance(got, EntryRecord)
        target = e.record.target
        assert got.block_type is BLOCK_TYPE[target.kind]
        column = {BlockType.URL: "urls", BlockType.IP: "ips"}.get(got.block_type, "domains")
        assert got.cells == EntryCells(**{column: (target.value,)})


@pytest.mark.parametrize("fmt", FORMATS)
def test_reader_keeps_listing_time_and_takes_new_provenance(fmt: str) -> None:
    (entry,) = read(fmt, export(fmt, [make("twitter.com")]))
    record = item(entry)
    assert record.listed_at == datetime(2021, 3, 2, 8, 30, tzinfo=UTC)
    assert record.platform == "twitter"
    assert record.source in {"f:1", "f:2"}
    assert isinstance(entry, EntryRecord) and entry.source == record.source


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        ({"target": "999.1.1.1", "decision": "D", "basis": "b"}, "target: invalid IP address"),
        ({"target": "a.example", "kind": "url", "decision": "D", "basis": "b"}, "does not match"),
        ({"target": "a.example", "basis": "b"}, "decision: missing"),
        ({"target": "a.example", "decision": "D"}, "basis: missing"),
        ({"decision": "D", "basis": "b"}, "target: missing"),
        (
            {"target": "a.example", "decision": "D", "basis": "b", "decision_date": "1.1.21"},
            "unparseable",
        ),
        ({"target": "a.example", "decision": "D", "basis": "b", "listed_at": "soon"}, "listed_at"),
        ({"target": 5, "decision": "D", "basis": "b"}, "expected text"),
        ({"target": "a.example", "decision": "D", "basis": "b", "flags": "x"}, "flags"),
    ],
)
def test_jsonl_bad_rows(obj: dict[str, object], message: str) -> None:
    good = json.dumps({"target": "ok.example", "decision": "D", "basis": "b"})
    data = "\n".join([good, json.dumps(obj), "{not json", "[1]", good]).encode()
    items = read("jsonl", data)
    assert [type(i) for i in items] == [EntryRecord, RowError, RowError, RowError, EntryRecord]
    assert items[1].line == 2 and message in items[1].message  # type: ignore[union-attr]
    assert "invalid JSON" in items[2].message  # type: ignore[union-attr]
    assert "JSON object" in items[3].message  # type: ignore[union-attr]


def test_csv_bad_rows() -> None:
    data = b"target,decision,basis\nok.example,D,b\nbad..example,D,b\nx,y\nok.example,D,b\n"
    items = read("csv", data)
    assert [type(i) for i in items] == [EntryRecord, RowError, RowError, EntryRecord]
    assert (items[1].line, items[2].line) == (3, 4)  # type: ignore[union-attr]
    assert "expected 3 fields, got 2" in items[2].message  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("fmt", "data", "words"),
    [
        ("jsonl", b"Updated: 2021-03-10 09:00:00 +0300\n", "--format rkn-csv"),
        ("jsonl", b"url,category_code,category_description\n", "--format citizenlab"),
        ("csv", b"url,category_code,category_description\n", "not a takedown CSV"),
        ("csv", "target,decision\nпример.рф,D\n".encode("cp1251"), "not UTF-8"),
    ],
)
def test_wrong_files_are_named(fmt: str, data: bytes, words: str) -> None:
    with pytest.raises(InputError) as info:
        read(fmt, data)
    assert words in info.value.message
