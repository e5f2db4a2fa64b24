"""`takedown serve` exposes the feed's metadata and targets, never its private keys (a real
uvicorn server on loopback; traversal attempts sent byte for byte, as no client normalises
them away)."""

from __future__ import annotations

import socket
from datetime import UTC, datetime
from pathlib import Path

import httpx
from notices.support import ServerThread

from takedown.clock import SimClock
from takedown.feed.repository import init_repository
from takedown.store.db import Database
from takedown.web.app import AppSettings, build


def raw_get(port: int, target: str) -> bytes:
    """The whole response to ``GET target`` with the request line exactly as given."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        chunks = []
        while data := s.recv(65536):
            chunks.append(data)
    return b"".join(chunks)


def test_feed_serves_public_files_only(sqlite_db: Database, tmp_path: Path) -> None:
    repo = tmp_path / "feed"
    init_repository(repo)
    (repo / "keys").mkdir()  # a key left inside by hand is still never served
    (repo / "keys" / "timestamp.pem").write_bytes(b"-----BEGIN PRIVATE KEY-----")
    clock = SimClock(datetime(2021, 3, 1, tzinfo=UTC))
    app = build(AppSettings(db=sqlite_db, clock=clock, feed_dir=repo))
    with ServerThread(app) as server, httpx.Client(base_url=server.url) as client:
        assert client.get("/feed/metadata/1.root.json").status_code == 200
        assert client.get("/feed/metadata/timestamp.json").json()["signed"]["_type"] == "timestamp"
        for secret in ("/feed/keys/timestamp.pem", "/feed/keys/root.pem", "/feed/feed.json"):
            r = client.get(secret)
            assert r.status_code == 404, secret
            assert b"PRIVATE KEY" not in r.content
        ok = raw_get(server.port, "/feed/metadata/1.root.json")
        assert ok.startswith(b"HTTP/1.1 200"), ok[:80]
        for target in (
            "/feed/metadata/../keys/root.pem",
            "/feed/metadata/%2e%2e/keys/root.pem",
            "/feed/metadata/..%2fkeys%2froot.pem",
            "/feed/targets/../../feed/keys/timestamp.pem",
        ):
            response = raw_get(server.port, target)
            assert response.startswith(b"HTTP/1.1 404"), (target, response[:80])
            assert b"PRIVATE KEY" not in response, target
