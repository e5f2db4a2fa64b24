"""`registry sync`: a file is the whole current register of its source."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, inspect, select

from takedown.registry.formats import ReadDefaults
from takedown.registry.store import EntryWriter
from takedown.registry.sync import SyncResult, read_register
from takedown.store.db import Database
from takedown.store.schema import Entry, EntryRevision, Event, Item, RegisterSource, target_key

NOW = datetime(2021, 3, 12, 9, 0, tzinfo=UTC)
DEFAULTS = ReadDefaults(basis="149-FZ art. 15.1")

BASE_ROWS = [
    "74.125.196.132;youtube.com;http://youtube.com/watch?v=abc;Суд;2-123/2021;2021-03-01",
    ";casino-one.example;;Роскомнадзор;D-1;2021-03-01",
    ";*.pharm.example;;Роскомнадзор;D-2;2021-03-02",
    "203.0.113.7;;;Роскомнадзор;D-3;2021-03-03",
    ";;http://forum.example/t/1 | http://forum.example/t/2;Суд;2-200/2021;2021-03-04",
] + [f";site{i}.example;;Роскомнадзор;D-{10 + i};2021-03-05" for i in range(20)]


def dump(path: Path, rows: list[str], updated: str = "2021-03-10 12:00:00 +0300") -> Path:
    path.write_bytes(("\n".join([f"Updated: {updated}", *rows]) + "\n").encode("cp1251"))
    return path


def sync(db: Database, path: Path, **kw: object) -> SyncResult:
    return read_register(
        db,
        path,
        "rkn-csv",
        source="rkn",
        mode="sync",
        now=NOW,
        actor="analyst",
        defaults=DEFAULTS,
        **kw,  # type: ignore[arg-type]
    )


def live(db: Database) -> dict[str, str]:
    """Live items: target → decision."""
    with db.reading() as s:
        rows = s.execute(select(Item.target, Item.decision_ref).where(Item.delisted_at.is_(None)))
        return dict(rows.all())


def snapshot(db: Database) -> tuple:
    with db.reading() as s:
        entries = s.execute(select(Entry).order_by(Entry.id)).scalars().all()
        items = s.execute(select(Item).order_by(Item.id)).scalars().all()
        return (
            [(e.id, e.key, e.digest, e.delisted_at, e.urls, e.ips) for e in entries],
            [(i.id, i.target, i.delisted_at, i.state) for i in items],
            s.scalar(select(func.count()).select_from(Event)),
            s.scalar(select(func.count()).select_from(EntryRevision)),
        )


def test_first_sync_adds_every_entry_and_only_targets_become_items(
    db: Database, tmp_path: Path
) -> None:
    result = sync(db, dump(tmp_path / "a.csv", BASE_ROWS))
    assert result.committed and not result.refused
    assert (result.entries, result.added, result.delisted, result.changed) == (25, 25, 0, 0)
    assert result.targets == 26 and result.items_added == 26
    items = live(db)
    assert "http://youtube.com/watch?v=abc" in items
    # the URL entry's domain and IP are hints, not items
    assert "youtube.com" not in items and "74.125.196.132" not in items
    assert "203.0.113.7" in items  # an IP entry blocks its IP
    with db.reading() as s:
        yt = s.scalars(select(Entry).where(Entry.urls.like("%youtube%"))).one()
        assert (yt.block_type, yt.ips, yt.domains) == ("url", "74.125.196.132", "youtube.com")
        source = s.scalars(select(RegisterSource).where(RegisterSource.name == "rkn")).one()
        assert source.updated_at == datetime(2021, 3, 10, 9, 0, tzinfo=UTC)


def test_entries_keep_the_keys_earlier_versions_stored(db: Database, tmp_path: Path) -> None:
    """A database synced by an earlier version is followed by this one only if an entry's
    key is what was stored then: 16 hex digits of SHA-256 over the decision, the block type
    and the sorted targets (a register's own id where it has one)."""
    sync(db, dump(tmp_path / "a.csv", BASE_ROWS))

    def stored(*lines: str) -> str:
        return hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()[:16]

    with db.reading() as s:
        keys = dict(s.execute(select(Entry.urls, Entry.key).where(Entry.urls != "")).all())
    assert keys == {
        "http://youtube.com/watch?v=abc": stored(
            "2-123/2021", "url", "http://youtube.com/watch?v=abc"
        ),
        "http://forum.example/t/1\nhttp://forum.example/t/2": stored(
            "2-200/2021", "url", "http://forum.example/t/1", "http://forum.example/t/2"
        ),
    }


def test_second_sync_of_the_same_file_changes_nothing(db: Database, tmp_path: Path) -> None:
    path = dump(tmp_path / "a.csv", BASE_ROWS)
    sync(db, path)
    before = snapshot(db)
    again = sync(db, path)
    assert (again.added, again.changed, again.delisted, again.unchanged) == (0, 0, 0, 25)
    after = snapshot(db)
    assert after[:2] == before[:2] and after[3] == before[3]
    assert after[2] == before[2] + 1  # only the sync's own audit event


def test_sync_adds_delists_and_updates_keeping_history(db: Database, tmp_path: Path) -> None:
    sync(db, dump(tmp_path / "a.csv", BASE_ROWS))
    rows = list(BASE_ROWS)
    rows[0] = rows[0].replace("74.125.196.132", "74.125.196.133")  # re-resolved: a change
    del rows[5]  # site0.example is gone
    rows.append(";new.example;;Роскомнадзор;D-99;2021-03-11")
    result = sync(db, dump(tmp_path / "b.csv", rows, updated="2021-03-11 12:00:00 +0300"))
    assert (result.added, result.changed, result.delisted, result.unchanged) == (1, 1, 1, 23)
    items = live(db)
    assert "new.example" in items and "site0.example" not in items
    with db.reading() as s:
        gone = s.scalars(select(Item).where(Item.target == "site0.example")).one()
        assert gone.state == "delisted"
        assert gone.delisted_at == datetime(2021, 3, 11, 9, 0, tzinfo=UTC)  # the file's time
        yt = s.scalars(select(Entry).where(Entry.urls.like("%youtube%"))).one()
        assert yt.ips == "74.125.196.133"
        revision = s.scalars(select(EntryRevision).where(EntryRevision.entry_id == yt.id)).one()
        assert json.loads(revision.content)["ips"] == "74.125.196.132"
        # the URL item itself is untouched by a change of its hints
        url_items = s.scalars(select(Item).where(Item.entry_id == yt.id)).all()
        assert [(i.target, i.delisted_at) for i in url_items] == [
            ("http://youtube.com/watch?v=abc", None)
        ]
        events = s.scalars(select(Event).where(Event.type == "registry.sync")).all()
    assert len(events) == 2
    payload = events[-1].payload
    assert (payload["added"], payload["changed"], payload["delisted"]) == (1, 1, 1)
    assert len(payload["sha256"]) == 64 and payload["updated_at"].startswith("2021-03-11")


def test_an_entry_listed_again_after_its_delisting_is_a_new_item(
    db: Database, tmp_path: Path
) -> None:
    sync(db, dump(tmp_path / "a.csv", BASE_ROWS))
    sync(db, dump(tmp_path / "b.csv", BASE_ROWS[1:], updated="2021-03-11 12:00:00 +0300"))
    assert "http://youtube.com/watch?v=abc" not in live(db)
    result = sync(db, dump(tmp_path / "c.csv", BASE_ROWS, updated="2021-03-12 12:00:00 +0300"))
    assert result.added == 1 and "http://youtube.com/watch?v=abc" in live(db)
    with db.reading() as s:
        states = s.execute(
            select(Item.state).where(Item.target == "http://youtube.com/watch?v=abc")
        ).scalars()
        assert sorted(states) == ["delisted", "open"]


def test_plan_says_what_would_change_and_changes_nothing(db: Database, tmp_path: Path) -> None:
    sync(db, dump(tmp_path / "a.csv", BASE_ROWS))
    before = snapshot(db)
    rows = [*BASE_ROWS[1:], ";new.example;;Роскомнадзор;D-99;2021-03-11"]
    plan = sync(db, dump(tmp_path / "b.csv", rows, updated="2021-03-11 12:00:00 +0300"), plan=True)
    assert (plan.added, plan.delisted, plan.committed) == (1, 1, False)
    assert any("new.example" in line for line in plan.examples["added"])
    assert snapshot(db) == before


def test_an_older_snapshot_is_refused_unless_allowed(db: Database, tmp_path: Path) -> None:
    sync(db, dump(tmp_path / "new.csv", BASE_ROWS, updated="2021-03-11 12:00:00 +0300"))
    before = snapshot(db)
    old = dump(tmp_path / "old.csv", BASE_ROWS[:-1], updated="2021-03-10 12:00:00 +0300")
    refused = sync(db, old)
    assert refused.refused and "older" in refused.refused and not refused.committed
    assert snapshot(db) == before
    forced = sync(db, old, allow_older=True)
    assert forced.committed and forced.delisted == 1


def test_a_truncated_file_does_not_wipe_the_register(db: Database, tmp_path: Path) -> None:
    sync(db, dump(tmp_path / "a.csv", BASE_ROWS))
    before = snapshot(db)
    truncated = dump(tmp_path / "t.csv", BASE_ROWS[:5], updated="2021-03-11 12:00:00 +0300")
    refused = sync(db, truncated)
    assert refused.refused and "20 of 25" in refused.refused and "--max-delist" in refused.refused
    assert snapshot(db) == before
    allowed = sync(db, truncated, max_delist=80)
    assert allowed.committed and allowed.delisted == 20


def test_a_bad_row_refuses_the_whole_sync(db: Database, tmp_path: Path) -> None:
    sync(db, dump(tmp_path / "a.csv", BASE_ROWS))
    before = snapshot(db)
    bad = dump(tmp_path / "b.csv", [*BASE_ROWS, "300.1.1.1;;;A;D-x;2021-03-01"])
    result = sync(db, bad)
    assert not result.committed and result.rejected == 1
    assert result.errors[0].startswith(f"{bad}:27: ips:")
    assert snapshot(db) == before


def test_sync_cli_json_and_plan(db_url: str, tmp_path: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "TAKEDOWN_DB": db_url}
        return subprocess.run(
            [sys.executable, "-m", "takedown", *args], capture_output=True, text=True, env=env
        )

    path = dump(tmp_path / "a.csv", BASE_ROWS)
    common = ["--format", "rkn-csv", "--source", "rkn", "--basis", "149-FZ"]
    r = run("registry", "sync", str(path), *common, "--plan")
    assert r.returncode == 0, r.stderr
    assert "25 entries would be added" in r.stdout and "plan only" in r.stdout
    assert "register updated 2021-03-10T09:00:00Z; signature not checked" in r.stdout
    r = run("registry", "sync", str(path), *common, "--json")
    summary = json.loads(r.stdout)
    assert (summary["added"], summary["entries"], summary["targets"]) == (25, 25, 26)
    assert summary["signature"] is None
    r = run("registry", "sync", str(dump(tmp_path / "t.csv", BASE_ROWS[:2])), *common)
    assert r.returncode == 1 and "refused" in r.stderr and "nothing changed" in r.stderr


def test_kill_during_sync_leaves_the_previous_state(sqlite_db: Database, tmp_path: Path) -> None:
    """A sync killed with SIGKILL mid-write leaves the register as the last sync left it."""
    db = sqlite_db
    sync(db, dump(tmp_path / "a.csv", BASE_ROWS))
    before = snapshot(db)
    rows = [f";bulk{i}.example;;Роскомнадзор;B-{i};2021-03-11" for i in range(200_000)]
    big = dump(tmp_path / "big.csv", [*BASE_ROWS, *rows], updated="2021-03-11 12:00:00 +0300")
    env = {**os.environ, "TAKEDOWN_DB": str(db.url).removeprefix("sqlite:///")}
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "takedown",
            "registry",
            "sync",
            str(big),
            "--format",
            "rkn-csv",
            "--source",
            "rkn",
            "--basis",
            "149-FZ",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    # kill it once it has written into the database file (its journal exists)
    journal = Path(env["TAKEDOWN_DB"] + "-journal"), Path(env["TAKEDOWN_DB"] + "-wal")
    deadline = time.monotonic() + 60
    while child.poll() is None and time.monotonic() < deadline:
        if any(p.exists() and p.stat().st_size > 0 for p in journal):
            break
        time.sleep(0.01)
    assert child.poll() is None, "the sync finished before it could be killed"
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert snapshot(Database(db.url)) == before


@pytest.mark.parametrize("fmt", ["jsonl"])
def test_sync_of_an_item_export_follows_its_source(db: Database, tmp_path: Path, fmt: str) -> None:
    lines = [
        {"target": f"http://a.example/{i}", "decision": f"J-{i}", "basis": "b"} for i in range(5)
    ]
    path = tmp_path / "r.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n", encoding="utf-8")
    kw = {"source": "ext", "now": NOW, "actor": "a", "defaults": DEFAULTS}
    first = read_register(db, path, fmt, mode="sync", **kw)  # type: ignore[arg-type]
    assert first.added == 5
    path.write_text("\n".join(json.dumps(x) for x in lines[:4]) + "\n", encoding="utf-8")
    second = read_register(
        db,
        path,
        fmt,
        mode="sync",
        max_delist=50,
        **kw,  # type: ignore[arg-type]
    )
    assert (second.delisted, second.unchanged) == (1, 4)
    assert "http://a.example/4" not in live(db)


