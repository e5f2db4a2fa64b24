"""Shared pieces of the enforcement tests (no tests here): a local origin, a CA, the proxy.

The origin is a real HTTP/1.1 server over TLS (certificate from a trustme CA for the names
the tests use) and over plain TCP, plus a raw echo port, all on 127.0.0.1 in a thread of
its own so the proxy's event loop is the only thing the tests measure.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import shutil
import socket
import ssl
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from takedown.enforce.metrics import EnforceMetrics
from takedown.enforce.server import EnforcementServer, Mode, ServerConfig
from takedown.enforce.subscribers import Subscribers
from takedown.model import Directive, DirectiveSet, HostRule, MeasureAction

IN_CI = os.environ.get("CI", "").lower() == "true"
NAMES = [
    "pbs.twimg.com",
    "video.twimg.com",
    "abs.twimg.com",
    "twitter.com",
    "example.org",
    "www.linkedin.com",
    "linkedin.com",
    "unrelated.example",
]
NOW = datetime(2021, 3, 10, 12, 0, tzinfo=UTC)


def need_tool(name: str) -> str:
    """The tool's path; skip without it, except under CI=true where it must be there."""
    path = shutil.which(name)
    if path is None:
        if IN_CI:
            pytest.fail(f"{name} is required under CI")
        pytest.skip(f"{name} not installed")
    return path


def directive_set(*directives: Directive, sequence: int = 1) -> DirectiveSet:
    return DirectiveSet(1, sequence, NOW, tuple(directives))


def twitter_media_throttle(
    rate_kbps: int = 128,
    scope: dict[str, float] | None = None,
    did: str = "d-throttle",
    expires: datetime | None = None,
) -> Directive:
    return Directive(
        id=did,
        action=MeasureAction.THROTTLE,
        hosts=(HostRule("*.twimg.com", "media"),),
        rate_kbps=rate_kbps,
        scope=scope or {"*": 100.0},
        decisions=("RKN 2021-03-10/1",),
        reference_url="https://register.example/lookup/d-throttle",
        expires=expires,
    )


def linkedin_block(did: str = "d-block", expires: datetime | None = None) -> Directive:
    return Directive(
        id=did,
        action=MeasureAction.BLOCK,
        hosts=(HostRule("linkedin.com", "any"), HostRule("*.linkedin.com", "any")),
        decisions=("Court 2016-08-04 No. 33-2343",),
        reference_url="https://register.example/lookup/d-block",
        expires=expires,
    )


@dataclass
class CA:
    ca: trustme.CA
    cert: trustme.LeafCert
    ca_file: str
    spki_b64: str  # Chromium --ignore-certificate-errors-spki-list

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.cert.configure_cert(ctx)
        ctx.set_alpn_protocols(["http/1.1"])
        return ctx

    def client_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=self.ca_file)
        return ctx


def make_ca(tmpdir: str) -> CA:
    ca = trustme.CA()
    cert = ca.issue_cert(*NAMES, "*.twimg.com", "*.linkedin.com", "127.0.0.1")
    ca_file = os.path.join(tmpdir, "ca.pem")
    ca.cert_pem.write_to_path(ca_file)
    leaf = x509.load_pem_x509_certificate(cert.cert_chain_pems[0].bytes())
    spki = leaf.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return CA(ca, cert, ca_file, base64.b64encode(hashlib.sha256(spki).digest()).decode())


PAGE = """<!doctype html><html><head><title>timeline</title></head><body>
<p>tweet text</p>
{imgs}
<img src="https://example.org:{port}/img/unrelated.png?n={n}">
</body></html>"""


