"""Over-broad targets at import, sync and `registry add`: refused with file:line, or
admitted with a reason that the audit log keeps."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from takedown.errors import InputError
from takedown.model import Decision, ItemRecord
from takedown.registry.formats import ReadDefaults
from takedown.registry.service import add_item, import_file
from takedown.registry.targets import parse_target
from takedown.store.db import Database
from takedown.store.schema import Event, Item

NOW = datetime(2021, 3, 12, 9, 0, tzinfo=UTC)
DEFAULTS = ReadDefaults(basis="149-FZ")


def dump(path: Path, rows: list[str]) -> Path:
    text = "\n".join(["Updated: 2021-03-10 12:00:00 +0300", *rows]) + "\n"
    path.write_bytes(text.encode("cp1251"))
    return path


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        (";com;;Суд;D-1;2021-03-01", "public suffix"),
        (";co.uk;;Суд;D-1;2021-03-01", "public suffix"),
        (";*.com;;Суд;D-1;2021-03-01", "public suffix"),
        ("10.0.0.0/15;;;Суд;D-1;2021-03-01", "/15"),
        ("2001:db8::/31;;;Суд;D-1;2021-03-01", "/31"),
    ],
)
def test_a_broad_target_is_refused_with_its_line(
    db: Database, tmp_path: Path, row: str, reason: str
) -> None:
    path = dump(tmp_path / "d.csv", [";ok.example;;Суд;D-0;2021-03-01", row])
    result = import_file(db, path, "rkn-csv", now=NOW, actor="a", defaults=DEFAULTS)
    assert not result.committed and result.rejected == 1
    assert result.errors[0].startswith(f"{path}:3: ") and reason in result.errors[0]
    assert "--accept-broad" in result.errors[0]
    with db.reading() as s:
        assert s.scalars(select(Item)).all() == []


def test_the_broadest_prefix_the_profile_allows_and_a_url_on_a_big_host_pass(
    db: Database, tmp_path: Path
) -> None:
    rows = ["10.0.0.0/16;;;Суд;D-1;2021-03-01", ";;http://com.example/a;Суд;D-2;2021-03-01"]
    result = import_file(db, dump(tmp_path / "d.csv", rows), "rkn-csv", now=NOW, actor="a",
                         defaults=DEFAULTS)  # fmt: skip
    assert result.committed and result.items_added == 2


def test_accept_broad_admits_each_with_an_audit_record(db: Database, tmp_path: Path) -> None:
    path = dump(tmp_path / "d.csv", [";com;;Суд;D-1;2021-03-01", "10.0.0.0/8;;;Суд;D-2;2021-03-01"])
    result = import_file(
        db, path, "rkn-csv", now=NOW, actor="a", defaults=DEFAULTS, accept_broad="court order 7"
    )
    assert result.committed and result.items_added == 2
    with db.reading() as s:
        events = s.scalars(select(Event).where(Event.type == "registry.broad_admitted")).all()
    assert sorted(e.payload["target"] for e in events) == ["10.0.0.0/8", "com"]
    assert {e.payload["reason"] for e in events} == {"court order 7"}
    assert all(e.payload["where"].startswith(str(path)) for e in events)


def test_registry_add_refuses_a_public_suffix_unless_admitted(db: Database) -> None:
    record = ItemRecord(parse_target("co.uk"), "other", "b", Decision("D-1"))
    with pytest.raises(InputError, match="public suffix"):
        add_item(db, record, now=NOW, actor="a")
    item_id, created = add_item(db, record, now=NOW, actor="a", accept_broad="tested")
    assert created and item_id > 0
