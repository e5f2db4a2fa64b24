"""The prober: async httpx GETs with bounded everything (the I/O shell around verdict.py).

HTTP/1.1 and HTTP/2 (ALPN), connection reuse, a global and a per-host concurrency limit,
connect/read timeouts plus a total deadline per probe (slow-drip servers), bounded retries
on network errors, at most ``max_body`` bytes of body read, and redirects followed by hand
(at most ``max_redirects``) so that ``connect_to`` applies to every hop.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import re
import socket
import ssl
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from takedown.errors import InputError
from takedown.media.hashing import image_pdq, media_kind
from takedown.model import Verdict
from takedown.verify.aionet import use_asyncio_backend
from takedown.verify.verdict import Markers, Outcome, classify

REDIRECTS = {301, 302, 303, 307, 308}
_HOST_OK = re.compile(r"^(?:[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,62})\.?)+$|^[0-9A-Fa-f:.]+$")


@dataclass(frozen=True, slots=True)
class ProbeSettings:
    concurrency: int = 100
    per_host: int = 32
    connect_timeout: float = 5.0
    read_timeout: float = 10.0
    total_timeout: float = 20.0  # per attempt, across redirects: defeats slow-drip servers
    retries: int = 2  # extra attempts after a network error
    retry_backoff: float = 0.05  # seconds, doubled per attempt
    max_body: int = 64 * 1024
    max_redirects: int = 5
    http2: bool = True
    user_agent: str = "takedown-verify/0.1"


@dataclass(frozen=True, slots=True)
class ProbeResult:
    url: str
    verdict: Verdict
    status: int | None = None
    digest: str | None = None  # sha256 of the body prefix read
    latency_ms: float = 0.0
    reason: str | None = None
    body_bytes: int = 0
    truncated: bool = False
    attempts: int = 1
    http_version: str | None = None
    # an image answer read whole: its PDQ hash and quality (takedown.media)
    pdq: str | None = None
    pdq_quality: int | None = None


@dataclass(frozen=True, slots=True)
class Route:
    """Where a logical host is really reached: ``scheme://address:port`` (curl --connect-to)."""

    scheme: str
    host: str
    port: int


def parse_connect_to(specs: list[str] | tuple[str, ...]) -> dict[str, Route]:
    """``HOST=URL`` items (``twitter.com=http://127.0.0.1:8080``) → {host: Route}."""
    routes: dict[str, Route] = {}
    for spec in specs:
        name, sep, target = spec.partition("=")
        if not sep or not name.strip():
            raise InputError(f"expected HOST=URL, got {spec!r}", where="--connect-to")
        try:
            url = httpx.URL(target.strip())
        except httpx.InvalidURL as exc:
            raise InputError(f"bad URL {target!r}: {exc}", where="--connect-to") from None
        if url.scheme not in ("http", "https") or not url.host:
            raise InputError(f"expected http(s)://ADDR:PORT, got {target!r}", where="--connect-to")
        port = url.port or (443 if url.scheme == "https" else 80)
        routes[name.strip().lower()] = Route(url.scheme, url.host, port)
    return routes


def is_loopback_destination(host: str) -> bool:
    """True for loopback addresses, ``localhost``, and ``.invalid`` names (never resolve)."""
    name = host.strip("[]").lower()
    if name == "localhost" or name.endswith(".invalid") or name == "invalid":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and cur not in seen and len(seen) < 10:
        seen.append(cur)
        cur = cur.__cause__ or cur.__context__
    return seen


def describe_error(exc: BaseException) -> tuple[str, str, bool]:
    """(error kind, reason, retryable) for an exception raised while probing."""
    chain = _chain(exc)
    for e in chain:
        if isinstance(e, ssl.SSLCertVerificationError):
            return "network", f"tls: {e.verify_message or e}", False
        if isinstance(e, ssl.SSLError):
            return "network", f"tls: {e}", False
        if isinstance(e, socket.gaierror):
            return "network", f"dns: {e}", False
    text = str(exc) or exc.__class__.__name__
    if "Name or service not known" in text or "nodename nor servname" in text:
        return "network", f"dns: {text}", False
    if isinstance(exc, httpx.ConnectTimeout):
        return "network", "connect timeout", True
    if isinstance(exc, httpx.ReadTimeout):
        return "network", "read timeout", True
    if isinstance(exc, httpx.TimeoutException):
        return "network", f"timeout: {exc.__class__.__name__}", True
    if isinstance(exc, httpx.ConnectError):
        return "network", f"connect: {text}", True
    if isinstance(exc, httpx.RemoteProtocolError):
        return "protocol", f"protocol: {text}", True
    if isinstance(exc, httpx.ProxyError):
        return "network", f"proxy: {text}", True
    if isinstance(exc, httpx.TransportError):
        return "network", f"{exc.__class__.__name__}: {text}", True
    if isinstance(exc, (httpx.InvalidURL, httpx.UnsupportedProtocol)):
        return "protocol", f"bad url: {text}", False
    return "protocol", f"{exc.__class__.__name__}: {text}", False