@dataclass
class Origin:
    """HTTP origin over TLS and plain TCP, and a raw echo port, in a thread of its own."""

    ca: CA
    tls_port: int = 0
    http_port: int = 0
    echo_port: int = 0
    requests: list[tuple[str, str]] = field(default_factory=list)  # (host, path)
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None

    def start(self) -> Origin:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            tls = loop.run_until_complete(
                asyncio.start_server(
                    self._http, "127.0.0.1", 0, ssl=self.ca.server_context(), backlog=4096
                )
            )
            plain = loop.run_until_complete(
                asyncio.start_server(self._http, "127.0.0.1", 0, backlog=4096)
            )
            echo = loop.run_until_complete(
                asyncio.start_server(self._echo, "127.0.0.1", 0, backlog=4096)
            )
            self.tls_port = tls.sockets[0].getsockname()[1]
            self.http_port = plain.sockets[0].getsockname()[1]
            self.echo_port = echo.sockets[0].getsockname()[1]
            ready.set()
            loop.run_forever()
            for srv in (tls, plain, echo):
                srv.close()
            loop.run_until_complete(asyncio.sleep(0))
            loop.close()

        self._thread = threading.Thread(target=run, name="origin", daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)

    async def _echo(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Echo until EOF, then half-close back and keep reading nothing more."""
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
            writer.write_eof()
            await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def _http(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        k, v = line.split(":", 1)
                        headers[k.strip().lower()] = v.strip()
                host = headers.get("host", "").rsplit(":", 1)[0]
                self.requests.append((host, target))
                if "content-length" in headers:
                    await reader.readexactly(int(headers["content-length"]))
                body, ctype = self._respond(host, target)
                writer.write(
                    f"HTTP/1.1 200 OK\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                    "Cache-Control: no-store\r\n\r\n".encode()
                )
                if method != "HEAD":
                    writer.write(body)
                await writer.drain()
                if headers.get("connection", "").lower() == "close":
                    break
        except (
            asyncio.IncompleteReadError,
            ConnectionError,
            OSError,
            ValueError,
            asyncio.LimitOverrunError,
            ssl.SSLError,
        ):
            pass
        finally:
            writer.close()

    def _respond(self, host: str, target: str) -> tuple[bytes, str]:
        path, _, query = target.partition("?")
        params = dict(p.split("=", 1) for p in query.split("&") if "=" in p)
        if path.startswith("/bytes/"):
            return b"x" * int(path.split("/")[2]), "application/octet-stream"
        if path.startswith("/img/"):
            return b"\x89PNG" + b"i" * (int(params.get("n", "20000")) - 4), "image/png"
        if path.startswith("/page"):
            n = int(params.get("n", "20000"))
            imgs = "\n".join(
                f'<img src="https://pbs.twimg.com:{self.tls_port}/img/{i}.png?n={n}">'
                for i in range(int(params.get("imgs", "2")))
            )
            return PAGE.format(imgs=imgs, port=self.tls_port, n=n).encode(), "text/html"
        return f"hello from {host}\n".encode(), "text/plain"


@asynccontextmanager
async def running_proxy(
    mode: Mode = Mode.CONNECT,
    directives: DirectiveSet | None = None,
    subscribers: Subscribers | None = None,
    **config: object,
) -> AsyncIterator[EnforcementServer]:
    """An EnforcementServer on 127.0.0.1 in this event loop, every name mapped to 127.0.0.1."""
    cfg = ServerConfig(mode=mode, resolve={"*": "127.0.0.1"}, **config)  # type: ignore[arg-type]
    server = EnforcementServer(cfg, subscribers=subscribers, metrics=EnforceMetrics())
    if directives is not None:
        server.swap(directives)
    await server.start("127.0.0.1", 0)
    try:
        yield server
    finally:
        await server.close()


def proxy_port(server: EnforcementServer) -> int:
    return server._listeners[0].getsockname()[1]


async def run(
    *argv: str, timeout: float = 60.0, stdin: bytes | None = None
) -> tuple[int, bytes, bytes]:
    """Run a real client as a subprocess without blocking the proxy's loop."""
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(stdin), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    return proc.returncode or 0, out, err


def flows(
    server: EnforcementServer, decision: str, sub: str = "other", content: str = "none"
) -> float:
    return server.metrics.value(
        "takedown_enforce_flows_total",
        {"decision": decision, "subscriber_class": sub, "content_class": content},
    )


async def until(predicate, timeout: float = 10.0) -> bool:  # type: ignore[no-untyped-def]
    """Wait (bounded) for a condition the proxy's loop makes true."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while loop.time() < end:
        if predicate():
            return True
        await asyncio.sleep(0.01)
    return bool(predicate())


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port
