"""Bulk pass-through: every byte arrives, in order, through the private splice pipes, and a
live swap that throttles a congested flow mid-transfer loses and reorders nothing."""

from __future__ import annotations

import asyncio
import random

from test_server_faults import tunnel
from test_server_support import (
    Origin,
    directive_set,
    proxy_port,
    running_proxy,
    twitter_media_throttle,
    until,
)

from takedown.enforce.server import EnforcementServer, Mode


async def send_all(writer: asyncio.StreamWriter, payload: bytes) -> None:
    """Write in pieces, then half-close: the echo answers EOF with its own FIN."""
    view = memoryview(payload)
    for at in range(0, len(view), 1 << 20):
        writer.write(view[at : at + (1 << 20)])
        await writer.drain()
    writer.write_eof()


async def read_to_eof(reader: asyncio.StreamReader) -> bytearray:
    got = bytearray()
    while chunk := await reader.read(1 << 20):
        got += chunk
    return got


def first_difference(a: bytes | bytearray, b: bytes | bytearray) -> int:
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return i
    return min(len(a), len(b))


def the_flow(server: EnforcementServer):  # type: ignore[no-untyped-def]
    [flow] = server.flows
    return flow


def down_piped(server: EnforcementServer) -> bool:
    """The flow relays and its server-to-client direction holds bytes in its own pipe."""
    down = the_flow(server).down
    return down is not None and down.kernel_pipe is not None and down.kernel_bytes > 0


async def test_64mib_both_ways_identical_with_half_close(origin: Origin) -> None:
    payload = random.Random(64).randbytes(64 << 20)
    async with running_proxy(Mode.CONNECT, directive_set()) as server:
        reader, writer = await tunnel(proxy_port(server), "bulk.example", origin.echo_port)
        sending = asyncio.ensure_future(send_all(writer, payload))
        # the client does not read yet: the echo's answer backs up in the relay, which must
        # move it into a pipe of the flow's own (no copy into Python, shared pipe left empty)
        assert await until(lambda: down_piped(server))
        assert server.pipes.open >= 1
        got = await asyncio.wait_for(read_to_eof(reader), 120)  # EOF: both FINs went through
        await sending
        assert len(got) == len(payload), (len(got), len(payload))
        assert got == payload, f"first difference at byte {first_difference(got, payload)}"
        assert await until(lambda: not server.flows)  # both half-closes ended the flow
        writer.close()
        # the pipes went back to the pool, empty, for the next bulk flow
        assert server.pipes.open >= 1 and len(server.pipes.idle) == server.pipes.open


async def test_swap_to_throttle_mid_transfer_keeps_every_byte_in_order(origin: Origin) -> None:
    payload = random.Random(32).randbytes(32 << 20)
    async with running_proxy(Mode.CONNECT, directive_set()) as server:
        reader, writer = await tunnel(proxy_port(server), "video.twimg.com", origin.echo_port)
        sending = asyncio.ensure_future(send_all(writer, payload))
        assert await until(lambda: down_piped(server))
        flow = the_flow(server)
        assert flow.verdict.action == "pass"
        # throttled while bytes wait in its pipe: they must go out first, then the rest
        server.swap(directive_set(twitter_media_throttle(1_000_000), sequence=2))
        assert flow.verdict.action == "throttle"
        assert flow.down.kernel_pipe is None and flow.down.kernel_bytes == 0
        assert flow.down.bucket is not None and flow.up.bucket is not None
        got = await asyncio.wait_for(read_to_eof(reader), 120)
        await sending
        assert len(got) == len(payload), (len(got), len(payload))
        assert got == payload, f"first difference at byte {first_difference(got, payload)}"
        writer.close()


async def test_without_private_pipes_the_copy_fallback_is_identical(origin: Origin) -> None:
    # at the pipe cap (descriptor budget) a congested direction copies its leftover instead
    payload = random.Random(16).randbytes(16 << 20)
    async with running_proxy(Mode.CONNECT, directive_set(), max_pipes=0) as server:
        reader, writer = await tunnel(proxy_port(server), "bulk.example", origin.echo_port)
        sending = asyncio.ensure_future(send_all(writer, payload))
        flow = None

        def congested() -> bool:
            nonlocal flow
            flow = next(iter(server.flows), None)
            return flow is not None and flow.down is not None and flow.down.pending is not None

        assert await until(congested)
        assert flow is not None and flow.down.kernel_pipe is None
        got = await asyncio.wait_for(read_to_eof(reader), 120)
        await sending
        assert len(got) == len(payload), (len(got), len(payload))
        assert got == payload, f"first difference at byte {first_difference(got, payload)}"
        assert server.pipes.open == 0
        writer.close()