def test_a_url_of_seven_kilobytes_is_one_item_on_every_backend(
    db: Database, tmp_path: Path
) -> None:
    """More than a PostgreSQL index row holds: the unique index keeps a digest of it."""
    url = "http://forum.example/search?q=" + "x" * 7000
    result = sync(db, dump(tmp_path / "a.csv", [f";;{url};Суд;2-7/2021;2021-03-01"]))
    assert result.committed and result.items_added == 1
    again = sync(db, dump(tmp_path / "a.csv", [f";;{url};Суд;2-7/2021;2021-03-01"]))
    assert again.unchanged == 1 and live(db) == {url: "2-7/2021"}


def xml_dump(path: Path, contents: list[tuple[int, str]], updated: str) -> Path:
    """An operator dump: (content id, its children)."""
    body = "\n".join(
        f'  <content id="{cid}" includeTime="2021-03-01T10:00:00" entryType="1" hash="h{cid}">\n'
        f'    <decision date="2021-03-01" number="2-{cid}/2021" org="Суд"/>\n{children}\n'
        "  </content>"
        for cid, children in contents
    )
    xml = (
        '<?xml version="1.0" encoding="windows-1251"?>\n'
        f'<reg:register updateTime="{updated}" formatVersion="2.4" xmlns:reg="http://rsoc.ru">\n'
        f"{body}\n</reg:register>\n"
    )
    path.write_bytes(xml.encode("cp1251"))
    return path


