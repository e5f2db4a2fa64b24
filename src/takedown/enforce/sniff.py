"""Sans-IO flow classification from the first bytes a client sends.

A ``Sniffer`` is fed every byte the client has sent so far (the caller accumulates
segments) and answers ``NEED_MORE`` (None) until it can decide, then a ``Sniffed``;
``sniff(buf)`` is the same in one call:

- TLS: the ClientHello is reassembled from handshake records (a ClientHello may span
  several records and TCP segments) and its server_name extension read as soon as it has
  arrived, whatever follows it;
- HTTP/1.x: the request line and headers up to the blank line; the absolute-form
  request target, else the Host header, names the host;
- anything else: UNKNOWN, with ``detail`` saying why.

It never raises and never asks for more than ``MAX_SNIFF`` bytes: for any buffer of
that length or longer the answer is a verdict.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from takedown.errors import TakedownError
from takedown.names import normalise_host


class Protocol(StrEnum):
    TLS = "tls"
    HTTP = "http"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Sniffed:
    """A verdict: the protocol and the normalised host name it revealed (or None).

    ``detail`` says why the protocol is unknown or why no host was found. ``names`` holds
    every valid name the flow revealed (for HTTP, the request target's host and the Host
    header may differ); ``host`` is the one the server will act on.
    """

    protocol: Protocol
    host: str | None
    detail: str = ""
    names: tuple[str, ...] = ()
    unparsed: str = ""  # for UNKNOWN: one of UNPARSED_REASONS, a metric label


# Why a flow's first bytes gave no verdict (the enforcement point counts each): the window
# ran out, the bytes break TLS or HTTP/1.x, they are some other protocol, or a bug.
UNPARSED_REASONS: Final = ("window", "malformed", "other-protocol", "error")


NEED_MORE: Final = None
# Past this many bytes without a verdict a flow is decided by its address alone. A
# ClientHello is legally larger than one record (post-quantum key shares, padding); the
# server_name is read wherever it lies within this window.
MAX_SNIFF: Final = 64 * 1024

_HANDSHAKE: Final = 22
_CLIENT_HELLO: Final = 1
_RECORD_HEADER: Final = 5
_MAX_RECORD: Final = 16384 + 2048  # TLSPlaintext may not exceed 2^14; allow slack
_EXT_SERVER_NAME: Final = 0
_NAME_TYPE_HOST: Final = 0

METHODS: Final = frozenset(
    {b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"CONNECT", b"OPTIONS", b"TRACE", b"PATCH"}
)
_MAX_METHOD: Final = max(len(m) for m in METHODS)
_TOKEN_CHARS: Final = frozenset(
    b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)


class Sniffer:
    """One flow's classification, fed the client's bytes as they arrive.

    ``feed(buf)`` takes everything received so far (the caller's growing buffer, at most
    ``limit`` bytes are looked at) and answers NEED_MORE (None) or the verdict, which then
    never changes. Work done on earlier segments is kept, so a ClientHello dripped a byte
    at a time costs about what one segment costs. Never raises.
    """

    __slots__ = ("_http_scanned", "_limit", "_tls", "verdict")

    def __init__(self, limit: int = MAX_SNIFF) -> None:
        self._limit = limit
        self._tls: _TlsHello | None = None
        self._http_scanned = -1  # bytes an HTTP head was last parsed at (-1: never)
        self.verdict: Sniffed | None = None

    def feed(self, buf: bytes | bytearray | memoryview) -> Sniffed | None:
        """Classify ``buf`` (all bytes so far); None while more bytes are needed."""
        if self.verdict is not None:
            return self.verdict
        if len(buf) > self._limit:
            buf = buf[: self._limit]
        try:
            verdict = self._step(buf)
        except Exception as exc:  # the datapath must never crash on bad input
            verdict = _unknown(f"sniffer error: {type(exc).__name__}", "error")
        if verdict is None and len(buf) >= self._limit:
            verdict = _unknown(f"no verdict in the first {self._limit} bytes", "window")
        self.verdict = verdict
        return verdict

    def _step(self, buf: bytes | bytearray | memoryview) -> Sniffed | None:
        if not buf:
            return NEED_MORE
        if buf[0] == _HANDSHAKE:
            if self._tls is None:
                self._tls = _TlsHello()
            return self._tls.feed(buf)
        if not bytes(buf[:1]).isalpha():
            return _unknown("not TLS or HTTP/1.x", "other-protocol")
        # Only a line end can complete the head: skip segments without one (a slow drip
        # of one long header costs one parse, not one per segment).
        scanned = self._http_scanned
        if scanned >= 0 and len(buf) < self._limit and b"\n" not in buf[scanned:]:
            return NEED_MORE
        self._http_scanned = len(buf)
        return _sniff_http(bytes(buf))


def sniff(buf: bytes | bytearray | memoryview) -> Sniffed | None:
    """Classify the client's first bytes in one go; None while more bytes are needed."""
    return Sniffer().feed(buf)


