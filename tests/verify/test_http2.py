"""The prober over real HTTP/2: hypercorn on loopback, TLS with ALPN, reached via connect_to."""

from __future__ import annotations

import asyncio
import os
import ssl

import pytest
import trustme

try:
    import hypercorn  # noqa: F401
except ImportError:  # pragma: no cover - only without the test extras
    if os.environ.get("CI", "").lower() == "true":
        raise  # under CI the HTTP/2 tests must run, never skip
    pytest.skip("hypercorn is not installed (pip install hypercorn)", allow_module_level=True)

from takedown.model import Verdict
from takedown.verify.probe import POOL_SIZE, Prober, ProbeResult, ProbeSettings, parse_connect_to

from .conftest import HOST
from .h2server import HypercornTLS
from .servers import ItemApp

SETTINGS = ProbeSettings(
    concurrency=8, connect_timeout=5, read_timeout=5, total_timeout=10, retries=0
)
BEHAVIOUR = {1: "available", 2: "removed", 3: "withheld"}


def client_context(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    return ctx


def prober(ca: trustme.CA, port: int, settings: ProbeSettings = SETTINGS) -> Prober:
    return Prober(
        settings=settings,
        connect_to=parse_connect_to([f"{HOST}=https://127.0.0.1:{port}"]),
        only_loopback=True,
        verify=client_context(ca),
    )


def url(n: int) -> str:
    return f"https://{HOST}/s/{n}"


async def test_verdicts_over_http2(tls: tuple[trustme.CA, str]) -> None:
    ca, pem = tls
    with HypercornTLS(ItemApp(BEHAVIOUR), pem) as srv:
        async with prober(ca, srv.port) as p:
            got = [await p.probe(url(n)) for n in (1, 2, 3)]
    available, removed, restricted = got
    assert (available.verdict, available.status) == (Verdict.AVAILABLE, 200)
    assert available.body_bytes > 0 and available.digest is not None
    assert (removed.verdict, removed.status) == (Verdict.REMOVED, 404)
    assert (restricted.verdict, restricted.status) == (Verdict.RESTRICTED, 451)
    assert [r.http_version for r in got] == ["HTTP/2"] * 3
    # The server agrees: three HTTP/2 requests, on a TLS connection named by the logical host.
    assert srv.seen.versions == {"2": 3}
    assert srv.seen.sni == {HOST: 1}


async def test_sequential_probes_reuse_one_connection(tls: tuple[trustme.CA, str]) -> None:
    ca, pem = tls
    n = 30
    with HypercornTLS(ItemApp(BEHAVIOUR), pem) as srv:
        async with prober(ca, srv.port) as p:
            got = [await p.probe(url(k % 3 + 1)) for k in range(n)]
    assert all(r.http_version == "HTTP/2" for r in got)
    assert {r.verdict for r in got} == {Verdict.AVAILABLE, Verdict.REMOVED, Verdict.RESTRICTED}
    assert srv.seen.versions == {"2": n}
    assert srv.seen.handshakes == 1  # one TLS handshake: one TCP connection
    assert len(srv.seen.clients) == 1  # every request came from the same client port


async def concurrent_run(
    ca: trustme.CA, pem: str, settings: ProbeSettings, n: int
) -> tuple[list[ProbeResult], HypercornTLS]:
    # A small delay per answer keeps many requests in flight at once.
    with HypercornTLS(ItemApp(BEHAVIOUR, delay=0.02), pem) as srv:
        async with prober(ca, srv.port, settings) as p:
            got = await asyncio.gather(*(p.probe(url(k % 3 + 1)) for k in range(n)))
    return got, srv


async def test_concurrent_probes_share_few_connections(tls: tuple[trustme.CA, str]) -> None:
    ca, pem = tls
    n = 120
    pools = -(-SETTINGS.concurrency // POOL_SIZE)  # the prober's client pools
    got, srv = await concurrent_run(ca, pem, SETTINGS, n)
    assert all(r.http_version == "HTTP/2" for r in got)
    assert sum(r.verdict is Verdict.AVAILABLE for r in got) == len(range(0, n, 3))
    assert srv.seen.versions == {"2": n}
    # HTTP/2 multiplexes: at most one connection per pool, however many probes are in flight.
    assert 1 <= srv.seen.handshakes <= pools
    assert len(srv.seen.clients) == srv.seen.handshakes

    # The same run over HTTP/1.1 needs a connection per request in flight (the contrast
    # shows the count above is multiplexing, not a server that serialises requests).
    h1 = ProbeSettings(**{**_fields(SETTINGS), "http2": False})
    got1, srv1 = await concurrent_run(ca, pem, h1, n)
    assert all(r.http_version == "HTTP/1.1" for r in got1)
    assert srv1.seen.versions == {"1.1": n}
    assert srv1.seen.handshakes > pools


def _fields(s: ProbeSettings) -> dict[str, object]:
    return {f: getattr(s, f) for f in s.__dataclass_fields__}


async def test_http2_off_speaks_http11_to_the_same_server(tls: tuple[trustme.CA, str]) -> None:
    ca, pem = tls
    h1 = ProbeSettings(**{**_fields(SETTINGS), "http2": False})
    with HypercornTLS(ItemApp(BEHAVIOUR), pem) as srv:
        async with prober(ca, srv.port, h1) as p:
            got = [await p.probe(url(n)) for n in (1, 2, 3)]
    assert [r.verdict for r in got] == [Verdict.AVAILABLE, Verdict.REMOVED, Verdict.RESTRICTED]
    assert [r.http_version for r in got] == ["HTTP/1.1"] * 3
    assert srv.seen.versions == {"1.1": 3}
    assert srv.seen.handshakes == 1  # keep-alive: HTTP/1.1 reuses the connection too


async def test_http2_falls_back_when_the_server_offers_only_http11(
    tls: tuple[trustme.CA, str],
) -> None:
    ca, pem = tls
    with HypercornTLS(ItemApp(BEHAVIOUR), pem, alpn=["http/1.1"]) as srv:
        async with prober(ca, srv.port) as p:  # http2=True
            got = await p.probe(url(3))
    assert (got.verdict, got.status, got.http_version) == (Verdict.RESTRICTED, 451, "HTTP/1.1")
    assert srv.seen.versions == {"1.1": 1}
