"""A pass-through direction that has moved more than BULK_AFTER takes a private pipe and
splices a whole pipe per call; such a flow still counts every byte, half-closes, and obeys a
live swap to throttle or block at once."""

from __future__ import annotations

import asyncio
import random

import pytest
from test_server_bulk import read_to_eof, send_all, the_flow
from test_server_faults import tunnel
from test_server_live import BIG, read_all, start_download
from test_server_support import (
    Origin,
    directive_set,
    proxy_port,
    running_proxy,
    twitter_media_throttle,
    until,
)

from takedown.enforce.relay import BULK_AFTER
from takedown.enforce.server import EnforcementServer, Mode
from takedown.model import Directive, MeasureAction


def counted(server: EnforcementServer, action: str, direction: str) -> float:
    server._flush_bytes()
    return server.metrics.value(
        "takedown_enforce_bytes_total", {"action": action, "direction": direction}
    )


def no_pipe_leaked(server: EnforcementServer) -> bool:
    return server.pipes.open == len(server.pipes.idle)


async def test_both_directions_go_bulk_count_every_byte_and_half_close(origin: Origin) -> None:
    payload = random.Random(7).randbytes(64 << 20)
    async with running_proxy(Mode.CONNECT, directive_set()) as server:
        reader, writer = await tunnel(proxy_port(server), "bulk.example", origin.echo_port)
        sending = asyncio.ensure_future(send_all(writer, payload))
        head = await reader.readexactly(3 * BULK_AFTER)
        # the client pauses: 64 MiB cannot all be buffered, so the flow is still running
        flow = the_flow(server)
        assert flow.up.nbytes > BULK_AFTER and flow.down.nbytes > BULK_AFTER
        assert flow.up.kernel_pipe is not None and flow.down.kernel_pipe is not None
        got = head + await asyncio.wait_for(read_to_eof(reader), 120)
        await sending
        assert got == payload
        assert await until(lambda: not server.flows)  # both half-closes went through
        assert counted(server, "pass", "up") == len(payload)
        assert counted(server, "pass", "down") == len(payload)
        assert no_pipe_leaked(server)
        writer.close()


async def test_bulk_flow_is_throttled_at_once_by_a_swap(origin: Origin) -> None:
    async with running_proxy(Mode.CONNECT, directive_set()) as server:
        reader, writer = await start_download(server, origin, "video.twimg.com")
        await reader.readexactly(4 * BULK_AFTER)
        flow = the_flow(server)
        assert flow.down.kernel_pipe is not None
        draining = asyncio.ensure_future(read_all(reader, BIG))
        server.swap(directive_set(twitter_media_throttle(128), sequence=2))
        # what the private pipe held is now pending, sent through the bucket like the rest
        assert flow.down.kernel_pipe is None and flow.down.bucket is not None
        bucket = flow.down.bucket
        before = flow.down.nbytes
        loop = asyncio.get_running_loop()
        start = loop.time()
        await asyncio.sleep(1.0)
        elapsed = loop.time() - start
        taken = flow.down.nbytes - before
        # from the origin, the relay takes no more than the bucket allows (burst plus rate)
        assert taken <= bucket.burst_bytes + 128_000 / 8 * elapsed + 1, taken
        assert counted(server, "pass", "down") + counted(server, "throttle", "down") == (
            flow.down.nbytes
        )
        draining.cancel()
        writer.close()


async def test_bulk_flow_is_reset_at_once_by_a_swap_to_block(origin: Origin) -> None:
    async with running_proxy(Mode.CONNECT, directive_set()) as server:
        reader, writer = await start_download(server, origin, "video.twimg.com")
        await reader.readexactly(4 * BULK_AFTER)
        assert the_flow(server).down.kernel_pipe is not None
        block = Directive(id="b", action=MeasureAction.BLOCK, ip_ranges=("127.0.0.1",))
        server.swap(directive_set(block, sequence=2))
        assert not server.flows
        assert no_pipe_leaked(server)
        with pytest.raises((ConnectionResetError, asyncio.IncompleteReadError)):
            await asyncio.wait_for(reader.readexactly(BIG), 30)
        writer.close()