class _Failed(Exception):
    def __init__(self, kind: str, reason: str, status: int | None = None) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason
        self.status = status


# httpcore's connection pool rescans every connection for every queued request on each
# state change (O(connections x requests)): at 200 connections in one pool that dominates
# the prober's CPU and throughput falls as concurrency rises. So the prober keeps several
# small pools (transports sharing one TLS context) and lends a slot in one of them per probe:
# a pool never has more requests than connections. Four per pool: each rescan also asks
# every idle connection whether the server closed it (has_expired), so smaller is cheaper
# (bench verify, concurrency 200, one host: 16 per pool ~1,400 checks per CPU-second, 4
# ~2,100, 1 ~2,500), while a few per pool still keep connections to several hosts of a
# platform (pages, media, short links) alive in one pool instead of reconnecting.
POOL_SIZE = 4


@dataclass
class Prober:
    """HTTP clients of one vantage point; use as ``async with Prober(...) as p``."""

    settings: ProbeSettings = field(default_factory=ProbeSettings)
    markers: Markers = field(default_factory=Markers)
    source_address: str | None = None
    proxy: str | None = None
    connect_to: dict[str, Route] = field(default_factory=dict)
    only_loopback: bool = False  # refuse any destination that is not on this machine
    verify: Any = True  # ssl.SSLContext, CA bundle path or bool

    def __post_init__(self) -> None:
        self._transports: list[httpx.AsyncHTTPTransport] = []
        self._slots: asyncio.LifoQueue[int] = asyncio.LifoQueue()
        self._hosts: dict[str, asyncio.Semaphore] = {}
        s = self.settings
        self._timeouts = {
            "connect": s.connect_timeout,
            "read": s.read_timeout,
            "write": s.read_timeout,
            "pool": s.total_timeout,
        }
        # the headers of every probe; no cookies are kept between probes, no compression
        # asked for (the digest is of the bytes as served)
        self._headers = {"User-Agent": s.user_agent, "Accept": "*/*", "Accept-Encoding": "identity"}

    async def __aenter__(self) -> Prober:
        s = self.settings
        ctx = httpx.create_ssl_context(verify=self.verify)  # one TLS context for every pool
        pools = max(1, -(-s.concurrency // POOL_SIZE))
        for k in range(pools):
            size = min(POOL_SIZE, s.concurrency - k * POOL_SIZE)
            transport = httpx.AsyncHTTPTransport(
                http2=s.http2,
                verify=ctx,
                local_address=self.source_address,
                proxy=self.proxy,
                retries=0,
                trust_env=False,  # never an environment proxy or CA: probes go where we say
                limits=httpx.Limits(max_connections=size, max_keepalive_connections=size),
            )
            self._transports.append(use_asyncio_backend(transport))
            for _ in range(size):
                self._slots.put_nowait(k)
        return self

    async def __aexit__(self, *exc: object) -> None:
        transports, self._transports = self._transports, []
        for transport in transports:
            await transport.aclose()

    def _physical(self, url: httpx.URL) -> tuple[httpx.URL, dict[str, str], dict[str, Any]]:
        if url.scheme not in ("http", "https"):
            raise _Failed("protocol", f"bad url: unsupported scheme {url.scheme!r}")
        if not url.host:
            raise _Failed("protocol", "bad url: no host")
        if not _HOST_OK.match(url.host):
            raise _Failed("protocol", f"bad url: invalid host {url.host!r}")
        route = self._route(url)
        headers: dict[str, str] = {}
        extensions: dict[str, Any] = {"timeout": self._timeouts}
        target = url
        if route is not None:
            target = url.copy_with(scheme=route.scheme, host=route.host, port=route.port)
            headers["Host"] = url.netloc.decode("ascii")
            if route.scheme == "https":
                extensions["sni_hostname"] = url.host
        if self.only_loopback and not is_loopback_destination(target.host):
            raise _Failed("protocol", f"refused: {target.host} is not a loopback destination")
        return target, headers, extensions

    def _route(self, url: httpx.URL) -> Route | None:
        if not self.connect_to:
            return None
        if url.port and (r := self.connect_to.get(f"{url.host}:{url.port}")):
            return r
        if r := self.connect_to.get(url.host):
            return r
        labels = url.host.split(".")
        for k in range(1, len(labels)):
            if r := self.connect_to.get("*." + ".".join(labels[k:])):
                return r
        return None

    def _host_limit(self, key: str) -> asyncio.Semaphore:
        sem = self._hosts.get(key)
        if sem is None:
            sem = self._hosts[key] = asyncio.Semaphore(self.settings.per_host)
        return sem

    async def _attempt(
        self, transport: httpx.AsyncHTTPTransport, url: httpx.URL
    ) -> tuple[int, bytes, bool, str | None]:
        s = self.settings
        last: int | None = None
        for _hop in range(s.max_redirects + 1):
            target, headers, extensions = self._physical(url)
            request = httpx.Request(
                "GET", target, headers={**self._headers, **headers}, extensions=extensions
            )
            async with self._host_limit(f"{target.host}:{target.port}"):
                response = await transport.handle_async_request(request)
                try:
                    if response.status_code in REDIRECTS and "location" in response.headers:
                        try:
                            url = url.join(response.headers["location"])
                        except httpx.InvalidURL as exc:
                            raise _Failed(
                                "protocol", f"bad redirect: {exc}", response.status_code
                            ) from None
                        last = response.status_code
                        continue
                    body = bytearray()
                    truncated = False
                    async for chunk in response.aiter_bytes(chunk_size=16384):
                        body += chunk
                        if len(body) >= s.max_body:
                            truncated = True
                            del body[s.max_body :]
                            break
                    return response.status_code, bytes(body), truncated, response.http_version
                finally:
                    await response.aclose()
        raise _Failed("protocol", f"too many redirects (more than {s.max_redirects})", last)

    async def probe(self, url_text: str) -> ProbeResult:
        """Check one URL; never raises for anything the network or the server does."""
        s = self.settings
        started = time.perf_counter()
        attempts = 0
        status: int | None = None
        body = b""
        truncated = False
        version: str | None = None
        failure: tuple[str, str] | None = None
        try:
            url = httpx.URL(url_text)
        except (httpx.InvalidURL, TypeError, ValueError) as exc:
            url = None
            failure = ("protocol", f"bad url: {exc}")
        slot = await self._slots.get() if url is not None else 0
        try:
            transport = self._transports[slot]
            while url is not None and attempts <= s.retries:
                attempts += 1
                try:
                    async with asyncio.timeout(s.total_timeout):
                        status, body, truncated, version = await self._attempt(transport, url)
                    failure = None
                    break
                except _Failed as exc:
                    failure, status = (exc.kind, exc.reason), exc.status
                    break
                except TimeoutError:
                    failure = ("network", f"total timeout after {s.total_timeout:g}s")
                    break
                except (httpx.HTTPError, OSError, ssl.SSLError) as exc:
                    kind, reason, retryable = describe_error(exc)
                    failure = (kind, reason)
                    if not retryable or attempts > s.retries:
                        break
                    await asyncio.sleep(s.retry_backoff * (2 ** (attempts - 1)))
        finally:
            if url is not None:
                self._slots.put_nowait(slot)
        latency = (time.perf_counter() - started) * 1000.0
        if failure is not None:
            outcome = Outcome(status=status, error_kind=failure[0], reason=failure[1])
        else:
            outcome = Outcome(status=status, body=body)
        result = classify(outcome, self.markers)
        digest = hashlib.sha256(body).hexdigest() if failure is None else None
        pdq = None
        if failure is None and not truncated and media_kind(body) == "image":
            # decoding and hashing take milliseconds of CPU: off the event loop
            pdq = await asyncio.to_thread(image_pdq, body)
        return ProbeResult(
            url=url_text,
            verdict=result.verdict,
            status=status,
            digest=digest,
            latency_ms=latency,
            reason=result.reason,
            body_bytes=len(body),
            truncated=truncated,
            attempts=max(attempts, 1),
            http_version=version,
            pdq=pdq[0] if pdq else None,
            pdq_quality=pdq[1] if pdq else None,
        )