def _sniff(buf: bytes) -> Sniffed | None:
    """``sniff`` without its safety net (tests: an exception here is a bug)."""
    return Sniffer()._step(buf[:MAX_SNIFF])


def _unknown(detail: str, unparsed: str = "malformed") -> Sniffed:
    return Sniffed(Protocol.UNKNOWN, None, detail, unparsed=unparsed)


# --- TLS -------------------------------------------------------------------------------


class _Malformed(Exception):
    pass


class _TlsHello:
    """Incremental ClientHello reader: wire bytes in, a verdict as soon as it is known.

    Records are reassembled into the handshake message as they arrive (a ClientHello may
    span many records and TCP segments), and the message is walked field by field with a
    cursor that never goes back, so feeding a byte at a time costs no more than one feed
    of the whole. The walk stops at the first server_name extension: whatever follows it
    (a padding extension of any size, a post-quantum key share, garbage) cannot delay or
    change the verdict. Each step is O(bytes fed).
    """

    __slots__ = (
        "_cursor",
        "_ext_end",
        "_fixed_end",
        "_frag_left",
        "_msg",
        "_need",
        "_pos",
        "_seen",
    )

    def __init__(self) -> None:
        self._pos = 0  # wire offset of the next record header
        self._frag_left = 0  # bytes of the current record's fragment still to come
        self._msg = bytearray()  # the handshake message so far (header included)
        self._need: int | None = None  # its total length once the header is read
        self._fixed_end: int | None = None  # offset where the extensions block starts
        self._ext_end: int | None = None
        self._cursor = 0  # next extension's offset
        self._seen: set[int] = set()

    def feed(self, wire: bytes) -> Sniffed | None:
        """``wire`` is every byte received so far (a longer copy of the last call's)."""
        problem = self._reassemble(wire)
        try:
            verdict = self._walk()  # what arrived intact before a bad record still counts
        except _Malformed as exc:
            return _unknown(f"malformed ClientHello: {exc}")
        if verdict is NEED_MORE and problem is not None:
            return _unknown(problem)
        return verdict

    def _reassemble(self, wire: bytes) -> str | None:
        while self._need is None or len(self._msg) < self._need:
            if self._frag_left:
                chunk = wire[self._pos : self._pos + self._frag_left]
                if not chunk:
                    return None
                self._msg += chunk
                self._pos += len(chunk)
                self._frag_left -= len(chunk)
            else:
                if self._pos + _RECORD_HEADER > len(wire):
                    return None
                ctype, major, minor = wire[self._pos], wire[self._pos + 1], wire[self._pos + 2]
                length = int.from_bytes(wire[self._pos + 3 : self._pos + 5], "big")
                if ctype != _HANDSHAKE:
                    return f"TLS record of type {ctype} before the ClientHello ended"
                if major != 3 or minor > 4:
                    return f"not a TLS record version: {major}.{minor}"
                if length == 0:
                    return "empty TLS handshake record"
                if length > _MAX_RECORD:
                    return f"TLS record length {length} too large"
                self._pos += _RECORD_HEADER
                self._frag_left = length
            if self._need is None and len(self._msg) >= 4:
                if self._msg[0] != _CLIENT_HELLO:
                    return f"TLS handshake type {self._msg[0]} is not a ClientHello"
                self._need = 4 + int.from_bytes(self._msg[1:4], "big")
        return None

    def _walk(self) -> Sniffed | None:
        if self._need is None:
            return NEED_MORE
        have = min(len(self._msg), self._need)
        if self._fixed_end is None:
            fixed = _fixed_part(memoryview(self._msg)[4:have], complete=have == self._need)
            if fixed is None:
                return NEED_MORE
            self._fixed_end = 4 + fixed
            if self._fixed_end == self._need:
                return Sniffed(Protocol.TLS, None, "no extensions")
            if self._fixed_end + 2 > self._need:
                raise _Malformed("extensions length runs past the end")
        if self._ext_end is None:
            if self._fixed_end + 2 > have:
                return NEED_MORE
            length = int.from_bytes(self._msg[self._fixed_end : self._fixed_end + 2], "big")
            self._ext_end = self._fixed_end + 2 + length
            if self._ext_end > self._need:
                raise _Malformed("extensions runs past the end")
            if self._ext_end < self._need:
                raise _Malformed("bytes after the extensions")
            self._cursor = self._fixed_end + 2
        msg = self._msg
        while self._cursor < self._ext_end:
            if self._cursor + 4 > self._ext_end:
                raise _Malformed("extension type runs past the end")
            if self._cursor + 4 > have:
                return NEED_MORE
            etype = int.from_bytes(msg[self._cursor : self._cursor + 2], "big")
            size = int.from_bytes(msg[self._cursor + 2 : self._cursor + 4], "big")
            data_end = self._cursor + 4 + size
            if data_end > self._ext_end:
                raise _Malformed(f"extension {etype} runs past the end")
            if etype in self._seen:
                raise _Malformed(f"duplicate extension {etype}")
            if etype == _EXT_SERVER_NAME:
                if data_end > have:
                    return NEED_MORE
                return _server_name(_Reader(memoryview(bytes(msg[self._cursor + 4 : data_end]))))
            self._seen.add(etype)
            # skip the data without waiting for it: only the extension headers matter
            self._cursor = data_end
        return Sniffed(Protocol.TLS, None, "no server_name extension")


