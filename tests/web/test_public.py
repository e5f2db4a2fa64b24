"""The public pages over real HTTP (uvicorn on loopback), on SQLite and PostgreSQL; and a
look at one page in a real browser (headless Chromium)."""

from __future__ import annotations

import html
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from markupsafe import escape
from notices.support import ServerThread
from sqlalchemy import insert

from takedown.clock import SimClock
from takedown.policy import measures, spec
from takedown.store.db import Database
from takedown.store.schema import Item
from tests import staff
from tests.policy.dbdata import add_platform, load_stubborn
from tests.web.webapp import APPEAL, APPEAL_URL, full_app

ROOT = Path(__file__).resolve().parents[2]
RU_2021 = ROOT / "examples" / "ladders" / "ru-2021.toml"
START = datetime(2021, 3, 10, tzinfo=UTC)
NOW = START + timedelta(days=2)
HOSTILE = '<script>alert("x")</script> & <img src=x onerror=alert(1)>'
HOSTILE_REF = "RKN-<b>7</b>"
CSAM_URL = "https://csam-host.example/gallery/42"


@dataclass
class Site:
    db: Database
    client: httpx.Client
    ladder_measure: int  # stubborn, throttled by the ladder rule "slowdown"
    block: int  # twitter, blocked by decision, approved by bob
    pending: int  # vk, a block awaiting approval (not public)


def _register(db: Database) -> None:
    """Register items no platform answers for: a whole domain, and a CSAM URL, both under
    one decision; the domain becomes a register block directive, the URL does not."""
    rows = [
        {
            "target": "blocked-casino.example",
            "kind": "domain",
            "host": "blocked-casino.example",
            "category": "gambling",
        },
        {"target": CSAM_URL, "kind": "url", "host": "csam-host.example", "category": "csam"},
    ]
    with db.session() as s:
        s.execute(
            insert(Item),
            [
                {
                    **r,
                    "platform_id": None,
                    "basis": "149-FZ art. 15.1",
                    "decision_ref": "RKN-REG-1",
                    "authority": "Roskomnadzor",
                    "decision_date": "2021-03-01",
                    "listed_at": START - timedelta(days=3),
                    "flags": "",
                    "state": "open",
                }
                for r in rows
            ],
        )


def setup_site(db: Database) -> tuple[int, int, int]:
    load_stubborn(db)  # 50 items of four categories (csam among them), never removed
    _, [ladder_measure] = measures.run(db, spec.load(RU_2021), START, "ladder-bot", apply=True)
    add_platform(db, "twitter", {"twitter.com": "text", "*.twimg.com": "media", "t.co": "links"})
    add_platform(db, "vk", {"vk.com": "text"})
    block = measures.add(
        db,
        "twitter",
        action="block",
        decision=HOSTILE_REF,
        reason=HOSTILE,
        now=START,
        actor="alice",
    )
    bob = staff.account(db, "bob", "approver", now=START)
    measures.approve(db, block, bob, START + timedelta(hours=1))
    pending = measures.add(
        db, "vk", action="block", decision="RKN-VK-1", reason="not yet", now=START, actor="alice"
    )
    _register(db)
    return ladder_measure, block, pending


@pytest.fixture
def site(db: Database) -> Iterator[Site]:
    ids = setup_site(db)
    with (
        ServerThread(full_app(db, SimClock(NOW))) as server,
        httpx.Client(base_url=server.url, timeout=30) as client,
    ):
        yield Site(db, client, *ids)


def get_json(site: Site, path: str, **params: str) -> dict:
    r = site.client.get(path, params={**params, "format": "json"})
    assert r.status_code == 200, r.text
    return r.json()


def lookup(site: Site, host: str) -> dict:
    return get_json(site, "/public/lookup", host=host)


