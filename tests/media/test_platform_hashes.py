"""The platform hash API over real HTTP: each platform sees only its own items' hashes,
page by page; reported matches count as removed re-uploads of its own items only."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import func, select

from takedown.clock import SimClock
from takedown.media.store import record_evidence
from takedown.registry.service import delist
from takedown.store.db import Database
from takedown.store.schema import Reupload
from takedown.web.app import AppSettings, build
from tests.media.support import jpeg, photo
from tests.notices.support import START, ServerThread, add_items, make_platform


@dataclass
class World:
    db: Database
    client: httpx.Client
    token: str
    other_token: str
    items: list[int]
    other_items: list[int]
    hashes: dict[int, str]  # item id -> its PDQ

    def get(self, token: str, **params: object) -> httpx.Response:
        return self.client.get(
            "/api/platform/hashes", params=params, headers={"Authorization": f"Bearer {token}"}
        )

    def post(self, token: str, body: object) -> httpx.Response:
        return self.client.post(
            "/api/platform/matches", json=body, headers={"Authorization": f"Bearer {token}"}
        )


@pytest.fixture
def world(db: Database) -> Iterator[World]:
    pid, _s, token = make_platform(db, "twitter")
    oid, _s2, other = make_platform(db, "vk")
    items = add_items(db, pid, 5, prefix="t")
    other_items = add_items(db, oid, 2, prefix="v")
    hashes = {}
    for n, item in enumerate([*items, *other_items]):
        ev = record_evidence(db, item, jpeg(photo(n)), source=f"{n}.jpg", now=START, actor="t")
        hashes[item] = ev.pdq
    with (
        ServerThread(build(AppSettings(db=db, clock=SimClock(START + timedelta(days=1))))) as s,
        httpx.Client(base_url=s.url) as client,
    ):
        yield World(db, client, token, other, items, other_items, hashes)


def test_pages_hold_only_the_platforms_own_hashes(world: World) -> None:
    seen: list[dict[str, object]] = []
    since = 0
    while True:
        r = world.get(world.token, since=since, limit=2)
        assert r.status_code == 200, r.text
        page = r.json()
        assert len(page["hashes"]) <= 2
        seen += page["hashes"]
        if page["next_since"] is None:
            break
        since = page["next_since"]
    assert [h["item_id"] for h in seen] == world.items
    assert all(h["signal_type"] == "pdq" for h in seen)
    assert {h["item_id"]: h["signal_value"] for h in seen} == {
        i: world.hashes[i] for i in world.items
    }
    assert seen[0]["category"] == "suicide" and "twitter.com" in str(seen[0]["item_target"])
    others = world.get(world.other_token).json()["hashes"]
    assert [h["item_id"] for h in others] == world.other_items
    # past the end: an empty last page
    last = world.get(world.token, since=seen[-1]["id"]).json()
    assert last == {"hashes": [], "next_since": None}


def test_a_delisted_items_hash_leaves_the_list(world: World) -> None:
    delist(world.db, world.items[0], "D-lift", now=START + timedelta(hours=1), actor="t")
    ids = [h["item_id"] for h in world.get(world.token).json()["hashes"]]
    assert ids == world.items[1:]


def test_auth_and_bad_cursor(world: World) -> None:
    assert world.client.get("/api/platform/hashes").status_code == 401
    r = world.get(world.token, since=-1)
    assert r.status_code == 422 and r.json()["where"] == "since"


def _reuploads(db: Database) -> int:
    with db.reading() as s:
        return int(s.scalar(select(func.count()).select_from(Reupload)))


def test_matches_count_as_removed_reuploads_of_own_items(world: World) -> None:
    item = world.items[1]
    body = {
        "matches": [
            {
                "item_id": item,
                "action": "removed",
                "signal_type": "pdq",
                "hash": world.hashes[item],
                "url": "https://twitter.com/copy/status/9",
                "key": "m-1",
            }
        ]
    }
    r = world.post(world.token, body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["stored"] == 1
    assert out["matches"][0]["found_by"] == "platform"
    assert out["matches"][0]["removed_at"].startswith("2021-03-02T00:00:00")
    again = world.post(world.token, body).json()
    assert again["stored"] == 0 and again["matches"][0]["duplicate"] is True
    assert _reuploads(world.db) == 1


def test_another_platforms_item_is_404_and_nothing_is_stored(world: World) -> None:
    body = {
        "matches": [
            {"item_id": world.items[0], "action": "removed"},
            {"item_id": world.other_items[0], "action": "removed"},
        ]
    }
    r = world.post(world.token, body)
    assert r.status_code == 404
    assert r.json() == {
        "error": f"no item {world.other_items[0]}",
        "where": "matches[1].item_id",
    }
    assert _reuploads(world.db) == 0


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({"matches": [{"item_id": 1, "action": "kept"}]}, "matches[0].action"),
        ({"matches": [{"item_id": 1, "action": "removed", "hash": "ab"}]}, "matches[0].hash"),
        ({"matches": [{"item_id": "x", "action": "removed"}]}, "matches[0].item_id"),
        ({"matches": [{"item_id": 1, "action": "removed", "extra": 1}]}, "matches[0]"),
        ({"matches": []}, "matches"),
        ({"match": []}, "body"),
    ],
)
def test_bad_matches_name_the_field(world: World, body: object, where: str) -> None:
    r = world.post(world.token, body)
    assert r.status_code == 422, r.text
    assert r.json()["where"] == where
    assert _reuploads(world.db) == 0