def _fixed_part(body: memoryview, *, complete: bool) -> int | None:
    """Length of the ClientHello's fields before the extensions; None until they arrived."""
    r = _Reader(body)
    try:
        r.take(2, "legacy_version")
        r.take(32, "random")
        if len(r.vector(1, "session_id")) > 32:
            raise _Malformed("session_id longer than 32 bytes")
        suites = r.vector(2, "cipher_suites")
        if not suites or len(suites) % 2:
            raise _Malformed("cipher_suites length is zero or odd")
        if not r.vector(1, "compression_methods"):
            raise _Malformed("no compression_methods")
    except _Short:
        if complete:
            raise _Malformed("the fixed fields run past the end") from None
        return None
    return r.pos


class _Short(_Malformed):
    """A read past the bytes received so far (more may come)."""


class _Reader:
    """Bounds-checked reads; raises _Short past the end of the data it holds."""

    def __init__(self, data: memoryview) -> None:
        self.data = data
        self.pos = 0

    def left(self) -> int:
        return len(self.data) - self.pos

    def take(self, n: int, what: str) -> memoryview:
        if n > self.left():
            raise _Short(f"{what} runs past the end")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def uint(self, size: int, what: str) -> int:
        return int.from_bytes(self.take(size, what), "big")

    def vector(self, size: int, what: str) -> memoryview:
        return self.take(self.uint(size, f"{what} length"), what)


def _server_name(r: _Reader) -> Sniffed:
    names = _Reader(r.vector(2, "server_name_list"))
    if r.left():
        raise _Malformed("bytes after server_name_list")
    while names.left():
        name_type = names.uint(1, "name_type")
        raw = bytes(names.vector(2, "server name"))
        if name_type == _NAME_TYPE_HOST:
            return _tls_host(raw)
    return Sniffed(Protocol.TLS, None, "no host_name in server_name")


def _tls_host(raw: bytes) -> Sniffed:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return Sniffed(Protocol.TLS, None, "server name is not UTF-8")
    host, why = _valid_host(text)
    if host is None:
        return Sniffed(Protocol.TLS, None, f"server name {text[:80]!r}: {why}")
    return Sniffed(Protocol.TLS, host, "", (host,))


def _valid_host(text: str) -> tuple[str | None, str]:
    """The normalised host name, or None and the reason it is not one."""
    if not text or len(text) > 1024:
        return None, "empty or too long"
    try:
        ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        pass
    else:
        return None, "an address literal, not a name"
    try:
        return normalise_host(text), ""
    except TakedownError as exc:
        return None, exc.message


# --- HTTP/1.x --------------------------------------------------------------------------


