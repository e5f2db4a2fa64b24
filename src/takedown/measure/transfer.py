"""Achieved rate of a real transfer (download, optionally upload), and a verdict vs a control.

The transfer runs over httpcore (httpx's transport layer) with a network backend that
applies ``resolve`` (host name -> address, like curl's ``--connect-to``) and tunnels
through a proxy itself: ``http://`` proxies get a CONNECT tunnel for every request (plain
HTTP too), ``socks5://`` / ``socks5h://`` proxies a SOCKS5 CONNECT. The name stays in the
URL, so the Host header, the TLS SNI and certificate verification all use it; the proxy
is asked for the resolved address when ``resolve`` maps the host, else for the name.
"""

from __future__ import annotations

import ipaddress
import math
import ssl
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

import httpcore

from takedown.errors import InputError
from takedown.names import resolve_lookup

CHUNK = 64 * 1024
USER_AGENT = b"takedown-measure/1"
Verdict = Literal["throttled", "normal", "inconclusive"]
_NET_ERRORS = (
    httpcore.TimeoutException,
    httpcore.NetworkError,
    httpcore.ProtocolError,
    httpcore.ProxyError,
    httpcore.UnsupportedProtocol,
    ssl.SSLError,
    OSError,
)


@dataclass(frozen=True, slots=True)
class TransferResult:
    """One direction of a transfer: body bytes, the steady part's duration and rate.

    ``seconds`` runs from the first body chunk to the last (download) or from the first
    chunk sent to the response (upload); ``kbps`` is kbit/s over that span, excluding
    the first chunk for downloads. ``status`` is the HTTP status (None if none came),
    ``error`` a one-line reason when the transfer failed or was too short to measure.
    """

    bytes: int
    seconds: float
    kbps: float
    status: int | None
    error: str | None = None
    direction: Literal["download", "upload"] = "download"
    upload: TransferResult | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "direction": self.direction,
            "bytes": self.bytes,
            "seconds": round(self.seconds, 6),
            "kbps": round(self.kbps, 3),
            "status": self.status,
            "error": self.error,
        }
        if self.upload is not None:
            out["upload"] = self.upload.to_dict()
        return out


@dataclass(frozen=True, slots=True)
class Comparison:
    """A target's rate against a control's: ratio and verdict."""

    verdict: Verdict
    ratio: float
    threshold: float

    def to_dict(self) -> dict[str, Any]:
        ratio = None if math.isnan(self.ratio) else round(self.ratio, 6)
        return {"verdict": self.verdict, "ratio": ratio, "threshold": self.threshold}


def compare(target: TransferResult, control: TransferResult, threshold: float = 0.5) -> Comparison:
    """``throttled`` when the target's rate is below ``threshold`` times the control's.

    ``inconclusive`` when either transfer failed or the control moved nothing.
    """
    if not 0 < threshold <= 1:
        raise InputError(f"threshold must be in (0, 1], not {threshold}", where="threshold")
    if target.error or control.error or control.kbps <= 0:
        return Comparison("inconclusive", math.nan, threshold)
    ratio = target.kbps / control.kbps
    return Comparison("throttled" if ratio < threshold else "normal", ratio, threshold)


def measure_transfer(
    url: str,
    *,
    proxy: str | None = None,
    source: str | None = None,
    resolve: Mapping[str, str] | None = None,
    seconds: float = 5.0,
    upload: bool = False,
    verify: bool | str | ssl.SSLContext = True,
    timeout: float = 10.0,
) -> TransferResult:
    """Download ``url`` for at most ``seconds`` (and then POST to it for as long if ``upload``).

    ``proxy``: ``http://H:P`` (CONNECT) or ``socks5://H:P``; ``source``: local address to
    bind; ``resolve``: host -> address; ``verify``: True, False, a CA file or an SSLContext.
    Network failures are reported in ``error``, never raised.
    """
    if seconds <= 0:
        raise InputError("seconds must be positive", where="seconds")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InputError(f"not an http(s) URL: {url!r}", where="url")
    backend = TunnelBackend(
        proxy=_parse_proxy(proxy) if proxy else None,
        resolve=dict(resolve or {}),
    )
    with httpcore.ConnectionPool(
        ssl_context=_ssl_context(verify),
        local_address=source,
        network_backend=backend,
        max_connections=1,
        http1=True,
        http2=False,
    ) as pool:
        down = _download(pool, url, seconds, timeout)
        if not upload:
            return down
        up = _upload(pool, url, seconds, timeout)
    return TransferResult(
        down.bytes, down.seconds, down.kbps, down.status, down.error, "download", up
    )


