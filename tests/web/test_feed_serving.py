"""`takedown serve` exposes the feed's metadata and targets, never its private keys."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from fastapi.testclient import TestClient

from takedown.clock import SimClock
from takedown.feed.repository import init_repository
from takedown.store.db import Database
from takedown.web.app import create_app


def test_feed_serves_public_files_only(sqlite_db: Database, tmp_path: Path) -> None:
    repo = tmp_path / "feed"
    init_repository(repo)
    assert (repo / "keys" / "timestamp.pem").exists()
    app = create_app(sqlite_db, clock=SimClock(datetime(2021, 3, 1, tzinfo=UTC)), feed_dir=repo)
    with TestClient(app) as client:
        assert client.get("/feed/metadata/1.root.json").status_code == 200
        assert client.get("/feed/metadata/timestamp.json").json()["signed"]["_type"] == "timestamp"
        for secret in (
            "/feed/keys/timestamp.pem",
            "/feed/keys/root.pem",
            "/feed/feed.json",
            "/feed/metadata/../keys/root.pem",
        ):
            r = client.get(secret)
            assert r.status_code == 404, secret
            assert b"PRIVATE KEY" not in r.content
