"""Bad input and faults through a real proxy: the process stays up, other flows unaffected."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import socket
import ssl
import struct

import pytest
from test_server_support import (
    Origin,
    directive_set,
    flows,
    linkedin_block,
    proxy_port,
    running_proxy,
    twitter_media_throttle,
    until,
)
from test_sniff import handshake_message, records, sni_ext, synthetic_hello, with_extension

from takedown.enforce.metrics import EnforceMetrics
from takedown.enforce.server import EnforcementServer, Mode, ServerConfig
from takedown.model import Directive, HostRule, MeasureAction

DIRECTIVES = directive_set(twitter_media_throttle(rate_kbps=128), linkedin_block())


async def tunnel(
    proxy: int, host: str, port: int
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy)
    writer.write(f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    assert head.startswith(b"HTTP/1.1 200"), head
    return reader, writer


async def echo_roundtrip(proxy: int, origin: Origin, payload: bytes) -> bytes:
    reader, writer = await tunnel(proxy, "127.0.0.1", origin.echo_port)
    writer.write(payload)
    writer.write_eof()
    got = await asyncio.wait_for(reader.read(), 20)
    writer.close()
    return got


def client_hello(name: str) -> bytes:
    """A real ClientHello from Python's ssl for ``name``."""
    ctx = ssl.create_default_context()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname=name)
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    return outgoing.read()


async def test_random_bytes_pass_untouched(origin: Origin) -> None:
    rng = random.Random(7)
    async with running_proxy(Mode.CONNECT, DIRECTIVES) as server:
        port = proxy_port(server)
        payloads = [rng.randbytes(rng.randint(1, 20_000)) for _ in range(60)]
        # TLS-looking and HTTP-looking junk: record header with absurd lengths, bad methods
        payloads += [
            b"\x16\x03\x01\xff\xff" + rng.randbytes(300),
            b"\x16\x03\x01\x00\x05\x01\x00\xff\xff\xff",
            b"GET / HTTP/1.1\r\nHost: \x00\xff\r\n\r\n",
            b"\x16" * 17_000,
        ]
        got = await asyncio.gather(*(echo_roundtrip(port, origin, p) for p in payloads))
        assert got == payloads
        assert (
            server.metrics.value("takedown_enforce_sniff_failures_total", {"reason": "unknown"}) > 0
        )
        assert len(server.flows) == 0 or await until(lambda: len(server.flows) == 0)


async def test_split_client_hello_is_classified(origin: Origin) -> None:
    hello = client_hello("pbs.twimg.com")
    assert len(hello) > 200
    async with running_proxy(Mode.CONNECT, DIRECTIVES) as server:
        reader, writer = await tunnel(proxy_port(server), "127.0.0.1", origin.tls_port)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        cuts = [0, 3, 5, 9, 60, 150, len(hello)]  # record header itself split too
        for a, b in itertools.pairwise(cuts):
            writer.write(hello[a:b])
            await writer.drain()
            await asyncio.sleep(0.05)
        # the origin answers with a TLS handshake record: the bytes went through intact
        first = await asyncio.wait_for(reader.read(5), 10)
        assert first[:1] == b"\x16"
        assert flows(server, "throttle", content="media") == 1
        assert flows(server, "pass") == 0
        writer.close()


async def test_silent_client_decided_by_address(origin: Origin) -> None:
    async with running_proxy(Mode.CONNECT, DIRECTIVES, sniff_timeout=0.3) as server:
        reader, writer = await tunnel(proxy_port(server), "127.0.0.1", origin.echo_port)
        assert await until(lambda: flows(server, "pass") == 1)
        assert (
            server.metrics.value("takedown_enforce_sniff_failures_total", {"reason": "silent"}) == 1
        )
        writer.write(b"late bytes")
        assert await asyncio.wait_for(reader.readexactly(10), 10) == b"late bytes"
        writer.close()


async def test_slow_drip_client_does_not_stall_others(origin: Origin) -> None:
    async with running_proxy(Mode.CONNECT, DIRECTIVES) as server:
        port = proxy_port(server)
        reader, writer = await tunnel(port, "127.0.0.1", origin.echo_port)
        hello = client_hello("example.org")

        async def drip() -> None:
            for i in range(40):
                writer.write(hello[i : i + 1])
                await writer.drain()
                await asyncio.sleep(0.02)

        dripping = asyncio.create_task(drip())
        # meanwhile other flows go through at once
        for i in range(20):
            assert await echo_roundtrip(port, origin, b"other %d" % i) == b"other %d" % i
        await dripping
        writer.write(hello[40:])
        echoed = await asyncio.wait_for(reader.readexactly(len(hello)), 10)
        assert echoed == hello
        assert flows(server, "pass") == 21
        writer.close()


