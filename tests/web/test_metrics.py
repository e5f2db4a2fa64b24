"""``/metrics`` over real HTTP, on SQLite and PostgreSQL; and ``takedown serve`` wiring it all."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import httpx
from notices.support import START, ServerThread, add_items, free_port, make_platform
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import update

from takedown import accounts, ledger
from takedown.clock import SimClock
from takedown.notices import outbox
from takedown.policy import measures
from takedown.store.db import Database
from takedown.store.schema import FeedPublication, Item
from tests import staff
from tests.web.webapp import full_app

NOW = START + timedelta(days=2)


def scrape(client: httpx.Client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def setup(db: Database) -> list[int]:
    pid, _secret, _token = make_platform(db, "twitter")
    ids = add_items(db, pid, 6)
    outbox.send(db, now=START, actor="t")  # one notice, every item due within 24 h
    with db.session() as s:
        s.execute(update(Item).where(Item.id.in_(ids[:2])).values(state="removed"))
    make_platform(db, "vk")
    measures.add(
        db,
        "twitter",
        action="throttle",
        decision="D-1",
        reason="r",
        now=START,
        actor="alice",
        rate_kbps=128,
    )
    measures.add(db, "vk", action="block", decision="D-2", reason="r", now=START, actor="alice")
    with db.session() as s:
        s.add(
            FeedPublication(
                sequence=7, generated_at=START, published_at=START, digest="0" * 64, directives=1
            )
        )
    staff.token(db, "alice", "auditor", now=START)
    return ids


def test_gauges_follow_the_database(db: Database) -> None:
    setup(db)
    with (
        ServerThread(full_app(db, SimClock(NOW))) as server,
        httpx.Client(base_url=server.url) as c,
    ):
        m = scrape(c)
        assert m[("takedown_items", (("platform", "twitter"), ("state", "open")))] == 4
        assert m[("takedown_items", (("platform", "twitter"), ("state", "removed")))] == 2
        assert m[("takedown_items_overdue", (("platform", "twitter"),))] == 4
        assert m[("takedown_items_overdue", (("platform", "vk"),))] == 0
        with db.reading() as s:
            [fig] = ledger.status_fast(s, "twitter", NOW)
        assert fig.overdue == 4  # the same figure as the ledger's
        assert m[("takedown_notices", (("delivery_state", "pending"),))] == 1
        assert m[("takedown_measures", (("state", "active"),))] == 1
        assert m[("takedown_measures", (("state", "proposed"),))] == 1
        assert m[("takedown_measures", (("state", "lifted"),))] == 0
        assert m[("takedown_feed_last_sequence", ())] == 7
        assert m[("takedown_feed_age_seconds", ())] == 2 * 86400
        assert m[("takedown_feed_last_published_timestamp_seconds", ())] == START.timestamp()
        assert m[("takedown_api_tokens_active", ())] == 1
        # a change is seen at the next scrape (nothing cached)
        accounts.revoke_token(db, "alice", now=NOW, actor=staff.BOOTSTRAP)
        assert scrape(c)[("takedown_api_tokens_active", ())] == 0


def test_requests_are_counted_by_area_and_status(db: Database) -> None:
    with (
        ServerThread(full_app(db, SimClock(NOW))) as server,
        httpx.Client(base_url=server.url) as c,
    ):
        for _ in range(3):
            assert c.get("/public/").status_code == 200
        assert c.get("/api/status").status_code == 401
        assert c.get("/api/platform/notices").status_code == 401
        assert c.get("/nowhere").status_code == 404
        m = scrape(c)

    def n(method: str, area: str, status: str) -> float:
        labels = (("area", area), ("method", method), ("status", status))
        return m.get(("takedown_http_requests_total", labels), 0)

    assert n("GET", "public", "2xx") == 3
    assert n("GET", "api", "4xx") == 1
    assert n("GET", "api/platform", "4xx") == 1
    assert n("GET", "other", "4xx") == 1


def test_serve_mounts_the_regulator_api_public_pages_and_metrics(
    db: Database, db_url: str, tmp_path: Path
) -> None:
    setup(db)
    clock = tmp_path / "clock"
    clock.write_text(NOW.isoformat())
    port = free_port()
    env = dict(os.environ, TAKEDOWN_CLOCK=f"file:{clock}")
    code = "from takedown.cli import main; main()"
    args = ["--db", db_url, "serve", "--port", str(port), "--no-worker"]
    args += ["--public-url", "https://register.example", "--appeal-url", "https://appeal.example"]
    proc = subprocess.Popen(
        [sys.executable, "-c", code, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, timeout=10) as c:
            for _ in range(300):
                try:
                    if c.get("/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
                time.sleep(0.05)
            m = scrape(c)
            assert m[("takedown_measures", (("state", "active"),))] == 1
            assert c.get("/api/status").status_code == 401
            index = c.get("/public/", params={"format": "json"}).json()
            [one] = index["measures_in_force"]
            assert one["url"] == f"https://register.example/public/measures/{one['id']}"
            page = c.get(f"/public/measures/{one['id']}").text
            assert 'href="https://appeal.example"' in page
            assert "/api/status" in c.get("/openapi.json").json()["paths"]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
