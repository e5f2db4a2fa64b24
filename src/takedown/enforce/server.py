"""The enforcement point's I/O shell: accept flows, classify them, relay, throttle, block.

One asyncio event loop per process drives non-blocking sockets through reader/writer
callbacks (the Protocol style, one small object per flow and direction; no streams, no
task per flow), so an idle flow costs a few KiB. A pass-through direction moves bytes
with ``os.splice`` through one shared pipe (nothing is copied into Python); a throttled
direction reads at most one burst at a time and waits for the token bucket, so unsent
data stays in the kernel and the sender is slowed by TCP itself.

Splice goes socket -> pipe -> socket. A flow starts on the process's shared pipe, which is
left empty after every event, in 64 KiB pieces; the first time a destination cannot take
everything (a bulk flow meeting backpressure), or once the direction has moved
``BULK_AFTER`` bytes, it gets a pipe of its own (from a small pool, capped by
``ServerConfig.max_pipes``: two descriptors each; what is left in the shared pipe moves into
it pipe-to-pipe, so the pass path never copies into Python) and from then on splices up to
a whole pipe (1 MiB) per call. Idle and short flows hold no pipe.

Throttle scope (``ServerConfig.throttle_scope``, ``--throttle-scope``): ``flow`` (the
default) gives every throttled flow a token bucket per direction of its own at the
directive's rate; ``subscriber`` makes all throttled flows of one subscriber address under
the same directive(s) share one bucket per direction, so parallel downloads together get the
directive's rate. Shared buckets live in ``EnforcementServer.shared_buckets``, are created
on a flow's first use and dropped when the subscriber's last flow under the directive
closes; a rate change from a live swap updates the shared bucket. Its flows wait in one
first-in first-out queue for tokens, so none of them starves.

Modes: HTTP CONNECT, SOCKS5 (no auth, CONNECT; domain, IPv4, IPv6), and transparent
(the original destination of a flow redirected by nftables, from SO_ORIGINAL_DST /
IP6T_SO_ORIGINAL_DST). The handshake parsers at the top of this module are sans-IO.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import ipaddress
import logging
import os
import socket
import struct
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from takedown.clock import Clock, SystemClock
from takedown.enforce.decide import (
    Action,
    Decision,
    Index,
    compile_index,
    decide,
    empty_index,
)
from takedown.enforce.metrics import EnforceMetrics
from takedown.enforce.shaper import TokenBucket
from takedown.enforce.sniff import MAX_SNIFF, Protocol, Sniffed, sniff
from takedown.enforce.subscribers import Subscribers
from takedown.errors import InputError
from takedown.model import Directive, DirectiveSet

log = logging.getLogger("takedown.enforce")

SO_ORIGINAL_DST = 80  # linux/netfilter_ipv4.h, level SOL_IP
IP6T_SO_ORIGINAL_DST = 80  # linux/netfilter_ipv6/ip6_tables.h, level SOL_IPV6
MAX_HEAD = 8192  # longest CONNECT request head / SOCKS handshake accepted
# bytes per splice through the shared pipe (and per recv without splice): what is left in
# the shared pipe after an event may have to be copied into Python, so this stays small
CHUNK = 1 << 16
PIPE_SIZE = 1 << 20
# a direction that has moved this much is bulk: it takes a private pipe (if the cap allows)
# and splices a whole pipe per call; bench (a) measured 1.5 GB/s with 64 KiB pieces, 2.3 with
# 1 MiB, as per-call costs (syscalls, wake-ups, TCP pushes) are paid 16 times less often
BULK_AFTER = 1 << 20
F_SETPIPE_SZ = 1031
SPLICE_FLAGS = getattr(os, "SPLICE_F_MOVE", 1) | getattr(os, "SPLICE_F_NONBLOCK", 2)
# per readable event at most, then other flows get a turn
BUDGET = 16 << 20  # bytes
BUDGET_SPLICES = 256  # splices, should a source trickle in small pieces just as fast
POOL_SIZE = 32  # idle private pipes a process keeps for the next bulk flows


class Mode(StrEnum):
    CONNECT = "connect"
    SOCKS5 = "socks5"
    TRANSPARENT = "transparent"


class ThrottleScope(StrEnum):
    """What one token bucket limits: each flow, or a subscriber's flows under a directive."""

    FLOW = "flow"
    SUBSCRIBER = "subscriber"


# -- sans-IO handshake parsers -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Target:
    """Where a client asked to go: a host name or address literal and a port."""

    host: str
    port: int
    consumed: int  # bytes of the buffer the handshake used; the rest is the client's data

    @property
    def is_name(self) -> bool:
        try:
            ipaddress.ip_address(self.host)
        except ValueError:
            return True
        return False


def parse_connect(buf: bytes) -> Target | None:
    """Parse an HTTP ``CONNECT host:port`` request head; None if incomplete.

    Raises InputError (``where`` = the request part) on anything else, including a head
    longer than MAX_HEAD.
    """
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        if len(buf) > MAX_HEAD:
            raise InputError("request head too long", where="CONNECT request")
        if buf and not b"CONNECT ".startswith(buf[:8]) and not buf.startswith(b"CONNECT "):
            raise InputError("only CONNECT is supported", where="request line")
        return None
    if end > MAX_HEAD:
        raise InputError("request head too long", where="CONNECT request")
    line = buf[: buf.find(b"\r\n")]
    parts = line.split(b" ")
    if len(parts) != 3 or parts[0] != b"CONNECT" or not parts[2].startswith(b"HTTP/1."):
        raise InputError("expected 'CONNECT host:port HTTP/1.x'", where="request line")
    try:
        authority = parts[1].decode("ascii")
    except UnicodeDecodeError:
        raise InputError("non-ASCII authority", where="request line") from None
    host, port = _split_authority(authority)
    return Target(host, port, end + 4)


def _split_authority(authority: str) -> tuple[str, int]:
    if authority.startswith("["):
        close = authority.find("]")
        if close < 0 or authority[close + 1 : close + 2] != ":":
            raise InputError(f"bad authority {authority!r}", where="request line")
        host, port_text = authority[1:close], authority[close + 2 :]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise InputError(f"bad IPv6 literal {host!r}", where="request line") from None
    else:
        host, sep, port_text = authority.rpartition(":")
        if not sep or not host or ":" in host:
            raise InputError(f"authority {authority!r} needs host:port", where="request line")
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise InputError(f"bad port {port_text!r}", where="request line")
    return host.lower(), int(port_text)


SOCKS_VERSION = 5
SOCKS_NO_AUTH = 0
SOCKS_NO_METHOD = 0xFF
SOCKS_OK = 0
SOCKS_GENERAL_FAILURE = 1
SOCKS_NET_UNREACHABLE = 3
SOCKS_HOST_UNREACHABLE = 4
SOCKS_REFUSED = 5
SOCKS_TTL_EXPIRED = 6
SOCKS_BAD_COMMAND = 7
SOCKS_BAD_ADDRESS_TYPE = 8


class SocksError(InputError):
    """A SOCKS request the server must answer with ``reply`` and close."""

    def __init__(self, message: str, reply: int, *, where: str = "SOCKS request") -> None:
        super().__init__(message, where=where)
        self.reply = reply


