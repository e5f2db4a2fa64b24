"""The client side of a flow until its upstream is open, sans-IO (mitmproxy's layers).

The parsers take the bytes buffered so far and say "incomplete" (None), "done" (an
Upstream) or refuse (InputError / SocksError). ``Handshake`` drives them for one flow: the
server feeds it what the client sent and what happened upstream, and it answers with
commands (send these bytes, open this upstream, start sniffing with these bytes, close for
this reason). Nothing here touches a socket, so every path is tested with byte strings.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import struct
from dataclasses import dataclass
from enum import StrEnum

from takedown.enforce.decide import Verdict
from takedown.errors import InputError

MAX_HEAD = 8192  # longest CONNECT request head / SOCKS handshake accepted


class Mode(StrEnum):
    CONNECT = "connect"
    SOCKS5 = "socks5"
    TRANSPARENT = "transparent"


@dataclass(frozen=True, slots=True)
class Upstream:
    """Where a client asked to go: a host name or address literal and a port."""

    host: str
    port: int
    consumed: int = 0  # bytes of the buffer the handshake used; the rest is the client's data

    @property
    def is_name(self) -> bool:
        try:
            ipaddress.ip_address(self.host)
        except ValueError:
            return True
        return False


def parse_connect(buf: bytes) -> Upstream | None:
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
    return Upstream(host, port, end + 4)


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


def parse_socks_request(buf: bytes) -> Upstream | None:
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
    return Upstream(host, port, end + 2)


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


def block_response(host: str | None, verdict: Verdict, operator_url: str | None) -> bytes:
    """The RFC 7725 ``451 Unavailable For Legal Reasons`` answer to a blocked HTTP request."""
    lines = [f"Access to {host or 'this address'} is blocked by order."]
    if verdict.decisions:
        lines.append("Decision(s): " + "; ".join(verdict.decisions))
    if verdict.directives:
        lines.append("Directive(s): " + ", ".join(verdict.directives))
    for url in verdict.reference_urls:
        lines.append(f"Public reference: {url}")
    body = ("\n".join(lines) + "\n").encode("utf-8")
    link = operator_url or (verdict.reference_urls[0] if verdict.reference_urls else None)
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


def bad_gateway(reason: str) -> bytes:
    body = f"upstream connection failed: {reason}\n".encode()
    return (
        b"HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain\r\nConnection: close\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )


def errno_to_socks(err: int) -> int:
    return {
        errno.ECONNREFUSED: SOCKS_REFUSED,
        errno.ENETUNREACH: SOCKS_NET_UNREACHABLE,
        errno.EHOSTUNREACH: SOCKS_HOST_UNREACHABLE,
        errno.ETIMEDOUT: SOCKS_TTL_EXPIRED,
    }.get(err, SOCKS_GENERAL_FAILURE)


# -- the handshake machine -----------------------------------------------------------------

BAD_REQUEST = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
CONNECTION_ESTABLISHED = b"HTTP/1.1 200 Connection established\r\n\r\n"
SOCKS_METHOD_REFUSED = bytes([SOCKS_VERSION, SOCKS_NO_METHOD])
SOCKS_METHOD_CHOSEN = bytes([SOCKS_VERSION, SOCKS_NO_AUTH])
CLIENT_GONE = "client gone before the tunnel opened"


@dataclass(frozen=True, slots=True)
class Send:
    """Send ``data`` to the client; if it does not all go and ``fail_reason`` is set, close
    the flow for that reason (otherwise the send is best effort)."""

    data: bytes
    fail_reason: str | None = None


@dataclass(frozen=True, slots=True)
class OpenUpstream:
    """Connect to ``upstream`` (resolving a name first)."""

    upstream: Upstream


@dataclass(frozen=True, slots=True)
class StartSniffing:
    """The tunnel is open: classify the flow, starting from the client's ``data`` so far."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Close:
    """Close the flow; ``reset`` with an RST; ``handshake_error``: the client broke the
    protocol (counted per mode)."""

    reason: str
    reset: bool = False
    handshake_error: bool = False


Command = Send | OpenUpstream | StartSniffing | Close


class Handshake:
    """One flow's handshake in ``mode``: fed events, it returns the commands to carry out.

    Events: ``receive`` (client bytes), ``client_closed``, ``redirected`` (transparent mode:
    the original destination), ``connected`` (upstream open), ``upstream_failed``. After
    OpenUpstream the client's further bytes wait until ``connected``; after StartSniffing or
    Close the machine is done.
    """

    __slots__ = ("buf", "greeted", "mode", "upstream")

    def __init__(self, mode: Mode) -> None:
        self.mode = mode
        self.buf = bytearray()
        self.greeted = False  # SOCKS5: the method selection was answered
        self.upstream: Upstream | None = None

    def receive(self, data: bytes) -> list[Command]:
        """The client sent ``data`` (CONNECT or SOCKS5 mode, before the upstream opens)."""
        if self.mode == Mode.TRANSPARENT:
            raise ValueError("a transparent flow has no handshake to receive")
        self.buf += data
        if self.upstream is not None:
            return []  # the client's first bytes: kept for sniffing once connected
        out: list[Command] = []
        try:
            if self.mode == Mode.CONNECT:
                upstream = parse_connect(bytes(self.buf))
            else:
                upstream = self._socks_step(out)
        except SocksError as exc:
            out.append(Send(socks_reply(exc.reply) if self.greeted else SOCKS_METHOD_REFUSED))
            out.append(Close(str(exc), handshake_error=True))
            return out
        except InputError as exc:
            return [*out, Send(BAD_REQUEST), Close(str(exc), handshake_error=True)]
        if upstream is not None:
            del self.buf[: upstream.consumed]
            self.upstream = upstream
            out.append(OpenUpstream(upstream))
        return out

    def _socks_step(self, out: list[Command]) -> Upstream | None:
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
            out.append(Send(SOCKS_METHOD_CHOSEN))
        return parse_socks_request(bytes(self.buf))

    def client_closed(self) -> list[Command]:
        """The client closed before the handshake completed."""
        return [Close("client closed during handshake")]

    def redirected(self, dest: tuple[str, int], listener: tuple[str, int]) -> list[Command]:
        """Transparent mode: the flow was sent to ``dest`` and redirected to ``listener``."""
        if dest == (listener[0].removeprefix("::ffff:"), listener[1]):
            return [Close("not redirected (destination is the listener)", reset=True)]
        self.upstream = Upstream(dest[0], dest[1])
        return [OpenUpstream(self.upstream)]

    def connected(self, bound: tuple[str, int] | None) -> list[Command]:
        """The upstream connection is open (``bound``: its local address, if known)."""
        start = StartSniffing(bytes(self.buf))
        self.buf = bytearray()
        if self.mode == Mode.CONNECT:
            return [Send(CONNECTION_ESTABLISHED, CLIENT_GONE), start]
        if self.mode == Mode.SOCKS5:
            return [Send(socks_reply(SOCKS_OK, bound), CLIENT_GONE), start]
        return [start]

    def upstream_failed(self, err: int, why: str, dest: tuple[str, int] | None) -> list[Command]:
        """Connecting to ``dest`` failed with errno ``err`` (or timed out / did not resolve)."""
        reason = f"upstream {dest}: {why}"
        if self.mode == Mode.CONNECT:
            return [Send(bad_gateway(why)), Close(reason)]
        if self.mode == Mode.SOCKS5:
            return [Send(socks_reply(errno_to_socks(err))), Close(reason)]
        return [Close(reason, reset=True)]