def _kbps(nbytes: int, seconds: float) -> float:
    return nbytes * 8 / 1000 / seconds if seconds > 0 else 0.0


def _timeouts(timeout: float) -> dict[str, Any]:
    return {"timeout": {"connect": timeout, "read": timeout, "write": timeout, "pool": timeout}}


def _download(
    pool: httpcore.ConnectionPool, url: str, seconds: float, timeout: float
) -> TransferResult:
    total = first_len = 0
    status: int | None = None
    t_first = t_last = 0.0
    headers = [(b"User-Agent", USER_AGENT), (b"Accept-Encoding", b"identity")]
    try:
        with pool.stream("GET", url, headers=headers, extensions=_timeouts(timeout)) as resp:
            status = resp.status
            for chunk in resp.iter_stream():
                now = time.monotonic()
                if not total:
                    t_first, first_len = now, len(chunk)
                total += len(chunk)
                t_last = now
                if now - t_first >= seconds:
                    break
    except _NET_ERRORS as exc:
        return TransferResult(total, t_last - t_first, 0.0, status, _describe(exc))
    span = t_last - t_first
    if span <= 0:
        return TransferResult(total, 0.0, 0.0, status, "transfer too short to measure a rate")
    return TransferResult(total, span, _kbps(total - first_len, span), status)


def _upload(
    pool: httpcore.ConnectionPool, url: str, seconds: float, timeout: float
) -> TransferResult:
    sent = 0
    t_first = 0.0
    block = bytes(CHUNK)

    def body() -> Iterator[bytes]:
        nonlocal sent, t_first
        t_first = time.monotonic()
        while time.monotonic() - t_first < seconds:
            yield block
            sent += len(block)

    headers = [(b"User-Agent", USER_AGENT), (b"Content-Type", b"application/octet-stream")]
    status: int | None = None
    try:
        resp = pool.request(
            "POST", url, headers=headers, content=body(), extensions=_timeouts(timeout)
        )
        status = resp.status
    except _NET_ERRORS as exc:
        span = time.monotonic() - t_first if t_first else 0.0
        return TransferResult(sent, span, 0.0, status, _describe(exc), "upload")
    span = time.monotonic() - t_first
    return TransferResult(sent, span, _kbps(sent, span), status, None, "upload")


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}".splitlines()[0]


def _ssl_context(verify: bool | str | ssl.SSLContext) -> ssl.SSLContext:
    if isinstance(verify, ssl.SSLContext):
        return verify
    if verify is False:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    if isinstance(verify, str):
        try:
            return ssl.create_default_context(cafile=verify)
        except (OSError, ssl.SSLError) as exc:
            raise InputError(f"cannot load CA file: {exc}", where=verify) from None
    return ssl.create_default_context()


# --- network backend: resolve and proxy tunnels -----------------------------------------


@dataclass(frozen=True, slots=True)
class _Proxy:
    kind: Literal["http", "socks5"]
    host: str
    port: int


def _parse_proxy(proxy: str) -> _Proxy:
    parts = urlsplit(proxy)
    kinds = {"http": "http", "socks5": "socks5", "socks5h": "socks5"}
    kind = kinds.get(parts.scheme)
    try:
        port = parts.port
    except ValueError:
        port = None
    if kind is None or not parts.hostname or port is None:
        raise InputError(
            f"proxy must be http://HOST:PORT or socks5://HOST:PORT, not {proxy!r}", where="proxy"
        )
    return _Proxy(kind, parts.hostname, port)  # type: ignore[arg-type]