async def test_client_reset_mid_flow(origin: Origin) -> None:
    async with running_proxy(Mode.CONNECT, DIRECTIVES) as server:
        port = proxy_port(server)
        reader, writer = await tunnel(port, "127.0.0.1", origin.http_port)
        writer.write(b"GET /bytes/50000000 HTTP/1.1\r\nHost: example.org\r\n\r\n")
        await reader.readexactly(100_000)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()  # RST
        assert await until(lambda: len(server.flows) == 0)
        assert server.metrics.value("takedown_enforce_active_flows", {"decision": "pass"}) == 0
        assert await echo_roundtrip(port, origin, b"still fine") == b"still fine"


async def test_server_reset_propagates(origin: Origin) -> None:
    """The upstream resets: the client gets a reset too, not a silent hang."""
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(1)
    lsock.setblocking(False)
    loop = asyncio.get_running_loop()
    async with running_proxy(Mode.CONNECT, DIRECTIVES, sniff_timeout=0.2) as server:
        reader, writer = await tunnel(proxy_port(server), "127.0.0.1", lsock.getsockname()[1])
        conn, _ = await loop.sock_accept(lsock)
        await until(lambda: flows(server, "pass") == 1)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()
        with pytest.raises((ConnectionResetError, asyncio.IncompleteReadError)):
            await asyncio.wait_for(reader.readexactly(1), 10)
        writer.close()
    lsock.close()


async def test_half_close_both_ways(origin: Origin) -> None:
    async with running_proxy(Mode.CONNECT, DIRECTIVES) as server:
        port = proxy_port(server)
        reader, writer = await tunnel(port, "127.0.0.1", origin.echo_port)
        writer.write(b"GET / HTTP/1.1\r\nHost: example.org\r\n\r\n")
        await writer.drain()
        writer.write_eof()  # client -> proxy -> server: FIN; the server still answers
        got = await asyncio.wait_for(reader.read(), 10)  # server FIN propagated back: EOF
        assert got == b"GET / HTTP/1.1\r\nHost: example.org\r\n\r\n"
        writer.close()
        assert await until(lambda: len(server.flows) == 0)


async def test_bad_handshakes(origin: Origin) -> None:
    async with (
        running_proxy(Mode.CONNECT, DIRECTIVES) as http,
        running_proxy(Mode.SOCKS5, DIRECTIVES) as socks,
    ):
        r, w = await asyncio.open_connection("127.0.0.1", proxy_port(http))
        w.write(b"GET http://example.org/ HTTP/1.1\r\n\r\n")
        assert (await asyncio.wait_for(r.read(), 10)).startswith(b"HTTP/1.1 400")
        w.close()
        r, w = await asyncio.open_connection("127.0.0.1", proxy_port(socks))
        w.write(b"\x05\x01\x02")  # only username/password offered
        assert await asyncio.wait_for(r.read(), 10) == b"\x05\xff"
        w.close()
        r, w = await asyncio.open_connection("127.0.0.1", proxy_port(socks))
        w.write(b"\x05\x01\x00\x05\x02\x00\x01\x7f\x00\x00\x01\x00\x50")  # BIND
        assert (await asyncio.wait_for(r.read(), 10))[:4] == b"\x05\x00\x05\x07"
        w.close()
        assert await echo_roundtrip(proxy_port(http), origin, b"ok") == b"ok"
        assert (
            http.metrics.value("takedown_enforce_handshake_errors_total", {"mode": "connect"}) == 1
        )
        assert (
            socks.metrics.value("takedown_enforce_handshake_errors_total", {"mode": "socks5"}) == 2
        )


@pytest.mark.parametrize("address", ["127.0.0.1", "::1"])
async def test_transparent_listener_reached_without_a_redirect(address: str) -> None:
    """No nftables rule sent the flow: there is no original destination to go to. The flow
    is reset, the listener stays up (IPv4 and IPv6 sockets ask conntrack differently)."""
    cfg = ServerConfig(mode=Mode.TRANSPARENT)
    server = EnforcementServer(cfg, metrics=EnforceMetrics())
    server.swap(DIRECTIVES)
    _host, port = await server.start(address, 0)
    try:
        for _ in range(2):
            # the reset may come before the connect call even returns
            with contextlib.suppress(ConnectionResetError):
                r, w = await asyncio.open_connection(address, port)
                assert await asyncio.wait_for(r.read(), 10) == b""
                w.close()
        assert await until(lambda: not server.flows)
    finally:
        await server.close()