def test_xml_entries_are_followed_by_their_own_id(db: Database, tmp_path: Path) -> None:
    video = "    <url><![CDATA[http://video.example/watch?v=1&t=2]]></url>\n" + (
        "    <domain>video.example</domain>\n    <ip>192.0.2.10</ip>"
    )
    domain = "    <domain>casino.example</domain>\n    <ip>192.0.2.20</ip>"
    first = xml_dump(tmp_path / "1.xml", [(1, video), (2, domain)], "2021-03-10T12:00:00+03:00")
    kw = {"source": "rkn-xml", "now": NOW, "actor": "a", "defaults": DEFAULTS, "mode": "sync"}
    result = read_register(db, first, "rkn-xml", **kw)  # type: ignore[arg-type]
    assert (result.added, result.targets) == (2, 2) and result.signature is None
    assert set(live(db)) == {"http://video.example/watch?v=1&t=2", "casino.example"}
    # the same content id now names another URL: an update of entry 1, not a new entry
    moved = video.replace("v=1", "v=9")
    second = xml_dump(tmp_path / "2.xml", [(1, moved), (2, domain)], "2021-03-11T12:00:00+03:00")
    result = read_register(db, second, "rkn-xml", **kw)  # type: ignore[arg-type]
    assert (result.added, result.changed, result.delisted) == (0, 1, 0)
    assert set(live(db)) == {"http://video.example/watch?v=9&t=2", "casino.example"}
    with db.reading() as s:
        entry = s.scalars(select(Entry).where(Entry.external_id == "1")).one()
        assert entry.block_type == "url" and entry.ips == "192.0.2.10"
        old = s.scalars(select(Item).where(Item.target.like("%v=1&%"))).one()
        assert old.delisted_at is not None and old.entry_id == entry.id


