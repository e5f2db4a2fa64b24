"""curl through the enforcement point: HTTP CONNECT and SOCKS5, pass / throttle / block."""

from __future__ import annotations

import asyncio

from test_server_support import (
    CA,
    Origin,
    directive_set,
    flows,
    linkedin_block,
    need_tool,
    proxy_port,
    run,
    running_proxy,
    twitter_media_throttle,
)

from takedown.enforce.server import Mode

DIRECTIVES = directive_set(twitter_media_throttle(rate_kbps=1000), linkedin_block())


def curl(ca: CA, *args: str) -> list[str]:
    return [need_tool("curl"), "-sS", "--max-time", "30", "--cacert", ca.ca_file, *args]


async def test_connect_pass_throttle_block(ca: CA, origin: Origin) -> None:
    async with running_proxy(Mode.CONNECT, DIRECTIVES) as server:
        proxy = f"http://127.0.0.1:{proxy_port(server)}"
        # text host, no rule: passes untouched
        rc, out, err = await run(*curl(ca, "-x", proxy, f"https://twitter.com:{origin.tls_port}/"))
        assert rc == 0, err
        assert out == b"hello from twitter.com\n"
        assert flows(server, "pass") == 1

        # media host: throttled at 1 Mbit/s, content class media
        n = 250_000
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        rc, out, err = await run(
            *curl(ca, "-x", proxy, f"https://pbs.twimg.com:{origin.tls_port}/bytes/{n}")
        )
        elapsed = loop.time() - t0
        assert rc == 0, err
        assert len(out) == n
        assert flows(server, "throttle", content="media") == 1
        assert (
            server.metrics.value(
                "takedown_enforce_directive_flows_total", {"directive": "d-throttle", "measure": ""}
            )
            == 1
        )
        # physical bound: n bytes at 1 Mbit/s cannot take less than n*8/1e6 s minus one burst
        assert elapsed > (n - 5000) * 8 / 1_000_000 * 0.9

        # blocked host over TLS: the connection is reset, curl fails
        rc, out, err = await run(
            *curl(ca, "-x", proxy, f"https://www.linkedin.com:{origin.tls_port}/")
        )
        assert rc != 0
        assert out == b""
        assert flows(server, "block", content="any") == 1

        await asyncio.sleep(0.3)  # let the tick flush byte counters
        assert (
            server.metrics.value(
                "takedown_enforce_bytes_total", {"action": "throttle", "direction": "down"}
            )
            >= n
        )
        assert (
            server.metrics.value(
                "takedown_enforce_bytes_total", {"action": "pass", "direction": "down"}
            )
            > 0
        )


async def test_connect_to_hides_name_sni_still_classifies(ca: CA, origin: Origin) -> None:
    """CONNECT names only 127.0.0.1; the ClientHello's SNI reveals the media host."""
    async with running_proxy(Mode.CONNECT, DIRECTIVES) as server:
        proxy = f"http://127.0.0.1:{proxy_port(server)}"
        rc, out, err = await run(
            *curl(
                ca,
                "-x",
                proxy,
                "--connect-to",
                f"video.twimg.com:443:127.0.0.1:{origin.tls_port}",
                "https://video.twimg.com/bytes/1000",
            )
        )
        assert rc == 0, err
        assert len(out) == 1000
        assert flows(server, "throttle", content="media") == 1
        assert flows(server, "pass") == 0


async def test_plain_http_block_gets_451(ca: CA, origin: Origin) -> None:
    async with running_proxy(
        Mode.CONNECT, DIRECTIVES, operator_url="https://isp.example/blocked"
    ) as server:
        proxy = f"http://127.0.0.1:{proxy_port(server)}"
        rc, out, err = await run(
            *curl(ca, "-p", "-x", proxy, "-i", f"http://linkedin.com:{origin.http_port}/")
        )
        assert rc == 0, err
        text = out.decode()
        # curl -i prints the proxy's 200 first, then the tunnelled response
        assert "HTTP/1.1 451 Unavailable For Legal Reasons" in text
        assert 'Link: <https://isp.example/blocked>; rel="blocked-by"' in text
        assert "Court 2016-08-04 No. 33-2343" in text
        assert "https://register.example/lookup/d-block" in text
        assert ("linkedin.com", "/") not in origin.requests
        assert flows(server, "block", content="any") == 1


async def test_socks5_hostname_and_ipv4(ca: CA, origin: Origin) -> None:
    async with running_proxy(Mode.SOCKS5, DIRECTIVES) as server:
        port = proxy_port(server)
        rc, out, err = await run(
            *curl(
                ca,
                "--socks5-hostname",
                f"127.0.0.1:{port}",
                f"https://example.org:{origin.tls_port}/",
            )
        )
        assert rc == 0, err
        assert out == b"hello from example.org\n"
        rc, out, err = await run(
            *curl(
                ca,
                "--socks5-hostname",
                f"127.0.0.1:{port}",
                f"https://abs.twimg.com:{origin.tls_port}/bytes/5000",
            )
        )
        assert rc == 0, err
        assert len(out) == 5000
        # --socks5 resolves locally (--resolve): the proxy only sees an IPv4 address,
        # the name comes from the SNI
        rc, out, err = await run(
            *curl(
                ca,
                "--socks5",
                f"127.0.0.1:{port}",
                "--resolve",
                f"pbs.twimg.com:{origin.tls_port}:127.0.0.1",
                f"https://pbs.twimg.com:{origin.tls_port}/bytes/5000",
            )
        )
        assert rc == 0, err
        assert len(out) == 5000
        rc, out, err = await run(
            *curl(
                ca,
                "--socks5-hostname",
                f"127.0.0.1:{port}",
                f"https://linkedin.com:{origin.tls_port}/",
            )
        )
        assert rc != 0
        assert flows(server, "pass") == 1
        assert flows(server, "throttle", content="media") == 2
        assert flows(server, "block", content="any") == 1


async def test_refusing_server_clean_failure(ca: CA, origin: Origin) -> None:
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    closed_port = s.getsockname()[1]
    s.close()  # nothing listens there: connect() is refused
    async with (
        running_proxy(Mode.CONNECT, DIRECTIVES) as http_proxy,
        running_proxy(Mode.SOCKS5, DIRECTIVES) as socks_proxy,
    ):
        rc, _, err = await run(
            *curl(
                ca,
                "-x",
                f"http://127.0.0.1:{proxy_port(http_proxy)}",
                f"https://example.org:{closed_port}/",
            )
        )
        assert rc != 0
        assert b"502" in err
        rc, _, err = await run(
            *curl(
                ca,
                "--socks5-hostname",
                f"127.0.0.1:{proxy_port(socks_proxy)}",
                f"https://example.org:{closed_port}/",
            )
        )
        assert rc == 97  # curl: proxy handshake error
        assert err.rstrip().endswith(b"(5)")  # SOCKS reply 5: connection refused
        assert (
            http_proxy.metrics.value(
                "takedown_enforce_upstream_failures_total", {"reason": "ECONNREFUSED"}
            )
            == 1
        )
        # both are still up and serve the next flow
        rc, _, err = await run(
            *curl(
                ca,
                "-x",
                f"http://127.0.0.1:{proxy_port(http_proxy)}",
                f"https://example.org:{origin.tls_port}/",
            )
        )
        assert rc == 0, err
        rc, _out, err = await run(
            *curl(
                ca,
                "--socks5-hostname",
                f"127.0.0.1:{proxy_port(socks_proxy)}",
                f"https://example.org:{origin.tls_port}/",
            )
        )
        assert rc == 0, err
