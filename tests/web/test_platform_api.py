"""The platform API over real HTTP (uvicorn on loopback), on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from notices.support import START, ServerThread, add_items, make_platform
from sqlalchemy import func, select

from takedown.clock import SimClock
from takedown.notices import outbox
from takedown.store.db import Database
from takedown.store.schema import Event, Item, Notice, Response
from takedown.web.app import AppSettings, build


@dataclass
class Api:
    db: Database
    client: httpx.Client
    token: str
    other_token: str
    items: list[int]
    other_items: list[int]
    notice: int
    other_notice: int

    def auth(self, token: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token or self.token}"}


@pytest.fixture
def api(db: Database) -> Iterator[Api]:
    pid, _s, token = make_platform(db, "twitter")
    oid, _s2, other = make_platform(db, "vk")
    items = add_items(db, pid, 5, prefix="t")
    other_items = add_items(db, oid, 2, prefix="v")
    results = {r.platform: r.notices[0] for r in outbox.send(db, now=START, actor="t")}
    with (
        ServerThread(build(AppSettings(db=db, clock=SimClock(START)))) as server,
        httpx.Client(base_url=server.url) as client,
    ):
        yield Api(db, client, token, other, items, other_items, results["twitter"], results["vk"])


def count(db: Database, model: type) -> int:
    with db.reading() as s:
        return int(s.scalar(select(func.count()).select_from(model)))


def state(db: Database, item_id: int) -> str:
    with db.reading() as s:
        return s.get(Item, item_id).state


def test_missing_or_wrong_token_is_401(api: Api) -> None:
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic abc"}):
        r = api.client.get("/api/platform/notices", headers=headers)
        assert r.status_code == 401, headers
        assert r.json()["where"] == "Authorization"
        assert r.headers["www-authenticate"] == "Bearer"
    r = api.client.post(
        f"/api/platform/items/{api.items[0]}/response",
        json={"action": "removed"},
        headers={"Authorization": "Bearer nope"},
    )
    assert r.status_code == 401 and count(api.db, Response) == 0


def test_lists_only_own_open_notices_paginated(api: Api) -> None:
    r = api.client.get("/api/platform/notices", headers=api.auth())
    assert r.status_code == 200
    body = r.json()
    assert [n["id"] for n in body["notices"]] == [api.notice] and body["next_after"] is None
    assert [i["id"] for i in body["notices"][0]["items"]] == api.items
    r = api.client.get("/api/platform/notices", headers=api.auth(api.other_token))
    assert [n["id"] for n in r.json()["notices"]] == [api.other_notice]


def test_pagination_cursor(db: Database) -> None:
    pid, _s, token = make_platform(db, "twitter")
    add_items(db, pid, 5)
    [res] = outbox.send(db, now=START, actor="t", max_items=1)
    with (
        ServerThread(build(AppSettings(db=db, clock=SimClock(START)))) as server,
        httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"}) as c,
    ):
        seen, after = [], 0
        for _ in range(10):
            page = c.get("/api/platform/notices", params={"limit": 2, "after": after}).json()
            seen += [n["id"] for n in page["notices"]]
            if page["next_after"] is None:
                break
            after = page["next_after"]
        assert seen == res.notices
        assert c.get("/api/platform/notices", params={"limit": 0}).status_code == 422


def test_other_platforms_objects_are_404(api: Api) -> None:
    h = api.auth()
    assert api.client.get(f"/api/platform/notices/{api.other_notice}", headers=h).status_code == 404
    assert (
        api.client.post(f"/api/platform/notices/{api.other_notice}/ack", headers=h).status_code
        == 404
    )
    r = api.client.post(
        f"/api/platform/items/{api.other_items[0]}/response", json={"action": "removed"}, headers=h
    )
    assert r.status_code == 404
    assert api.client.post("/api/platform/notices/999999/ack", headers=h).status_code == 404
    with api.db.reading() as s:
        assert s.scalar(select(Notice.acknowledged_at).where(Notice.id == api.other_notice)) is None
    assert state(api.db, api.other_items[0]) == "open" and count(api.db, Response) == 0


def test_ack_is_idempotent_and_audited(api: Api) -> None:
    url = f"/api/platform/notices/{api.notice}/ack"
    first = api.client.post(url, headers=api.auth()).json()
    second = api.client.post(url, headers=api.auth()).json()
    assert first == second == {"notice_id": api.notice, "acknowledged_at": START.isoformat()}
    with api.db.reading() as s:
        assert list(s.scalars(select(Event.type).where(Event.type == "notice.acknowledged"))) == [
            "notice.acknowledged"
        ]


def test_removed_claims_the_item_and_key_makes_it_idempotent(api: Api) -> None:
    url = f"/api/platform/items/{api.items[0]}/response"
    h = {**api.auth(), "Idempotency-Key": "r-1"}
    r1 = api.client.post(url, json={"action": "removed"}, headers=h)
    r2 = api.client.post(url, json={"action": "removed"}, headers=h)
    assert r1.status_code == r2.status_code == 200
    assert r1.json()["item_state"] == "claimed" and not r1.json()["duplicate"]
    assert r2.json()["duplicate"] and r2.json()["id"] == r1.json()["id"]
    assert count(api.db, Response) == 1 and state(api.db, api.items[0]) == "claimed"
    # the same key for another answer is a conflict and changes nothing
    r3 = api.client.post(url, json={"action": "needs_info"}, headers=h)
    assert r3.status_code == 409 and count(api.db, Response) == 1


def test_restricted_rejected_needs_info(api: Api) -> None:
    h = api.auth()
    r = api.client.post(
        f"/api/platform/items/{api.items[1]}/response", json={"action": "restricted"}, headers=h
    )
    assert r.json()["item_state"] == "claimed"
    r = api.client.post(
        f"/api/platform/items/{api.items[2]}/response", json={"action": "rejected"}, headers=h
    )
    assert r.status_code == 422 and "reason" in r.json()["error"]
    r = api.client.post(
        f"/api/platform/items/{api.items[2]}/response",
        json={"action": "rejected", "reason": "satire", "policy": "ToS 4.2"},
        headers=h,
    )
    assert r.status_code == 200 and r.json()["item_state"] == "open"
    r = api.client.post(
        f"/api/platform/items/{api.items[3]}/response", json={"action": "needs_info"}, headers=h
    )
    assert r.json()["item_state"] == "open"
    with api.db.reading() as s:
        rows = s.execute(select(Response.action, Response.reason, Response.policy)).all()
        events = list(s.scalars(select(Event.type).where(Event.type == "response.received")))
    assert sorted(rows) == [
        ("needs_info", None, None),
        ("rejected", "satire", "ToS 4.2"),
        ("restricted", None, None),
    ]
    assert len(events) == 3


@pytest.mark.parametrize(
    ("body", "status", "where"),
    [
        (b'{"action": "deleted"}', 422, "body.action"),
        (b'{"action": "removed"', 400, "body"),
        (b"", 422, "body"),
        (b"[1, 2]", 422, "body"),
        (b'{"action": "removed", "extra": 1}', 422, "body"),
        (b'{"action": "removed", "item_id": 12345}', 422, "item_id"),
    ],
)
def test_bad_single_responses(api: Api, body: bytes, status: int, where: str) -> None:
    r = api.client.post(
        f"/api/platform/items/{api.items[0]}/response",
        content=body,
        headers={**api.auth(), "Content-Type": "application/json"},
    )
    assert r.status_code == status, r.text
    assert r.json()["where"] == where and r.json()["error"]
    assert count(api.db, Response) == 0 and state(api.db, api.items[0]) == "open"


def test_oversized_body_is_413(api: Api) -> None:
    big = b'{"responses": [' + b" " * (9 * 1024 * 1024) + b"]}"
    r = api.client.post("/api/platform/responses", content=big, headers=api.auth())
    assert r.status_code == 413 and "larger" in r.json()["error"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit holds on the stream
        for _ in range(10):
            yield b" " * (1024 * 1024)

    r = api.client.post("/api/platform/responses", content=chunks(), headers=api.auth())
    assert r.status_code == 413
    assert count(api.db, Response) == 0


def test_batch_all_or_nothing_and_idempotent(api: Api) -> None:
    good = [{"item_id": i, "action": "removed"} for i in api.items[:4]]
    bad = [*good, {"item_id": api.other_items[0], "action": "removed"}]
    r = api.client.post("/api/platform/responses", json={"responses": bad}, headers=api.auth())
    assert r.status_code == 404 and r.json()["where"] == "responses[4].item_id"
    bad = [*good, {"item_id": api.items[4], "action": "bogus"}]
    r = api.client.post("/api/platform/responses", json={"responses": bad}, headers=api.auth())
    assert r.status_code == 422 and r.json()["where"] == "responses[4].action"
    assert count(api.db, Response) == 0
    assert {state(api.db, i) for i in api.items} == {"open"}

    h = {**api.auth(), "Idempotency-Key": "batch-1"}
    r1 = api.client.post("/api/platform/responses", json={"responses": good}, headers=h)
    assert r1.status_code == 200 and r1.json()["stored"] == 4
    r2 = api.client.post("/api/platform/responses", json={"responses": good}, headers=h)
    assert r2.json()["stored"] == 0 and all(x["duplicate"] for x in r2.json()["responses"])
    assert count(api.db, Response) == 4
    assert [state(api.db, i) for i in api.items] == ["claimed"] * 4 + ["open"]
    with api.db.reading() as s:
        assert len(list(s.scalars(select(Event.id).where(Event.type == "response.received")))) == 1


def test_batch_of_1500_in_one_request(db: Database) -> None:
    pid, _s, token = make_platform(db)
    ids = add_items(db, pid, 1500)
    with (
        ServerThread(build(AppSettings(db=db, clock=SimClock(START)))) as server,
        httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"}) as c,
    ):
        body = {"responses": [{"item_id": i, "action": "removed", "key": f"k{i}"} for i in ids]}
        r = c.post("/api/platform/responses", json=body)
        assert r.status_code == 200 and r.json()["stored"] == 1500
    assert count(db, Response) == 1500


def test_openapi(api: Api) -> None:
    paths = api.client.get("/openapi.json").json()["paths"]
    assert "/api/platform/responses" in paths and "/api/platform/notices/{notice_id}/ack" in paths
