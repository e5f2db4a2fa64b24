"""Real loopback servers for the verify tests: uvicorn in a thread, and raw asyncio sockets."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import uvicorn

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

WITHHELD_PAGE = b'<html><body data-takedown="withheld">Withheld in your country.</body></html>'


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ItemApp:
    """Serves ``/s/<n>``: the behaviour of item n is looked up in ``behaviour``.

    ``available`` (200 with content), ``removed`` (404), ``gone`` (410), ``withheld`` (451),
    ``withheld-page`` (200 with the withheld marker), ``error`` (500), ``redirect-loop``.
    Counts the requests it answered per path.
    """

    def __init__(
        self,
        behaviour: dict[int, str] | None = None,
        default: str = "available",
        delay: float = 0.0,
    ):
        self.delay = delay  # seconds the server takes per answer (a slow platform)
        self.behaviour = behaviour or {}
        self.default = default
        self.hits: dict[str, int] = {}
        self.lock = threading.Lock()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path = scope["path"]
        with self.lock:
            self.hits[path] = self.hits.get(path, 0) + 1
        if self.delay:
            await asyncio.sleep(self.delay)
        kind = self.default
        if path.startswith("/s/") and path[3:].isdigit():
            kind = self.behaviour.get(int(path[3:]), self.default)
        elif path == "/loop":
            kind = "redirect-loop"
        status, body, headers = 200, b"<html>post " + path.encode() + b"</html>", []
        if kind == "removed":
            status, body = 404, b"not found"
        elif kind == "gone":
            status, body = 410, b"gone"
        elif kind == "withheld":
            status, body = 451, WITHHELD_PAGE
        elif kind == "withheld-page":
            body = WITHHELD_PAGE
        elif kind == "error":
            status, body = 500, b"oops"
        elif kind == "redirect-loop":
            status, body, headers = 302, b"", [(b"location", path.encode())]
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"text/html"), *headers],
            }
        )
        await send({"type": "http.response.body", "body": body})


class UvicornThread:
    """uvicorn serving ``app`` on 127.0.0.1 in a background thread."""

    def __init__(self, app: Any, **kwargs: Any) -> None:
        self.port = free_port()
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="error", lifespan="off", **kwargs
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> UvicornThread:
        self.thread.start()
        for _ in range(500):  # bounded wait for the socket to listen
            if self.server.started:
                return self
            time.sleep(0.01)
        raise RuntimeError("uvicorn did not start")

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


class RawServer:
    """A raw asyncio TCP server on 127.0.0.1 in its own thread; ``handler(reader, writer)``."""

    def __init__(self, handler: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Any]):
        self.handler = handler
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self._ready = threading.Event()
        self.bytes_sent = 0

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)

        async def main() -> None:
            self._server = await asyncio.start_server(self._wrap, "127.0.0.1", self.port)
            self._ready.set()
            async with self._server:
                await self._server.serve_forever()

        try:
            with contextlib.suppress(asyncio.CancelledError):
                self.loop.run_until_complete(main())
        finally:
            # an unclosed loop warns when collected, at any later moment of the test run
            self.loop.close()

    async def _wrap(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await self.handler(self, reader, writer)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    def __enter__(self) -> RawServer:
        self.thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("raw server did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        def stop() -> None:
            for task in asyncio.all_tasks(self.loop):
                task.cancel()

        self.loop.call_soon_threadsafe(stop)
        self.thread.join(timeout=10)


async def read_request(reader: asyncio.StreamReader) -> bytes:
    return await reader.readuntil(b"\r\n\r\n")


async def slow_drip(srv: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
    """Headers, then one body byte every 50 ms for ever (each read is within the read timeout)."""
    await read_request(reader)
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100000000\r\n\r\n")
    await writer.drain()
    for _ in range(100_000):
        writer.write(b"x")
        await writer.drain()
        await asyncio.sleep(0.05)


async def endless_body(srv: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
    """A chunked body that never ends (bounded here at 1 GiB)."""
    await read_request(reader)
    writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    chunk = b"a" * 65536
    frame = b"%x\r\n" % len(chunk) + chunk + b"\r\n"
    for _ in range(16384):
        writer.write(frame)
        srv.bytes_sent += len(chunk)
        await writer.drain()


async def garbage(srv: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
    """Not HTTP at all."""
    await read_request(reader)
    writer.write(b"SSH-2.0-OpenSSH_9.0\r\n\r\n")
    await writer.drain()


async def silent(srv: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
    """Accepts, reads the request, never answers (bounded at 60 s)."""
    await read_request(reader)
    await asyncio.sleep(60)
