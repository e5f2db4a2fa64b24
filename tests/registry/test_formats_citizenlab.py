"""Citizen Lab test lists: the real lists import cleanly; mapping; bad rows and files."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from takedown.errors import InputError
from takedown.model import BlockType, Decision, EntryCells, EntryRecord, TargetKind
from takedown.registry.formats import READERS, ReadDefaults, RowError

HEADER = "url,category_code,category_description,date_added,source,notes\n"


def read(data: bytes, defaults: ReadDefaults | None = None) -> list[EntryRecord | RowError]:
    reader = READERS["citizenlab"]
    return list(reader(io.BytesIO(data), source="list.csv", defaults=defaults or ReadDefaults()))


def entries(items: list[EntryRecord | RowError]) -> list[EntryRecord]:
    assert all(isinstance(i, EntryRecord) for i in items), items
    return [i for i in items if isinstance(i, EntryRecord)]


def url(entry: EntryRecord) -> str:
    ((target, _),) = entry.targets
    assert target.kind is TargetKind.URL
    return target.value


@pytest.mark.parametrize("name", ["ru.csv", "global.csv"])
def test_real_test_lists_import_cleanly(name: str, shared_data: Path) -> None:
    path = shared_data / "citizenlab" / name
    rows = sum(1 for _ in path.open(encoding="utf-8")) - 1
    with path.open("rb") as f:
        items = list(READERS["citizenlab"](f, source=name, defaults=ReadDefaults()))
    errors = [i for i in items if isinstance(i, RowError)]
    assert errors == []
    assert len(items) == rows  # no quoted field spans lines in these files
    found = entries(items)
    assert all(e.block_type is BlockType.URL and len(e.targets) == 1 for e in found)
    assert all(e.targets[0][0].kind is TargetKind.URL for e in found)
    assert all(e.source == f"{name}:{n}" for n, e in enumerate(found, start=2))
    assert all(dict(e.attrs).get("category_code") for e in found)  # every row has a code


def test_mapping_and_defaults() -> None:
    data = (
        HEADER
        + "https://Jah.example/,ALDR,Alcohol & Drugs,2014-04-15,citizenlab,canabis\n"
        + "https://bet.example:443/x,GMB,Gambling,2016-01-02,citizenlab,\n"
        + "http://mil.example/,MILX,Terrorism and Militants,2017-03-04,citizenlab,\n"
        + 'https://hate.example/,HATE,Hate Speech,2014-04-15,citizenlab,"blocked, critical"\n'
        + "https://news.example/,NEWS,News Media,,citizenlab,\n"
    ).encode()
    found = entries(read(data))
    assert [(url(e), e.category, e.basis, e.decision) for e in found] == [
        (
            "https://jah.example/",
            "drugs",
            "Alcohol & Drugs",
            Decision("citizenlab-test-list:2014-04-15", None, "2014-04-15"),
        ),
        (
            "https://bet.example/x",
            "gambling",
            "Gambling",
            Decision("citizenlab-test-list:2016-01-02", None, "2016-01-02"),
        ),
        (
            "http://mil.example/",
            "terrorism",
            "Terrorism and Militants",
            Decision("citizenlab-test-list:2017-03-04", None, "2017-03-04"),
        ),
        (
            "https://hate.example/",
            "other",
            "Hate Speech",
            Decision("citizenlab-test-list:2014-04-15", None, "2014-04-15"),
        ),
        (
            "https://news.example/",
            "other",
            "News Media",
            Decision("citizenlab-test-list", None, None),
        ),
    ]
    # the list's own code is kept with the entry, mapped or not; the URL cell as written
    assert [e.attrs for e in found] == [
        (("category_code", code),) for code in ("ALDR", "GMB", "MILX", "HATE", "NEWS")
    ]
    assert [e.cells for e in found] == [
        EntryCells(urls=(u,))
        for u in (
            "https://Jah.example/",
            "https://bet.example:443/x",
            "http://mil.example/",
            "https://hate.example/",
            "https://news.example/",
        )
    ]
    given = ReadDefaults(
        category="extremism", basis="Order 5", platform="p", decision="R-1", authority="Court"
    )
    found = entries(read(data, given))
    assert [e.category for e in found] == [
        "drugs",
        "gambling",
        "terrorism",
        "extremism",
        "extremism",
    ]
    assert {(e.basis, e.platform, e.decision.reference, e.decision.authority) for e in found} == {
        ("Order 5", "p", "R-1", "Court")
    }
    assert [e.attrs[0][1] for e in found] == ["ALDR", "GMB", "MILX", "HATE", "NEWS"]


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("https://a.example/,NEWS,News,2014-04-15,citizenlab", "expected 6 fields, got 5"),
        ("https://exa mple.example/,NEWS,News,2014-04-15,citizenlab,", "url: invalid"),
        ("a.example,NEWS,News,2014-04-15,citizenlab,", "is not a URL"),
        ("https://a.example/,NEWS,News,15/04/2014,citizenlab,", "unparseable date_added"),
        (",,,,,", "empty row"),
    ],
)
def test_bad_rows(row: str, message: str) -> None:
    good = "https://ok.example/,NEWS,News,2014-04-15,citizenlab,\n"
    items = read((HEADER + good + row + "\n" + good).encode())
    assert [type(i) for i in items] == [EntryRecord, RowError, EntryRecord]
    assert items[1].line == 3  # type: ignore[union-attr]
    assert message in items[1].message  # type: ignore[union-attr]


def test_rkn_dump_given_as_citizenlab_is_named() -> None:
    with pytest.raises(InputError) as info:
        read("Updated: 2021-03-10 09:00:00 +0300\n;a.example;;A;D;2021-01-01\n".encode("cp1251"))
    assert "not a Citizen Lab test-list CSV" in info.value.message
    assert "--format rkn-csv" in info.value.message
    assert info.value.where == "list.csv:1"


def test_non_utf8_file_is_named() -> None:
    data = (HEADER + "https://a.example/,NEWS,Новости,2014-04-15,citizenlab,\n").encode("cp1251")
    with pytest.raises(InputError) as info:
        read(data)
    assert "not UTF-8" in info.value.message
