"""Public pages that cannot hurt the API (issue 15, attack 4), over real HTTP (uvicorn on
loopback): one lookup index per version of the directive set, whatever the Host header;
a per-client rate limit and a concurrency limit on /public; the platform API answering
while public lookups are in flight; the audit head of the latest feed publication."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from notices.support import ServerThread, make_platform
from sqlalchemy import insert

from takedown.clock import SimClock
from takedown.feed.publisher import publish
from takedown.feed.repository import Repository, init_repository
from takedown.store import audit
from takedown.store.db import Database
from takedown.store.schema import Item
from takedown.transparency import PublicIndex
from takedown.web.app import AppSettings, build
from takedown.web.guard import PublicLimits, TokenBuckets, client_key
from takedown.web.lookup_index import LookupIndex

NOW = datetime(2021, 3, 10, 12, tzinfo=UTC)
WAIT = 30.0  # seconds a test may wait for the background builder (never to pass time)


def add_domain(db: Database, target: str, decision: str, listed_at: datetime = NOW) -> None:
    """A register item no platform answers for: a whole domain, blocked by the network."""
    row = {
        "target": target,
        "kind": "domain",
        "host": target,
        "category": "gambling",
        "platform_id": None,
        "basis": "149-FZ art. 15.1",
        "decision_ref": decision,
        "authority": "Roskomnadzor",
        "decision_date": "2021-03-01",
        "listed_at": listed_at - timedelta(days=1) if listed_at == NOW else listed_at,
        "flags": "",
        "state": "open",
    }
    with db.session() as s:  # as the register does it: the row and its audit event
        s.execute(insert(Item), [row])
        audit.record(s, at=NOW, actor="analyst", type="test.item", payload={"target": target})


class FakeMonotonic:
    """Seconds for the rate limiter; moves only when told to."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def serve(db: Database, index: LookupIndex, limits: PublicLimits, **kw: Any) -> ServerThread:
    clock = index.clock
    return ServerThread(
        build(AppSettings(db=db, clock=clock, lookup_index=index, public_limits=limits, **kw))
    )


def lookup(client: httpx.Client, host: str, via: str | None = None) -> httpx.Response:
    """Look ``host`` up, sending ``Host: via`` when given (as an attacker varies it)."""
    headers = {"Host": via} if via is not None else {}
    return client.get("/public/lookup", params={"host": host, "format": "json"}, headers=headers)


def test_distinct_host_headers_do_not_rebuild(db: Database) -> None:
    add_domain(db, "casino.example", "RKN-1")
    index = LookupIndex(db, SimClock(NOW), poll=3600)  # one check at start, then none
    limits = PublicLimits(burst=1000)
    with serve(db, index, limits) as server, httpx.Client(base_url=server.url) as c:
        assert index.wait_for_builds(1, WAIT)
        for i in range(40):
            r = lookup(c, "casino.example", via=f"attacker-{i}.example")
            assert r.status_code == 200, r.text
            [d] = r.json()["directives"]
            assert d["applies"] and d["decisions"] == ["RKN-1"]
            # each answer's links carry its own base, nothing from another request
            assert d["url"].startswith(f"http://attacker-{i}.example/public/lookup?decision=")
        assert index.builds == 1


def test_audit_events_alone_do_not_rebuild_a_change_does(db: Database) -> None:
    clock = SimClock(NOW)
    add_domain(db, "casino.example", "RKN-1")
    index = LookupIndex(db, clock)
    assert index.refresh() is True and index.builds == 1
    with db.session() as s:
        for i in range(5):
            audit.record(s, at=NOW, actor="analyst", type="test.event", payload={"i": i})
    assert index.refresh() is False and index.builds == 1
    checks = index.checks
    assert index.refresh_if_due() is False and index.checks == checks  # nothing moved
    add_domain(db, "later.example", "RKN-2", listed_at=NOW + timedelta(hours=1))
    assert index.refresh_if_due() is True and index.builds == 2  # a new row: a new version
    assert index.refresh() is False
    clock.advance(timedelta(hours=2))  # the item's listing time passes: the set changes
    assert index.refresh() is True and index.builds == 3
    assert index.refresh() is False


def test_a_change_of_the_directive_set_is_picked_up(db: Database) -> None:
    index = LookupIndex(db, SimClock(NOW), poll=0.05)
    with (
        serve(db, index, PublicLimits(burst=1000)) as server,
        httpx.Client(base_url=server.url) as c,
    ):
        assert index.wait_for_builds(1, WAIT)
        assert lookup(c, "casino.example").json()["restricted"] is False
        add_domain(db, "casino.example", "RKN-1")
        assert index.wait_for_builds(2, WAIT)
        doc = lookup(c, "casino.example").json()
        assert doc["restricted"] is True and doc["directives"][0]["decisions"] == ["RKN-1"]


def test_over_the_rate_a_client_gets_429_another_still_200(db: Database) -> None:
    tick = FakeMonotonic()
    limits = PublicLimits(rate=1.0, burst=3, monotonic=tick)
    index = LookupIndex(db, SimClock(NOW), poll=3600)
    other = httpx.HTTPTransport(local_address="127.0.0.2")
    with (
        serve(db, index, limits) as server,
        httpx.Client(base_url=server.url) as a,
        httpx.Client(base_url=server.url, transport=other) as b,
    ):
        for _ in range(3):
            assert lookup(a, "t.co").status_code == 200
        r = lookup(a, "t.co")
        assert r.status_code == 429
        assert r.headers["retry-after"] == "1"
        assert r.json() == {"error": "too many requests from this address", "where": "public"}
        assert a.get("/public/").status_code == 429  # every public page shares the bucket
        assert a.get("/healthz").status_code == 200  # the rest of the app is not limited
        assert lookup(b, "t.co").status_code == 200  # another address has its own bucket
        tick.t += 1.0
        assert lookup(a, "t.co").status_code == 200


