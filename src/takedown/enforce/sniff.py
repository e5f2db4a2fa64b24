"""Sans-IO flow classification from the first bytes a client sends.

``sniff(buf)`` takes every byte the client has sent so far (the caller accumulates
segments) and answers ``NEED_MORE`` (None) until it can decide, then a ``Sniffed``:

- TLS: the ClientHello is reassembled from handshake records (a ClientHello may span
  several records and TCP segments) and its server_name extension read;
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


NEED_MORE: Final = None
MAX_SNIFF: Final = 16 * 1024

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


def sniff(buf: bytes) -> Sniffed | None:
    """Classify the client's first bytes; None while more bytes are needed."""
    try:
        return _sniff(bytes(buf[:MAX_SNIFF]))
    except Exception as exc:  # the datapath must never crash on bad input
        return _unknown(f"sniffer error: {type(exc).__name__}")


def _sniff(buf: bytes) -> Sniffed | None:
    if not buf:
        return NEED_MORE
    if buf[0] == _HANDSHAKE:
        return _sniff_tls(buf)
    if buf[:1].isalpha():
        return _sniff_http(buf)
    return _unknown("not TLS or HTTP/1.x")


def _unknown(detail: str) -> Sniffed:
    return Sniffed(Protocol.UNKNOWN, None, detail)


# --- TLS -------------------------------------------------------------------------------


def _sniff_tls(buf: bytes) -> Sniffed | None:
    """Reassemble the first handshake message from records; parse it once complete."""
    message = bytearray()
    pos = 0
    need: int | None = None  # total handshake message length once its header is seen
    while need is None or len(message) < need:
        if pos + _RECORD_HEADER > len(buf):
            return _more_or_too_long(buf)
        ctype, major, minor = buf[pos], buf[pos + 1], buf[pos + 2]
        length = int.from_bytes(buf[pos + 3 : pos + 5], "big")
        if ctype != _HANDSHAKE:
            return _unknown(f"TLS record of type {ctype} before the ClientHello ended")
        if major != 3 or minor > 4:
            return _unknown(f"not a TLS record version: {major}.{minor}")
        if length == 0:
            return _unknown("empty TLS handshake record")
        if length > _MAX_RECORD:
            return _unknown(f"TLS record length {length} too large")
        body_start = pos + _RECORD_HEADER
        fragment = buf[body_start : body_start + length]
        message += fragment
        if need is None and len(message) >= 4:
            if message[0] != _CLIENT_HELLO:
                return _unknown(f"TLS handshake type {message[0]} is not a ClientHello")
            need = 4 + int.from_bytes(message[1:4], "big")
            # A lower bound of the wire bytes the message needs: one header per record.
            if body_start + need - (len(message) - len(fragment)) > MAX_SNIFF:
                return _unknown(f"ClientHello of {need} bytes exceeds {MAX_SNIFF}")
        if len(fragment) < length:
            if need is not None and len(message) >= need:
                break
            return _more_or_too_long(buf)
        pos = body_start + length
    assert need is not None
    return _parse_client_hello(memoryview(bytes(message[4:need])))


def _more_or_too_long(buf: bytes) -> Sniffed | None:
    if len(buf) >= MAX_SNIFF:
        return _unknown(f"no complete ClientHello in the first {MAX_SNIFF} bytes")
    return NEED_MORE


class _Malformed(Exception):
    pass


class _Reader:
    """Bounds-checked reads over a ClientHello; raises _Malformed past the end."""

    def __init__(self, data: memoryview) -> None:
        self.data = data
        self.pos = 0

    def left(self) -> int:
        return len(self.data) - self.pos

    def take(self, n: int, what: str) -> memoryview:
        if n > self.left():
            raise _Malformed(f"{what} runs past the end")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def uint(self, size: int, what: str) -> int:
        return int.from_bytes(self.take(size, what), "big")

    def vector(self, size: int, what: str) -> memoryview:
        return self.take(self.uint(size, f"{what} length"), what)


def _parse_client_hello(body: memoryview) -> Sniffed:
    try:
        return _client_hello(_Reader(body))
    except _Malformed as exc:
        return _unknown(f"malformed ClientHello: {exc}")


def _client_hello(r: _Reader) -> Sniffed:
    r.take(2, "legacy_version")
    r.take(32, "random")
    if len(r.vector(1, "session_id")) > 32:
        raise _Malformed("session_id longer than 32 bytes")
    suites = r.vector(2, "cipher_suites")
    if not suites or len(suites) % 2:
        raise _Malformed("cipher_suites length is zero or odd")
    if not r.vector(1, "compression_methods"):
        raise _Malformed("no compression_methods")
    if r.left() == 0:
        return Sniffed(Protocol.TLS, None, "no extensions")
    ext = _Reader(r.vector(2, "extensions"))
    if r.left():
        raise _Malformed("bytes after the extensions")
    seen: set[int] = set()
    server_name: memoryview | None = None
    while ext.left():
        etype = ext.uint(2, "extension type")
        data = ext.vector(2, f"extension {etype}")
        if etype in seen:
            raise _Malformed(f"duplicate extension {etype}")
        seen.add(etype)
        if etype == _EXT_SERVER_NAME:
            server_name = data
    if server_name is None:
        return Sniffed(Protocol.TLS, None, "no server_name extension")
    return _server_name(_Reader(server_name))


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
        return _unknown("not TLS or HTTP/1.x")
    method = buf[:space]
    if method not in METHODS:
        return _unknown(f"unknown HTTP method {method[:16]!r}")
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
        return _unknown(f"no end of HTTP headers in the first {MAX_SNIFF} bytes")
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
