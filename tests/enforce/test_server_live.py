"""Live directive updates on running flows: lift, impose, expire (simulated clock), fail open."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from test_server_faults import tunnel
from test_server_support import (
    NOW,
    Origin,
    directive_set,
    flows,
    proxy_port,
    running_proxy,
    twitter_media_throttle,
    until,
)

from takedown.clock import SimClock
from takedown.enforce.metrics import EnforceMetrics
from takedown.enforce.server import EnforcementServer, Mode, ServerConfig
from takedown.model import Directive, MeasureAction

BIG = 20_000_000  # 20 MB: ~21 minutes at 128 kbit/s, well under a second when passed


def redecisions(server: EnforcementServer, a: str, b: str) -> float:
    return server.metrics.value(
        "takedown_enforce_redecisions_total", {"from_decision": a, "to_decision": b}
    )


async def start_download(
    server: EnforcementServer, origin: Origin, host: str
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await tunnel(proxy_port(server), "127.0.0.1", origin.http_port)
    writer.write(f"GET /bytes/{BIG} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    await reader.readuntil(b"\r\n\r\n")
    return reader, writer


async def read_all(reader: asyncio.StreamReader, n: int) -> int:
    got = 0
    while got < n:
        chunk = await reader.read(1 << 20)
        if not chunk:
            break
        got += len(chunk)
    return got


async def test_lift_releases_running_flow(origin: Origin) -> None:
    async with running_proxy(Mode.CONNECT, directive_set(twitter_media_throttle(128))) as server:
        reader, writer = await start_download(server, origin, "pbs.twimg.com")
        assert flows(server, "throttle", content="media") == 1
        await reader.readexactly(2000)  # it runs, slowly
        server.swap(directive_set(sequence=2))  # the directive is lifted
        assert redecisions(server, "throttle", "pass") == 1
        # the remaining 20 MB arrive: impossible at 128 kbit/s within the test's timeout
        got = await asyncio.wait_for(read_all(reader, BIG - 2000), 60)
        assert got == BIG - 2000
        writer.close()


async def test_new_directive_applies_to_running_flow(origin: Origin) -> None:
    async with running_proxy(Mode.CONNECT, directive_set()) as server:
        reader, writer = await start_download(server, origin, "video.twimg.com")
        await reader.readexactly(1_000_000)
        assert flows(server, "pass") == 1
        server.swap(directive_set(twitter_media_throttle(128), sequence=2))
        assert redecisions(server, "pass", "throttle") == 1
        [flow] = server.flow_summaries()
        assert (flow["action"], flow["rate_kbps"]) == ("throttle", 128)
        assert server.metrics.value("takedown_enforce_feed_sequence") == 2
        assert server.metrics.value("takedown_enforce_active_flows", {"decision": "throttle"}) == 1
        assert server.metrics.value("takedown_enforce_active_flows", {"decision": "pass"}) == 0
        writer.close()


async def test_rate_change_and_block_on_running_flow(origin: Origin) -> None:
    async with running_proxy(Mode.CONNECT, directive_set(twitter_media_throttle(128))) as server:
        reader, writer = await start_download(server, origin, "pbs.twimg.com")
        server.swap(directive_set(twitter_media_throttle(512), sequence=2))
        [flow] = server.flow_summaries()
        assert flow["rate_kbps"] == 512
        block = Directive(id="b", action=MeasureAction.BLOCK, ip_ranges=("127.0.0.1",))
        server.swap(directive_set(block, sequence=3))
        assert server.flow_summaries() == []
        with pytest.raises((ConnectionResetError, asyncio.IncompleteReadError)):
            await asyncio.wait_for(reader.readexactly(BIG), 30)
        writer.close()


async def test_expiry_on_simulated_clock_releases(origin: Origin) -> None:
    clock = SimClock(NOW)
    d = Directive(
        id="short",
        action=MeasureAction.THROTTLE,
        hosts=twitter_media_throttle().hosts,
        rate_kbps=128,
        expires=NOW + timedelta(hours=1),
    )
    server = EnforcementServer(
        ServerConfig(mode=Mode.CONNECT, resolve={"*": "127.0.0.1"}, tick=0.05),
        metrics=EnforceMetrics(),
        clock=clock,
    )
    server.swap(directive_set(d))
    await server.start("127.0.0.1", 0)
    try:
        reader, writer = await start_download(server, origin, "pbs.twimg.com")
        assert flows(server, "throttle", content="media") == 1
        assert server.metrics.value("takedown_enforce_directives_in_force") == 1
        clock.advance(timedelta(hours=1))  # the directive is past its expiry
        assert await until(lambda: redecisions(server, "throttle", "pass") == 1)
        assert server.metrics.value("takedown_enforce_directives_in_force") == 0
        got = await asyncio.wait_for(read_all(reader, BIG), 60)
        assert got == BIG
        writer.close()
    finally:
        await server.close()


async def test_fail_open_releases_and_passes_new_flows(origin: Origin) -> None:
    async with running_proxy(Mode.CONNECT, directive_set(twitter_media_throttle(128))) as server:
        reader, writer = await start_download(server, origin, "pbs.twimg.com")
        server.set_fail_open(True, "feed expired")
        assert server.metrics.value("takedown_enforce_fail_open") == 1
        assert redecisions(server, "throttle", "pass") == 1
        _r2, w2 = await start_download(server, origin, "abs.twimg.com")
        assert flows(server, "pass") == 1  # the new media flow is not throttled
        got = await asyncio.wait_for(read_all(reader, BIG), 60)
        assert got == BIG
        writer.close()
        assert await until(lambda: len(server.flows) == 1)
        server.set_fail_open(False)
        assert server.metrics.value("takedown_enforce_fail_open") == 0
        assert redecisions(server, "pass", "throttle") == 1  # r2 is enforced again
        w2.close()
