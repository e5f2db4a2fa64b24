"""The asyncio network backend under httpcore: connection reuse, TLS through a proxy."""

from __future__ import annotations

import asyncio
import threading

import trustme

from takedown.model import Verdict
from takedown.verify.probe import Prober, ProbeSettings

from .conftest import HOST
from .h2server import HypercornTLS
from .servers import ItemApp, RawServer, read_request, silent
from .test_http2 import BEHAVIOUR, client_context, url

SETTINGS = ProbeSettings(concurrency=1, total_timeout=10, retries=2, retry_backoff=0.01)


async def test_an_idle_connection_the_server_closed_is_not_reused() -> None:
    """The server answers on a keep-alive connection, then hangs up without saying so. The
    next probe must see that before it writes (a fresh connection, first attempt), not find
    out from a failed request and a retry."""
    closed = threading.Event()
    connections = 0

    async def once_then_hang_up(srv: RawServer, reader, writer) -> None:  # type: ignore[no-untyped-def]
        nonlocal connections
        connections += 1
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        writer.close()
        await writer.wait_closed()
        closed.set()

    with RawServer(once_then_hang_up) as srv:
        async with Prober(settings=SETTINGS, only_loopback=True) as p:
            first = await p.probe(f"http://127.0.0.1:{srv.port}/a")
            # blocks this event loop on purpose: the FIN arrives while nobody reads it
            assert closed.wait(10)
            closed.clear()
            second = await p.probe(f"http://127.0.0.1:{srv.port}/b")
            assert closed.wait(10)
            await asyncio.sleep(0)  # now the loop has seen the second hang-up as well
            third = await p.probe(f"http://127.0.0.1:{srv.port}/c")
    assert [r.verdict for r in (first, second, third)] == [Verdict.AVAILABLE] * 3
    assert [r.attempts for r in (first, second, third)] == [1, 1, 1]
    assert connections == 3


async def test_tls_through_an_http_proxy(tls: tuple[trustme.CA, str]) -> None:
    """A vantage point behind a CONNECT proxy: the proxy is asked for the host by name (it
    resolves it: here, to the origin on loopback) and TLS inside the tunnel names the host."""
    ca, pem = tls
    tunnels: list[bytes] = []

    async def connect_proxy(srv: RawServer, reader, writer) -> None:  # type: ignore[no-untyped-def]
        head = await read_request(reader)
        target = head.split(b" ")[1]
        tunnels.append(target)
        assert target == f"{HOST}:443".encode()
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", origin.port)
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")

        async def pipe(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            try:
                while data := await r.read(65536):
                    w.write(data)
                    await w.drain()
            finally:
                w.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    with HypercornTLS(ItemApp(BEHAVIOUR), pem) as origin, RawServer(connect_proxy) as proxy:
        # not only_loopback: the prober's own connections go to the proxy on loopback, and
        # the proxy above connects nowhere else
        vantage = Prober(
            settings=SETTINGS, proxy=f"http://127.0.0.1:{proxy.port}", verify=client_context(ca)
        )
        async with vantage as p:
            got = [await p.probe(url(n)) for n in (1, 2)]
    assert [(r.verdict, r.status) for r in got] == [
        (Verdict.AVAILABLE, 200),
        (Verdict.REMOVED, 404),
    ]
    assert tunnels == [f"{HOST}:443".encode()]  # one tunnel, reused
    assert origin.seen.sni == {HOST: 1}


async def test_read_timeout_is_the_backends_own() -> None:
    """The read timeout (not the total deadline) ends a probe of a server that never answers;
    the backend's timer raises httpcore's exception, which httpx and the prober name."""
    quick_read = ProbeSettings(read_timeout=0.2, total_timeout=30, retries=0)
    with RawServer(silent) as srv:
        async with Prober(settings=quick_read, only_loopback=True) as p:
            res = await p.probe(f"http://127.0.0.1:{srv.port}/")
    assert res.verdict is Verdict.UNREACHABLE and res.reason == "read timeout"
