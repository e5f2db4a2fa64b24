"""Exports on a real database: what the dump can hold, and what widening reports."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select

from takedown.model import Decision, ItemRecord
from takedown.platforms import HostSpec, add_platform
from takedown.registry.formats import ReadDefaults
from takedown.registry.service import add_item, export, import_file, widen
from takedown.registry.targets import parse_target
from takedown.store.db import Database
from takedown.store.migrate import upgrade
from takedown.store.schema import Item

NOW = datetime(2021, 3, 12, 9, 0, tzinfo=UTC)
DEFAULTS = ReadDefaults(basis="149-FZ")


def dump(path: Path, rows: list[str]) -> Path:
    text = "\n".join(["Updated: 2021-03-10 12:00:00 +0300", *rows]) + "\n"
    path.write_bytes(text.encode("cp1251"))
    return path


def exported(db: Database, fmt: str, **kw: object) -> str:
    out = io.BytesIO()
    export(db, fmt, out, now=NOW, **kw)  # type: ignore[arg-type]
    return out.getvalue().decode("cp1251" if fmt == "rkn-csv" else "utf-8")


def test_a_dump_export_holds_what_cp1251_cannot_as_the_same_url(
    db: Database, tmp_path: Path
) -> None:
    urls = ["https://例子.example/路径", "https://b.example/ü", "https://a.example/x | y"]
    lines = [
        json.dumps({"target": u, "decision": f"J-{i}", "basis": "b"}) for i, u in enumerate(urls)
    ]
    (tmp_path / "r.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert import_file(db, tmp_path / "r.jsonl", "jsonl", now=NOW, actor="a").committed
    (tmp_path / "out.csv").write_text(exported(db, "rkn-csv"), encoding="cp1251")
    fresh = Database(str(tmp_path / "fresh.db"))
    upgrade(fresh)
    back = import_file(
        fresh, tmp_path / "out.csv", "rkn-csv", now=NOW, actor="a", defaults=DEFAULTS
    )
    assert back.committed and back.rejected == 0 and back.items_added == 3
    with fresh.reading() as s:
        targets = set(s.scalars(select(Item.target)))
    assert targets == {parse_target(u).value for u in urls}
    fresh.close()


def test_a_too_long_authority_is_a_row_error_on_every_backend(db: Database, tmp_path: Path) -> None:
    path = dump(tmp_path / "d.csv", [f";a.example;;{'А' * 501};D-1;2021-03-01"])
    result = import_file(db, path, "rkn-csv", now=NOW, actor="a", defaults=DEFAULTS)
    assert not result.committed
    assert result.errors == [f"{path}:2: authority longer than 500 characters (501)"]


def test_widening_counts_one_address_however_written_and_keeps_to_the_filters(
    db: Database, tmp_path: Path
) -> None:
    path = dump(
        tmp_path / "d.csv",
        [
            "2001:DB8::1;;http://a.example/1;Суд;2-1/2021;2021-03-01",
            "2001:db8::1;;http://b.example/2;Суд;2-2/2021;2021-03-01",
            "2001:DB8:0::1;;http://c.example/3;Суд;2-3/2021;2021-03-01",
        ],
    )
    assert import_file(db, path, "rkn-csv", now=NOW, actor="a", defaults=DEFAULTS).committed
    report = widen(db, "nft").report
    assert report == ["2001:db8::1: 2 other entries"]
    add_item(
        db,
        ItemRecord(parse_target("http://d.example/x"), "drugs", "b", Decision("D-9")),
        now=NOW,
        actor="a",
    )
    assert [line.split(":")[0] for line in widen(db, "rpz", category="drugs").report] == [
        "d.example"
    ]


def test_widening_names_reference_hosts_on_label_boundaries(db: Database, tmp_path: Path) -> None:
    hosts = [("youtube.com", "text"), ("*.youtube.com", "video"), ("*.googlevideo.com", "video")]
    add_platform(
        db,
        "youtube",
        name="YouTube",
        notice_url=None,
        hosts=[HostSpec(pattern, cls) for pattern, cls in hosts],
        now=NOW,
        actor="a",
    )
    rows = [
        f";;http://{host}/watch?v=1;Суд;2-{i}/2021;2021-03-01"
        for i, host in enumerate(["youtube.com", "www.youtube.com", "r1.googlevideo.com"])
    ]
    import_file(
        db, dump(tmp_path / "d.csv", rows), "rkn-csv", now=NOW, actor="a", defaults=DEFAULTS
    )
    report = dict(line.split(": ", 1) for line in widen(db, "rpz").report)
    assert report["youtube.com"] == "0 other entries, reference hosts youtube.com (youtube)"
    assert report["www.youtube.com"].endswith("reference hosts *.youtube.com (youtube)")
    assert report["r1.googlevideo.com"].endswith("reference hosts *.googlevideo.com (youtube)")


def test_widening_never_blocks_a_public_suffix(db: Database, tmp_path: Path) -> None:
    rows = [";;https://github.io/x;Суд;2-1/2021;2021-03-01", ";;https://a.example/y;Суд;2-2/2021;"]
    path = dump(tmp_path / "d.csv", rows)
    assert import_file(db, path, "rkn-csv", now=NOW, actor="a", defaults=DEFAULTS).committed
    widening = widen(db, "rpz")
    assert [t.record.target.value for t in widening.targets] == ["a.example"]
    assert any(line.startswith("github.io: not widened:") for line in widening.report)
    assert "github.io" not in exported(db, "rpz", widening=widening)
