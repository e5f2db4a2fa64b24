"""A network backend for httpcore on plain asyncio (one Protocol object per connection).

httpcore's default backend on asyncio goes through anyio: every read and write opens a
cancel scope, and every time the connection pool looks at an idle connection it asks
anyio for the socket's attributes, which builds a dictionary of closures and calls
``getpeername`` (measured: about a third of the prober's CPU per check on loopback). This
backend keeps what httpcore needs — reads, writes, TLS upgrade, timeouts, its exception
types — on asyncio's own transports, and answers "is this idle connection readable?" from
what the protocol already received, asking the socket (one zero-timeout poll) only when
nothing is.
"""

from __future__ import annotations

import asyncio
import select
import ssl
import typing
from collections.abc import Iterable

import httpcore
import httpx

SocketOption = (
    tuple[int, int, int] | tuple[int, int, bytes | bytearray] | tuple[int, int, None, int]
)

READ_LIMIT = 256 * 1024  # bytes buffered before the transport stops reading (flow control)


def _expire(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_exception(TimeoutError())


async def _wait(
    fut: asyncio.Future[None], timeout: float | None, timed_out: type[Exception], what: str
) -> None:
    """Await ``fut``; after ``timeout`` seconds raise ``timed_out`` (a timer, not a task)."""
    if timeout is None:
        await fut
        return
    handle = asyncio.get_running_loop().call_later(timeout, _expire, fut)
    try:
        await fut
    except TimeoutError:
        raise timed_out(f"{what} timed out") from None
    finally:
        handle.cancel()


class _Connection(asyncio.Protocol):
    """Bytes received and not yet read, end of stream, and who waits for what."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.eof = False
        self.error: BaseException | None = None
        self.paused = False  # reading paused: the buffer is full
        self.write_blocked = False
        self.reader: asyncio.Future[None] | None = None
        self.drainer: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = typing.cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) >= READ_LIMIT and not self.paused and self.transport is not None:
            self.transport.pause_reading()
            self.paused = True
        self._wake_reader()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake_reader()
        return False  # close the transport: httpcore never writes after the peer's FIN

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof = True
        self.error = exc
        self._wake_reader()
        self.write_blocked = False
        if self.drainer is not None and not self.drainer.done():
            self.drainer.set_result(None)

    def pause_writing(self) -> None:
        self.write_blocked = True

    def resume_writing(self) -> None:
        self.write_blocked = False
        if self.drainer is not None and not self.drainer.done():
            self.drainer.set_result(None)

    def _wake_reader(self) -> None:
        if self.reader is not None and not self.reader.done():
            self.reader.set_result(None)


class AsyncioStream(httpcore.AsyncNetworkStream):
    """One TCP (or TLS) connection as httpcore sees it."""

    def __init__(self, protocol: _Connection) -> None:
        self._protocol = protocol

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        p = self._protocol
        if not p.buffer and not p.eof:
            p.reader = asyncio.get_running_loop().create_future()
            try:
                await _wait(p.reader, timeout, httpcore.ReadTimeout, "read")
            finally:
                p.reader = None
        if p.buffer:
            if len(p.buffer) <= max_bytes:
                data = bytes(p.buffer)
                p.buffer.clear()
            else:
                data = bytes(p.buffer[:max_bytes])
                del p.buffer[:max_bytes]
            if p.paused and len(p.buffer) < READ_LIMIT and p.transport is not None:
                p.paused = False
                p.transport.resume_reading()
            return data
        if p.error is not None:
            raise httpcore.ReadError(str(p.error) or p.error.__class__.__name__) from p.error
        return b""

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        p = self._protocol
        transport = p.transport
        if transport is None or transport.is_closing():
            raise httpcore.WriteError("connection closed") from p.error
        transport.write(buffer)
        if p.write_blocked:
            p.drainer = asyncio.get_running_loop().create_future()
            try:
                await _wait(p.drainer, timeout, httpcore.WriteTimeout, "write")
            finally:
                p.drainer = None
            if p.error is not None:
                raise httpcore.WriteError(str(p.error)) from p.error

    async def aclose(self) -> None:
        transport = self._protocol.transport
        if transport is None:
            return
        if not transport.is_closing():
            transport.close()
            await asyncio.sleep(0)  # one turn to flush what is written (an HTTP/2 GOAWAY)
        # then close the socket now: a peer that never reads must not keep it open
        transport.abort()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        p = self._protocol
        loop = asyncio.get_running_loop()
        assert p.transport is not None
        try:
            async with asyncio.timeout(timeout):
                tls = await loop.start_tls(
                    p.transport, p, ssl_context, server_hostname=server_hostname
                )
        except TimeoutError:
            await self.aclose()
            raise httpcore.ConnectTimeout("TLS handshake timed out") from None
        except OSError as exc:  # ssl.SSLError among them
            await self.aclose()
            raise httpcore.ConnectError(str(exc) or exc.__class__.__name__) from exc
        if tls is None:  # the peer closed during the handshake
            raise httpcore.ConnectError("connection closed during the TLS handshake")
        p.transport = tls
        return AsyncioStream(p)

    def get_extra_info(self, info: str) -> typing.Any:
        p = self._protocol
        if info == "is_readable":
            # an idle keep-alive connection the server wrote to or closed is not reusable;
            # the socket is asked too, for what arrived since the event loop last looked
            return bool(p.buffer) or p.eof or _readable_now(p.transport)
        transport = p.transport
        if transport is None:
            return None
        key = _EXTRA_INFO.get(info)
        return transport.get_extra_info(key) if key else None


# httpcore's names for what it asks a stream -> asyncio's names on a transport
_EXTRA_INFO = {
    "ssl_object": "ssl_object",
    "client_addr": "sockname",
    "server_addr": "peername",
    "socket": "socket",
}


def _readable_now(transport: asyncio.Transport | None) -> bool:
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is None:
        return True  # no socket: nothing to reuse
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN)
    return bool(poller.poll(0))


class AsyncioBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend on asyncio transports (see the module docstring); TCP only,
    as the prober never asks for a Unix socket."""

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                transport, protocol = await loop.create_connection(
                    _Connection,
                    host,
                    port,
                    local_addr=(local_address, 0) if local_address else None,
                )
        except TimeoutError:
            raise httpcore.ConnectTimeout("connect timed out") from None
        except OSError as exc:
            raise httpcore.ConnectError(str(exc) or exc.__class__.__name__) from exc
        sock = transport.get_extra_info("socket")
        for option in socket_options or ():
            sock.setsockopt(*option)
        return AsyncioStream(protocol)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


def use_asyncio_backend(transport: httpx.AsyncHTTPTransport) -> httpx.AsyncHTTPTransport:
    """Make ``transport``'s connection pool (plain, HTTP proxy or SOCKS) use AsyncioBackend.

    httpx does not take a network backend, so this sets the one its httpcore pool keeps;
    every pool class httpcore has stores it under the same name.
    """
    pool = getattr(transport, "_pool", None)
    if pool is None or not hasattr(pool, "_network_backend"):
        raise RuntimeError("this httpx/httpcore keeps its pool differently: update aionet.py")
    pool._network_backend = AsyncioBackend()
    return transport