def test_a_big_first_sync_builds_the_indexes_it_deferred(db: Database, tmp_path: Path) -> None:
    """A first load of more than one batch into empty tables drops the items' secondary
    indexes and builds them again before the commit; a target two entries list under one
    decision stays the first one's item (the conflict rule of the bulk path)."""
    rows = [f";bulk{i}.example;;Роскомнадзор;B-{i};2021-03-11" for i in range(6000)]
    rows += [";dup.example;;Суд;D-9;2021-03-11", ";dup.example|more.example;;Суд;D-9;2021-03-11"]
    # a target the first batch wrote, listed again by another entry in the second
    rows += [";bulk0.example|extra.example;;Роскомнадзор;B-0;2021-03-11"]
    result = sync(db, dump(tmp_path / "big.csv", rows))
    assert (result.added, result.targets, result.items_added) == (6003, 6005, 6003)
    with db.reading() as s:
        names = {i["name"] for i in inspect(s.connection()).get_indexes("items")}
        entry_names = {i["name"] for i in inspect(s.connection()).get_indexes("entries")}
        keys = {
            k["name"]
            for table in ("items", "entries")
            for k in inspect(s.connection()).get_foreign_keys(table)
        }
        first = s.scalar(select(func.min(Entry.id)).where(Entry.decision_ref == "D-9"))
        owner = s.scalar(select(Item.entry_id).where(Item.target == "dup.example"))
        bulk0 = s.scalars(select(Item.entry_id).where(Item.target == "bulk0.example")).all()
    assert {i.name for i in Item.__table__.indexes} <= names
    assert {i.name for i in Entry.__table__.indexes} <= entry_names
    assert {k.name for t in (Item, Entry) for k in t.__table__.foreign_key_constraints} <= keys
    assert owner == first
    assert bulk0 == [1]
    assert len(live(db)) == 6003
    again = sync(db, dump(tmp_path / "big.csv", rows))
    assert (again.added, again.unchanged, again.items_added) == (0, 6003, 0)


def test_a_first_load_keeps_a_new_item_its_hash_mistook_for_a_repeat(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL's first load COPYs an item straight in only if this load surely has not
    written its (target, decision) -- by a set of hashes -- and sends the rest through the
    conflict-skipping insert. One that is new after all (two pairs with one hash, which no
    file can be made to produce on purpose) is still written."""
    if db.engine.dialect.name != "postgresql":
        pytest.skip("the hashed first-load path is PostgreSQL's")
    rows = [f";bulk{i}.example;;Роскомнадзор;B-{i};2021-03-11" for i in range(6000)]
    real_defer = EntryWriter._defer_indexes

    def defer_then_collide(writer: EntryWriter, first: list[tuple]) -> None:
        real_defer(writer, first)
        assert writer._first_load is not None  # the hashed path is on
        # as if an item of the first batch had the last row's hash
        writer._first_load.add(hash((target_key("bulk5999.example"), "B-5999")))

    monkeypatch.setattr(EntryWriter, "_defer_indexes", defer_then_collide)
    result = sync(db, dump(tmp_path / "big.csv", rows))
    assert (result.added, result.items_added) == (6000, 6000)
    assert len(live(db)) == 6000 and live(db)["bulk5999.example"] == "B-5999"
