"""Four eyes through the regulator API: the same refusals as the CLI, by the token's account."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
from notices.support import ServerThread

from takedown.clock import SimClock
from takedown.policy import measures
from takedown.store.db import Database
from tests import staff
from tests.policy.dbdata import add_platform
from tests.web.webapp import full_app

NOW = datetime(2021, 3, 10, tzinfo=UTC)


def test_approve_and_reject_over_the_api(db: Database) -> None:
    add_platform(db, "twitter", {"twitter.com": "text"})
    alice = staff.token(db, "alice", "analyst", "approver", now=NOW)
    bob = staff.token(db, "bob", "approver", now=NOW)
    auditor = staff.token(db, "audrey", "auditor", now=NOW)
    block = measures.add(
        db, "twitter", action="block", decision="D-1", reason="r", now=NOW, actor="alice"
    )
    other = measures.add(
        db, "twitter", action="block", decision="D-2", reason="r", now=NOW, actor="alice"
    )

    def post(path: str, token: str, body: dict | None = None) -> httpx.Response:
        return c.post(path, headers={"Authorization": f"Bearer {token}"}, json=body)

    with (
        ServerThread(full_app(db, SimClock(NOW))) as server,
        httpx.Client(base_url=server.url) as c,
    ):
        own = post(f"/api/measures/{block}/approve", alice)
        assert own.status_code == 403
        assert own.json() == {
            "error": f"alice proposed measure {block}; four eyes: another approver must decide it",
            "where": "account",
        }
        weak = post(f"/api/measures/{block}/approve", auditor)
        assert weak.status_code == 403 and "needs the approver role" in weak.json()["error"]
        assert post(f"/api/measures/{block}/approve", bob + "x").status_code == 401
        assert c.post(f"/api/measures/{block}/approve").status_code == 401
        ok = post(f"/api/measures/{block}/approve", bob)
        assert ok.status_code == 200 and ok.json()["state"] == "active"
        twice = post(f"/api/measures/{block}/approve", bob)
        assert twice.status_code == 409 and "bob already approved" in twice.json()["error"]
        no_reason = post(f"/api/measures/{other}/reject", bob, {})
        assert no_reason.status_code == 422
        rejected = post(f"/api/measures/{other}/reject", bob, {"reason": "stale figures"})
        assert rejected.status_code == 200 and rejected.json()["state"] == "lifted"
        again = post(f"/api/measures/{other}/approve", bob)
        assert again.status_code == 409 and "nothing to approve" in again.json()["error"]
        assert post("/api/measures/999/approve", bob).status_code == 404
