"""The regulator API over real HTTP (uvicorn on loopback), on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from notices.support import ServerThread, add_items
from sqlalchemy import select

from takedown import accounts, ledger
from takedown.clock import SimClock
from takedown.feed.compile import compile_directives
from takedown.feed.directives import to_dict
from takedown.policy import measures
from takedown.store.db import Database
from takedown.store.schema import ApiToken, Event
from tests import staff as support
from tests.policy.dbdata import load_2021
from tests.web.webapp import full_app, takedown

NOW = datetime(2021, 5, 17, 12, tzinfo=UTC)


@dataclass
class Api:
    db: Database
    client: httpx.Client
    url: str
    staff: str
    platform_token: str

    def auth(self, token: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token or self.staff}"}


@pytest.fixture
def api(db: Database) -> Iterator[Api]:
    load_2021(db, NOW, scale=10)  # platform "twitter" with the 2021 course of removals
    with db.session() as s:  # the facts went in directly: bring the projection up to date
        ledger.rebuild(s, NOW)
    token = _platform_token(db)
    staff = support.token(db, "alice", "analyst", now=NOW)
    with (
        ServerThread(full_app(db, SimClock(NOW))) as server,
        httpx.Client(base_url=server.url, timeout=30) as client,
    ):
        yield Api(db, client, server.url, staff, token)


def _platform_token(db: Database) -> str:
    from takedown import platforms

    return platforms.issue_token(db, "twitter", now=NOW, actor="root")


ROUTES = ["/api/status", "/api/measures", "/api/measures/1", "/api/items/1", "/api/directives"]


def test_no_wrong_or_platform_token_is_401(api: Api) -> None:
    for path in ROUTES:
        for headers in (
            {},
            {"Authorization": "Bearer nope"},
            {"Authorization": f"Basic {api.staff}"},
            {"Authorization": f"Bearer {api.staff}x"},
            api.auth(api.platform_token),  # a platform's token is not a staff token
        ):
            r = api.client.get(path, headers=headers)
            assert r.status_code == 401, (path, headers)
            assert r.headers["www-authenticate"] == "Bearer"
            assert r.json()["where"] == "Authorization"
    assert api.client.get("/api/status", headers=api.auth()).status_code == 200


def test_staff_token_is_refused_on_the_platform_api(api: Api) -> None:
    r = api.client.get("/api/platform/notices", headers=api.auth())
    assert r.status_code == 401
    # the platform's own token works there, so the refusal is about whose token it is
    assert api.client.get("/api/platform/notices", headers=api.auth(api.platform_token)).is_success


def test_revoked_token_is_401_and_both_are_audited(api: Api) -> None:
    assert api.client.get("/api/status", headers=api.auth()).status_code == 200
    accounts.revoke_token(api.db, "alice", now=NOW, actor=support.BOOTSTRAP)
    assert api.client.get("/api/status", headers=api.auth()).status_code == 401
    with api.db.reading() as s:
        events = [(e.type, e.payload) for e in s.scalars(select(Event).order_by(Event.seq))]
        stored = s.scalars(select(ApiToken.token_hash)).all()
    types = [t for t, _ in events if t.startswith("api_token.")]
    assert types == ["api_token.issued", "api_token.revoked"]
    assert api.staff not in json.dumps(events)  # the token itself is never recorded
    assert stored == [accounts.hash_token(api.staff)] and api.staff not in stored


def test_status_is_the_ledgers_figures(api: Api) -> None:
    body = api.client.get("/api/status", params={"platform": "twitter"}, headers=api.auth()).json()
    with api.db.reading() as s:
        [fast] = ledger.status_fast(s, "twitter", NOW)
    assert body == ledger.figures_json(fast)
    assert set(body) == {
        "platform",
        "as_of",
        "flagged",
        "removed",
        "restricted",
        "claimed",
        "remaining",
        "overdue",
        "removed_share",
        "on_time_share",
        "ttr_median_h",
        "ttr_p90_h",
        "reuploads_found",
        "reuploads_removed",
        "reuploads_open",
    }
    assert body["flagged"] == fast.flagged > 600
    assert body["remaining"] == fast.remaining and body["removed"] > 500
    # as of a past moment: the facts, as `takedown status --at` computes them
    at = "2021-03-10T00:00:00+00:00"
    past = api.client.get("/api/status", params={"at": at}, headers=api.auth()).json()
    with api.db.reading() as s:
        [then] = ledger.status_from_facts(s, "twitter", datetime.fromisoformat(at))
    assert past == [ledger.figures_json(then)]
    assert past[0]["overdue"] == 317 and past[0]["remaining"] > body["remaining"]
    r = api.client.get("/api/status", params={"at": "yesterday"}, headers=api.auth())
    assert r.status_code == 422 and r.json()["where"] == "at"
    r = api.client.get("/api/status", params={"platform": "nope"}, headers=api.auth())
    assert r.status_code == 404


def test_status_matches_the_cli(api: Api, db_url: str) -> None:
    at = "2021-04-01T00:00:00+00:00"
    cli = takedown(db_url, "status", "--json", "--platform", "twitter", "--at", at)
    assert cli.returncode == 0, cli.stderr
    body = api.client.get(
        "/api/status", params={"platform": "twitter", "at": at}, headers=api.auth()
    ).json()
    # the same figures; the CLI writes its times as ...Z, the API as ...+00:00
    assert (body["as_of"], json.loads(cli.stdout)["as_of"]) == (at, "2021-04-01T00:00:00Z")
    assert {**body, "as_of": at} == {**json.loads(cli.stdout), "as_of": at}


def test_measures_list_filter_and_explain(api: Api) -> None:
    mid = measures.add(
        api.db,
        "twitter",
        action="throttle",
        decision="RKN-2021-03-10",
        reason="media slowdown",
        now=NOW,
        actor="alice",
        rate_kbps=128,
        classes=["media"],
        scope={"mobile": 100},
    )
    h = api.auth()
    rows = api.client.get("/api/measures", headers=h).json()
    assert [r["id"] for r in rows] == [mid] and rows[0]["state"] == "active"
    assert api.client.get("/api/measures", params={"state": "active"}, headers=h).json() == rows
    assert api.client.get("/api/measures", params={"state": "lifted"}, headers=h).json() == []
    assert api.client.get("/api/measures", params={"state": "bogus"}, headers=h).status_code == 422
    doc = api.client.get(f"/api/measures/{mid}", headers=h).json()
    expected = measures.explain(api.db, mid).as_json()
    assert doc["legal_basis"] == json.loads(json.dumps(expected["legal_basis"], default=str))
    assert doc["decision_ref"] == "RKN-2021-03-10" and doc["figures"]["fired"].startswith("decis")
    assert api.client.get("/api/measures/99999", headers=h).status_code == 404


def test_item(api: Api) -> None:
    [iid] = add_items(api.db, _pid(api.db), 1, prefix="x")
    body = api.client.get(f"/api/items/{iid}", headers=api.auth()).json()
    assert body["id"] == iid and body["target"].startswith("https://twitter.com/")
    assert body["decision"] == "D-x-0" and body["state"] == "open" and "deadline_at" in body
    assert api.client.get("/api/items/99999999", headers=api.auth()).status_code == 404


def _pid(db: Database) -> int:
    from notices.support import platform_id

    return platform_id(db, "twitter")


def test_directives_are_the_set_compiled_now(api: Api) -> None:
    mid = measures.add(
        api.db,
        "twitter",
        action="throttle",
        decision="RKN-1",
        reason="r",
        now=NOW,
        actor="alice",
        rate_kbps=128,
        classes=["media"],
    )
    body = api.client.get("/api/directives", headers=api.auth()).json()
    with api.db.reading() as s:
        expected = to_dict(compile_directives(s, NOW, public_url=api.url).directives)
    assert {k: v for k, v in body.items() if k != "refused"} == expected
    [d] = [d for d in body["directives"] if d["measure_id"] == mid]
    assert d["reference_url"] == f"{api.url}/public/measures/{mid}"
    assert [h["pattern"] for h in d["hosts"]] == ["*.twimg.com"]


def test_cli_issue_list_revoke(db: Database, db_url: str, tmp_path: Path) -> None:
    clock = tmp_path / "clock"
    clock.write_text("2021-03-10T00:00:00Z")
    missing = takedown(db_url, "api-token", "issue", "bob", clock_file=clock)
    assert missing.returncode == 1 and "no account named 'bob'" in missing.stderr
    added = takedown(
        db_url, "staff", "add", "Bob", "--role", "auditor", "--no-password", clock_file=clock
    )
    assert added.returncode == 0, added.stderr
    r = takedown(db_url, "api-token", "issue", "BOB", "--json", clock_file=clock)
    assert r.returncode == 0, r.stderr
    issued = json.loads(r.stdout)
    assert issued["name"] == "bob" and len(issued["token"]) > 40
    with (
        ServerThread(full_app(db, SimClock(NOW))) as server,
        httpx.Client(base_url=server.url) as c,
    ):
        headers = {"Authorization": f"Bearer {issued['token']}"}
        assert c.get("/api/status", headers=headers).status_code == 200
        again = takedown(db_url, "api-token", "issue", "bob", clock_file=clock)
        assert again.returncode == 1 and "active token" in again.stderr
        listed = takedown(db_url, "api-token", "list", "--json", clock_file=clock)
        rows = json.loads(listed.stdout)
        assert [(t["name"], t["roles"], t["active"]) for t in rows] == [("bob", ["auditor"], True)]
        assert issued["token"] not in listed.stdout
        assert accounts.hash_token(issued["token"]) not in listed.stdout
        assert takedown(db_url, "api-token", "revoke", "bob", clock_file=clock).returncode == 0
        assert c.get("/api/status", headers=headers).status_code == 401
    gone = takedown(db_url, "api-token", "revoke", "bob", clock_file=clock)
    assert gone.returncode == 1 and "no active token" in gone.stderr
    bad = takedown(db_url, "staff", "add", "eve", "--role", "root", clock_file=clock)
    assert bad.returncode == 2 and "--role" in bad.stderr  # a usage error: not a choice


@pytest.mark.parametrize("bad", [2**31, 2**63, 2**64, 10**30, 0, -1])
def test_ids_out_of_range_are_422_not_500(api: Api, bad: int) -> None:
    """An id past a 64-bit integer overflowed in the query (HTTP 500)."""
    staff, platform = api.auth(), api.auth(api.platform_token)
    for path, headers, method in [
        (f"/api/measures/{bad}", staff, "GET"),
        (f"/api/items/{bad}", staff, "GET"),
        (f"/api/platform/notices/{bad}", platform, "GET"),
        (f"/api/platform/notices/{bad}/ack", platform, "POST"),
        (f"/api/platform/items/{bad}/response", platform, "POST"),
        (f"/public/measures/{bad}", {}, "GET"),
    ]:
        r = api.client.request(method, path, headers=headers, json={"action": "removed"})
        assert r.status_code == 422, (path, r.status_code, r.text)
        assert r.json()["where"]  # names the field
    largest = 2**31 - 1  # the largest id an INTEGER column holds: simply not there
    assert api.client.get(f"/api/measures/{largest}", headers=staff).status_code == 404
    assert api.client.get(f"/public/measures/{largest}").status_code == 404