def parse_socks_greeting(buf: bytes) -> tuple[frozenset[int], int] | None:
    """Parse the SOCKS5 method selection: (methods offered, bytes used), None if incomplete."""
    if not buf:
        return None
    if buf[0] != SOCKS_VERSION:
        raise SocksError(
            f"not SOCKS5 (version byte {buf[0]})", SOCKS_GENERAL_FAILURE, where="SOCKS greeting"
        )
    if len(buf) < 2:
        return None
    n = buf[1]
    if len(buf) < 2 + n:
        return None
    return frozenset(buf[2 : 2 + n]), 2 + n


def parse_socks_request(buf: bytes) -> Target | None:
    """Parse a SOCKS5 CONNECT request; None if incomplete; SocksError with the reply code."""
    if len(buf) < 4:
        return None
    ver, cmd, _rsv, atyp = buf[0], buf[1], buf[2], buf[3]
    if ver != SOCKS_VERSION:
        raise SocksError(f"bad version byte {ver}", SOCKS_GENERAL_FAILURE)
    if cmd != 1:
        raise SocksError(f"command {cmd} not supported (only CONNECT)", SOCKS_BAD_COMMAND)
    if atyp == 1:
        end = 4 + 4
        if len(buf) < end + 2:
            return None
        host = str(ipaddress.IPv4Address(buf[4:end]))
    elif atyp == 4:
        end = 4 + 16
        if len(buf) < end + 2:
            return None
        host = str(ipaddress.IPv6Address(buf[4:end]))
    elif atyp == 3:
        if len(buf) < 5:
            return None
        n = buf[4]
        end = 5 + n
        if len(buf) < end + 2:
            return None
        raw = bytes(buf[5:end])
        try:
            host = raw.decode("ascii").lower()
        except UnicodeDecodeError:
            raise SocksError("non-ASCII domain name", SOCKS_HOST_UNREACHABLE) from None
        if not host:
            raise SocksError("empty domain name", SOCKS_HOST_UNREACHABLE)
    else:
        raise SocksError(f"address type {atyp} not supported", SOCKS_BAD_ADDRESS_TYPE)
    port = int.from_bytes(buf[end : end + 2], "big")
    if port == 0:
        raise SocksError("port 0", SOCKS_HOST_UNREACHABLE)
    return Target(host, port, end + 2)


def socks_reply(code: int, bound: tuple[str, int] | None = None) -> bytes:
    """A SOCKS5 reply with the bound address (0.0.0.0:0 when unknown)."""
    host, port = bound or ("0.0.0.0", 0)
    ip = ipaddress.ip_address(host)
    atyp = 1 if ip.version == 4 else 4
    return bytes([SOCKS_VERSION, code, 0, atyp]) + ip.packed + port.to_bytes(2, "big")


def parse_original_dst(raw: bytes, family: int) -> tuple[str, int]:
    """Decode the sockaddr that SO_ORIGINAL_DST / IP6T_SO_ORIGINAL_DST returns."""
    if family == socket.AF_INET:
        port = struct.unpack_from("!H", raw, 2)[0]
        return str(ipaddress.IPv4Address(raw[4:8])), port
    port = struct.unpack_from("!H", raw, 2)[0]
    addr = ipaddress.IPv6Address(raw[8:24])
    mapped = addr.ipv4_mapped
    return (str(mapped) if mapped else str(addr)), port


def block_response(host: str | None, decision: Decision, operator_url: str | None) -> bytes:
    """The RFC 7725 ``451 Unavailable For Legal Reasons`` answer to a blocked HTTP request."""
    lines = [f"Access to {host or 'this address'} is blocked by order."]
    if decision.decisions:
        lines.append("Decision(s): " + "; ".join(decision.decisions))
    if decision.directives:
        lines.append("Directive(s): " + ", ".join(decision.directives))
    for url in decision.reference_urls:
        lines.append(f"Public reference: {url}")
    body = ("\n".join(lines) + "\n").encode("utf-8")
    link = operator_url or (decision.reference_urls[0] if decision.reference_urls else None)
    head = [
        "HTTP/1.1 451 Unavailable For Legal Reasons",
        "Content-Type: text/plain; charset=utf-8",
        f"Content-Length: {len(body)}",
        "Connection: close",
        "Cache-Control: no-store",
    ]
    if link:
        head.append(f'Link: <{link}>; rel="blocked-by"')
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


