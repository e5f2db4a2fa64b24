"""Limits on the public pages, so that no amount of public traffic can starve the APIs.

Three limits, all checked on the event loop before a public request takes a thread:

- at most ``concurrency`` public requests in flight; one more gets 503 at once;
- per client address (IPv6 by /64) a token bucket of ``burst`` requests refilled at
  ``rate`` per second; an empty bucket gets 429 (``rate`` 0: no per-client limit). The
  table of buckets is bounded (``max_clients``, least recently seen dropped first);
- per client address, a second, slower bucket for filing appeals (``POST
  /public/appeals``): ``filing_burst`` filings, refilled at ``filings_per_hour`` (0: no
  such limit), so one address cannot flood the staff's queue.

Both answers carry ``Retry-After`` (whole seconds) and the project's error body
``{"error": ..., "where": "public"}``. Other paths pass untouched. ``TokenBuckets`` is the
pure core (time comes in as ``now``, seconds from any monotonic source); ``PublicGuard``
is the ASGI shell.

Example::

    app = PublicGuard(app, PublicLimits(concurrency=8, rate=5, burst=20))
"""

from __future__ import annotations

import ipaddress
import json
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from takedown.enforce.subscribers import canonical_address
from takedown.errors import InputError

PREFIX = "/public"
FILING_PATH = "/public/appeals"  # POST: file an appeal (web.appeals)


@dataclass(frozen=True)
class PublicLimits:
    """How much the public pages may take. ``monotonic``: seconds, for the buckets (tests
    inject a fake); ``index_poll``: seconds between checks of the directive set."""

    concurrency: int = 8
    rate: float = 5.0
    burst: int = 20
    max_clients: int = 100_000
    index_poll: float = 1.0
    filings_per_hour: float = 10.0
    filing_burst: int = 5
    monotonic: Callable[[], float] = field(default=time.monotonic, compare=False)


class TokenBuckets:
    """One token bucket per client key; ``take`` spends a token or says when one is due."""

    def __init__(self, rate: float, burst: int, max_clients: int) -> None:
        self.rate, self.burst, self.max_clients = rate, burst, max_clients
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # tokens, at

    def take(self, key: str, now: float) -> float:
        """0.0 if ``key`` may go now (a token is spent), else seconds until it may."""
        tokens, at = self._buckets.pop(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + max(0.0, now - at) * self.rate)
        wait = 0.0
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait = (1.0 - tokens) / self.rate
        self._buckets[key] = (tokens, now)
        while len(self._buckets) > self.max_clients:
            self._buckets.popitem(last=False)
        return wait


def client_key(scope: dict[str, Any]) -> str:
    """The client's address as the bucket key; IPv6 addresses by their /64."""
    client = scope.get("client") or ("?", 0)
    host = str(client[0])
    try:  # an IPv4 client of a dual-stack listener arrives as ::ffff:a.b.c.d: key it as IPv4
        addr = canonical_address(host)
    except InputError:
        return host
    if addr.version == 6:
        return str(ipaddress.ip_network(f"{addr}/64", strict=False))
    return str(addr)


def _refuse(status: int, message: str, retry_after: float) -> tuple[dict[str, Any], ...]:
    seconds = max(1, math.ceil(retry_after))
    body = json.dumps({"error": message, "where": "public"}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"retry-after", str(seconds).encode()),
    ]
    return (
        {"type": "http.response.start", "status": status, "headers": headers},
        {"type": "http.response.body", "body": body},
    )


class PublicGuard:
    """ASGI middleware applying ``PublicLimits`` to ``/public…``."""

    def __init__(self, app: Any, limits: PublicLimits) -> None:
        self.app, self.limits = app, limits
        self.buckets = TokenBuckets(limits.rate, limits.burst, limits.max_clients)
        self.filings = TokenBuckets(
            limits.filings_per_hour / 3600, limits.filing_burst, limits.max_clients
        )
        self.in_flight = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        path = scope.get("path", "")
        if scope.get("type") != "http" or not (path == PREFIX or path.startswith(PREFIX + "/")):
            await self.app(scope, receive, send)
            return
        wait = 0.0
        if self.limits.rate > 0:
            wait = self.buckets.take(client_key(scope), self.limits.monotonic())
        if wait > 0:
            for message in _refuse(429, "too many requests from this address", wait):
                await send(message)
            return
        if (
            self.limits.filings_per_hour > 0
            and path == FILING_PATH
            and scope.get("method") == "POST"
        ):
            wait = self.filings.take(client_key(scope), self.limits.monotonic())
            if wait > 0:
                for message in _refuse(429, "too many appeals filed from this address", wait):
                    await send(message)
                return
        if self.in_flight >= self.limits.concurrency:
            for message in _refuse(503, "the public pages are busy; try again shortly", 1):
                await send(message)
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1
