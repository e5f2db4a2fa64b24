"""A real HTTP/2 server for the verify tests: hypercorn over TLS (ALPN h2, http/1.1) in a thread.

uvicorn speaks HTTP/1.1 only, so the prober's HTTP/2 path is tested against hypercorn. The
server counts, on its side, the TCP connections it accepted (one TLS handshake each, seen by
the SNI callback) and the HTTP version and client address of every request it answered.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from hypercorn.asyncio import serve
from hypercorn.config import Config, Sockets

from .servers import Receive, Scope, Send


@dataclass
class Seen:
    """What the server saw; written from the server thread, read after it stopped or settled."""

    handshakes: int = 0  # TLS handshakes = accepted TCP connections
    sni: Counter[str] = field(default_factory=Counter)
    versions: Counter[str] = field(default_factory=Counter)  # scope["http_version"]
    clients: set[tuple[str, int]] = field(default_factory=set)  # peer (address, port)
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Config(Config):
    """hypercorn's Config on a socket we bound ourselves, with a handshake-counting context."""

    def __init__(self, sock: socket.socket, seen: Seen, alpn: list[str]) -> None:
        super().__init__()
        self._sock = sock
        self._seen = seen
        self.alpn_protocols = alpn
        self.accesslog = None
        self.errorlog = None
        self.graceful_timeout = 1.0

    def create_sockets(self) -> Sockets:
        return Sockets([self._sock], [], [])

    def create_ssl_context(self) -> ssl.SSLContext | None:
        ctx = super().create_ssl_context()
        assert ctx is not None
        seen = self._seen

        def on_hello(obj: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> None:
            with seen.lock:
                seen.handshakes += 1
                seen.sni[name or ""] += 1

        ctx.sni_callback = on_hello
        return ctx


class CountingApp:
    """Wraps an ASGI app; records the HTTP version and peer of each HTTP request."""

    def __init__(self, app: Any, seen: Seen) -> None:
        self.app = app
        self.seen = seen

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            with self.seen.lock:
                self.seen.versions[scope["http_version"]] += 1
                if scope.get("client"):
                    self.seen.clients.add(tuple(scope["client"]))
        await self.app(scope, receive, send)


class HypercornTLS:
    """hypercorn serving ``app`` over TLS on 127.0.0.1 (free port) in a background thread.

    ``certfile`` holds key and chain (trustme's ``private_key_and_cert_chain_pem``).
    ``alpn`` is what the server offers (``["h2", "http/1.1"]`` by default).
    """

    def __init__(self, app: Any, certfile: str, alpn: list[str] | None = None) -> None:
        self.seen = Seen()
        # Bound and listening before the thread starts: clients may connect at once (the
        # kernel queues them until hypercorn accepts), so there is no readiness race.
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as hypercorn's own
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.sock.setblocking(False)
        self.port = int(self.sock.getsockname()[1])
        self.config = _Config(self.sock, self.seen, alpn or ["h2", "http/1.1"])
        self.config.certfile = certfile
        self.config.keyfile = certfile
        self.app = CountingApp(app, self.seen)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self.error: BaseException | None = None

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)

        async def main() -> None:
            self._stop = asyncio.Event()
            self._started.set()
            await serve(self.app, self.config, shutdown_trigger=self._stop.wait, mode="asgi")

        try:
            self.loop.run_until_complete(main())
        except BaseException as exc:  # surfaced by __exit__, never swallowed
            self.error = exc
            self._started.set()
        finally:
            self.loop.close()

    def __enter__(self) -> HypercornTLS:
        self.thread.start()
        if not self._started.wait(10) or self.error is not None:
            raise RuntimeError(f"hypercorn did not start: {self.error!r}")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._stop is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self._stop.set)
        self.thread.join(timeout=10)
        self.sock.close()
        if self.error is not None:
            raise RuntimeError(f"hypercorn failed: {self.error!r}")
