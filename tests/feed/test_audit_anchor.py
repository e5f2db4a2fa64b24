"""The audit chain's head is signed into every feed publication, so an insider who cuts
back or rewrites the chain afterwards is caught by anyone holding the feed."""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
import threading
from datetime import UTC, datetime
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from sqlalchemy import delete, select, update

from takedown.feed.anchors import published_heads
from takedown.feed.publisher import publish
from takedown.feed.repository import Repository, init_repository
from takedown.store import audit
from takedown.store.db import Database
from takedown.store.schema import AuditHead, Event

NOW = datetime(2021, 3, 10, 9, 0, tzinfo=UTC)
TAKEDOWN = str(Path(sys.executable).parent / "takedown")


def _events(db: Database, n: int, start: int = 0) -> None:
    with db.session() as s:
        for i in range(start, start + n):
            audit.record(s, at=NOW, actor="analyst", type="test.event", payload={"i": i})


def _publish(db: Database, repo: Path) -> audit.ChainHead:
    with db.reading() as s:
        head = audit.current_head(s)
    publish(db, repo, now=NOW, actor="publisher")
    return head


def _verify(db: Database, *sources: str) -> subprocess.CompletedProcess[str]:
    args = [TAKEDOWN, "audit", "verify", "--json"]
    for source in sources:
        args += ["--against", source]
    env = {**os.environ, "TAKEDOWN_DB": db.url}
    return subprocess.run(args, capture_output=True, text=True, timeout=120, env=env)


def test_each_publication_signs_the_head_as_of_it(db: Database, tmp_path: Path) -> None:
    repo = tmp_path / "feed"
    init_repository(repo)
    _events(db, 3)
    first = _publish(db, repo)
    assert first.seq == 3
    assert Repository(repo).info().audit_head == first
    _events(db, 2)
    second = _publish(db, repo)
    assert second.seq == 3 + 1 + 2  # the first publication's own event, then two
    heads, notes = published_heads(str(repo))
    assert set(heads) == {first, second}
    assert [n for n in notes if "no audit head" in n]  # version 1, from before any publish
    report = _verify(db, str(repo))
    assert report.returncode == 0, report.stderr
    doc = json.loads(report.stdout)
    assert doc["ok"] and doc["anchors"]["checked"] == 2
    assert doc["anchors"]["newest"] == second.to_json()


def test_a_rewind_after_publication_is_caught(db: Database, tmp_path: Path) -> None:
    repo = tmp_path / "feed"
    init_repository(repo)
    _events(db, 5)
    anchored = _publish(db, repo)
    # the insider deletes the newest events and rewinds the head to an earlier event
    with db.session() as s:
        keep = s.scalar(select(Event).where(Event.seq == 2))
        assert keep is not None
        s.execute(delete(Event).where(Event.seq > 2))
        s.execute(update(AuditHead).where(AuditHead.id == 1).values(seq=2, hash=keep.hash))
    plain = _verify(db)
    assert plain.returncode == 0, "the chain alone looks intact: that is the attack"
    caught = _verify(db, str(repo))
    assert caught.returncode == 1
    assert f"event {anchored.seq} was published as the head and is gone" in caught.stderr


def test_a_rewrite_with_recomputed_hashes_is_caught(db: Database, tmp_path: Path) -> None:
    repo = tmp_path / "feed"
    init_repository(repo)
    _events(db, 4)
    anchored = _publish(db, repo)
    with db.session() as s:  # edit event 2, then recompute every hash after it
        prev = audit.GENESIS
        for ev in s.scalars(select(Event).order_by(Event.seq)).all():
            payload = {"i": 99} if ev.seq == 2 else ev.payload
            digest = audit.event_hash(prev, ev.seq, ev.at, ev.actor, ev.type, payload)
            ev.payload, ev.prev_hash, ev.hash = payload, prev, digest
            prev = digest
        s.execute(update(AuditHead).where(AuditHead.id == 1).values(hash=prev))
    assert _verify(db).returncode == 0
    caught = _verify(db, str(repo))
    assert caught.returncode == 1
    assert f"event {anchored.seq} was published with hash {anchored.hash[:16]}" in caught.stderr


def test_heads_read_over_http_and_a_forged_copy_is_ignored(
    sqlite_db: Database, tmp_path: Path
) -> None:
    repo = tmp_path / "feed"
    init_repository(repo)
    _events(sqlite_db, 2)
    first = _publish(sqlite_db, repo)
    _events(sqlite_db, 1)
    second = _publish(sqlite_db, repo)
    # the directory as any static server publishes it
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(repo))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        heads, _ = published_heads(f"http://127.0.0.1:{server.server_address[1]}/")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
    assert set(heads) == {first, second}
    # a copy whose newest targets metadata claims another head, without the key to sign it
    forged = tmp_path / "forged"
    shutil.copytree(repo, forged)
    path = forged / "metadata" / "targets.json"
    doc = json.loads(path.read_bytes())
    custom = doc["signed"]["targets"]["directives.json"]["custom"]
    custom["audit_head"] = {"seq": 1, "hash": "f" * 64}
    path.write_text(json.dumps(doc))
    heads, notes = published_heads(str(forged))
    assert audit.ChainHead(1, "f" * 64) not in heads
    assert any("not signed by a targets key" in n for n in notes)