def test_measure_page_shows_rule_figures_decisions_and_appeal(site: Site) -> None:
    r = site.client.get(f"/public/measures/{site.ladder_measure}")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in r.headers["content-security-policy"]
    page = r.text
    assert "slowed to 128 kbit/s" in page and "stubborn.example" in page
    assert "the rule “slowdown”" in page
    assert "<th>items past their removal deadline</th><td>50</td>" in page  # what fired it
    for k in range(7):
        assert f"RKN-stubborn-{k}" in page  # every decision behind it, by reference
    assert "Child sexual abuse material" in page  # counted by category
    assert str(escape(APPEAL)) in page and f'href="{APPEAL_URL}"' in page
    assert "until Apr 15, 2021" in page  # until when: the review date
    doc = get_json(site, f"/public/measures/{site.ladder_measure}")
    assert doc["why"]["rule"] == "slowdown" and doc["why"]["figures_read"]["overdue"] == 50
    assert doc["legal_basis"]["items"] == 50 and doc["legal_basis"]["by_category"]["csam"] == 13
    assert doc["scope_percent"] == {"fixed": 50.0, "mobile": 100.0}
    assert doc["hosts"] == [{"pattern": "stubborn.example", "content_class": "media"}]
    assert doc["applied_by"] == {"name": "ladder-bot", "role": "ladder"}
    accept = site.client.get(
        f"/public/measures/{site.ladder_measure}", headers={"Accept": "application/json"}
    )
    assert accept.json() == doc


def test_hostile_strings_are_escaped_and_approvals_shown(site: Site) -> None:
    page = site.client.get(f"/public/measures/{site.block}").text
    assert "<script>" not in page and "<img" not in page and "<b>7</b>" not in page
    assert str(escape(HOSTILE)) in page
    assert html.unescape(page).count(HOSTILE) == 1  # the reason, shown as text
    assert "RKN-&lt;b&gt;7&lt;/b&gt;" in page
    assert "<td>approved</td><td>bob</td><td>approver</td>" in page
    doc = get_json(site, f"/public/measures/{site.block}")
    assert doc["why"]["reason"] == HOSTILE  # JSON carries the text as it is
    assert doc["approvals"][0]["name"] == "bob" and doc["state"] == "active"
    # the lookup and index pages escape it too
    for path in ("/public/lookup?host=twitter.com", "/public/"):
        text = site.client.get(path).text
        assert "<script>" not in text and "<img" not in text and "<b>7</b>" not in text


def test_pages_use_only_the_local_stylesheet(site: Site) -> None:
    for path in (
        "/public/",
        f"/public/measures/{site.block}",
        "/public/lookup",
        "/public/lookup?host=t.co",
    ):
        r = site.client.get(path)
        assert r.status_code == 200, path
        csp = r.headers["content-security-policy"]
        assert "unsafe-inline" not in csp and "style-src 'self'" in csp
        assert "<style" not in r.text and "style=" not in r.text and "<script" not in r.text
        assert '<link rel="stylesheet" href="/static/takedown.css">' in r.text
    css = site.client.get("/static/takedown.css")
    assert css.status_code == 200 and ".badge" in css.text


def test_lookup_follows_label_boundaries(site: Site) -> None:
    t = lookup(site, "t.co")
    assert t["restricted"] is True
    [d] = t["directives"]
    assert d["measure_id"] == site.block and d["matched"] == [
        {"rule": "t.co", "content_class": "links"}
    ]
    assert d["why"]["reason"] == HOSTILE and d["url"].endswith(f"/public/measures/{site.block}")
    assert d["applies"] is True  # the one directive matching, and in force
    for host in (
        "microsoft.com",
        "reddit.com",
        "t.co.evil.example",
        "xt.co",
        "nottwimg.com",
        "twimg.com.evil.example",
        "twimg.com",
    ):
        doc = lookup(site, host)
        assert doc["restricted"] is False and doc["directives"] == [], host
    assert lookup(site, "pbs.twimg.com")["directives"][0]["matched"] == [
        {"rule": "*.twimg.com", "content_class": "media"}
    ]
    assert lookup(site, "PBS.TWIMG.COM.")["query"]["normalised"] == "pbs.twimg.com"
    page = site.client.get("/public/lookup", params={"host": "microsoft.com"}).text
    assert "microsoft.com is not restricted" in page
    page = site.client.get("/public/lookup", params={"host": "t.co"}).text
    assert (
        "<th>Applies to this site now?</th><td>Yes: this is the measure the network applies now."
        in page
    )


