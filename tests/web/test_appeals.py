"""Appeals over real HTTP (uvicorn on loopback), on SQLite and PostgreSQL: the public form,
the receipt and status page, the limits, the platform API, and what the public pages say."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import func, select

from takedown import appeals
from takedown.clock import SimClock
from takedown.store.db import Database
from takedown.store.schema import Appeal
from takedown.web.app import AppSettings, build
from takedown.web.guard import PublicLimits
from tests.appeals_support import CONTACT, START, World, make_world
from tests.notices.support import ServerThread

NOW = START + timedelta(days=1)
GROUNDS = "The throttle slows my school's videos & <lessons>."
HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'


class FakeMonotonic:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@dataclass
class Site:
    world: World
    client: httpx.Client
    clock: SimClock
    tick: FakeMonotonic

    def form(self, origin: bool = True, **fields: str) -> httpx.Response:
        data = {
            "measure_id": str(self.world.throttle),
            "appellant": "user",
            "grounds": GROUNDS,
            "contact": CONTACT,
        }
        data.update(fields)
        headers = {"Origin": str(self.client.base_url).rstrip("/")} if origin else {}
        return self.client.post("/public/appeals", data=data, headers=headers)

    def auth(self, token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def site(db: Database) -> Iterator[Site]:
    world = make_world(db)
    clock, tick = SimClock(NOW), FakeMonotonic()
    limits = PublicLimits(filings_per_hour=3600, filing_burst=50, monotonic=tick)
    app = build(AppSettings(db=db, clock=clock, public_limits=limits))
    with (
        ServerThread(app) as server,
        httpx.Client(base_url=server.url, timeout=30) as client,
    ):
        yield Site(world, client, clock, tick)


def stored(db: Database) -> int:
    with db.reading() as s:
        return int(s.scalar(select(func.count()).select_from(Appeal)))


def receipt_of(page: str) -> str:
    match = re.search(r"Your receipt: <code>([A-Za-z0-9_-]+)</code>", page)
    assert match, page
    return match[1]


def test_filing_from_the_public_form(site: Site) -> None:
    w = site.world
    measure_page = site.client.get(f"/public/measures/{w.throttle}").text
    link = f"/public/appeals/new?measure={w.throttle}"
    assert f'href="{str(site.client.base_url).rstrip("/")}{link}">Contest this measure</a>' in (
        measure_page
    )
    form = site.client.get(link)
    assert form.status_code == 200 and form.headers["content-type"].startswith("text/html")
    assert '<form method="post" action="/public/appeals">' in form.text
    assert f'name="measure_id" value="{w.throttle}"' in form.text
    assert "<script" not in form.text and "style=" not in form.text
    assert "within 30 days" in form.text and "Twitter: slowed to 128 kbit/s" in form.text
    assert "form-action 'self'" in form.headers["content-security-policy"]

    filed = site.form()
    assert filed.status_code == 201, filed.text
    receipt = receipt_of(filed.text)
    status_url = f"/public/appeals/{receipt}"
    assert f'href="{str(site.client.base_url).rstrip("/")}{status_url}"' in filed.text
    assert CONTACT not in filed.text and filed.headers["cache-control"] == "no-store"
    status = site.client.get(status_url)
    assert status.status_code == 200 and "<th>State</th><td>open</td>" in status.text
    assert status.headers["cache-control"] == "no-store"
    assert status.headers["referrer-policy"] == "no-referrer"
    assert f"Measure No. {w.throttle}" in status.text
    assert "<th>Decision due</th><td>Apr 10, 2021, 12:00\u202fAM UTC</td>" in status.text
    assert CONTACT not in status.text and "lessons" not in status.text
    doc = site.client.get(status_url, params={"format": "json"}).json()
    assert doc["state"] == "open" and doc["measure_id"] == w.throttle
    assert doc["due_at"] == (NOW + timedelta(days=30)).isoformat()
    assert "contact" not in doc and "grounds" not in doc
    [stored_appeal] = appeals.list_appeals(w.db)
    assert stored_appeal.grounds == GROUNDS and stored_appeal.contact == CONTACT


def test_json_filing_and_unknown_receipts(site: Site) -> None:
    r = site.client.post(
        "/public/appeals?format=json",
        data={"item_id": str(site.world.item), "appellant": "author", "grounds": "satire"},
    )
    assert r.status_code == 201, r.text
    doc = r.json()
    assert doc["status_url"].endswith(f"/public/appeals/{doc['receipt']}")
    assert doc["appeal"]["subject"] == f"item {site.world.item}"
    got = site.client.get(doc["status_url"], params={"format": "json"}).json()
    assert got == doc["appeal"]
    for receipt in (appeals.new_receipt(), "x" * 300, "new.html"):
        page = site.client.get(f"/public/appeals/{receipt}")
        assert page.status_code == 404 and page.headers["content-type"].startswith("text/html")
        assert "No such appeal" in page.text
        r = site.client.get(f"/public/appeals/{receipt}", params={"format": "json"})
        assert r.status_code == 404 and r.json()["where"] == "receipt"
    form = site.client.get(
        "/public/appeals/new", params={"measure": str(site.world.throttle), "format": "json"}
    )
    assert form.json()["fields"]["appellant"] == ["platform", "author", "user", "other"]


def test_what_cannot_be_filed(site: Site) -> None:
    w = site.world
    pending = site.client.get(f"/public/appeals/new?measure={w.pending}")
    assert pending.status_code == 404 and "no public measure" in pending.text
    assert site.form(measure_id=str(w.pending)).status_code == 404
    for q in ("", "?measure=abc", f"?measure={w.throttle}&item={w.item}", "?item=99999999999"):
        assert site.client.get(f"/public/appeals/new{q}").status_code in (404, 422), q
    bad = site.form(grounds="   ")
    assert bad.status_code == 422 and '<form method="post"' in bad.text  # the form again
    assert "Your grounds: is required" in bad.text and CONTACT in bad.text  # as filled in
    bad = site.form(appellant="regulator", grounds=HOSTILE)
    assert bad.status_code == 422 and "<script>" not in bad.text and "Who you are:" in bad.text
    big = site.form(grounds="x" * (70 * 1024))
    assert big.status_code == 413
    r = site.client.post(
        "/public/appeals",
        json={"measure_id": w.throttle, "appellant": "user", "grounds": "g"},
    )
    assert r.status_code == 415
    assert stored(w.db) == 0


def test_cross_site_posts_are_refused(site: Site) -> None:
    for headers in (
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
        {"Origin": "null", "Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
    ):
        r = site.client.post(
            "/public/appeals",
            data={"measure_id": str(site.world.throttle), "appellant": "user", "grounds": "g"},
            headers=headers,
        )
        assert r.status_code == 403, headers
        assert "this site's own form" in html.unescape(r.text)
    assert stored(site.world.db) == 0
    ok = site.client.post(
        "/public/appeals",
        data={"measure_id": str(site.world.throttle), "appellant": "user", "grounds": "g"},
        headers={"Sec-Fetch-Site": "same-origin", "Origin": str(site.client.base_url)},
    )
    assert ok.status_code == 201
    # what Chromium sends from our own page, which has Referrer-Policy: no-referrer
    own = site.client.post(
        "/public/appeals",
        data={"measure_id": str(site.world.throttle), "appellant": "user", "grounds": "g"},
        headers={"Sec-Fetch-Site": "same-origin", "Origin": "null"},
    )
    assert own.status_code == 201
    assert site.form(origin=False).status_code == 201  # curl: neither header


def test_filings_per_address_are_limited(db: Database) -> None:
    world = make_world(db)
    tick = FakeMonotonic()
    limits = PublicLimits(filings_per_hour=2, filing_burst=2, monotonic=tick)
    app = build(AppSettings(db=db, clock=SimClock(NOW), public_limits=limits))
    data = {"measure_id": str(world.throttle), "appellant": "user", "grounds": "g"}
    with ServerThread(app) as server, httpx.Client(base_url=server.url) as client:
        assert [client.post("/public/appeals", data=data).status_code for _ in range(3)] == [
            201,
            201,
            429,
        ]
        r = client.post("/public/appeals", data=data)
        assert r.status_code == 429 and int(r.headers["retry-after"]) > 1000
        assert client.get(f"/public/measures/{world.throttle}").status_code == 200  # reading
        tick.t += 1800  # half an hour: one more filing
        assert client.post("/public/appeals", data=data).status_code == 201


def test_platform_api_appeals(site: Site) -> None:
    w = site.world
    r = site.client.post(
        "/api/platform/appeals",
        json={"measure_id": w.throttle, "grounds": "all items removed", "contact": CONTACT},
        headers=site.auth(w.twitter_token),
    )
    assert r.status_code == 201, r.text
    doc = r.json()
    assert doc["appeal"]["appellant"] == "platform" and "contact" not in doc["appeal"]
    own = site.client.get(
        f"/api/platform/appeals/{doc['receipt']}", headers=site.auth(w.twitter_token)
    )
    assert own.status_code == 200 and own.json()["id"] == doc["appeal"]["id"]
    other = site.client.get(
        f"/api/platform/appeals/{doc['receipt']}", headers=site.auth(w.vk_token)
    )
    assert other.status_code == 404
    # vk may not appeal twitter's item or measure: as if they did not exist
    for body in ({"item_id": w.item}, {"measure_id": w.throttle}):
        r = site.client.post(
            "/api/platform/appeals",
            json={**body, "grounds": "not ours"},
            headers=site.auth(w.vk_token),
        )
        assert r.status_code == 404, body
    r = site.client.post(
        "/api/platform/appeals",
        json={"item_id": w.vk_item, "grounds": "ours"},
        headers=site.auth(w.vk_token),
    )
    assert r.status_code == 201 and r.json()["appeal"]["subject"] == f"item {w.vk_item}"
    assert site.client.post("/api/platform/appeals", json={"grounds": "x"}).status_code == 401
    r = site.client.post(
        "/api/platform/appeals",
        json={"measure_id": w.throttle, "grounds": "x", "appellant": "user"},
        headers=site.auth(w.twitter_token),
    )
    assert r.status_code == 422 and r.json()["where"] == "appellant"
    r = site.client.post(
        "/api/platform/appeals",
        content=b'{"grounds": "' + b"x" * (70 * 1024) + b'"}',
        headers={**site.auth(w.twitter_token), "Content-Type": "application/json"},
    )
    assert r.status_code == 413
    assert stored(w.db) == 2


def test_measure_page_counts_outcomes_and_never_the_contact(site: Site) -> None:
    w = site.world
    receipts = [receipt_of(site.form().text) for _ in range(3)]
    open_one = appeals.get_by_receipt(w.db, receipts[2])
    first, second = (appeals.get_by_receipt(w.db, r) for r in receipts[:2])
    appeals.decide(w.db, first.id, outcome="upheld", reasons=HOSTILE, actor=w.carol, now=NOW)
    appeals.decide(
        w.db, second.id, outcome="reversed", reasons="collateral harm", actor=w.bob, now=NOW
    )
    doc = site.client.get(f"/public/measures/{w.throttle}", params={"format": "json"}).json()
    summary = doc["appeals"]
    assert {k: summary[k] for k in ("filed", "open", "upheld", "reversed")} == {
        "filed": 3,
        "open": 1,
        "upheld": 1,
        "reversed": 1,
    }
    assert [d["outcome"] for d in summary["decisions"]] == ["reversed", "upheld"]
    assert doc["state"] == "lifted"  # the reversal lifted it
    assert doc["lift_decision"] == f"appeal {second.id} reversed: collateral harm"
    page = site.client.get(f"/public/measures/{w.throttle}").text
    assert "3 appeals filed: 1 open, 1 refused, 1 reversed." in page
    assert "<script>" not in page and "<img" not in page and HOSTILE in html.unescape(page)
    status = site.client.get(f"/public/appeals/{receipts[0]}").text
    assert "<th>State</th><td>refused</td>" in status and "<script>" not in status
    reversed_status = site.client.get(f"/public/appeals/{receipts[1]}").text
    assert "the measure was lifted" in reversed_status
    paths = [
        "/public/",
        f"/public/measures/{w.throttle}",
        "/public/lookup?host=twitter.com",
        *(f"/public/appeals/{r}" for r in receipts),
    ]
    for path in paths:
        for fmt in ("html", "json"):
            text = site.client.get(path, params={"format": fmt}).text
            assert CONTACT not in text and "appellant-secret" not in text, (path, fmt)
            assert "lessons" not in text, (path, fmt)  # nor the grounds
    assert open_one.state == "open"


def test_lookup_and_index_link_the_form(site: Site) -> None:
    w = site.world
    doc = site.client.get("/public/lookup", params={"host": "twitter.com", "format": "json"}).json()
    [d] = [d for d in doc["directives"] if d["measure_id"] == w.throttle]
    assert d["appeal_form"].endswith(f"/public/appeals/new?measure={w.throttle}")
    page = site.client.get("/public/lookup", params={"host": "twitter.com"}).text
    assert f'/public/appeals/new?measure={w.throttle}">Contest this measure</a>' in page
    index = site.client.get("/public/").text
    assert f'/public/appeals/new?measure={w.throttle}">Contest</a>' in index
