"""Per-subscriber throttling (``throttle_scope=subscriber``): parallel flows share one rate.

Real sockets on loopback: downloads through the CONNECT proxy from two source addresses
(127.0.0.1 and 127.0.0.2, both subscribers in no class), bytes counted by the clients over
a few seconds. The bounds are physical: a token bucket cannot deliver more than its rate
(plus one burst) and an idle loopback delivers it all.
"""

from __future__ import annotations

import asyncio
import signal
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from test_server_cli import Proc
from test_server_support import (
    CA,
    Origin,
    directive_set,
    flows,
    need_tool,
    proxy_port,
    run,
    running_proxy,
    twitter_media_throttle,
    until,
)

from takedown.enforce.server import EnforcementServer, Mode, ThrottleScope
from takedown.model import DirectiveSet

RATE = 800  # kbit/s: 100 kB/s
BIG = 4_000_000  # more than any flow can get during a test, even unthrottled-by-share
WINDOW = 3.0  # seconds of counting, after a warm-up
SUBSCRIBER = ThrottleScope.SUBSCRIBER


class Download:
    """A throttled plain-HTTP download through the proxy from ``source``; counts its bytes."""

    def __init__(self, server: EnforcementServer, origin: Origin, source: str) -> None:
        self.server, self.origin, self.source = server, origin, source
        self.got = 0
        self.done = False
        self.task: asyncio.Task[None] | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def start(self) -> Download:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", proxy_port(self.server), local_addr=(self.source, 0)
        )
        self.writer = writer
        port = self.origin.http_port
        authority = f"127.0.0.1:{port}"
        writer.write(f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n".encode())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert head.startswith(b"HTTP/1.1 200"), head
        writer.write(f"GET /bytes/{BIG} HTTP/1.1\r\nHost: pbs.twimg.com\r\n\r\n".encode())
        await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        self.task = asyncio.get_running_loop().create_task(self._read(reader))
        return self

    async def _read(self, reader: asyncio.StreamReader) -> None:
        while self.got < BIG:
            chunk = await reader.read(1 << 16)
            if not chunk:
                break
            self.got += len(chunk)
        self.done = True

    def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
        if self.writer is not None:
            self.writer.close()


async def measure(groups: dict[str, list[Download]]) -> dict[str, list[float]]:
    """kbit/s of each download over WINDOW seconds, by group, after a short warm-up."""
    await asyncio.sleep(0.5)
    loop = asyncio.get_running_loop()
    every = [d for ds in groups.values() for d in ds]
    t0, before = loop.time(), [d.got for d in every]
    await asyncio.sleep(WINDOW)
    t1, after = loop.time(), [d.got for d in every]
    rates = iter((a - b) * 8 / (t1 - t0) / 1000 for a, b in zip(after, before, strict=True))
    return {name: [next(rates) for _ in ds] for name, ds in groups.items()}


async def downloads(
    server: EnforcementServer, origin: Origin, source: str, n: int
) -> list[Download]:
    return list(await asyncio.gather(*(Download(server, origin, source).start() for _ in range(n))))


def close_all(*groups: list[Download]) -> None:
    for group in groups:
        for d in group:
            d.close()


def within(value: float, target: float, tolerance: float = 0.10) -> bool:
    return abs(value - target) <= tolerance * target


def throttle_set(rate: int = RATE, sequence: int = 1) -> DirectiveSet:
    return directive_set(twitter_media_throttle(rate), sequence=sequence)


async def test_subscriber_scope_shares_one_rate_per_subscriber(origin: Origin) -> None:
    async with running_proxy(Mode.CONNECT, throttle_set(), throttle_scope=SUBSCRIBER) as server:
        a = await downloads(server, origin, "127.0.0.1", 3)
        b = await downloads(server, origin, "127.0.0.2", 2)
        try:
            assert flows(server, "throttle", content="media") == 5
            # one bucket per subscriber and direction, not per flow
            assert sorted((k[0], k[2]) for k in server.shared_buckets) == [
                ("127.0.0.1", False),
                ("127.0.0.1", True),
                ("127.0.0.2", False),
                ("127.0.0.2", True),
            ]
            rates = await measure({"a": a, "b": b})
            assert not any(d.done for d in a + b)
            assert within(sum(rates["a"]), RATE), rates
            assert within(sum(rates["b"]), RATE), rates  # the other subscriber has its own
            # none of a subscriber's flows starves: each gets a fair part of the share
            for name, n in (("a", 3), ("b", 2)):
                assert min(rates[name]) > 0.5 * RATE / n, rates
        finally:
            close_all(a, b)
        assert await until(lambda: not server.flows)
        assert server.shared_buckets == {}  # dropped with the subscriber's last flow


async def test_flow_scope_gives_each_flow_the_rate(origin: Origin) -> None:
    async with running_proxy(Mode.CONNECT, throttle_set()) as server:
        assert server.config.throttle_scope == ThrottleScope.FLOW  # the default
        a = await downloads(server, origin, "127.0.0.1", 3)
        try:
            rates = await measure({"a": a})
            assert server.shared_buckets == {}
        finally:
            close_all(a)
        assert within(sum(rates["a"]), 3 * RATE), rates
        for r in rates["a"]:
            assert within(r, RATE), rates


async def test_swap_rerates_and_lift_releases_shared_bucket(origin: Origin) -> None:
    async with running_proxy(Mode.CONNECT, throttle_set(), throttle_scope=SUBSCRIBER) as server:
        a = await downloads(server, origin, "127.0.0.1", 3)
        try:
            buckets = dict(server.shared_buckets)
            assert len(buckets) == 2
            server.swap(throttle_set(RATE // 2, sequence=2))  # same directive, half the rate
            assert server.shared_buckets == buckets  # the same buckets, re-rated
            assert {s.bucket.rate_bps for s in buckets.values()} == {RATE // 2 * 1000.0}
            rates = await measure({"a": a})
            assert within(sum(rates["a"]), RATE // 2), rates
            server.swap(directive_set(sequence=3))  # lifted: the flows stop drawing from it
            assert server.shared_buckets == {}
            assert all(not s.waiters and s.timer is None for s in buckets.values())
            # the rest of every download arrives: at 400 kbit/s shared that takes minutes
            assert await until(lambda: all(d.done for d in a), timeout=30)
            assert all(d.got == BIG for d in a)
        finally:
            close_all(a)


async def test_cli_throttle_scope_subscriber(tmp_path: Path, ca: CA, origin: Origin) -> None:
    from takedown.feed.directives import dumps

    curl = need_tool("curl")
    later = datetime.now(UTC) + timedelta(days=30)
    (tmp_path / "directives.json").write_bytes(
        dumps(DirectiveSet(1, 1, datetime.now(UTC), (twitter_media_throttle(RATE, expires=later),)))
    )
    proc = Proc(
        "--feed",
        str(tmp_path),
        "--listen",
        "127.0.0.1:0",
        "--resolve",
        "*:127.0.0.1",
        "--throttle-scope",
        "subscriber",
    )
    size = 150_000
    try:

        async def fetch() -> None:
            rc, out, err = await run(
                curl,
                "-sS",
                "--max-time",
                "60",
                "--cacert",
                ca.ca_file,
                "--proxy",
                f"http://127.0.0.1:{proc.port}",
                "-o",
                "/dev/null",
                "-w",
                "%{size_download}",
                f"https://pbs.twimg.com:{origin.tls_port}/bytes/{size}",
            )
            assert rc == 0, err
            assert int(out) == size

        started = time.monotonic()
        await asyncio.gather(fetch(), fetch())
        elapsed = time.monotonic() - started
    finally:
        proc.stop()
    assert proc.p.returncode in (0, -signal.SIGTERM)
    # two downloads sharing 100 kB/s need 3 s at least (one burst aside); each on its own
    # bucket they would be done in about 1.5 s
    assert elapsed >= 2 * size / (RATE * 1000 / 8) * 0.9


def test_cli_bad_throttle_scope_exits_2() -> None:
    import subprocess
    import sys

    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "from takedown.cli import main; main()",
            "enforce",
            "--listen",
            "127.0.0.1:0",
            "--throttle-scope",
            "household",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert "--throttle-scope" in out.stderr and "household" in out.stderr
    assert "'flow', 'subscriber'" in out.stderr  # the choices, named
