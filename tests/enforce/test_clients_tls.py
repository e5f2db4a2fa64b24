"""openssl s_client, Python's ssl and headless Chromium through the enforcement point."""

from __future__ import annotations

import asyncio
import socket
import ssl
import tempfile

import pytest
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


async def s_client(ca: CA, proxy: int, host: str, port: int) -> tuple[int, bytes]:
    req = f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()
    rc, out, _ = await run(
        need_tool("openssl"), "s_client", "-proxy", f"127.0.0.1:{proxy}",
        "-connect", f"{host}:{port}", "-servername", host, "-CAfile", ca.ca_file,
        "-verify_return_error", "-quiet", "-ign_eof",
        stdin=req,
    )  # fmt: skip
    return rc, out


async def test_openssl_s_client(ca: CA, origin: Origin) -> None:
    async with running_proxy(Mode.CONNECT, DIRECTIVES) as server:
        port = proxy_port(server)
        rc, out = await s_client(ca, port, "twitter.com", origin.tls_port)
        assert rc == 0
        assert out.endswith(b"hello from twitter.com\n")
        rc, out = await s_client(ca, port, "pbs.twimg.com", origin.tls_port)
        assert out.endswith(b"hello from pbs.twimg.com\n")
        rc, out = await s_client(ca, port, "linkedin.com", origin.tls_port)
        assert rc != 0
        assert b"hello" not in out
        assert flows(server, "pass") == 1
        assert flows(server, "throttle", content="media") == 1
        assert flows(server, "block", content="any") == 1


def socks5_tls_get(ca: CA, proxy: int, host: str, port: int) -> bytes:
    """Blocking: SOCKS5 CONNECT by name, then TLS with Python's ssl, then one GET."""
    with socket.create_connection(("127.0.0.1", proxy), timeout=20) as s:
        s.sendall(b"\x05\x01\x00")
        assert s.recv(2) == b"\x05\x00"
        name = host.encode()
        s.sendall(b"\x05\x01\x00\x03" + bytes([len(name)]) + name + port.to_bytes(2, "big"))
        reply = s.recv(10)
        assert reply[:2] == b"\x05\x00", reply
        with ca.client_context().wrap_socket(s, server_hostname=host) as tls:
            tls.sendall(f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while chunk := tls.recv(65536):
                data += chunk
            return data


async def test_python_ssl_via_socks5(ca: CA, origin: Origin) -> None:
    async with running_proxy(Mode.SOCKS5, DIRECTIVES) as server:
        port = proxy_port(server)
        out = await asyncio.to_thread(socks5_tls_get, ca, port, "example.org", origin.tls_port)
        assert out.endswith(b"hello from example.org\n")
        out = await asyncio.to_thread(socks5_tls_get, ca, port, "video.twimg.com", origin.tls_port)
        assert out.endswith(b"hello from video.twimg.com\n")
        with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
            await asyncio.to_thread(socks5_tls_get, ca, port, "www.linkedin.com", origin.tls_port)
        assert flows(server, "pass") == 1
        assert flows(server, "throttle", content="media") == 1
        assert flows(server, "block", content="any") == 1


async def test_chromium_page_media_throttled_text_not(ca: CA, origin: Origin) -> None:
    chromium = need_tool("chromium")
    n, imgs = 40_000, 3
    async with running_proxy(Mode.CONNECT, DIRECTIVES) as server:
        port = proxy_port(server)
        with tempfile.TemporaryDirectory() as profile:
            rc, out, err = await run(
                chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", f"--user-data-dir={profile}",
                f"--proxy-server=http://127.0.0.1:{port}",
                '--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1',
                f"--ignore-certificate-errors-spki-list={ca.spki_b64}",
                "--dump-dom", f"https://twitter.com:{origin.tls_port}/page?imgs={imgs}&n={n}",
                timeout=120,
            )  # fmt: skip
        assert rc == 0, err[-2000:]
        assert b"tweet text" in out
        await asyncio.sleep(0.3)  # one tick: byte counters reach the metrics
        # every media image was fetched through a throttled flow, the page and the
        # unrelated host's image through passed flows
        media = [p for h, p in origin.requests if h == "pbs.twimg.com"]
        assert sum(p.startswith("/img/") for p in media) == imgs
        assert flows(server, "throttle", content="media") >= 1
        assert flows(server, "pass") >= 2  # twitter.com (text) and example.org
        assert flows(server, "block") == 0
        throttled = server.metrics.value(
            "takedown_enforce_bytes_total", {"action": "throttle", "direction": "down"}
        )
        # Chromium may dump the DOM before the slow images finish; what was relayed to it
        # from the media host went through the bucket
        assert throttled > 0
        assert (
            server.metrics.value(
                "takedown_enforce_bytes_total", {"action": "pass", "direction": "down"}
            )
            > 0
        )
        summary = [(h, p) for h, p in origin.requests if h == "example.org"]
        assert summary  # the unrelated host was reached, and never throttled:
        assert flows(server, "throttle", content="none") == 0