def test_lookup_register_block_and_decision(site: Site) -> None:
    doc = lookup(site, "blocked-casino.example")
    assert doc["restricted"] is True
    [d] = doc["directives"]
    assert d["action"] == "block" and d["decisions"] == ["RKN-REG-1"] and d["measure_id"] is None
    assert d["why"]["decisions"] == [
        {"decision": "RKN-REG-1", "items_by_category": {"csam": 1, "gambling": 1}}
    ]
    assert lookup(site, "www.blocked-casino.example")["restricted"] is False  # a name, not *.
    dec = get_json(site, "/public/lookup", decision="RKN-REG-1")
    assert [x["id"] for x in dec["directives"]] == [d["id"]]
    assert dec["register_items_by_category"] == {"csam": 1, "gambling": 1}
    # the measure made by a decision is found by that decision too
    by_ref = get_json(site, "/public/lookup", decision=HOSTILE_REF)
    assert [x["measure_id"] for x in by_ref["directives"]] == [site.block]
    r = site.client.get("/public/lookup", params={"decision": "NO-SUCH", "format": "json"})
    assert r.status_code == 404
    # the reference URL compiled into register directives resolves to this page
    assert site.client.get("/public/lookup?decision=RKN-REG-1").status_code == 200


def test_no_item_url_ever_appears(site: Site) -> None:
    paths = [
        "/public/",
        f"/public/measures/{site.ladder_measure}",
        f"/public/measures/{site.block}",
        "/public/lookup?host=stubborn.example",
        "/public/lookup?host=csam-host.example",
        "/public/lookup?decision=RKN-REG-1",
        "/public/lookup?decision=RKN-stubborn-1",
    ]
    for path in paths:
        for fmt in ("html", "json"):
            text = site.client.get(path, params={"format": fmt}).text
            assert "/status/" not in text, (path, fmt)  # stubborn's item URLs
            assert CSAM_URL not in text and "gallery" not in text, (path, fmt)
    assert lookup(site, "csam-host.example")["restricted"] is False


def test_index_lists_measures_in_force_not_pending(site: Site) -> None:
    doc = get_json(site, "/public/")
    assert [m["id"] for m in doc["measures_in_force"]] == [site.ladder_measure, site.block]
    assert doc["register_decisions"] == 1
    page = site.client.get("/public/").text
    assert f'href="/public/measures/{site.block}"' in page and "RKN-VK-1" not in page
    r = site.client.get(f"/public/measures/{site.pending}")
    assert r.status_code == 404  # a block awaiting its second approval is not public yet
    assert site.client.get("/public/measures/99999").status_code == 404


def test_bad_lookups(site: Site) -> None:
    for params in (
        {"host": "a..b"},
        {"host": "exa mple.com"},
        {"host": "t.co", "decision": "X"},
        {"format": "json"},
        {"host": "t.co", "format": "xml"},
    ):
        r = site.client.get("/public/lookup", params=params)
        assert r.status_code == 422, params
        assert "where" in r.json()
    form = site.client.get("/public/lookup")
    assert form.status_code == 200 and '<form method="get" action="/public/lookup">' in form.text
    r = site.client.get("/public/lookup", params={"host": "x" * 2000})
    assert r.status_code == 422


def test_lookup_follows_the_clock(db: Database) -> None:
    ladder_measure, _block, _pending = setup_site(db)
    clock = SimClock(NOW)
    with (
        ServerThread(full_app(db, clock)) as server,
        httpx.Client(base_url=server.url, timeout=30) as c,
    ):
        q = {"host": "stubborn.example", "format": "json"}
        assert c.get("/public/lookup", params=q).json()["restricted"] is True
        clock.advance(timedelta(days=40))  # past the review date (15 April), not renewed
        assert c.get("/public/lookup", params=q).json()["restricted"] is False
        assert c.get(f"/public/measures/{ladder_measure}?format=json").json()["state"] == "expired"


CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.mark.skipif(
    not os.path.exists(CHROMIUM) and os.environ.get("CI", "").lower() != "true",
    reason="chromium not installed",
)
def test_measure_page_in_a_real_browser(sqlite_db: Database, tmp_path: Path) -> None:
    _ladder, block, _pending = setup_site(sqlite_db)
    shot = tmp_path / "measure.png"
    with ServerThread(full_app(sqlite_db, SimClock(NOW))) as server:
        proc = subprocess.run(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                f"--user-data-dir={tmp_path / 'profile'}",
                f"--screenshot={shot}",
                "--window-size=1200,1400",
                f"{server.url}/public/measures/{block}",
            ],
            capture_output=True,
            timeout=120,
            check=False,
        )
    assert shot.exists(), proc.stderr.decode(errors="replace")[-2000:]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
    keep = os.environ.get("TAKEDOWN_KEEP_SCREENSHOT")
    if keep:
        shutil.copy(shot, keep)
