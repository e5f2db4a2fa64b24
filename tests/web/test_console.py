"""The staff console over real HTTP (uvicorn on loopback): sessions, CSRF, the login limit,
four eyes, and every page with its JSON twin."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from notices.support import ServerThread
from sqlalchemy import select, update

from takedown import accounts, ledger
from takedown.clock import SimClock
from takedown.model import DeliveryState
from takedown.store.db import Database
from takedown.store.schema import ConsoleSession, Event, Notice
from takedown.web.app import AppSettings, build
from takedown.web.console.sessions import ConsoleSettings, LoginLimiter, name_key
from tests.policy.dbdata import load_2021

NOW = datetime(2021, 5, 17, 12, tzinfo=UTC)
PASSWORD = "correct horse battery"
STAFF = {"ana": "analyst", "petrova": "approver", "ivanov": "approver", "audrey": "auditor"}


class FakeMonotonic:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@dataclass
class Console:
    db: Database
    clock: SimClock
    url: str
    mono: FakeMonotonic
    clients: list[httpx.Client] = field(default_factory=list)

    def client(self) -> httpx.Client:
        c = httpx.Client(base_url=self.url, timeout=30, follow_redirects=False)
        self.clients.append(c)
        return c

    def login(self, name: str, password: str = PASSWORD) -> httpx.Client:
        c = self.client()
        r = login(c, name, password)
        assert r.status_code == 303, r.text
        return c


def login(c: httpx.Client, name: str, password: str) -> httpx.Response:
    form = c.get("/console/login")
    assert form.status_code == 200
    return c.post(
        "/console/login",
        data={"username": name, "password": password, "csrf": csrf_of(form.text)},
    )


def session_cookie(r: httpx.Response) -> str:
    """The session token a response sets."""
    for header in r.headers.get_list("set-cookie"):
        if header.startswith("takedown_session="):
            return header.split(";")[0].split("=", 1)[1]
    return ""


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', html)
    assert m, "no CSRF field on the page"
    return m.group(1)


def page_csrf(c: httpx.Client, path: str = "/console/") -> str:
    r = c.get(path)
    assert r.status_code == 200, r.text
    return csrf_of(r.text)


def setup(db: Database) -> None:
    load_2021(db, NOW, scale=10)
    with db.session() as s:
        ledger.rebuild(s, NOW)
    for name, role in STAFF.items():
        accounts.add_account(
            db, name, roles=[role], password=PASSWORD, now=NOW, actor=accounts.bootstrap("root")
        )


def serve(db: Database, public_url: str | None = None) -> Iterator[Console]:
    clock, mono = SimClock(NOW), FakeMonotonic()
    settings = AppSettings(
        db=db, clock=clock, console=ConsoleSettings(monotonic=mono), public_url=public_url
    )
    with ServerThread(build(settings)) as server:
        site = Console(db, clock, server.url, mono)
        try:
            yield site
        finally:
            for c in site.clients:
                c.close()


@pytest.fixture
def site(sqlite_db: Database) -> Iterator[Console]:
    setup(sqlite_db)
    yield from serve(sqlite_db)


@pytest.fixture
def any_site(db: Database) -> Iterator[Console]:
    """The console on SQLite and on PostgreSQL."""
    setup(db)
    yield from serve(db)


# --- sessions -------------------------------------------------------------------------------


def test_login_cookie_is_httponly_strict_and_only_its_hash_is_stored(site: Console) -> None:
    c = site.client()
    r = login(c, "Ana", PASSWORD)  # names are normalised
    assert r.status_code == 303 and r.headers["location"] == "/console/"
    cookie = next(h for h in r.headers.get_list("set-cookie") if h.startswith("takedown_session="))
    flags = [f.strip().lower() for f in cookie.split(";")]
    assert "httponly" in flags and "samesite=strict" in flags and "path=/console" in flags
    assert "secure" not in flags  # plain http on loopback, no https public URL
    token = cookie.split(";")[0].split("=", 1)[1]
    with site.db.reading() as s:
        stored = s.scalars(select(ConsoleSession.token_hash)).all()
    assert stored == [accounts.hash_token(token)] and token not in stored
    home = c.get("/console/")
    assert home.status_code == 200 and "ana (analyst)" in home.text
    assert "script-src 'self'" in home.headers["content-security-policy"]
    assert home.headers["cache-control"] == "no-store"
    with site.db.reading() as s:
        assert s.scalar(select(Event.actor).where(Event.type == "console.login")) == "ana"


def test_secure_cookie_when_the_public_url_is_https(sqlite_db: Database) -> None:
    setup(sqlite_db)
    for site in serve(sqlite_db, public_url="https://console.regulator.example"):
        c = site.client()
        form = c.get("/console/login")
        [pre] = form.headers.get_list("set-cookie")
        assert pre.startswith("takedown_login_csrf=") and "Secure" in pre
        token = csrf_of(form.text)
        c.cookies.clear()  # a browser sends a Secure cookie over https only: hand it over
        c.cookies.set("takedown_login_csrf", token, path="/console")
        r = c.post("/console/login", data={"username": "ana", "password": PASSWORD, "csrf": token})
        assert r.status_code == 303
        cookies = r.headers.get_list("set-cookie")
        assert any(h.startswith("takedown_session=") and "Secure" in h for h in cookies)


def test_login_gives_a_new_token_and_ends_the_one_brought(site: Console) -> None:
    first = site.login("ana").cookies["takedown_session"]
    c = site.client()
    token = csrf_of(c.get("/console/login").text)
    c.cookies.set("takedown_session", first, path="/console")  # an earlier session's token
    r = c.post("/console/login", data={"username": "petrova", "password": PASSWORD, "csrf": token})
    assert r.status_code == 303
    assert session_cookie(r) not in ("", first)
    old = site.client()
    old.cookies.set("takedown_session", first, path="/console")
    assert old.get("/console/").status_code == 303  # the token brought to login ended
    forged = site.client()
    token = csrf_of(forged.get("/console/login").text)
    forged.cookies.set("takedown_session", "attacker-chosen-value", path="/console")
    r = forged.post("/console/login", data={"username": "ana", "password": PASSWORD, "csrf": token})
    assert r.status_code == 303
    assert session_cookie(r) not in ("", "attacker-chosen-value")


def test_unauthenticated_pages_redirect_json_and_posts_are_401(site: Console) -> None:
    c = site.client()
    for path in ("/console", "/console/", "/console/register", "/console/measures/1"):
        r = c.get(path)
        assert r.status_code == 303 and r.headers["location"] == "/console/login", path
    r = c.get("/console/measures", params={"format": "json"})
    assert r.status_code == 401 and r.json()["where"] == "session"
    r = c.post("/console/measures/1/approve", data={"csrf": "x"})
    assert r.status_code == 401


def test_post_without_or_with_a_wrong_csrf_token_is_403(site: Console) -> None:
    c = site.login("ana")
    for data in ({}, {"csrf": ""}, {"csrf": "0" * 64}):
        r = c.post("/console/measures", data={**data, "platform": "twitter", "action": "block"})
        assert r.status_code == 403, data
        assert "CSRF" in r.text
    r = c.post("/console/logout")
    assert r.status_code == 403
    assert c.get("/console/").status_code == 200  # still logged in
    other = site.login("petrova")  # another session's token is wrong here
    r = c.post("/console/logout", data={"csrf": page_csrf(other)})
    assert r.status_code == 403


def test_login_form_needs_its_double_submit_cookie(site: Console) -> None:
    c = site.client()
    token = csrf_of(c.get("/console/login").text)
    c.cookies.clear()
    r = c.post("/console/login", data={"username": "ana", "password": PASSWORD, "csrf": token})
    assert r.status_code == 403
    c.get("/console/login")
    r = c.post("/console/login", data={"username": "ana", "password": PASSWORD, "csrf": "x" * 43})
    assert r.status_code == 403


def test_failed_logins_are_limited_with_retry_after(site: Console) -> None:
    c = site.client()
    for _ in range(5):
        r = login(c, "ana", "wrong password!")
        assert r.status_code == 401 and "wrong username or password" in r.text
    r = login(c, "ana", PASSWORD)  # the right password does not help now
    assert r.status_code == 429 and 1 <= int(r.headers["retry-after"]) <= 300
    assert "takedown_session" not in c.cookies
    r = login(c, "petrova", PASSWORD)  # the address is over its limit too
    assert r.status_code == 429
    site.mono.t += 301
    assert login(c, "ana", PASSWORD).status_code == 303


def test_limiter_core_counts_per_key_in_a_window() -> None:
    lim = LoginLimiter(failures=3, window=60)
    keys = ["addr:10.0.0.1", name_key("Ana")]
    assert name_key("ANA") == name_key("ana") == "name:ana"
    for t in (0, 1, 2):
        assert lim.wait(keys, t) == 0
        lim.fail(keys, t)
    assert lim.wait(keys, 3) == pytest.approx(57)
    assert lim.wait(["addr:10.0.0.2", name_key("ana")], 3) > 0  # the name, from elsewhere
    assert lim.wait(["addr:10.0.0.2", name_key("bob")], 3) == 0
    lim.forget(name_key("ana"))
    assert lim.wait(["addr:10.0.0.2", name_key("ana")], 3) == 0
    assert lim.wait(["addr:10.0.0.1"], 61) == 0  # the window slid past
    small = LoginLimiter(failures=1, window=60, max_keys=2)
    for n in range(5):
        small.fail([f"k{n}"], 0)
    assert small.wait(["k0"], 1) == 0 and small.wait(["k4"], 1) > 0


def test_logout_ends_the_session(site: Console) -> None:
    c = site.login("ana")
    token = c.cookies["takedown_session"]
    r = c.post("/console/logout", data={"csrf": page_csrf(c)})
    assert r.status_code == 303 and r.headers["location"] == "/console/login"
    again = site.client()
    again.cookies.set("takedown_session", token, path="/console")
    assert again.get("/console/").status_code == 303
    with site.db.reading() as s:
        assert s.scalar(select(ConsoleSession.ended_at)) == NOW


def test_a_disabled_accounts_session_stops_working(site: Console) -> None:
    c = site.login("ana")
    assert c.get("/console/").status_code == 200
    accounts.disable_account(site.db, "ana", now=NOW, actor=accounts.bootstrap("root"))
    assert c.get("/console/").status_code == 303
    assert login(site.client(), "ana", PASSWORD).status_code == 401


def test_sessions_end_when_idle_and_at_most_after_12_hours(site: Console) -> None:
    c = site.login("ana")
    for _ in range(14):  # used every 50 minutes: the idle hour keeps moving on
        site.clock.advance(timedelta(minutes=50))
        assert c.get("/console/register", params={"format": "json"}).status_code == 200
    site.clock.advance(timedelta(minutes=50))  # 11 h 40 min, then 12 h 30 min in all
    assert c.get("/console/").status_code == 303
    c = site.login("ana")
    site.clock.advance(timedelta(minutes=61))
    assert c.get("/console/").status_code == 303


# --- four eyes ------------------------------------------------------------------------------


def propose_block(c: httpx.Client) -> int:
    r = c.post(
        "/console/measures",
        data={
            "csrf": page_csrf(c, "/console/measures/new"),
            "platform": "twitter",
            "action": "block",
            "mobile": "100",
            "fixed": "100",
            "decision": "RKN-2021-B1",
            "reason": "items left after the deadline",
        },
    )
    assert r.status_code == 303, r.text
    m = re.fullmatch(r"/console/measures/(\d+)\?done=proposed", r.headers["location"])
    assert m
    return int(m.group(1))


def test_four_eyes_in_the_console(any_site: Console) -> None:
    site = any_site
    ana = site.login("ana")
    mid = propose_block(ana)
    page = ana.get(f"/console/measures/{mid}")
    assert page.status_code == 200
    assert f'action="/console/measures/{mid}/approve"' not in page.text
    assert "needs the approver role" in page.text  # why, in the words of four_eyes
    r = ana.post(f"/console/measures/{mid}/approve", data={"csrf": csrf_of(page.text)})
    assert r.status_code == 403 and "may not approve" in r.text

    petrova = site.login("petrova")  # an approver, but the proposer is another: allowed
    page = petrova.get(f"/console/measures/{mid}")
    assert f'action="/console/measures/{mid}/approve"' in page.text
    assert "no collateral" in page.text and "twitter.com" in page.text
    data = petrova.get(f"/console/measures/{mid}", params={"format": "json"}).json()
    assert data["may_decide"] is True and data["measure"]["state"] == "proposed"
    assert data["directives"][0]["action"] == "block"
    r = petrova.post(f"/console/measures/{mid}/approve", data={"csrf": csrf_of(page.text)})
    assert r.status_code == 303, r.text
    page = petrova.get(r.headers["location"])
    assert "Measure approved" in page.text and "petrova at" in page.text
    r = petrova.post(f"/console/measures/{mid}/approve", data={"csrf": csrf_of(page.text)})
    assert r.status_code == 409 and "already approved" in r.text
    ivanov = site.login("ivanov")
    r = ivanov.post(f"/console/measures/{mid}/approve", data={"csrf": page_csrf(ivanov)})
    assert r.status_code == 409 and "nothing to approve" in r.text
    r = ivanov.post(
        f"/console/measures/{mid}/lift", data={"csrf": page_csrf(ivanov), "decision": "RKN-L1"}
    )
    assert r.status_code == 303
    r = ivanov.post(f"/console/measures/{mid}/approve", data={"csrf": page_csrf(ivanov)})
    assert r.status_code == 409 and "is lifted" in r.text


def test_an_approver_cannot_approve_their_own_proposal_and_rejects_need_a_reason(
    site: Console,
) -> None:
    petrova = site.login("petrova")
    mid = propose_block(petrova)
    page = petrova.get(f"/console/measures/{mid}")
    assert "approve" not in re.findall(r'action="[^"]+"', page.text)[-1]
    assert "four eyes" in page.text
    r = petrova.post(f"/console/measures/{mid}/approve", data={"csrf": csrf_of(page.text)})
    assert r.status_code == 403 and "proposed measure" in r.text
    ivanov = site.login("ivanov")
    token = page_csrf(ivanov)
    r = ivanov.post(f"/console/measures/{mid}/reject", data={"csrf": token, "reason": " "})
    assert r.status_code == 422 and "needs a reason" in r.text
    r = ivanov.post(
        f"/console/measures/{mid}/reject",
        data={"csrf": token, "reason": "figures stale"},
        params={"format": "json"},
    )
    assert r.status_code == 200 and r.json()["result"]["lift_decision"] == "rejected: figures stale"


def test_the_api_refuses_the_same_way(site: Console) -> None:
    root = accounts.bootstrap("root")
    tokens = {n: accounts.issue_token(site.db, n, now=NOW, actor=root) for n in ("ana", "ivanov")}
    mid = propose_block(site.login("ana"))
    with httpx.Client(base_url=site.url) as api:

        def post(who: str, path: str, **kw: object) -> httpx.Response:
            return api.post(path, headers={"Authorization": f"Bearer {tokens[who]}"}, **kw)  # type: ignore[arg-type]

        r = post("ana", f"/api/measures/{mid}/approve")
        assert r.status_code == 403 and "may not approve" in r.json()["error"]
        r = post("ivanov", f"/api/measures/{mid}/reject", json={})
        assert r.status_code == 422
        r = post("ivanov", f"/api/measures/{mid}/approve")
        assert r.status_code == 200 and r.json()["state"] == "active"
        r = post("ivanov", f"/api/measures/{mid}/approve")
        assert r.status_code == 409 and "already approved" in r.json()["error"]


# --- pages ----------------------------------------------------------------------------------


def test_every_page_has_a_json_twin_and_an_auditor_only_reads(site: Console) -> None:
    ana = site.login("ana")
    mid = propose_block(ana)
    audrey = site.login("audrey")
    for path in (
        "/console/",
        "/console/register",
        "/console/items/1",
        "/console/notices",
        "/console/measures",
        f"/console/measures/{mid}",
    ):
        html = audrey.get(path)
        assert html.status_code == 200, path
        assert html.headers["content-type"].startswith("text/html")
        data = audrey.get(path, params={"format": "json"})
        assert data.status_code == 200 and data.headers["content-type"] == "application/json"
    dash = audrey.get("/console/", params={"format": "json"}).json()
    assert dash["platforms"][0]["platform"] == "twitter" and dash["awaiting_approval"] == 1
    chart = audrey.get("/console/chart/twitter.svg")
    assert chart.status_code == 200 and chart.headers["content-type"] == "image/svg+xml"
    assert b"<svg" in chart.content[:500]
    assert audrey.get("/console/chart/nope.svg").status_code == 404
    assert audrey.get("/console/measures/new").status_code == 403
    r = audrey.post("/console/items/1/delist", data={"csrf": page_csrf(audrey), "decision": "D"})
    assert r.status_code == 403 and "needs the analyst or approver role" in r.text


def test_operators_page_lists_points_and_flags(site: Console) -> None:
    from takedown.fleet import reports, store

    _, token = store.add_operator(site.db, "rostelecom", now=NOW, actor=accounts.bootstrap("x"))
    store.add_operator(site.db, "megafon", now=NOW, actor=accounts.bootstrap("x"))
    body = reports.Report("rostelecom", "msk-1", NOW, 0, 5.0, False).body()
    signature = reports.sign(token, body, int(NOW.timestamp()))
    store.receive_report(site.db, token, signature, body, NOW)
    audrey = site.login("audrey")
    page = audrey.get("/console/operators")
    assert page.status_code == 200 and "<td>msk-1</td>" in page.text
    data = audrey.get("/console/operators", params={"format": "json"}).json()
    by_name = {o["operator"]: o for o in data["operators"]}
    assert by_name["megafon"]["flags"] == ["never-reported"]
    assert by_name["rostelecom"]["point_status"][0]["point_id"] == "msk-1"


def test_register_search_pages_and_item_history(any_site: Console) -> None:
    site = any_site
    c = site.login("ana")
    first = c.get("/console/register", params={"format": "json", "platform": "twitter"}).json()
    assert len(first["items"]) == 50 and first["next_after"] == first["items"][-1]["id"]
    html = c.get("/console/register", params={"platform": "twitter"}).text
    assert f"platform=twitter&amp;after={first['next_after']}" in html
    second = c.get(
        "/console/register",
        params={"format": "json", "platform": "twitter", "after": first["next_after"]},
    ).json()
    assert second["items"][0]["id"] > first["next_after"]
    open_ = c.get("/console/register", params={"format": "json", "state": "open"}).json()
    assert open_["items"] and all(i["state"] == "open" for i in open_["items"])
    item = c.get("/console/items/1", params={"format": "json"}).json()
    assert item["notices"] and item["item"]["id"] == 1
    assert c.get("/console/register", params={"state": "nope"}).status_code == 422
    assert c.get("/console/items/999999").status_code == 404


def test_add_and_delist_with_reason(site: Console) -> None:
    c = site.login("ana")
    token = page_csrf(c, "/console/register/new")
    form = {
        "csrf": token,
        "target": "https://twitter.com/someone/status/1",
        "category": "drugs",
        "basis": "149-FZ art. 15.1",
        "decision": "RKN-NEW-1",
        "platform": "twitter",
    }
    r = c.post("/console/register", data=form)
    assert r.status_code == 303
    item_path = r.headers["location"].split("?")[0]
    found = c.get(
        "/console/register",
        params={"format": "json", "target": "https://twitter.com/someone/status/1"},
    ).json()
    assert [i["decision"] for i in found["items"]] == ["RKN-NEW-1"]
    r = c.post(
        f"{item_path}/delist", data={"csrf": token, "decision": "RKN-D-1", "reason": "court"}
    )
    assert r.status_code == 303
    page = c.get(item_path, params={"format": "json"}).json()
    assert page["item"]["state"] == "delisted" and page["item"]["delist_decision"] == "RKN-D-1"
    r = c.post(f"{item_path}/delist", data={"csrf": token, "decision": "RKN-D-1", "reason": "x"})
    assert r.status_code == 409
    with site.db.reading() as s:
        ev = s.scalars(select(Event).where(Event.type == "registry.delist")).one()
    assert ev.actor == "ana" and ev.payload["reason"] == "court"


def test_resend_queues_a_notice_again(site: Console) -> None:
    with site.db.session() as s:
        nid = s.scalar(select(Notice.id).order_by(Notice.id))
        s.execute(update(Notice).where(Notice.id == nid).values(delivery_state="failed"))
    c = site.login("ana")
    notices = c.get("/console/notices", params={"format": "json", "state": "failed"}).json()
    assert [n["id"] for n in notices["notices"]] == [nid]
    html = c.get("/console/notices").text
    assert f'action="/console/notices/{nid}/resend"' in html
    r = c.post(f"/console/notices/{nid}/resend", data={"csrf": csrf_of(html)})
    assert r.status_code == 303
    with site.db.reading() as s:
        n = s.get(Notice, nid)
        assert n is not None
        assert n.delivery_state == DeliveryState.PENDING.value and n.next_attempt_at == NOW
    r = c.post(f"/console/notices/{nid}/resend", data={"csrf": csrf_of(html)})
    assert r.status_code == 409 and "already waiting" in r.text