@pytest.mark.slow
async def test_two_thousand_concurrent_flows(origin: Origin) -> None:
    async with running_proxy(Mode.CONNECT, DIRECTIVES, sniff_timeout=0.5) as server:
        port = proxy_port(server)
        n = 2000
        opened: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        for start in range(0, n, 250):
            opened += await asyncio.gather(
                *(tunnel(port, "127.0.0.1", origin.echo_port) for _ in range(start, start + 250))
            )
        assert len(server.flows) == n

        async def talk(i: int, rw: tuple[asyncio.StreamReader, asyncio.StreamWriter]) -> bytes:
            reader, writer = rw
            msg = b"flow %05d" % i
            writer.write(msg)
            got = await asyncio.wait_for(reader.readexactly(len(msg)), 30)
            writer.close()
            return got

        got = await asyncio.gather(*(talk(i, rw) for i, rw in enumerate(opened)))
        assert got == [b"flow %05d" % i for i in range(n)]
        assert flows(server, "pass") == n
        assert await until(lambda: len(server.flows) == 0, timeout=30)


def _sni_past_the_window() -> bytes:
    """A well-formed ClientHello whose SNI lies past 64 KiB (30,000 cipher suites first)."""
    exts = struct.pack("!HH", 0x4A4A, 8000) + bytes(8000) + sni_ext(b"t.co")
    return records(synthetic_hello(exts, suites=b"\x13\x01" * 30_000), 16384)


async def _nothing_more(reader: asyncio.StreamReader) -> bytes:
    """What the proxy sends after blocking: nothing, then a close or a reset."""
    try:
        return await asyncio.wait_for(reader.read(), 10)
    except ConnectionResetError:
        return b""


async def test_a_large_extension_after_the_sni_does_not_evade_a_block(origin: Origin) -> None:
    """The evasion: 17 KB of legal extension after the SNI made the ClientHello longer than
    the sniff window, and the flow passed. The SNI in the first bytes now decides."""
    message = with_extension(
        handshake_message(client_hello("www.linkedin.com")), 0x4A4A, bytes(17_000)
    )
    hello = records(message, 16384)
    assert len(hello) > 17_000
    async with running_proxy(Mode.CONNECT, DIRECTIVES) as server:
        reader, writer = await tunnel(proxy_port(server), "127.0.0.1", origin.tls_port)
        writer.write(hello)
        await writer.drain()
        assert await until(lambda: flows(server, "block", content="any") == 1)
        assert await _nothing_more(reader) == b""  # the origin never answered
        assert flows(server, "pass") == 0
        writer.close()


@pytest.mark.parametrize(
    ("first_bytes", "reason"),
    [
        (b"\x16\x03\x01\x00\x05\x02\x00\x00\x01\x00", "malformed"),  # a ServerHello
        (b"\x16\x03\x01\x40\x00\x01\x00\xff\xff" + bytes(16_375) + b"\x16" * 50_000, "malformed"),
        (_sni_past_the_window(), "window"),
    ],
)
async def test_unparsed_bytes_are_classified_by_ip_rules(
    origin: Origin, first_bytes: bytes, reason: str
) -> None:
    """What cannot be parsed is decided by the destination address: an IP rule still
    blocks it (never a way around a block), and it is counted by why."""
    both = Directive(
        id="d-both",
        action=MeasureAction.BLOCK,
        hosts=(HostRule("t.co", "any"),),
        ip_ranges=("127.0.0.1",),
        decisions=("Court 2021-03-10 No. 1",),
    )
    async with running_proxy(Mode.CONNECT, directive_set(both)) as server:
        reader, writer = await tunnel(proxy_port(server), "127.0.0.1", origin.echo_port)
        writer.write(first_bytes)
        await writer.drain()
        assert await until(lambda: flows(server, "block", content="any") == 1)
        assert await _nothing_more(reader) == b""  # the echo origin never saw the bytes
        assert server.metrics.value("takedown_enforce_unparsed_total", {"reason": reason}) == 1
        writer.close()


@pytest.mark.parametrize(
    ("mode", "sent"),
    [
        (Mode.CONNECT, b""),
        (Mode.CONNECT, b"CONNECT 127.0.0.1:1"),  # no end of the request
        (Mode.SOCKS5, b"\x05\x02\x00"),  # offers two methods, names one
    ],
)
async def test_a_client_too_slow_to_ask_is_a_client_timeout_not_a_502(
    mode: Mode, sent: bytes
) -> None:
    """It was counted as an upstream failure and answered 502."""
    async with running_proxy(mode, DIRECTIVES, handshake_timeout=0.2) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy_port(server))
        writer.write(sent)
        await writer.drain()
        assert await _nothing_more(reader) == b""  # closed without an answer
        assert (
            server.metrics.value("takedown_enforce_client_timeouts_total", {"stage": "handshake"})
            == 1
        )
        upstream = [
            s
            for m in server.metrics.registry.collect()
            for s in m.samples
            if s.name == "takedown_enforce_upstream_failures_total" and s.value
        ]
        assert upstream == []
        writer.close()
