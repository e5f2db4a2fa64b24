"""`takedown registry evidence`: hashes stored, media kept only on request, never for CSAM."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from takedown.media.hashing import hash_media
from takedown.store.db import Database
from takedown.store.schema import Event, MediaEvidence
from tests.media.support import jpeg, photo
from tests.registry.test_cli_registry import run


def _add(db_url: str, target: str, category: str) -> int:
    r = run(db_url, "registry", "add", target, "--category", category, "--basis", "149-FZ",
            "--decision", f"D-{target[-5:]}", "--json")  # fmt: skip
    assert r.returncode == 0, r.stderr
    return int(json.loads(r.stdout)["id"])


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def test_hashes_are_stored_and_the_media_is_not(db_url: str, tmp_path: Path) -> None:
    item = _add(db_url, "https://x.example/p/1.jpg", "drugs")
    media = tmp_path / "in" / "photo.jpg"
    media.parent.mkdir()
    media.write_bytes(jpeg(photo(1)))
    work = tmp_path / "work"
    work.mkdir()
    r = run(db_url, "registry", "evidence", str(item), str(media), "--json", cwd=work)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    want = hash_media(media.read_bytes())
    assert got["sha256"] == want.sha256 and got["pdq"] == want.pdq
    assert got["quality"] == want.quality >= 50
    assert got["kept"] is False and got["created"] is True
    assert _files(work) == set()  # nothing written beside the database
    again = run(db_url, "registry", "evidence", str(item), str(media), "--json", cwd=work)
    assert json.loads(again.stdout)["created"] is False
    with Database(db_url).reading() as s:
        row = s.scalars(select(MediaEvidence)).one()
        assert row.kept_path is None and row.pdq == want.pdq
        assert s.scalar(select(func.count()).where(Event.type == "media.evidence")) == 1


def test_keep_stores_the_media_by_its_hash(db_url: str, tmp_path: Path) -> None:
    item = _add(db_url, "https://x.example/p/2.jpg", "drugs")
    media = tmp_path / "photo.jpg"
    media.write_bytes(jpeg(photo(2)))
    keep = tmp_path / "kept"
    r = run(db_url, "registry", "evidence", str(item), str(media), "--keep", "--keep-dir",
            str(keep), "--json")  # fmt: skip
    assert r.returncode == 0, r.stderr
    sha = json.loads(r.stdout)["sha256"]
    assert json.loads(r.stdout)["kept"] is True
    assert (keep / sha).read_bytes() == media.read_bytes()


def test_csam_media_is_never_kept(db_url: str, tmp_path: Path) -> None:
    item = _add(db_url, "https://x.example/p/3.jpg", "csam")
    media = tmp_path / "in.jpg"
    media.write_bytes(jpeg(photo(3)))
    keep = tmp_path / "kept"
    refused = run(db_url, "registry", "evidence", str(item), str(media), "--keep",
                  "--keep-dir", str(keep))  # fmt: skip
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines() == [
        "error: --keep: media of csam items is never kept, only its hashes; run without --keep"
    ]
    assert not keep.exists()
    with Database(db_url).reading() as s:
        assert s.scalar(select(func.count()).select_from(MediaEvidence)) == 0
    r = run(db_url, "registry", "evidence", str(item), str(media), "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["kept"] is False
    # the bytes of the media are nowhere but in the analyst's own file (the database too)
    piece = media.read_bytes()[1000:1064]
    holders = {f for f in _files(tmp_path) if piece in (tmp_path / f).read_bytes()}
    assert holders == {"in.jpg"}
    with Database(db_url).reading() as s:
        row = s.scalars(select(MediaEvidence)).one()
        assert row.kept_path is None and row.pdq is not None


def test_bad_input_names_the_place_and_changes_nothing(db_url: str, tmp_path: Path) -> None:
    item = _add(db_url, "https://x.example/p/4.jpg", "drugs")
    text = tmp_path / "notes.txt"
    text.write_text("not media")
    cases = [
        (("registry", "evidence", str(item), str(text)), 1, "error: notes.txt: not an image"),
        (("registry", "evidence", "999", str(text)), 1, "error: notes.txt: not an image"),
        (("registry", "evidence", str(item)), 2, "error: FILE: give one of FILE and --fetch"),
        (("registry", "evidence", str(item), str(tmp_path / "none.jpg")), 1, "error: "),
    ]
    for args, code, start in cases:
        r = run(db_url, *args)
        assert r.returncode == code, (args, r.stderr)
        assert r.stderr.startswith(start), r.stderr
    media = tmp_path / "p.jpg"
    media.write_bytes(jpeg(photo(4)))
    r = run(db_url, "registry", "evidence", "999", str(media))
    assert (r.returncode, r.stderr.strip()) == (1, "error: ITEM: no item 999")
    with Database(db_url).reading() as s:
        assert s.scalar(select(func.count()).select_from(MediaEvidence)) == 0


@pytest.fixture
def media_server(tmp_path: Path) -> Iterator[str]:
    body = jpeg(photo(5))

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/p/5.jpg":
                self.send_response(200)
                self.send_header("Content-Type", "image/jpeg")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            else:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_fetch_hashes_the_items_own_url(db_url: str, media_server: str) -> None:
    item = _add(db_url, f"{media_server}/p/5.jpg", "drugs")
    r = run(db_url, "registry", "evidence", str(item), "--fetch", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["pdq"] == hash_media(jpeg(photo(5))).pdq
    gone = _add(db_url, f"{media_server}/p/6.jpg", "drugs")
    r = run(db_url, "registry", "evidence", str(gone), "--fetch")
    assert r.returncode == 1
    assert r.stderr.startswith("error: --fetch: ") and "HTTP 404" in r.stderr