def _sniff_http(buf: bytes) -> Sniffed | None:
    space = buf.find(b" ", 0, _MAX_METHOD + 1)
    if space < 0:
        if len(buf) <= _MAX_METHOD and any(m.startswith(buf) for m in METHODS):
            return NEED_MORE
        return _unknown("not TLS or HTTP/1.x", "other-protocol")
    method = buf[:space]
    if method not in METHODS:
        return _unknown(f"unknown HTTP method {method[:16]!r}", "other-protocol")
    line_end = buf.find(b"\r\n")
    if line_end < 0:
        line = buf[space + 1 :]
        if line.endswith(b"\r"):
            line = line[:-1]  # the CR of a CRLF whose LF has not arrived yet
    else:
        line = buf[space + 1 : line_end]
    bad = _bad_request_line(line, complete=line_end >= 0)
    if bad:
        return _unknown(bad)
    if line_end < 0:
        return _more_or_too_long_http(buf)
    head_end = buf.find(b"\r\n\r\n", line_end)
    if head_end < 0:
        return _more_or_too_long_http(buf)
    target = line.split(b" ", 1)[0]
    return _http_verdict(method, target, buf[line_end + 2 : head_end + 2])


def _more_or_too_long_http(buf: bytes) -> Sniffed | None:
    if len(buf) >= MAX_SNIFF:
        return _unknown(f"no end of HTTP headers in the first {MAX_SNIFF} bytes", "window")
    return NEED_MORE


def _bad_request_line(line: bytes, *, complete: bool) -> str:
    """Why ``line`` (request target and version, possibly incomplete) is not HTTP/1.x."""
    parts = line.split(b" ")
    if len(parts) > 2 or (not parts[0] and (complete or line)):
        return "malformed HTTP request line"
    target = parts[0]
    if any(c <= 0x20 or c >= 0x7F for c in target):
        return "malformed HTTP request target"
    if len(parts) == 1:
        return "HTTP/0.9 or malformed request line" if complete else ""
    version = parts[1]
    want = b"HTTP/1."
    if complete:
        if len(version) != 8 or not version.startswith(want) or version[7:] not in (b"0", b"1"):
            return f"not an HTTP/1.x request: {version[:16]!r}"
        return ""
    if not (want.startswith(version) or version.startswith(want)):
        return f"not an HTTP/1.x request: {version[:16]!r}"
    if len(version) > 8 or (len(version) == 8 and version[7:] not in (b"0", b"1")):
        return f"not an HTTP/1.x request: {version[:16]!r}"
    return ""


def _http_verdict(method: bytes, target: bytes, headers: bytes) -> Sniffed:
    hosts: list[bytes] = []
    for line in headers.split(b"\r\n"):
        if not line:
            continue
        if line[:1] in (b" ", b"\t"):
            continue  # obsolete line folding: a continuation, never a Host header
        name, colon, value = line.partition(b":")
        if not colon or not name or any(c not in _TOKEN_CHARS for c in name):
            return _unknown("malformed HTTP header line")
        if name.lower() == b"host":
            hosts.append(value.strip(b" \t"))
    from_target: bytes | None = None
    lowered = target.lower()
    if lowered.startswith((b"http://", b"https://")):
        rest = target.split(b"//", 1)[1]
        authority = rest.split(b"/", 1)[0].split(b"?", 1)[0].split(b"#", 1)[0]
        from_target = authority.rpartition(b"@")[2]
    elif method == b"CONNECT":
        from_target = target
    names: list[str] = []
    details: list[str] = []
    candidates = ([from_target] if from_target is not None else []) + hosts
    for raw in candidates:
        host, why = _http_host(raw)
        if host is None:
            details.append(why)
        elif host not in names:
            names.append(host)
    if len(hosts) > 1:
        details.append("several Host headers")
    # RFC 9112 3.2.2: an absolute-form target overrides the Host header.
    if from_target is not None:
        primary, _ = _http_host(from_target)
    elif len(hosts) == 1:
        primary, _ = _http_host(hosts[0])
    else:
        primary = None
        if not hosts:
            details.append("no Host header")
    return Sniffed(Protocol.HTTP, primary, "; ".join(details), tuple(names))


def _http_host(raw: bytes) -> tuple[str | None, str]:
    """The host of a Host header value or authority (port stripped), or None and why."""
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        return None, "Host is not ASCII"
    if not text:
        return None, "empty Host"
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            return None, f"malformed Host {text[:80]!r}"
        rest = text[end + 1 :]
        if rest and not (rest.startswith(":") and rest[1:].isdigit()):
            return None, f"malformed Host {text[:80]!r}"
        return None, "Host is an address literal"
    name, colon, port = text.rpartition(":")
    if not colon:
        name = text
    elif not port.isdigit() and port:
        return None, f"malformed Host port {text[:80]!r}"
    host, why = _valid_host(name)
    if host is None:
        return None, f"Host {name[:80]!r}: {why}"
    return host, ""
