"""Re-uploads end to end on loopback: `verify --reuploads` finds a listed item's media under
another URL, the ledger counts it found / removed per platform, a ladder rule reads
``reuploads_open``; the item probe records the PDQ of the images it reads."""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import select

from takedown.media.store import record_evidence
from takedown.store.db import Database
from takedown.store.schema import Check, Item, Reupload
from tests.media.support import jpeg, photo
from tests.notices.support import START, add_items, make_platform

LADDER = """
[ladder]
name = "reuploads"
description = "Slow media while re-uploads of listed media stay up"

[[rule]]
name = "reuploads"
description = "Slow media while copies of listed media are up"
when = "reuploads_open > 0"
action = "throttle"
rate_kbps = 128
classes = ["media"]
scope = { mobile = 100, fixed = 50 }
review = "30d"
renew = "30d"
needs_approval = false
"""


class Site:
    """A loopback web server whose pages the test changes as it goes."""

    def __init__(self) -> None:
        self.pages: dict[str, bytes] = {}
        pages = self.pages

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = pages.get(self.path)
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Type", "image/jpeg" if body else "text/plain")
                self.send_header("Content-Length", str(len(body or b"")))
                self.end_headers()
                self.wfile.write(body or b"")

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def site() -> Iterator[Site]:
    s = Site()
    yield s
    s.close()


def td(db_url: str, tmp: Path, at: str, *args: str) -> subprocess.CompletedProcess[str]:
    clock = tmp / "clock"
    clock.write_text(at)
    env = {**os.environ, "TAKEDOWN_CLOCK": f"file:{clock}"}
    env.pop("TAKEDOWN_TOKEN", None)
    return subprocess.run(
        [sys.executable, "-m", "takedown", "--db", db_url, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def _copy(seed: int) -> bytes:
    """A re-upload: the photo resized to 60% and re-encoded at JPEG quality 70."""
    image = photo(seed)
    return jpeg(image.resize((192, 144), Image.Resampling.BILINEAR), quality=70)


def test_reuploads_found_counted_and_closed(
    db: Database, db_url: str, tmp_path: Path, site: Site
) -> None:
    pid, _s, _t = make_platform(db, "twitter")
    items = add_items(db, pid, 2, prefix="t")
    for n, item in enumerate(items):
        record_evidence(db, item, jpeg(photo(n)), source=f"{n}.jpg", now=START, actor="t")
    site.pages["/copy.jpg"] = _copy(0)
    site.pages["/unrelated.jpg"] = jpeg(photo(9))
    urls = tmp_path / "urls.txt"
    urls.write_text(
        f"# found by a tip line\n{site.url}/copy.jpg\n\n{site.url}/unrelated.jpg\n"
        f"{site.url}/gone.jpg\n"
    )
    day2 = "2021-03-02T00:00:00Z"
    r = td(db_url, tmp_path, day2, "verify", "--reuploads", str(urls), "--only-loopback", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert (out["checked"], out["images"], out["closed"]) == (3, 2, 0)
    [found] = out["found"]
    assert (found["url"], found["item_id"], found["new"]) == (
        f"{site.url}/copy.jpg",
        items[0],
        True,
    )
    assert 0 < found["distance"] <= 31
    again = json.loads(
        td(db_url, tmp_path, day2, "verify", "--reuploads", str(urls), "--json").stdout
    )
    assert again["found"][0]["new"] is False  # recorded once while it is open

    status = json.loads(
        td(db_url, tmp_path, day2, "status", "--platform", "twitter", "--json").stdout
    )
    assert (status["reuploads_found"], status["reuploads_removed"], status["reuploads_open"]) == (
        1,
        0,
        1,
    )
    ladder = tmp_path / "ladder.toml"
    ladder.write_text(LADDER)
    ev = td(
        db_url, tmp_path, day2, "policy", "eval", "--ladder", str(ladder), "--at", day2, "--json"
    )
    assert ev.returncode == 0, ev.stderr
    [proposal] = json.loads(ev.stdout)["proposals"]
    assert proposal["rule"] == "reuploads"

    del site.pages["/copy.jpg"]  # the platform took the copy down
    day3 = "2021-03-03T00:00:00Z"
    r = td(db_url, tmp_path, day3, "verify", "--reuploads", str(urls), "--json")
    assert json.loads(r.stdout)["closed"] == 1
    status = json.loads(
        td(db_url, tmp_path, day3, "status", "--platform", "twitter", "--json").stdout
    )
    assert (status["reuploads_found"], status["reuploads_removed"], status["reuploads_open"]) == (
        1,
        1,
        0,
    )
    ev = td(
        db_url, tmp_path, day3, "policy", "eval", "--ladder", str(ladder), "--at", day3, "--json"
    )
    assert json.loads(ev.stdout)["proposals"] == []
    # the past is still answerable: as of day 2 the copy was up
    past = json.loads(
        td(db_url, tmp_path, day3, "status", "--platform", "twitter", "--at", day2, "--json").stdout
    )
    assert (past["reuploads_found"], past["reuploads_open"]) == (1, 1)


def test_a_bad_urls_file_names_the_line(db_url: str, tmp_path: Path) -> None:
    urls = tmp_path / "urls.txt"
    urls.write_text("https://ok.example/a.jpg\nftp://nope.example/x\n")
    r = td(db_url, tmp_path, "2021-03-02T00:00:00Z", "verify", "--reuploads", str(urls))
    assert r.returncode == 1
    assert r.stderr.strip() == f"error: {urls}:2: not an http(s) URL: 'ftp://nope.example/x'"


def test_the_probe_records_pdq_and_flags_another_items_media(
    db: Database, db_url: str, tmp_path: Path, site: Site
) -> None:
    pid, _s, _t = make_platform(db, "twitter")
    items = add_items(db, pid, 2, prefix="t")
    record_evidence(db, items[0], jpeg(photo(0)), source="0.jpg", now=START, actor="t")
    # item 2's URL now serves item 1's photo, re-encoded
    with db.reading() as s:
        path = s.get(Item, items[1]).target.split("twitter.com", 1)[1]
        other = s.get(Item, items[0]).target.split("twitter.com", 1)[1]
    site.pages[path] = _copy(0)
    site.pages[other] = b"<html>This post has been removed</html>"
    r = td(db_url, tmp_path, "2021-03-02T00:00:00Z", "verify", "--platform", "twitter",
           "--connect-to", f"twitter.com={site.url}", "--only-loopback", "--json")  # fmt: skip
    assert r.returncode == 0, r.stderr
    with db.reading() as s:
        checks = {c.item_id: c for c in s.scalars(select(Check))}
        assert checks[items[1]].media_pdq is not None and checks[items[1]].media_quality >= 50
        assert checks[items[0]].media_pdq is None
        [reupload] = s.scalars(select(Reupload)).all()
        assert (reupload.item_id, reupload.found_by) == (items[0], "probe")
        assert reupload.url.endswith(path)
