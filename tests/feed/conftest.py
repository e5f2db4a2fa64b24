"""Feed fixtures: a repository, a served mirror of it (real HTTP on loopback, or a local
directory) that tests can tamper with, and sample directive sets."""

from __future__ import annotations

import functools
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from takedown.feed.repository import SERVED_DIRS, init_repository
from takedown.model import Directive, DirectiveSet, HostRule, MeasureAction

T0 = datetime(2021, 3, 10, tzinfo=UTC)


def sample_set(sequence: int = 1, n: int = 2) -> DirectiveSet:
    """A small valid set modelled on the 2021 case; ``n`` directives."""
    directives = [
        Directive(
            id="m-twitter-media",
            action=MeasureAction.THROTTLE,
            hosts=(HostRule("*.twimg.com", "media"), HostRule("t.co", "media")),
            rate_kbps=128,
            scope={"mobile": 100.0, "fixed": 50.0},
            valid_from=T0,
            expires=T0 + timedelta(days=66),
            measure_id=1,
            decisions=("RKN-2021-03-10",),
            reference_url="https://register.example/lookup?m=1",
        )
    ]
    for i in range(1, n):
        directives.append(
            Directive(
                id=f"item-{i:05d}",
                action=MeasureAction.BLOCK,
                hosts=(HostRule(f"host{i}.example.org"),),
                ip_ranges=(f"192.0.2.{i % 256}",),
                scope={"*": 100.0},
                valid_from=T0,
                expires=T0 + timedelta(days=30 + sequence),
                decisions=(f"D-{i}",),
            )
        )
    return DirectiveSet(1, sequence, T0 + timedelta(hours=sequence), tuple(directives))


class _Handler(SimpleHTTPRequestHandler):
    server: _FeedServer

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.server.requests.append(self.path)
        if not self.path.startswith("/feed/"):
            self.send_error(404)
            return
        rel = self.path[len("/feed/") :]
        if rel.split("/", 1)[0] not in SERVED_DIRS:
            self.send_error(404)
            return
        if rel in self.server.truncate:
            data = (self.server.root / rel).read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])  # then the connection closes
            self.close_connection = True
            return
        self.path = "/" + rel
        super().do_GET()


class _FeedServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, root: Path) -> None:
        self.root = root
        self.truncate: set[str] = set()
        self.requests: list[str] = []  # every path asked for, in order
        handler = functools.partial(_Handler, directory=str(root))
        super().__init__(("127.0.0.1", 0), handler)


@dataclass
class Feed:
    """A repository (the regulator's), a mirror (what clients read; tests tamper with it)
    and the source string a client uses for the mirror."""

    repo: Path
    mirror: Path
    source: str
    server: _FeedServer | None = None
    saved: dict[str, bytes] = field(default_factory=dict)

    def sync(self) -> None:
        """Copy the repository's served files to the mirror (an honest mirror)."""
        for sub in SERVED_DIRS:
            shutil.copytree(self.repo / sub, self.mirror / sub, dirs_exist_ok=True)

    def root_bytes(self) -> bytes:
        return (self.repo / "metadata" / "1.root.json").read_bytes()

    def truncate(self, rel: str) -> None:
        """Serve ``rel`` cut in half: over HTTP with the full Content-Length; on disk."""
        if self.server is not None:
            self.server.truncate.add(rel)
        else:
            path = self.mirror / rel
            data = path.read_bytes()
            path.write_bytes(data[: len(data) // 2])


@pytest.fixture(params=["http", "dir"])
def feed(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Feed]:
    yield from _feed(request.param, tmp_path)


@pytest.fixture(params=["http", "dir"])
def bins_feed(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Feed]:
    """A sharded feed (format 2, 2**8 bins), served like ``feed``."""
    yield from _feed(request.param, tmp_path, bins=8)


def _feed(kind: str, tmp_path: Path, bins: int | None = None) -> Iterator[Feed]:
    repo = tmp_path / "repo"
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    init_repository(repo, bins=bins)
    if kind == "dir":
        f = Feed(repo, mirror, str(mirror))
        f.sync()
        yield f
        return
    server = _FeedServer(mirror)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        f = Feed(repo, mirror, f"http://127.0.0.1:{server.server_address[1]}/feed/", server)
        f.sync()
        yield f
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture
def make_set():  # type: ignore[no-untyped-def]
    """The ``sample_set`` factory."""
    return sample_set
