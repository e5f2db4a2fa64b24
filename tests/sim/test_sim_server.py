"""The simulator over real HTTP: refusing forged, stale and replayed webhooks; serving posts;
answering through the real platform API."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from notices.support import START, ServerThread, add_items, free_port, make_platform
from sqlalchemy import select

from takedown.clock import SimClock
from takedown.notices import outbox, signing
from takedown.notices.delivery import DeliveryWorker
from takedown.sim import behaviour
from takedown.sim.server import WITHHELD_MARKER, SimPlatform, create_sim_app
from takedown.store.db import Database
from takedown.store.schema import Item, Response
from takedown.web.app import create_app

SECRET = "sim-secret"
EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "behaviours"


@pytest.fixture
def sim() -> Iterator[tuple[SimPlatform, str]]:
    clock = SimClock(START)
    b = behaviour.parse(
        {
            "withhold_share": 0.5,
            "abroad": ["127.0.0.3/32"],
            "prompt": {"min_delay": "1h", "max_delay": "2h"},
        }
    )
    platform = SimPlatform(b, clock, secret=SECRET, items=10)
    with ServerThread(create_sim_app(platform)) as server:
        yield platform, server.url


def post(url: str, body: bytes, *, key: str | None, t: int, secret: str = SECRET) -> httpx.Response:
    headers = {"Content-Type": "application/json", signing.HEADER: signing.sign(secret, body, t)}
    if key is not None:
        headers[signing.IDEMPOTENCY_HEADER] = key
    return httpx.post(f"{url}/notices", content=body, headers=headers)


def doc(nid: int, items: list[int]) -> bytes:
    return json.dumps(
        {
            "notice_id": nid,
            "items": [{"id": i, "target": f"https://twitter.com/x/status/{i}"} for i in items],
        }
    ).encode()


def test_forged_stale_replayed(sim: tuple[SimPlatform, str]) -> None:
    platform, url = sim
    t = int(START.timestamp())
    body = doc(1, [1, 2])
    assert post(url, body, key="1", t=t, secret="wrong").status_code == 401
    assert post(url, body, key="1", t=t - 301).status_code == 401  # replay outside 5 min
    assert post(url, body, key="1", t=t + 301).status_code == 401
    tampered = body.replace(b'"notice_id": 1', b'"notice_id": 1 ')
    headers = {signing.HEADER: signing.sign(SECRET, body, t), signing.IDEMPOTENCY_HEADER: "1"}
    assert httpx.post(f"{url}/notices", content=tampered, headers=headers).status_code == 401
    assert httpx.post(f"{url}/notices", content=body).status_code == 401  # unsigned
    assert post(url, body, key=None, t=t).status_code == 400
    stats = httpx.get(f"{url}/_sim/stats").json()
    assert stats["accepted"] == 0 and stats["items"] == 0
    assert stats["bad_signature"] == 3 and stats["stale"] == 2
    # genuine, then the same request replayed inside the window: taken once
    r1 = post(url, body, key="1", t=t)
    r2 = post(url, body, key="1", t=t + 60)
    assert r1.json()["status"] == "accepted" and r2.json()["status"] == "duplicate"
    # the same key for other content is refused outright
    assert post(url, doc(1, [1, 2, 3]), key="1", t=t).status_code == 409
    stats = httpx.get(f"{url}/_sim/stats").json()
    assert stats["accepted"] == 1 and stats["duplicates"] == 1 and stats["conflicts"] == 1
    assert stats["items"] == 2
    platform.clock.advance(timedelta(hours=3))  # type: ignore[attr-defined]
    tick = httpx.post(f"{url}/_sim/tick").json()
    assert tick["actions"] == 2  # each item acted on once, however often it was sent
    assert httpx.post(f"{url}/_sim/tick").json()["actions"] == 0


def test_serves_posts_by_host(sim: tuple[SimPlatform, str]) -> None:
    platform, url = sim
    t = int(START.timestamp())
    items = list(range(1, 21))
    assert post(url, doc(7, items), key="7", t=t).status_code == 200
    text = httpx.get(f"{url}/x/status/1", headers={"Host": "twitter.com"})
    assert text.status_code == 200 and b"post twitter.com/x/status/1" in text.content
    media = httpx.get(f"{url}/media/1.jpg", headers={"Host": "pbs.twimg.com"})
    assert media.status_code == 200 and len(media.content) == 256 * 1024
    assert httpx.get(f"{url}/x", headers={"Host": "example.org"}).status_code == 404
    assert httpx.get(f"{url}/x", headers={"Host": "twimg.com.evil.example"}).status_code == 404
    platform.clock.advance(timedelta(hours=3))  # type: ignore[attr-defined]
    httpx.post(f"{url}/_sim/tick")
    fates = {i["id"]: i["fate"] for i in httpx.get(f"{url}/_sim/items").json()}
    abroad = httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.3"))
    for iid, fate in fates.items():
        r = httpx.get(f"{url}/x/status/{iid}", headers={"Host": "twitter.com"})
        if fate == "removed":
            assert r.status_code == 404
        else:
            assert fate == "withheld" and r.status_code == 451
            assert WITHHELD_MARKER in r.text and r.headers["takedown-withheld"] == "RU"
            seen = abroad.get(f"{url}/x/status/{iid}", headers={"Host": "twitter.com"})
            assert seen.status_code == 200
    assert set(fates.values()) == {"removed", "withheld"}
    posts = httpx.get(f"{url}/_sim/posts").json()
    assert posts["total"] == 10 and len(posts["posts"]) == 10


def test_content_delay_slows_content_pages(sim: tuple[SimPlatform, str]) -> None:
    _platform, url = sim
    set_to = httpx.post(f"{url}/_sim/faults", json={"content_delay_ms": 300}).json()
    assert set_to == {"status": None, "delay_ms": 0, "content_delay_ms": 300}
    started = time.monotonic()
    page = httpx.get(f"{url}/x/status/1", headers={"Host": "twitter.com"})
    waited = time.monotonic() - started
    assert page.status_code == 200 and waited >= 0.3  # a lower bound: sleeps never end early
    cleared = httpx.post(f"{url}/_sim/faults", json={}).json()
    assert cleared["content_delay_ms"] == 0


async def test_two_sides_exchange_notices_and_answers(db: Database) -> None:
    """Regulator app + worker and the simulator: notices go out, answers come back."""
    clock = SimClock(START)
    port = free_port()
    pid, secret, token = make_platform(db, notice_url=f"http://127.0.0.1:{port}/notices")
    ids = add_items(db, pid, 30)
    b = behaviour.load(
        __import__("pathlib").Path(__file__).resolve().parents[2]
        / "examples/behaviours/comply-24h.toml"
    )
    with ServerThread(create_app(db, clock=clock)) as api:
        sim = SimPlatform(b, clock, secret=secret, api=api.url, token=token)
        with ServerThread(create_sim_app(sim), port=port) as s:
            outbox.send(db, now=START, actor="t", max_items=10)
            worker = DeliveryWorker(db, clock, seed=1)
            assert await worker.run_until_idle() == 3
            await worker.aclose()
            clock.advance(timedelta(hours=23))
            tick = httpx.post(f"{s.url}/_sim/tick").json()
            assert tick["actions"] == 30 and tick["sent"] == 30 and tick["pending"] == 0
    with db.reading() as session:
        assert set(session.scalars(select(Item.state).where(Item.id.in_(ids)))) == {"claimed"}
        keys = set(session.scalars(select(Response.client_key)))
    assert keys == {f"sim-{i}-removed" for i in ids}