class GatedIndex(LookupIndex):
    """A lookup index whose readers wait at a gate: public lookups held in flight."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.gate = threading.Event()
        self.waiting = threading.Semaphore(0)

    def current(self) -> PublicIndex:
        self.waiting.release()
        assert self.gate.wait(WAIT)
        return super().current()


@pytest.fixture
def platform(db: Database) -> Iterator[str]:
    _pid, _secret, token = make_platform(db, "twitter", now=NOW)
    yield token


def test_the_platform_api_answers_while_public_lookups_are_in_flight(
    db: Database, platform: str
) -> None:
    index = GatedIndex(db, SimClock(NOW), poll=3600)
    limits = PublicLimits(concurrency=4, burst=1000)
    with (
        serve(db, index, limits) as server,
        httpx.Client(base_url=server.url, timeout=WAIT) as public,
        httpx.Client(
            base_url=server.url, timeout=5, headers={"Authorization": f"Bearer {platform}"}
        ) as api,
        ThreadPoolExecutor(max_workers=40) as pool,
    ):
        hosts = [f"h{i}.example" for i in range(40)]
        held = [pool.submit(lookup, public, "t.co", h) for h in hosts[:4]]
        for _ in range(4):  # the four allowed in flight are inside, holding their threads
            assert index.waiting.acquire(timeout=WAIT)
        refused = list(pool.map(lambda h: lookup(public, "t.co", h), hosts[4:]))
        assert {r.status_code for r in refused} == {503}
        assert all(r.headers["retry-after"] == "1" for r in refused)
        assert refused[0].json()["where"] == "public"
        for _ in range(5):
            r = api.get("/api/platform/notices")
            assert r.status_code == 200, r.text
        index.gate.set()
        assert [f.result().status_code for f in held] == [200] * 4


def test_index_page_shows_the_published_audit_head(db: Database, tmp_path: Path) -> None:
    repo = tmp_path / "feed"
    init_repository(repo)
    index = LookupIndex(db, SimClock(NOW), poll=3600)
    with (
        serve(db, index, PublicLimits(burst=1000), feed_dir=repo) as server,
        httpx.Client(base_url=server.url) as c,
    ):
        assert c.get("/public/", params={"format": "json"}).json()["audit_head"] is None
        assert "anchored" not in c.get("/public/").text
        publish(db, repo, now=NOW, actor="publisher")
        head = Repository(repo).info().audit_head
        assert head is not None
        doc = c.get("/public/", params={"format": "json"}).json()
        assert doc["audit_head"] == {"seq": head.seq, "hash": head.hash}
        page = c.get("/public/").text
        assert f"audit log is anchored at event {head.seq}, with the fingerprint" in page
        assert f"<code>{head.hash}</code>" in page


def test_no_feed_no_head(db: Database) -> None:
    index = LookupIndex(db, SimClock(NOW), poll=3600)
    with serve(db, index, PublicLimits()) as server, httpx.Client(base_url=server.url) as c:
        assert c.get("/public/", params={"format": "json"}).json()["audit_head"] is None
        assert "anchored" not in c.get("/public/").text


def test_token_buckets_refill_and_stay_bounded() -> None:
    buckets = TokenBuckets(rate=2.0, burst=2, max_clients=3)
    assert [buckets.take("a", 0.0) for _ in range(3)] == [0.0, 0.0, 0.5]
    assert buckets.take("a", 0.25) == pytest.approx(0.25)  # half a token came back
    assert buckets.take("a", 1.0) == 0.0
    for key in "bcd":
        buckets.take(key, 1.0)
    assert len(buckets._buckets) == 3 and "a" not in buckets._buckets


def test_ipv6_clients_are_keyed_by_their_64() -> None:
    one = client_key({"client": ("2001:db8:1:2::1", 1)})
    assert one == client_key({"client": ("2001:db8:1:2:ffff::9", 2)}) == "2001:db8:1:2::/64"
    assert client_key({"client": ("192.0.2.7", 3)}) == "192.0.2.7"
    # IPv4 clients of a dual-stack listener stay apart (they all fell into ::/64)
    assert client_key({"client": ("::ffff:192.0.2.7", 4)}) == "192.0.2.7"
    assert client_key({"client": ("::ffff:198.51.100.1", 5)}) == "198.51.100.1"
    assert client_key({}) == "?"


def test_before_the_first_index_a_lookup_waits_then_gets_503(db: Database) -> None:
    index = LookupIndex(db, SimClock(NOW), poll=3600, first_wait=0.2)
    index._building.acquire()  # another thread is building the first index
    try:
        with serve(db, index, PublicLimits()) as server, httpx.Client(base_url=server.url) as c:
            r = lookup(c, "t.co")
            assert r.status_code == 503 and r.headers["retry-after"] == "5"
            assert r.json() == {"error": "the lookup index is being built", "where": "lookup"}
            assert c.get("/healthz").status_code == 200
            index._building.release()
            assert index.wait_for_builds(1, WAIT)
            assert lookup(c, "t.co").status_code == 200
    finally:
        if index._building.locked() and index.builds == 0:
            index._building.release()
