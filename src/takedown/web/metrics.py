"""``/metrics`` for the app: figures read from the database at scrape time, plus requests.

Everything but the request counter is computed when Prometheus scrapes (a custom
collector over ``takedown.gauges``), so the numbers are the database's, whichever process
changed it.

Example::

    curl http://127.0.0.1:8470/metrics
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, make_asgi_app
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from takedown.clock import Clock
from takedown.gauges import Gauges, read_gauges
from takedown.store.db import Database

# request paths are counted by area only, so labels stay few whatever clients send
AREAS = ("/api/platform/", "/api/", "/public/", "/feed/", "/metrics", "/healthz")

Scope = MutableMapping[str, Any]
ASGIApp = Callable[
    [Scope, Callable[..., Awaitable[Any]], Callable[..., Awaitable[Any]]], Awaitable[None]
]


def area(path: str) -> str:
    """The area a request path belongs to (a bounded label)."""
    for prefix in AREAS:
        if path.startswith(prefix) or path == prefix.rstrip("/"):
            return prefix.strip("/") or "root"
    return "other"


class DatabaseCollector(Collector):
    """Gauges read from the database at each scrape."""

    def __init__(self, db: Database, clock: Clock) -> None:
        self.db = db
        self.clock = clock

    def describe(self) -> list[Any]:
        return []  # no registration-time scrape: the database is read only when scraped

    def collect(self) -> Iterator[GaugeMetricFamily]:
        now = self.clock.now()
        g = read_gauges(self.db, now)
        items = GaugeMetricFamily(
            "takedown_items",
            "Register items listed now, by platform and state",
            labels=["platform", "state"],
        )
        for platform, state, n in g.items:
            items.add_metric([platform, state], n)
        yield items
        overdue = GaugeMetricFamily(
            "takedown_items_overdue",
            "Items past their removal deadline and not removed, by platform",
            labels=["platform"],
        )
        for platform, n in g.overdue:
            overdue.add_metric([platform], n)
        yield overdue
        notices = GaugeMetricFamily(
            "takedown_notices", "Notices by delivery state", labels=["delivery_state"]
        )
        for state, n in g.notices:
            notices.add_metric([state], n)
        yield notices
        measures = GaugeMetricFamily("takedown_measures", "Measures by state now", labels=["state"])
        for state in ("proposed", "active", "lifted", "expired"):
            measures.add_metric([state], g.measures.get(state, 0))
        yield measures
        yield from _feed_gauges(g, now)
        tokens = GaugeMetricFamily("takedown_api_tokens_active", "Active regulator API tokens")
        tokens.add_metric([], g.active_tokens)
        yield tokens


def _feed_gauges(g: Gauges, now: datetime) -> Iterator[GaugeMetricFamily]:
    """The last feed publication's gauges (none before the first publication)."""
    if g.last_sequence is None or g.last_published_at is None:
        return
    feed_seq = GaugeMetricFamily(
        "takedown_feed_last_sequence", "Sequence number of the last feed publication"
    )
    feed_seq.add_metric([], g.last_sequence)
    yield feed_seq
    feed_time = GaugeMetricFamily(
        "takedown_feed_last_published_timestamp_seconds",
        "When the last feed publication was made (Unix seconds)",
    )
    feed_time.add_metric([], g.last_published_at.timestamp())
    yield feed_time
    feed_age = GaugeMetricFamily(
        "takedown_feed_age_seconds", "Clock seconds since the last feed publication"
    )
    feed_age.add_metric([], max(0.0, (now - g.last_published_at).total_seconds()))
    yield feed_age


class Metrics:
    """The app's registry: the database collector and a request counter.

    ``app`` is the ASGI app for ``create_app(metrics=…)``; ``middleware`` wraps the main
    app to count requests by method, area and status class."""

    def __init__(self, db: Database, clock: Clock) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(DatabaseCollector(db, clock))
        self.requests = Counter(
            "takedown_http_requests",
            "HTTP requests served, by method, area and status class",
            ["method", "area", "status"],
            registry=self.registry,
        )
        self.app = make_asgi_app(self.registry)

    def middleware(self, app: ASGIApp) -> ASGIApp:
        """Wrap ``app`` so each HTTP request is counted once its response starts."""

        async def wrapped(scope: Scope, receive: Any, send: Any) -> None:
            if scope.get("type") != "http":
                await app(scope, receive, send)
                return
            status = {"code": 500}

            async def send_(message: MutableMapping[str, Any]) -> None:
                if message.get("type") == "http.response.start":
                    status["code"] = int(message.get("status", 500))
                await send(message)

            try:
                if scope.get("path") == "/metrics":  # the mount alone would redirect to /metrics/
                    await self.app(scope, receive, send_)
                else:
                    await app(scope, receive, send_)
            finally:
                self.requests.labels(
                    scope.get("method", "?"),
                    area(scope.get("path", "")),
                    f"{status['code'] // 100}xx",
                ).inc()

        return wrapped