class TunnelBackend(httpcore.NetworkBackend):
    """Connects to ``resolve[host]`` (or ``host``), directly or through a proxy tunnel."""

    def __init__(self, *, proxy: _Proxy | None, resolve: Mapping[str, str]) -> None:
        self.proxy = proxy
        self.resolve = dict(resolve)
        self._inner = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.NetworkStream:
        target = resolve_lookup(self.resolve, host) or host
        if self.proxy is None:
            return self._inner.connect_tcp(target, port, timeout, local_address, socket_options)
        stream = self._inner.connect_tcp(
            self.proxy.host, self.proxy.port, timeout, local_address, socket_options
        )
        try:
            if self.proxy.kind == "http":
                _http_connect(stream, target, port, timeout)
            else:
                _socks5_connect(stream, target, port, timeout)
        except BaseException:
            stream.close()
            raise
        return stream

    def connect_unix_socket(self, *args: Any, **kwargs: Any) -> httpcore.NetworkStream:
        raise httpcore.ConnectError("unix sockets are not supported")

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def _read_exactly(stream: httpcore.NetworkStream, n: int, timeout: float | None) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = stream.read(n - len(buf), timeout)
        if not chunk:
            raise httpcore.ProxyError("proxy closed the connection during the handshake")
        buf += chunk
    return buf


def _authority(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _http_connect(
    stream: httpcore.NetworkStream, host: str, port: int, timeout: float | None
) -> None:
    auth = _authority(host, port)
    stream.write(f"CONNECT {auth} HTTP/1.1\r\nHost: {auth}\r\n\r\n".encode("ascii"), timeout)
    head = b""
    # Byte by byte, so that nothing of the tunnel after the reply is consumed here.
    while not head.endswith(b"\r\n\r\n"):
        head += _read_exactly(stream, 1, timeout)
        if len(head) > 16384:
            raise httpcore.ProxyError("proxy reply header too long")
    line = head.split(b"\r\n", 1)[0].decode("latin-1")
    fields = line.split(" ", 2)
    if len(fields) < 2 or not fields[1].isdigit() or not 200 <= int(fields[1]) < 300:
        raise httpcore.ProxyError(f"proxy refused CONNECT {auth}: {line}")


_SOCKS_ERRORS = {
    1: "general failure",
    2: "not allowed by ruleset",
    3: "network unreachable",
    4: "host unreachable",
    5: "connection refused",
    6: "TTL expired",
    7: "command not supported",
    8: "address type not supported",
}


def _socks5_connect(
    stream: httpcore.NetworkStream, host: str, port: int, timeout: float | None
) -> None:
    stream.write(b"\x05\x01\x00", timeout)
    if _read_exactly(stream, 2, timeout) != b"\x05\x00":
        raise httpcore.ProxyError("SOCKS5 proxy requires authentication or is not SOCKS5")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        name = host.encode("idna")
        addr = b"\x03" + bytes([len(name)]) + name
    else:
        addr = (b"\x01" if ip.version == 4 else b"\x04") + ip.packed
    stream.write(b"\x05\x01\x00" + addr + port.to_bytes(2, "big"), timeout)
    ver, rep, _, atyp = _read_exactly(stream, 4, timeout)
    if ver != 5 or rep != 0:
        reason = _SOCKS_ERRORS.get(rep, f"reply {rep}")
        raise httpcore.ProxyError(f"SOCKS5 proxy refused {_authority(host, port)}: {reason}")
    if atyp == 1:
        _read_exactly(stream, 4 + 2, timeout)
    elif atyp == 4:
        _read_exactly(stream, 16 + 2, timeout)
    elif atyp == 3:
        (length,) = _read_exactly(stream, 1, timeout)
        _read_exactly(stream, length + 2, timeout)
    else:
        raise httpcore.ProxyError(f"SOCKS5 reply with unknown address type {atyp}")
