"""``/metrics`` for the app: figures read from the database at scrape time, plus requests.

Everything but the request counter is computed when Prometheus scrapes (a custom
collector), so the numbers are the database's, whichever process changed it.

Example::

    curl http://127.0.0.1:8470/metrics
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, make_asgi_app
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import and_, func, or_, select

from takedown.clock import Clock
from takedown.model import ItemState
from takedown.store.db import Database
from takedown.store.schema import ApiToken, FeedPublication, Item, Measure, Notice, Platform

NO_PLATFORM = "-"
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
        from takedown.policy.measures import state_at

        now = self.clock.now()
        items = GaugeMetricFamily(
            "takedown_items",
            "Register items listed now, by platform and state",
            labels=["platform", "state"],
        )
        overdue = GaugeMetricFamily(
            "takedown_items_overdue",
            "Items past their removal deadline and not removed, by platform",
            labels=["platform"],
        )
        notices = GaugeMetricFamily(
            "takedown_notices", "Notices by delivery state", labels=["delivery_state"]
        )
        measures = GaugeMetricFamily("takedown_measures", "Measures by state now", labels=["state"])
        feed_seq = GaugeMetricFamily(
            "takedown_feed_last_sequence", "Sequence number of the last feed publication"
        )
        feed_time = GaugeMetricFamily(
            "takedown_feed_last_published_timestamp_seconds",
            "When the last feed publication was made (Unix seconds)",
        )
        feed_age = GaugeMetricFamily(
            "takedown_feed_age_seconds", "Clock seconds since the last feed publication"
        )
        tokens = GaugeMetricFamily("takedown_api_tokens_active", "Active regulator API tokens")
        live = (Item.listed_at <= now, or_(Item.delisted_at.is_(None), Item.delisted_at > now))
        due = and_(Item.deadline_at.is_not(None), Item.deadline_at <= now)
        late = and_(
            due,
            or_(
                Item.state == ItemState.OPEN.value,
                and_(Item.state == ItemState.CLAIMED.value, Item.state_at > Item.deadline_at),
            ),
        )
        with self.db.reading() as session:
            slugs = dict(session.execute(select(Platform.id, Platform.slug)).all())
            for pid, state, n in session.execute(
                select(Item.platform_id, Item.state, func.count())
                .where(*live)
                .group_by(Item.platform_id, Item.state)
            ):
                items.add_metric([slugs.get(pid, NO_PLATFORM), state], n)
            counts = dict(
                session.execute(
                    select(Item.platform_id, func.count())
                    .where(*live, late, Item.platform_id.is_not(None))
                    .group_by(Item.platform_id)
                ).all()
            )
            for pid, slug in sorted(slugs.items(), key=lambda kv: kv[1]):
                overdue.add_metric([slug], counts.get(pid, 0))
            for state, n in session.execute(
                select(Notice.delivery_state, func.count()).group_by(Notice.delivery_state)
            ):
                notices.add_metric([state], n)
            by_state: dict[str, int] = {}
            for m in session.scalars(select(Measure)):
                s = state_at(m, now)
                if s is not None:
                    by_state[s] = by_state.get(s, 0) + 1
            for s in ("proposed", "active", "lifted", "expired"):
                measures.add_metric([s], by_state.get(s, 0))
            last = session.execute(
                select(FeedPublication.sequence, FeedPublication.published_at)
                .order_by(FeedPublication.sequence.desc())
                .limit(1)
            ).first()
            active_tokens = session.scalar(
                select(func.count()).select_from(ApiToken).where(ApiToken.revoked_at.is_(None))
            )
        yield items
        yield overdue
        yield notices
        yield measures
        if last is not None:
            feed_seq.add_metric([], last[0])
            feed_time.add_metric([], last[1].timestamp())
            feed_age.add_metric([], max(0.0, (now - last[1]).total_seconds()))
            yield feed_seq
            yield feed_time
            yield feed_age
        tokens.add_metric([], active_tokens or 0)
        yield tokens


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
