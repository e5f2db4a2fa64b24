"""The feed sources behind FeedSource: a plain directive file, a TUF repository, and the
enforcement point's feed loop, which uses nothing but that interface."""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import sample_set

from takedown.clock import SimClock
from takedown.enforce.process import feed_loop
from takedown.errors import InputError
from takedown.feed import FeedClient, dumps, init_repository, publish
from takedown.feed.directives import TARGET_NAME
from takedown.feed.source import DirectoryFeed, FeedSource, open_feed
from takedown.model import DirectiveSet

NOW = datetime(2021, 3, 10, 12, 0, tzinfo=UTC)


def test_directory_feed_reads_a_changed_file_once(tmp_path: Path) -> None:
    path = tmp_path / TARGET_NAME
    path.write_bytes(dumps(sample_set(1)))
    feed: FeedSource = DirectoryFeed(tmp_path)  # a directory holding directives.json
    first = feed.refresh()
    assert first is not None and first.sequence == 1 and feed.last_good == first
    assert feed.refresh() is None  # unchanged
    path.write_bytes(dumps(sample_set(2, n=3)))
    os.utime(path, ns=(1, 1))  # a different mtime even on a coarse clock
    again = feed.refresh()
    assert again is not None and again.sequence == 2
    assert feed.expires is None and not feed.stale(NOW + timedelta(days=3650))


def test_directory_feed_refuses_what_it_cannot_read(tmp_path: Path) -> None:
    with pytest.raises(InputError):
        DirectoryFeed(tmp_path / "missing.json").refresh()
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    with pytest.raises(InputError):
        DirectoryFeed(bad).refresh()


def test_open_feed_picks_the_source(tmp_path: Path) -> None:
    plain = tmp_path / "plain.json"
    plain.write_bytes(dumps(sample_set(1)))
    clock = SimClock(NOW)
    assert isinstance(open_feed(str(plain), str(tmp_path / "s1"), None, clock=clock), DirectoryFeed)
    assert isinstance(
        open_feed(str(tmp_path), str(tmp_path / "s2"), None, clock=clock), DirectoryFeed
    )
    repo = tmp_path / "repo"
    init_repository(repo)
    publish(repo, sample_set(1))
    client = open_feed(str(repo), str(tmp_path / "s3"), None, clock=clock)
    assert isinstance(client, FeedClient)


def test_feed_client_takes_its_time_from_the_caller(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    init_repository(repo)
    publish(repo, sample_set(1))
    clock = SimClock(NOW)
    client = FeedClient(repo, tmp_path / "state", clock=clock)
    assert client.stale(NOW)  # nothing verified yet
    assert client.refresh() is not None
    assert client.fetched_at == NOW
    assert client.expires is not None
    assert not client.stale(client.expires - timedelta(seconds=1))
    assert client.stale(client.expires)


class _Source:
    """A FeedSource by hand: one refusal, then a set; stale until it has one."""

    def __init__(self, first: DirectiveSet | None, later: DirectiveSet) -> None:
        self.last_good = first
        self.expires: datetime | None = NOW + timedelta(hours=1)
        self._later = later
        self.calls = 0

    def refresh(self) -> DirectiveSet | None:
        self.calls += 1
        if self.calls == 1:
            from takedown.feed.client import FeedError

            raise FeedError("ExpiredMetadataError", "old")
        self.last_good = self._later
        return self._later

    def stale(self, now: datetime) -> bool:
        return self.calls < 2 or self.expires is None or now >= self.expires


class _Server:
    """What feed_loop calls on the server: swap, set_fail_open, the refusal counter."""

    def __init__(self) -> None:
        from takedown.enforce.metrics import EnforceMetrics

        self.metrics = EnforceMetrics()
        self.swapped: list[int] = []
        self.fail_open: list[tuple[bool, str]] = []

    def swap(self, ds: DirectiveSet) -> None:
        self.swapped.append(ds.sequence)

    def set_fail_open(self, on: bool, reason: str) -> None:
        self.fail_open.append((on, reason))


async def test_feed_loop_uses_last_good_then_fresh_sets_and_fails_open_when_stale() -> None:
    source = _Source(sample_set(1), sample_set(2))
    server = _Server()
    task = asyncio.ensure_future(feed_loop(server, source, 0.001, SimClock(NOW)))  # type: ignore[arg-type]
    for _ in range(200):
        await asyncio.sleep(0.005)
        if len(server.fail_open) >= 2:
            break
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # refused first: the set verified by an earlier run is applied, and the point fails open
    assert server.swapped[:2] == [1, 2]
    assert server.fail_open[0] == (True, f"feed stale: timestamp expired at {source.expires}")
    assert server.fail_open[1] == (False, "feed fresh")
    assert (
        server.metrics.value(
            "takedown_enforce_feed_rejected_total", {"reason": "ExpiredMetadataError"}
        )
        == 1
    )
