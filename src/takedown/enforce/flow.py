"""One flow's I/O: its two sockets, driven through handshake, sniffing and the relay.

The protocol decisions live in the sans-IO ``Handshake`` (which bytes to answer, where to
connect, why to close) and ``sniff``; a Flow only carries out their commands on sockets and
timers, asks the server for a verdict, and hands the sockets to two relay Directions.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import socket
import struct
import time
from enum import StrEnum
from typing import TYPE_CHECKING

from takedown.enforce.decide import Action, Verdict
from takedown.enforce.handshake import (
    Close,
    Command,
    Handshake,
    Mode,
    OpenUpstream,
    Send,
    StartSniffing,
    Upstream,
    block_response,
    parse_original_dst,
)
from takedown.enforce.relay import Direction, SharedKey, ThrottleScope
from takedown.enforce.shaper import TokenBucket
from takedown.enforce.sniff import MAX_SNIFF, Protocol, Sniffed, Sniffer

if TYPE_CHECKING:
    from takedown.enforce.server import EnforcementServer

log = logging.getLogger("takedown.enforce")

SO_ORIGINAL_DST = 80  # linux/netfilter_ipv4.h, level SOL_IP
IP6T_SO_ORIGINAL_DST = 80  # linux/netfilter_ipv6/ip6_tables.h, level SOL_IPV6


class FlowState(StrEnum):
    HANDSHAKE = "handshake"
    CONNECTING = "connecting"
    SNIFFING = "sniffing"
    RELAYING = "relaying"
    CLOSED = "closed"


class Flow:
    """One client connection and its upstream connection."""

    __slots__ = (
        "buf",
        "c",
        "cfd",
        "client_addr",
        "dest",
        "down",
        "handshake",
        "opened",
        "server",
        "sniffed",
        "sniffer",
        "state",
        "timer",
        "u",
        "up",
        "upstream",
        "verdict",
    )

    def __init__(self, server: EnforcementServer, c: socket.socket, client_addr: str) -> None:
        self.server = server
        self.c = c
        self.cfd = c.fileno()
        self.client_addr = client_addr
        self.u: socket.socket | None = None
        self.state = FlowState.HANDSHAKE
        self.handshake = Handshake(server.config.mode)
        self.buf = bytearray()  # the client's bytes while sniffing
        self.upstream: Upstream | None = None
        self.dest: tuple[str, int] | None = None
        self.sniffed: Sniffed | None = None
        self.sniffer: Sniffer | None = None  # made when sniffing starts (most flows never do)
        self.verdict: Verdict | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.up: Direction | None = None
        self.down: Direction | None = None
        self.opened = time.monotonic()

    # handshake -----------------------------------------------------------------------
    def start(self) -> None:
        loop = self.server.loop
        if self.handshake.mode == Mode.TRANSPARENT:
            try:
                dest = original_dst(self.c, self.client_addr)
            except OSError as exc:
                self.close(f"no original destination: {exc.strerror}", reset=True)
                return
            here = self.c.getsockname()
            self.carry_out(self.handshake.redirected(dest, (here[0], here[1])))
            return
        loop.add_reader(self.cfd, self.on_handshake)
        self.timer = loop.call_later(self.server.config.handshake_timeout, self.on_timeout)

    def carry_out(self, commands: list[Command]) -> None:
        """Execute the handshake's commands in order; a Close (or a failed Send) ends it."""
        for command in commands:
            if isinstance(command, Send):
                if not self._send_quietly(command.data) and command.fail_reason:
                    self.close(command.fail_reason)
                    return
            elif isinstance(command, OpenUpstream):
                with contextlib.suppress(ValueError, OSError):
                    self.server.loop.remove_reader(self.cfd)
                self.upstream = command.upstream
                self.start_connect()
            elif isinstance(command, StartSniffing):
                self.buf = bytearray(command.data)
                self.start_sniffing()
            elif isinstance(command, Close):
                if command.handshake_error:
                    self.server.metrics.handshake_errors.labels(self.handshake.mode.value).inc()
                self.close(command.reason, reset=command.reset)
                return

    def on_timeout(self) -> None:
        self.timer = None
        if self.state == FlowState.SNIFFING:
            self.server.metrics.sniff_failures.labels("silent").inc()
            self.decide_and_relay()
        elif self.state == FlowState.HANDSHAKE:
            # the client never finished asking: its fault, not the upstream's (no 502)
            self.server.metrics.client_timeouts.labels("handshake").inc()
            self.close("client handshake timed out")
        elif self.state == FlowState.CONNECTING:
            self.fail_upstream(errno.ETIMEDOUT, "timed out")

    def on_handshake(self) -> None:
        try:
            data = self.c.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self.close(f"client read: {exc.strerror}")
            return
        self.carry_out(self.handshake.receive(data) if data else self.handshake.client_closed())

    def _send_quietly(self, data: bytes) -> bool:
        try:
            return self.c.send(data) == len(data)
        except OSError:
            return False

    def start_connect(self) -> None:
        assert self.upstream is not None
        host, port = self.upstream.host, self.upstream.port
        self.state = FlowState.CONNECTING
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
        if self.state != FlowState.CONNECTING:
            return
        self.connect(infos[0][4][0], port)

    def connect(self, addr: str, port: int) -> None:
        self.state = FlowState.CONNECTING
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
        try:
            bound: tuple[str, int] | None = self.u.getsockname()[:2]
        except OSError:
            bound = None
        self.carry_out(self.handshake.connected(bound))

    def fail_upstream(self, err: int, why: str) -> None:
        if self.state == FlowState.CLOSED:
            return
        self.server.metrics.upstream_failures.labels(errno.errorcode.get(err, str(err))).inc()
        self.carry_out(self.handshake.upstream_failed(err, why, self.dest))

    # classification ---------------------------------------------------------------------
    def start_sniffing(self) -> None:
        self.state = FlowState.SNIFFING
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
        if self.sniffer is None:
            self.sniffer = Sniffer()
        result = self.sniffer.feed(self.buf)
        if result is None:
            return False
        self.sniffed = result
        if result.protocol == Protocol.UNKNOWN:
            # decided by the destination address (and a CONNECT name) alone: an IP rule
            # still applies, so unparseable bytes are no way around a block
            self.server.metrics.sniff_failures.labels("unknown").inc()
            self.server.metrics.unparsed.labels(result.unparsed or "malformed").inc()
        elif result.host is None:
            self.server.metrics.sniff_failures.labels(f"{result.protocol.value}-no-name").inc()
        self.decide_and_relay()
        return True

    def on_server_first(self) -> None:
        self.server.metrics.sniff_failures.labels("server-first").inc()
        self.decide_and_relay()

    def names(self) -> list[str]:
        out: list[str] = []
        if self.upstream is not None and self.upstream.is_name:
            out.append(self.upstream.host)
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
        verdict = self.server.decide_flow(self)
        self.verdict = verdict
        self.server.count_verdict(self, verdict, new=True)
        if verdict.action == Action.BLOCK:
            self.block()
            return
        self.state = FlowState.RELAYING
        self.up = Direction(self, self.c, self.u, up=True)
        self.down = Direction(self, self.u, self.c, up=False)
        if verdict.action == Action.THROTTLE:
            rate = float(verdict.rate_kbps or 0) * 1000.0
            if self.server.config.throttle_scope == ThrottleScope.SUBSCRIBER:
                for direction in (self.up, self.down):
                    key = self.shared_key(verdict, direction.up)
                    direction.join_shared(self.server.acquire_bucket(key, rate))
                    direction.shared.set_rate(rate)  # type: ignore[union-attr]
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
        if self.state == FlowState.RELAYING:
            self.down.start_reading()

    def block(self) -> None:
        assert self.verdict is not None
        if self.sniffed is not None and self.sniffed.protocol == Protocol.HTTP:
            host = self.sniffed.host or (self.upstream.host if self.upstream else None)
            self._send_quietly(block_response(host, self.verdict, self.server.config.operator_url))
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
        if self.state != FlowState.RELAYING or self.verdict is None:
            return
        new = self.server.decide_flow(self)
        old = self.verdict
        if (new.action, new.rate_kbps, new.directives) == (
            old.action,
            old.rate_kbps,
            old.directives,
        ):
            return
        self.server.count_verdict(self, old, new=False, gone=True)
        self.verdict = new
        self.server.count_verdict(self, new, new=False)
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
        if self.state == FlowState.RELAYING:
            self.down.set_rate(rate, self.shared_key(new, False) if shared else None)

    def shared_key(self, verdict: Verdict, up: bool) -> SharedKey:
        """The shared bucket of this flow's subscriber under ``verdict``'s directives."""
        return (self.client_addr, verdict.directives, up)

    # teardown -----------------------------------------------------------------------------
    def maybe_done(self) -> None:
        if self.up is not None and self.down is not None and self.up.shut and self.down.shut:
            self.close("done")

    def abort(self, why: str) -> None:
        """A socket failed: reset both sides so each peer learns the flow is broken."""
        self.close(why, reset=True)

    def close(self, why: str, *, reset: bool = False) -> None:
        if self.state == FlowState.CLOSED:
            return
        was = self.state
        self.state = FlowState.CLOSED
        loop = self.server.loop
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        for direction in (self.up, self.down):
            if direction is not None:
                direction.stop()
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


def original_dst(sock: socket.socket, client: str) -> tuple[str, int]:
    """The address a redirected flow was sent to (nftables REDIRECT / DNAT); ``client`` is
    the peer as accepted, a v4-mapped one already written as IPv4."""
    if ":" in client:
        raw = sock.getsockopt(socket.IPPROTO_IPV6, IP6T_SO_ORIGINAL_DST, 28)
        return parse_original_dst(raw, socket.AF_INET6)
    # IPv4, also on a dual-stack listener (a v4-mapped peer): conntrack has it as IPv4
    raw = sock.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, 16)
    return parse_original_dst(raw, socket.AF_INET)