def _bad_gateway(reason: str) -> bytes:
    body = f"upstream connection failed: {reason}\n".encode()
    return (
        b"HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain\r\nConnection: close\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )


def _errno_to_socks(err: int) -> int:
    return {
        errno.ECONNREFUSED: SOCKS_REFUSED,
        errno.ENETUNREACH: SOCKS_NET_UNREACHABLE,
        errno.EHOSTUNREACH: SOCKS_HOST_UNREACHABLE,
        errno.ETIMEDOUT: SOCKS_TTL_EXPIRED,
    }.get(err, SOCKS_GENERAL_FAILURE)


# -- configuration -------------------------------------------------------------------------


@dataclass
class ServerConfig:
    """How the enforcement point runs; every timeout in seconds."""

    mode: Mode = Mode.CONNECT
    sniff_timeout: float = 2.0  # a silent client is decided by its destination address
    handshake_timeout: float = 10.0
    connect_timeout: float = 10.0
    # host name -> address for upstream connections ("*" maps every name); names not
    # mapped are resolved with the system resolver
    resolve: Mapping[str, str] = field(default_factory=dict)
    operator_url: str | None = None  # the Link rel="blocked-by" target of 451 answers
    use_splice: bool = True
    reuse_port: bool = False
    backlog: int = 4096
    tick: float = 0.25  # directive validity check and metrics flush interval
    # private splice pipes per process (two descriptors each); beyond it a congested
    # pass-through direction copies its leftover through Python instead
    max_pipes: int = 1024
    # ``subscriber``: a subscriber's throttled flows under the same directive share a bucket
    throttle_scope: ThrottleScope = ThrottleScope.FLOW


# -- the relay -------------------------------------------------------------------------------


# (subscriber address, directive ids, upstream direction)
SharedKey = tuple[str, tuple[str, ...], bool]


class _SharedBucket:
    """One token bucket that several directions (of one subscriber's flows) draw from.

    A direction that finds the bucket empty, or others already waiting, joins ``waiters``;
    one timer serves them first-in first-out as tokens arrive, and a direction that needs
    more afterwards queues again at the back, so every flow gets its turn.
    """

    __slots__ = ("bucket", "key", "members", "server", "serving", "timer", "waiters")

    def __init__(self, server: EnforcementServer, key: SharedKey, rate_bps: float) -> None:
        self.server = server
        self.key = key
        self.bucket = TokenBucket(rate_bps, now=server.loop.time())
        self.members = 0
        self.waiters: deque[_Pipe] = deque()
        self.serving: _Pipe | None = None
        self.timer: asyncio.TimerHandle | None = None

    def wait(self, pipe: _Pipe) -> None:
        """Queue ``pipe`` for tokens (once) and make sure a wake-up is scheduled."""
        if pipe not in self.waiters:
            self.waiters.append(pipe)
        self._schedule()

    def leave(self, pipe: _Pipe) -> None:
        with contextlib.suppress(ValueError):
            self.waiters.remove(pipe)
        if not self.waiters and self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def set_rate(self, rate_bps: float) -> None:
        if rate_bps == self.bucket.rate_bps:
            return
        self.bucket.set_rate(rate_bps, self.server.loop.time())
        if self.timer is not None:  # it waited at the old rate
            self.timer.cancel()
            self.timer = None
        self._schedule()

    def _schedule(self) -> None:
        if self.timer is not None or not self.waiters or self.serving is not None:
            return
        loop = self.server.loop
        now = loop.time()
        # a quarter burst per wake-up, as a flow's own bucket does (see _Pipe.flush)
        wait = self.bucket.delay(now, max(1, self.bucket.burst_bytes // 4))
        self.timer = loop.call_at(now + max(wait, 0.0005), self._serve)

    def _serve(self) -> None:
        self.timer = None
        now = self.server.loop.time()
        while self.waiters and self.bucket.tokens(now) >= 1:
            pipe = self.waiters.popleft()
            self.serving = pipe
            try:
                pipe.flush()
            finally:
                self.serving = None
        self._schedule()

    def close(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.waiters.clear()


class _Pipe:
    """One direction of a flow: bytes from ``src`` to ``dst``, maybe through a bucket."""

    __slots__ = (
        "bucket",
        "dfd",
        "dst",
        "eof",
        "flow",
        "granted",
        "inpipe",
        "kpipe",
        "nbytes",
        "pending",
        "reading",
        "sfd",
        "shared",
        "shut",
        "src",
        "timer",
        "up",
        "writing",
    )

    def __init__(self, flow: _Flow, src: socket.socket, dst: socket.socket, up: bool) -> None:
        self.flow = flow
        self.src, self.dst = src, dst
        self.sfd, self.dfd = src.fileno(), dst.fileno()
        self.up = up
        self.bucket: TokenBucket | None = None
        self.shared: _SharedBucket | None = None  # set: ``bucket`` is its bucket
        self.pending: memoryview | None = None
        self.granted = 0  # bytes of ``pending`` the bucket already let through
        # a private splice pipe and the bytes in it; they go out before ``pending``
        self.kpipe: tuple[int, int] | None = None
        self.inpipe = 0
        self.timer: asyncio.TimerHandle | None = None
        self.reading = self.writing = False
        self.eof = self.shut = False
        self.nbytes = 0

    # registration -------------------------------------------------------------------
    def start_reading(self) -> None:
        if (
            not self.reading
            and not self.eof
            and self.pending is None
            and self.inpipe == 0
            and self.timer is None
        ):
            self.flow.server.loop.add_reader(self.sfd, self.on_readable)
            self.reading = True

    def stop_reading(self) -> None:
        if self.reading:
            self.flow.server.loop.remove_reader(self.sfd)
            self.reading = False

    def stop(self) -> None:
        self.stop_reading()
        if self.writing:
            self.flow.server.loop.remove_writer(self.dfd)
            self.writing = False
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self._leave_shared()
        self._release_pipe()

    def join_shared(self, shared: _SharedBucket) -> None:
        """Draw tokens from ``shared`` (a subscriber's bucket) from now on."""
        self._leave_shared()
        self.shared = shared
        self.bucket = shared.bucket
        shared.members += 1

    def _leave_shared(self) -> None:
        shared = self.shared
        if shared is None:
            return
        self.shared = None
        self.bucket = None
        self.granted = 0
        shared.leave(self)
        self.flow.server.release_bucket(shared)

    def _release_pipe(self) -> None:
        if self.kpipe is not None:
            self.flow.server.give_pipe(self.kpipe, empty=self.inpipe == 0)
            self.kpipe = None
            self.inpipe = 0

    # data -------------------------------------------------------------------------------
    def on_readable(self) -> None:
        server = self.flow.server
        if self.bucket is None and server.pipe is not None:
            self._splice(server)
            return
        size = CHUNK if self.bucket is None else self.bucket.burst_bytes
        try:
            data = self.src.recv(size)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self.flow.abort(f"{'client' if self.up else 'server'} read: {exc.strerror}")
            return
        if not data:
            self.on_eof()
            return
        self._count(len(data))
        self.stop_reading()
        self.pending = memoryview(data)
        self.flush()

    def _splice(self, server: EnforcementServer) -> None:
        # keep moving while the source has bytes and the destination takes them: on a busy
        # machine every wake-up waits for a CPU, so each one should move as much as it can
        moved = 0
        for _ in range(BUDGET_SPLICES):
            if moved >= BUDGET:
                return
            if self.kpipe is None and self.nbytes >= BULK_AFTER:
                self.kpipe = server.take_pipe()
            if self.kpipe is None:
                before = self.nbytes
                if not self._splice_shared(server):
                    return
                moved += self.nbytes - before
                continue
            # own pipe, empty (reading stops while it holds bytes): fill it, then drain it
            try:
                n = os.splice(self.sfd, self.kpipe[1], PIPE_SIZE, flags=SPLICE_FLAGS)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self.flow.abort(f"{'client' if self.up else 'server'} read: {exc.strerror}")
                return
            if n == 0:
                self.on_eof()
                return
            self._count(n)
            moved += n
            self.inpipe = n
            if not self._push():
                return
            if self.inpipe:
                self.stop_reading()
                self._want_write()
                return

    def _splice_shared(self, server: EnforcementServer) -> bool:
        """One move through the shared pipe; True if it is worth trying another."""
        pr, pw = server.pipe  # type: ignore[misc]
        try:
            n = os.splice(self.sfd, pw, CHUNK, flags=SPLICE_FLAGS)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError as exc:
            self.flow.abort(f"{'client' if self.up else 'server'} read: {exc.strerror}")
            return False
        if n == 0:
            self.on_eof()
            return False
        self._count(n)
        moved = 0
        error: OSError | None = None
        while moved < n:
            try:
                moved += os.splice(pr, self.dfd, n - moved, flags=SPLICE_FLAGS)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                error = exc
                break
        if moved == n:
            return True
        # the shared pipe must be empty when this event ends
        left = n - moved
        if error is None:
            self.kpipe = server.take_pipe()
        if self.kpipe is not None:
            while self.inpipe < left:
                try:
                    k = os.splice(pr, self.kpipe[1], left - self.inpipe, flags=SPLICE_FLAGS)
                except OSError:
                    break
                if k <= 0:
                    break
                self.inpipe += k
            left -= self.inpipe
        rest = _read_exactly(pr, left)  # only without a pipe of our own (or on an error)
        if error is not None:
            self.flow.abort(f"{'server' if self.up else 'client'} write: {error.strerror}")
            return False
        self.stop_reading()
        if rest:
            self.pending = memoryview(rest)
        self._want_write()
        return False

    def _push(self) -> bool:
        """Splice the private pipe's bytes to the destination; False if the flow failed."""
        assert self.kpipe is not None
        pr = self.kpipe[0]
        while self.inpipe:
            try:
                m = os.splice(pr, self.dfd, self.inpipe, flags=SPLICE_FLAGS)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                self.flow.abort(f"{'server' if self.up else 'client'} write: {exc.strerror}")
                return False
            if m <= 0:
                break
            self.inpipe -= m
        return True

    def _unpipe(self) -> None:
        """Move the private pipe's bytes in front of ``pending`` (the flow is throttled now)."""
        if self.kpipe is None:
            return
        if self.inpipe:
            data = _read_exactly(self.kpipe[0], self.inpipe)
            self.inpipe = 0
            self.pending = memoryview(data + bytes(self.pending or b""))
        self._release_pipe()

    def _count(self, n: int) -> None:
        self.nbytes += n
        server = self.flow.server
        key = (self.bucket is not None, self.up)
        server.byte_counts[key] = server.byte_counts.get(key, 0) + n

    def flush(self) -> None:
        """Send what is pending as far as the bucket and the destination allow."""
        loop = self.flow.server.loop
        if self.inpipe:
            if not self._push():
                return
            if self.inpipe:
                self._want_write()
                return
        while self.pending is not None:
            data = self.pending
            if self.shared is not None:
                if self.granted == 0 and not self._take_shared(len(data)):
                    return
                piece = data[: self.granted]
            elif self.bucket is not None:
                if self.granted == 0:
                    now = loop.time()
                    self.granted = self.bucket.take(now, len(data))
                    if self.granted == 0:
                        # wake for a quarter burst, not a full bucket: tokens that would
                        # arrive while the bucket is full (a late timer) are lost
                        quarter = max(1, self.bucket.burst_bytes // 4)
                        wait = self.bucket.delay(now, min(len(data), quarter))
                        self._stop_writing()
                        self.timer = loop.call_at(now + max(wait, 0.0005), self._on_timer)
                        return
                piece = data[: self.granted]
            else:
                piece = data
            try:
                sent = self.dst.send(piece)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError as exc:
                self.flow.abort(f"{'server' if self.up else 'client'} write: {exc.strerror}")
                return
            if self.bucket is not None:
                self.granted = max(0, self.granted - sent)
            rest = data[sent:]
            self.pending = rest if len(rest) else None
            if sent < len(piece):
                self._want_write()
                return
        self.granted = 0
        was_writing = self.writing
        self._stop_writing()
        if self.eof:
            self._shutdown()
            return
        self.start_reading()
        if was_writing and self.reading and self.bucket is None:
            # the destination drained: the source most likely has bytes waiting already,
            # so move them now instead of after another trip through the selector
            self.on_readable()

    def _take_shared(self, nbytes: int) -> bool:
        """Take tokens from the shared bucket in turn; False (queued) if none for us now."""
        shared = self.shared
        assert shared is not None
        if shared.waiters and shared.serving is not self:
            # others are waiting: take a place behind them instead of jumping the queue
            self._stop_writing()
            shared.wait(self)
            return False
        self.granted = shared.bucket.take(self.flow.server.loop.time(), nbytes)
        if self.granted == 0:
            self._stop_writing()
            shared.wait(self)
            return False
        return True

    def _on_timer(self) -> None:
        self.timer = None
        self.flush()

    def _want_write(self) -> None:
        if not self.writing:
            self.flow.server.loop.add_writer(self.dfd, self.flush)
            self.writing = True

    def _stop_writing(self) -> None:
        if self.writing:
            self.flow.server.loop.remove_writer(self.dfd)
            self.writing = False

    def on_eof(self) -> None:
        self.eof = True
        self.stop_reading()
        if self.pending is None and self.inpipe == 0:
            self._shutdown()

    def _shutdown(self) -> None:
        if not self.shut:
            self.shut = True
            with contextlib.suppress(OSError):
                self.dst.shutdown(socket.SHUT_WR)
            self.flow.maybe_done()

    def set_rate(self, rate_bps: float | None, key: SharedKey | None = None) -> None:
        """Throttle to ``rate_bps`` bits/s, or release (None); applies to bytes not yet sent.

        With ``key`` the direction draws from the server's shared bucket for that key
        (created or re-rated as needed) instead of a bucket of its own.
        """
        now = self.flow.server.loop.time()
        if rate_bps is not None and key is not None:
            shared = self.shared
            if shared is None or shared.key != key:
                if shared is None:
                    self._unpipe()
                if self.timer is not None:
                    self.timer.cancel()
                    self.timer = None
                self.join_shared(self.flow.server.acquire_bucket(key, rate_bps))
            self.shared.set_rate(rate_bps)  # type: ignore[union-attr]
        elif rate_bps is None:
            if self.bucket is None:
                return
            self._leave_shared()
            self.bucket = None
            self.granted = 0
            if self.timer is not None:
                self.timer.cancel()
                self.timer = None
        elif self.bucket is None:
            self._unpipe()
            self.bucket = TokenBucket(rate_bps, now=now)
        elif self.shared is not None:
            self._leave_shared()
            self.bucket = TokenBucket(rate_bps, now=now)
        else:
            self.bucket.set_rate(rate_bps, now)
            if self.timer is not None:
                self.timer.cancel()
                self.timer = None
        if self.shared is not None and self.shared.waiters:
            # queued directions resume in turn as tokens arrive; this one waits with them
            if self.pending is not None and self not in self.shared.waiters:
                self.flush()
            elif self.pending is None and not self.inpipe:
                self.start_reading()
        elif self.pending is not None or self.inpipe:
            self.flush()
        else:
            self.start_reading()


def _read_exactly(fd: int, n: int) -> bytes:
    """Read ``n`` bytes that are known to be in a pipe."""
    out = bytearray()
    while len(out) < n:
        chunk = os.read(fd, n - len(out))
        if not chunk:
            break
        out += chunk
    return bytes(out)


class _State(StrEnum):
    HANDSHAKE = "handshake"
    CONNECTING = "connecting"
    SNIFFING = "sniffing"
    RELAYING = "relaying"
    CLOSED = "closed"


class _Flow:
    """One client connection and its upstream connection."""

    __slots__ = (
        "buf",
        "c",
        "cfd",
        "client_addr",
        "decision",
        "dest",
        "down",
        "greeted",
        "opened",
        "server",
        "sniffed",
        "state",
        "target",
        "timer",
        "u",
        "up",
    )

    def __init__(self, server: EnforcementServer, c: socket.socket, client_addr: str) -> None:
        self.server = server
        self.c = c
        self.cfd = c.fileno()
        self.client_addr = client_addr
        self.u: socket.socket | None = None
        self.state = _State.HANDSHAKE
        self.buf = bytearray()
        self.target: Target | None = None
        self.dest: tuple[str, int] | None = None
        self.sniffed: Sniffed | None = None
        self.decision: Decision | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.up: _Pipe | None = None
        self.down: _Pipe | None = None
        self.greeted = False
        self.opened = time.monotonic()

    # handshake -----------------------------------------------------------------------
    def start(self) -> None:
        loop = self.server.loop
        mode = self.server.config.mode
        if mode == Mode.TRANSPARENT:
            try:
                dest = original_dst(self.c, self.client_addr)
            except OSError as exc:
                self.close(f"no original destination: {exc.strerror}", reset=True)
                return
            here = self.c.getsockname()
            if dest == (here[0].removeprefix("::ffff:"), here[1]):
                self.close("not redirected (destination is the listener)", reset=True)
                return
            self.target = Target(dest[0], dest[1], 0)
            self.connect(dest[0], dest[1])
            return
        loop.add_reader(self.cfd, self.on_handshake)
        self.timer = loop.call_later(self.server.config.handshake_timeout, self.on_timeout)

    def on_timeout(self) -> None:
        self.timer = None
        if self.state == _State.SNIFFING:
            self.server.metrics.sniff_failures.labels("silent").inc()
            self.decide_and_relay()
        elif self.state in (_State.HANDSHAKE, _State.CONNECTING):
            self.fail_upstream(errno.ETIMEDOUT, "timed out")

    def on_handshake(self) -> None:
        try:
            data = self.c.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self.close(f"client read: {exc.strerror}")
            return
        if not data:
            self.close("client closed during handshake")
            return
        self.buf += data
        mode = self.server.config.mode
        try:
            target = parse_connect(bytes(self.buf)) if mode == Mode.CONNECT else self._socks_step()
        except SocksError as exc:
            self.server.metrics.handshake_errors.labels(mode.value).inc()
            self._send_quietly(socks_reply(exc.reply) if self.greeted else b"\x05\xff")
            self.close(str(exc))
            return
        except InputError as exc:
            self.server.metrics.handshake_errors.labels(mode.value).inc()
            self._send_quietly(
                b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )
            self.close(str(exc))
            return
        if target is None:
            return
        self.server.loop.remove_reader(self.cfd)
        self.target = target
        del self.buf[: target.consumed]
        self.start_connect()

    def _socks_step(self) -> Target | None:
        if not self.greeted:
            greeting = parse_socks_greeting(bytes(self.buf))
            if greeting is None:
                return None
            methods, used = greeting
            if SOCKS_NO_AUTH not in methods:
                raise SocksError(
                    "no acceptable method (only no-auth)", SOCKS_NO_METHOD, where="SOCKS greeting"
                )
            del self.buf[:used]
            self.greeted = True
            self._send_quietly(bytes([SOCKS_VERSION, SOCKS_NO_AUTH]))
        return parse_socks_request(bytes(self.buf))

    def _send_quietly(self, data: bytes) -> bool:
        try:
            return self.c.send(data) == len(data)
        except OSError:
            return False

    def start_connect(self) -> None:
        assert self.target is not None
        host, port = self.target.host, self.target.port
        self.state = _State.CONNECTING
        mapped = self.server.resolve_static(host)
        if mapped is not None:
            self.connect(mapped, port)
            return
        self.server.spawn(self._resolve_then_connect(host, port))

    async def _resolve_then_connect(self, host: str, port: int) -> None:
        try:
            infos = await self.server.loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError:
            self.fail_upstream(errno.EHOSTUNREACH, "name does not resolve")
            return
        if self.state != _State.CONNECTING:
            return
        self.connect(infos[0][4][0], port)

    def connect(self, addr: str, port: int) -> None:
        self.state = _State.CONNECTING
        loop = self.server.loop
        family = socket.AF_INET6 if ":" in addr else socket.AF_INET
        try:
            u = socket.socket(family, socket.SOCK_STREAM)
        except OSError as exc:
            self.server.metrics.accept_errors.labels("upstream socket").inc()
            self.fail_upstream(exc.errno or errno.EMFILE, exc.strerror or "socket")
            return
        u.setblocking(False)
        u.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.u = u
        self.dest = (addr, port)
        err = u.connect_ex((addr, port))
        if err not in (0, errno.EINPROGRESS):
            self.fail_upstream(err, os.strerror(err))
            return
        loop.add_writer(u.fileno(), self.on_connected)
        if self.timer is not None:
            self.timer.cancel()
        self.timer = loop.call_later(self.server.config.connect_timeout, self.on_timeout)

    def on_connected(self) -> None:
        assert self.u is not None
        self.server.loop.remove_writer(self.u.fileno())
        err = self.u.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            self.fail_upstream(err, os.strerror(err))
            return
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        mode = self.server.config.mode
        if mode == Mode.CONNECT:
            ok = self._send_quietly(b"HTTP/1.1 200 Connection established\r\n\r\n")
        elif mode == Mode.SOCKS5:
            try:
                bound = self.u.getsockname()[:2]
            except OSError:
                bound = None
            ok = self._send_quietly(socks_reply(SOCKS_OK, bound))
        else:
            ok = True
        if not ok:
            self.close("client gone before the tunnel opened")
            return
        self.start_sniffing()

    def fail_upstream(self, err: int, why: str) -> None:
        if self.state == _State.CLOSED:
            return
        self.server.metrics.upstream_failures.labels(errno.errorcode.get(err, str(err))).inc()
        mode = self.server.config.mode
        if mode == Mode.CONNECT:
            self._send_quietly(_bad_gateway(why))
            self.close(f"upstream {self.dest}: {why}")
        elif mode == Mode.SOCKS5:
            self._send_quietly(socks_reply(_errno_to_socks(err)))
            self.close(f"upstream {self.dest}: {why}")
        else:
            self.close(f"upstream {self.dest}: {why}", reset=True)

    # classification ---------------------------------------------------------------------
    def start_sniffing(self) -> None:
        self.state = _State.SNIFFING
        if self.buf and self._try_sniff():
            return
        loop = self.server.loop
        loop.add_reader(self.cfd, self.on_sniff_readable)
        assert self.u is not None
        # a server that speaks first (SMTP, SSH, ...) means the client will not reveal a name
        loop.add_reader(self.u.fileno(), self.on_server_first)
        self.timer = loop.call_later(self.server.config.sniff_timeout, self.on_timeout)

    def on_sniff_readable(self) -> None:
        try:
            data = self.c.recv(MAX_SNIFF - len(self.buf))
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self.close(f"client read: {exc.strerror}")
            return
        if not data:
            # the client half-closed before revealing anything: decide by address
            self.server.metrics.sniff_failures.labels("eof").inc()
            self.decide_and_relay(client_eof=True)
            return
        self.buf += data
        self._try_sniff()

    def _try_sniff(self) -> bool:
        result = sniff(bytes(self.buf))
        if result is None and len(self.buf) < MAX_SNIFF:
            return False
        if result is None:
            result = Sniffed(Protocol.UNKNOWN, None, "no verdict within MAX_SNIFF")
        self.sniffed = result
        if result.protocol == Protocol.UNKNOWN:
            self.server.metrics.sniff_failures.labels("unknown").inc()
        elif result.host is None:
            self.server.metrics.sniff_failures.labels(f"{result.protocol.value}-no-name").inc()
        self.decide_and_relay()
        return True

    def on_server_first(self) -> None:
        self.server.metrics.sniff_failures.labels("server-first").inc()
        self.decide_and_relay()

    def names(self) -> list[str]:
        out: list[str] = []
        if self.target is not None and self.target.is_name:
            out.append(self.target.host)
        if self.sniffed is not None:
            out.extend(self.sniffed.names or ((self.sniffed.host,) if self.sniffed.host else ()))
        return out

    def decide_and_relay(self, *, client_eof: bool = False) -> None:
        loop = self.server.loop
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        with contextlib.suppress(ValueError, OSError):
            loop.remove_reader(self.cfd)
        assert self.u is not None
        with contextlib.suppress(ValueError, OSError):
            loop.remove_reader(self.u.fileno())
        decision = self.server.decide_flow(self)
        self.decision = decision
        self.server.count_decision(self, decision, new=True)
        if decision.action == Action.BLOCK:
            self.block()
            return
        self.state = _State.RELAYING
        self.up = _Pipe(self, self.c, self.u, up=True)
        self.down = _Pipe(self, self.u, self.c, up=False)
        if decision.action == Action.THROTTLE:
            rate = float(decision.rate_kbps or 0) * 1000.0
            if self.server.config.throttle_scope == ThrottleScope.SUBSCRIBER:
                for pipe in (self.up, self.down):
                    key = self.shared_key(decision, pipe.up)
                    pipe.join_shared(self.server.acquire_bucket(key, rate))
                    pipe.shared.set_rate(rate)  # type: ignore[union-attr]
            else:
                now = loop.time()
                self.up.bucket = TokenBucket(rate, now=now)
                self.down.bucket = TokenBucket(rate, now=now)
        if self.buf:
            self.up._count(len(self.buf))
            self.up.pending = memoryview(bytes(self.buf))
        self.buf = bytearray()
        if client_eof:
            self.up.eof = True
        if self.up.pending is not None:
            self.up.flush()
        elif client_eof:
            self.up._shutdown()
        else:
            self.up.start_reading()
        if self.state == _State.RELAYING:
            self.down.start_reading()

    def block(self) -> None:
        assert self.decision is not None
        if self.sniffed is not None and self.sniffed.protocol == Protocol.HTTP:
            host = self.sniffed.host or (self.target.host if self.target else None)
            self._send_quietly(block_response(host, self.decision, self.server.config.operator_url))
            with contextlib.suppress(OSError):
                self.c.shutdown(socket.SHUT_WR)
            # unread request bytes at close() would turn the FIN into a RST and lose the 451
            with contextlib.suppress(OSError):
                for _ in range(64):
                    if not self.c.recv(65536):
                        break
            self.close("blocked (451)")
        else:
            self.close("blocked (reset)", reset=True)

    def redecide(self) -> None:
        """Apply the current directives to a relaying flow (after a swap or expiry)."""
        if self.state != _State.RELAYING or self.decision is None:
            return
        new = self.server.decide_flow(self)
        old = self.decision
        if (new.action, new.rate_kbps, new.directives) == (
            old.action,
            old.rate_kbps,
            old.directives,
        ):
            return
        self.server.count_decision(self, old, new=False, gone=True)
        self.decision = new
        self.server.count_decision(self, new, new=False)
        self.server.metrics.redecisions.labels(old.action.value, new.action.value).inc()
        log.info(
            "flow %s -> %s: %s -> %s (%s)",
            self.client_addr,
            self.dest,
            old.action,
            new.action,
            new.reason,
        )
        if new.action == Action.BLOCK:
            self.close("blocked by a directive update", reset=True)
            return
        rate = float(new.rate_kbps or 0) * 1000.0 if new.action == Action.THROTTLE else None
        shared = self.server.config.throttle_scope == ThrottleScope.SUBSCRIBER
        assert self.up is not None and self.down is not None
        self.up.set_rate(rate, self.shared_key(new, True) if shared else None)
        if self.state == _State.RELAYING:
            self.down.set_rate(rate, self.shared_key(new, False) if shared else None)

    def shared_key(self, decision: Decision, up: bool) -> SharedKey:
        """The shared bucket of this flow's subscriber under ``decision``'s directives."""
        return (self.client_addr, decision.directives, up)

    # teardown -----------------------------------------------------------------------------
    def maybe_done(self) -> None:
        if self.up is not None and self.down is not None and self.up.shut and self.down.shut:
            self.close("done")

    def abort(self, why: str) -> None:
        """A socket failed: reset both sides so each peer learns the flow is broken."""
        self.close(why, reset=True)

    def close(self, why: str, *, reset: bool = False) -> None:
        if self.state == _State.CLOSED:
            return
        was = self.state
        self.state = _State.CLOSED
        loop = self.server.loop
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        for pipe in (self.up, self.down):
            if pipe is not None:
                pipe.stop()
        for sock in (self.c, self.u):
            if sock is None:
                continue
            fd = sock.fileno()
            if fd >= 0:
                with contextlib.suppress(ValueError, OSError):
                    loop.remove_reader(fd)
                with contextlib.suppress(ValueError, OSError):
                    loop.remove_writer(fd)
            if reset:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()
        self.server.flow_closed(self, was, why)


def _new_pipe() -> tuple[int, int]:
    r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    with contextlib.suppress(OSError):
        fcntl.fcntl(w, F_SETPIPE_SZ, PIPE_SIZE)
    return r, w


def original_dst(sock: socket.socket, client: str) -> tuple[str, int]:
    """The address a redirected flow was sent to (nftables REDIRECT / DNAT); ``client`` is
    the peer as accepted, a v4-mapped one already written as IPv4."""
    if ":" in client:
        raw = sock.getsockopt(socket.IPPROTO_IPV6, IP6T_SO_ORIGINAL_DST, 28)
        return parse_original_dst(raw, socket.AF_INET6)
    # IPv4, also on a dual-stack listener (a v4-mapped peer): conntrack has it as IPv4
    raw = sock.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, 16)
    return parse_original_dst(raw, socket.AF_INET)


# -- the server ----------------------------------------------------------------------------


class EnforcementServer:
    """Listeners, the live flow registry and the current directive index of one process."""

    def __init__(
        self,
        config: ServerConfig | None = None,
        *,
        index: Index | None = None,
        subscribers: Subscribers | None = None,
        metrics: EnforceMetrics | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.config = config or ServerConfig()
        self.index = index if index is not None else empty_index()
        self.subscribers = subscribers
        self.metrics = metrics or EnforceMetrics()
        self.clock = clock or SystemClock()
        self.flows: set[_Flow] = set()
        self.fail_open = False
        self.fail_open_reason = ""
        self.byte_counts: dict[tuple[bool, bool], int] = {}
        # throttle_scope=subscriber: one bucket per subscriber, directive(s) and direction
        self.shared_buckets: dict[SharedKey, _SharedBucket] = {}
        self.pipe: tuple[int, int] | None = None
        self.pipes_open = 0  # private splice pipes, pooled or in use
        self._pipe_pool: list[tuple[int, int]] = []
        self.own_addresses: set[tuple[str, int]] = set()
        self._listeners: list[socket.socket] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._tick: asyncio.TimerHandle | None = None
        self._in_force: frozenset[str] = frozenset()
        self._accept_paused = False
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]

    # lifecycle --------------------------------------------------------------------------
    async def start(self, host: str = "127.0.0.1", port: int = 0) -> tuple[str, int]:
        """Listen on ``host:port`` (port 0 picks one); return the bound address."""
        self.loop = asyncio.get_running_loop()
        if self.config.use_splice and self.pipe is None and hasattr(os, "splice"):
            self.pipe = _new_pipe()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        lsock = socket.socket(family, socket.SOCK_STREAM)
        lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if self.config.reuse_port:
            lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            lsock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        lsock.bind((host, port))
        lsock.listen(self.config.backlog)
        lsock.setblocking(False)
        self._listeners.append(lsock)
        bound = lsock.getsockname()[:2]
        self.own_addresses.add((bound[0], bound[1]))
        self.loop.add_reader(lsock.fileno(), self._on_accept, lsock)
        self._in_force = self.index.in_force_ids(self.clock.now())
        self._publish_index()
        if self._tick is None:
            self._tick = self.loop.call_later(self.config.tick, self._on_tick)
        log.info("enforce: listening on %s:%s (%s mode)", bound[0], bound[1], self.config.mode)
        return bound[0], bound[1]

    async def close(self) -> None:
        """Stop listening and close every flow."""
        for lsock in self._listeners:
            with contextlib.suppress(ValueError, OSError):
                self.loop.remove_reader(lsock.fileno())
            lsock.close()
        self._listeners.clear()
        for flow in list(self.flows):
            flow.close("server shutdown")
        if self._tick is not None:
            self._tick.cancel()
            self._tick = None
        for task in list(self._tasks):
            task.cancel()
        self._flush_bytes()
        if self.pipe is not None:
            for fd in self.pipe:
                os.close(fd)
            self.pipe = None
        for pipe in self._pipe_pool:
            for fd in pipe:
                os.close(fd)
        self.pipes_open -= len(self._pipe_pool)
        self._pipe_pool.clear()

    def take_pipe(self) -> tuple[int, int] | None:
        """A private splice pipe for a congested pass-through direction, or None (at the cap,
        or out of descriptors)."""
        if self._pipe_pool:
            return self._pipe_pool.pop()
        if self.pipes_open >= self.config.max_pipes:
            return None
        try:
            pipe = _new_pipe()
        except OSError:
            return None
        self.pipes_open += 1
        return pipe

    def give_pipe(self, pipe: tuple[int, int], *, empty: bool) -> None:
        """Return a private pipe: pooled when empty, closed otherwise."""
        if empty and len(self._pipe_pool) < POOL_SIZE and self._listeners:
            self._pipe_pool.append(pipe)
            return
        for fd in pipe:
            os.close(fd)
        self.pipes_open -= 1

    def acquire_bucket(self, key: SharedKey, rate_bps: float) -> _SharedBucket:
        """The shared bucket for ``key``, created at ``rate_bps`` on first use."""
        shared = self.shared_buckets.get(key)
        if shared is None:
            shared = self.shared_buckets[key] = _SharedBucket(self, key, rate_bps)
        return shared

    def release_bucket(self, shared: _SharedBucket) -> None:
        """One direction stopped drawing from ``shared``; drop it after the last one."""
        shared.members -= 1
        if shared.members <= 0 and self.shared_buckets.get(shared.key) is shared:
            del self.shared_buckets[shared.key]
            shared.close()

    def spawn(self, coro: object) -> None:
        task: asyncio.Task[None] = self.loop.create_task(coro)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _on_accept(self, lsock: socket.socket) -> None:
        for _ in range(256):
            try:
                c, addr = lsock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                # out of descriptors: stop accepting for a moment instead of spinning
                self.metrics.accept_errors.labels(errno.errorcode.get(exc.errno or 0, "?")).inc()
                log.warning("enforce: accept failed: %s", exc.strerror)
                self.loop.remove_reader(lsock.fileno())
                self.loop.call_later(0.1, self._resume_accept, lsock)
                return
            c.setblocking(False)
            with contextlib.suppress(OSError):
                c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            client = addr[0]
            if client.startswith("::ffff:"):
                client = client[7:]
            flow = _Flow(self, c, client)
            self.flows.add(flow)
            try:
                flow.start()
            except Exception:  # a bug must cost this flow, never the listener
                log.exception("enforce: a flow from %s failed to start", client)
                flow.close("internal error", reset=True)

    def _resume_accept(self, lsock: socket.socket) -> None:
        if lsock in self._listeners:
            self.loop.add_reader(lsock.fileno(), self._on_accept, lsock)

    def resolve_static(self, host: str) -> str | None:
        try:
            ipaddress.ip_address(host)
        except ValueError:
            pass
        else:
            return host
        resolve = self.config.resolve
        return resolve.get(host) or resolve.get("*")

    # decisions --------------------------------------------------------------------------
    def decide_flow(self, flow: _Flow) -> Decision:
        dest_ip = flow.dest[0] if flow.dest else None
        if self.fail_open:
            d = decide(
                empty_index(), [], None, flow.client_addr, self.clock.now(), self.subscribers
            )
            return Decision(
                Action.PASS,
                subscriber_class=d.subscriber_class,
                reason=f"fail open: {self.fail_open_reason}",
            )
        return decide(
            self.index, flow.names(), dest_ip, flow.client_addr, self.clock.now(), self.subscribers
        )

    def count_decision(
        self, flow: _Flow, decision: Decision, *, new: bool, gone: bool = False
    ) -> None:
        m = self.metrics
        if gone:
            if decision.action != Action.BLOCK:
                m.active.labels(decision.action.value).dec()
            return
        if new:
            m.flows.labels(
                decision.action.value, decision.subscriber_class, decision.content_class
            ).inc()
            log.info(
                "flow %s -> %s %s: %s (%s; sub=%s content=%s)",
                flow.client_addr,
                flow.dest,
                flow.names(),
                decision.action,
                decision.reason,
                decision.subscriber_class,
                decision.content_class,
            )
        for did in decision.directives:
            m.directive_flows.labels(did).inc()
        if decision.action != Action.BLOCK:
            m.active.labels(decision.action.value).inc()

    def flow_closed(self, flow: _Flow, was: _State, why: str) -> None:
        self.flows.discard(flow)
        if was == _State.RELAYING and flow.decision is not None:
            self.count_decision(flow, flow.decision, new=False, gone=True)
            up = flow.up.nbytes if flow.up else 0
            down = flow.down.nbytes if flow.down else 0
            log.info(
                "flow %s -> %s closed (%s): %s up=%d down=%d seconds=%.3f",
                flow.client_addr,
                flow.dest,
                why,
                flow.decision.action,
                up,
                down,
                time.monotonic() - flow.opened,
            )
        else:
            log.debug("flow %s closed in %s: %s", flow.client_addr, was, why)

    # live updates -----------------------------------------------------------------------
    def swap(self, new: Index | DirectiveSet | Iterable[Directive]) -> None:
        """Replace the directives atomically and re-decide every live flow now."""
        index = new if isinstance(new, Index) else compile_index(new)
        self.index = index
        self.metrics.feed_updates.inc()
        self._publish_index()
        self._in_force = index.in_force_ids(self.clock.now())
        log.info(
            "enforce: directive set %s applied (%d directives, %d in force)",
            index.sequence,
            len(index.directives),
            len(self._in_force),
        )
        self.redecide_all()

    def set_fail_open(self, on: bool, reason: str = "") -> None:
        """Stop (or resume) enforcing; live flows are re-decided at once."""
        if on == self.fail_open:
            return
        self.fail_open = on
        self.fail_open_reason = reason
        self.metrics.fail_open.set(1 if on else 0)
        if on:
            log.error("enforce: FAIL OPEN, nothing is enforced: %s", reason)
        else:
            log.warning("enforce: enforcing again (%s)", reason or "feed fresh")
        self.redecide_all()

    def redecide_all(self) -> None:
        for flow in list(self.flows):
            flow.redecide()

    def _publish_index(self) -> None:
        self.metrics.feed_sequence.set(self.index.sequence)
        self.metrics.directives_in_force.set(len(self._in_force))

    def _feed_age(self) -> float:
        generated = self.index.generated_at
        if generated is None:
            return float("nan")
        return (self.clock.now() - generated).total_seconds()

    def _on_tick(self) -> None:
        self._tick = self.loop.call_later(self.config.tick, self._on_tick)
        self._flush_bytes()
        self.metrics.feed_age.set(self._feed_age())
        now: datetime = self.clock.now()
        in_force = self.index.in_force_ids(now)
        if in_force != self._in_force:
            self._in_force = in_force
            self._publish_index()
            log.info("enforce: directives in force changed: %s", sorted(in_force))
            self.redecide_all()

    def _flush_bytes(self) -> None:
        counts, self.byte_counts = self.byte_counts, {}
        for (throttled, up), n in counts.items():
            self.metrics.bytes.labels(
                "throttle" if throttled else "pass", "up" if up else "down"
            ).inc(n)

    # introspection for tests and the CLI -------------------------------------------------------
    def flow_summaries(self) -> list[dict[str, object]]:
        """One dict per live flow: addresses, names, decision, bytes."""
        out: list[dict[str, object]] = []
        for f in self.flows:
            out.append(
                {
                    "client": f.client_addr,
                    "dest": f.dest,
                    "names": f.names(),
                    "state": f.state.value,
                    "action": f.decision.action.value if f.decision else None,
                    "rate_kbps": f.decision.rate_kbps if f.decision else None,
                    "up": f.up.nbytes if f.up else 0,
                    "down": f.down.nbytes if f.down else 0,
                }
            )
        return out


# -- the process: feed loop, workers -----------------------------------------------------------


class DirectoryFeed:
    """A plain (unsigned) directive file, or a directory holding ``directives.json``.

    For a trusted local path only: nothing is verified but the format. Re-read when the
    file changes. It has no timestamp expiry, so it never makes the point fail open; the
    directives' own ``expires`` still apply.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        from takedown.feed.directives import TARGET_NAME

        p = os.fspath(path)
        self.path = os.path.join(p, TARGET_NAME) if os.path.isdir(p) else p
        self._seen: tuple[int, int] | None = None
        self.expires: datetime | None = None
        self.last_good: DirectiveSet | None = None

    def refresh(self) -> DirectiveSet | None:
        """The directive set if the file changed since the last call, else None."""
        from takedown.feed.directives import loads

        try:
            st = os.stat(self.path)
        except OSError as exc:
            raise InputError(f"cannot read: {exc.strerror}", where=self.path) from None
        key = (st.st_mtime_ns, st.st_size)
        if key == self._seen:
            return None
        with open(self.path, "rb") as f:
            ds = loads(f.read())
        self._seen = key
        self.last_good = ds
        return ds

    def stale(self, now: datetime | None = None) -> bool:
        return False


def open_feed(source: str, state_dir: str, root: str | None = None) -> object:
    """A FeedClient for a TUF repository (URL or directory with metadata/), else a
    DirectoryFeed for a plain directive file or directory."""
    from pathlib import Path

    if not source.startswith(("http://", "https://")):
        p = Path(source)
        if p.is_file() or (p.is_dir() and not (p / "metadata").is_dir()):
            return DirectoryFeed(p)
    from takedown.feed.client import FeedClient

    return FeedClient(source, state_dir, root=Path(root) if root else None)


async def feed_loop(server: EnforcementServer, feed: object, interval: float) -> None:
    """Poll the feed; swap in new sets; fail open while the feed is stale past its expiry."""
    from takedown.errors import TakedownError

    loop = asyncio.get_running_loop()
    first = True
    while True:
        try:
            ds = await loop.run_in_executor(None, feed.refresh)  # type: ignore[attr-defined]
        except TakedownError as exc:
            reason = getattr(exc, "reason", type(exc).__name__)
            server.metrics.feed_refusals.labels(reason).inc()
            log.warning("enforce: feed update refused (%s): %s", reason, exc)
            ds = None
        if ds is None and first:
            ds = getattr(feed, "last_good", None)  # a set verified by an earlier run
        if ds is not None:
            server.swap(ds)
        first = False
        if feed.stale():  # type: ignore[attr-defined]
            expires = getattr(feed, "expires", None)
            server.set_fail_open(
                True, f"feed stale: timestamp expired at {expires}" if expires else "no fresh feed"
            )
        else:
            server.set_fail_open(False, "feed fresh")
        await asyncio.sleep(interval)


@dataclass
class EnforceOptions:
    """Everything ``takedown enforce`` needs, as plain data."""

    listen: tuple[str, int]
    feed: str | None = None
    state_dir: str = ".takedown-enforce"
    root: str | None = None
    refresh: float = 2.0
    subscribers: str | None = None
    metrics: tuple[str, int] | None = None
    workers: int = 1
    config: ServerConfig = field(default_factory=ServerConfig)


def raise_nofile() -> int:
    """Raise the open-file soft limit to the hard limit (a flow takes two descriptors)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


async def serve(
    opts: EnforceOptions,
    *,
    worker: int = 0,
    metrics: EnforceMetrics | None = None,
    ready: Callable[[tuple[str, int]], None] | None = None,
) -> None:
    """Run one enforcement process until SIGTERM / SIGINT."""
    import signal

    from takedown.clock import clock_from_env

    subs = Subscribers.load(opts.subscribers) if opts.subscribers else None
    metrics = metrics or EnforceMetrics()
    server = EnforcementServer(
        opts.config, subscribers=subs, metrics=metrics, clock=clock_from_env()
    )
    feed = None
    if opts.feed:
        state = os.path.join(opts.state_dir, f"worker-{worker}")
        feed = open_feed(opts.feed, state, opts.root)
    bound = await server.start(*opts.listen)
    if ready is not None:
        ready(bound)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    task = loop.create_task(feed_loop(server, feed, opts.refresh)) if feed is not None else None
    try:
        await stop.wait()
    finally:
        if task is not None:
            task.cancel()
        await server.close()


def run(opts: EnforceOptions) -> int:
    """``takedown enforce``: one process, or ``workers`` processes sharing the port."""
    import sys
    import tempfile

    from takedown.enforce import metrics as metrics_mod

    raise_nofile()

    def announce(bound: tuple[str, int]) -> None:
        print(f"listening on {bound[0]}:{bound[1]} ({opts.config.mode} mode)", flush=True)

    if opts.workers <= 1:
        m = EnforceMetrics()
        if opts.metrics:
            port = m.serve(*opts.metrics)
            print(f"metrics on http://{opts.metrics[0]}:{port}/metrics", flush=True)
        asyncio.run(serve(opts, metrics=m, ready=announce))
        return 0

    import signal

    opts.config.reuse_port = True
    host, port = opts.listen
    # hold the port (SO_REUSEPORT, not listening) so every worker binds the same one
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    holder = socket.socket(family, socket.SOCK_STREAM)
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    holder.bind((host, port))
    port = holder.getsockname()[1]
    opts.listen = (host, port)
    mdir = tempfile.mkdtemp(prefix="takedown-enforce-metrics-")
    pids: list[int] = []
    ready_r, ready_w = os.pipe()
    for i in range(opts.workers):
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                holder.close()
                os.close(ready_r)
                metrics_mod.use_multiprocess(mdir)

                def listening(_bound: tuple[str, int]) -> None:
                    os.write(ready_w, b"+")

                asyncio.run(serve(opts, worker=i, metrics=EnforceMetrics(), ready=listening))
            except BaseException as exc:  # a worker reports and exits, never returns to the CLI
                print(f"worker {i}: {exc}", file=sys.stderr, flush=True)
                code = 1
            finally:
                os._exit(code)
        pids.append(pid)
    if opts.metrics:
        mport = metrics_mod.serve_registry(metrics_mod.multiprocess_registry(mdir), *opts.metrics)
        print(f"metrics on http://{opts.metrics[0]}:{mport}/metrics", flush=True)
    os.close(ready_w)
    started = 0
    while started < opts.workers:
        got = os.read(ready_r, opts.workers)
        if not got:
            break  # a worker died before listening; its exit status tells below
        started += len(got)
    os.close(ready_r)
    announce((host, port))
    print(f"{opts.workers} workers: {' '.join(map(str, pids))}", flush=True)

    def forward(signum: int, _frame: object) -> None:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    status = 0
    remaining = set(pids)
    while remaining:
        try:
            pid, st = os.wait()
        except ChildProcessError:
            break
        remaining.discard(pid)
        metrics_mod.worker_exited(mdir, pid)
        if os.waitstatus_to_exitcode(st) != 0:
            status = 1
    holder.close()
    return status
