"""Done when: against the platform simulator with 6,200 flagged items of which all but 563
are removed or withheld, `takedown verify` then `takedown status --json` report the figures
the simulator's behaviour implies."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path

import httpx
from sqlalchemy import insert

from takedown.clock import SimClock
from takedown.notices import signing
from takedown.sim.behaviour import load
from takedown.sim.server import SimPlatform, create_sim_app
from takedown.store.db import Database
from takedown.store.schema import Item

from .fixtures import add_notice, add_platform
from .servers import UvicornThread
from .test_cli import env_with_clock, td

NOTICED = datetime(2021, 3, 10, 9, 0, tzinfo=UTC)
MAY17 = datetime(2021, 5, 17, 12, 0, tzinfo=UTC)
N = 6200
BEHAVIOUR = """
name = "twitter-2021-test"
seed = 2021
ack = false
respond = false
withhold_share = 0.1
[hosts]
"twitter.com" = "text"
[[progress]]
at = "2021-03-15T00:00:00Z"
share = 0.0
[[progress]]
at = "2021-05-17T00:00:00Z"
share = 0.9092
"""


def test_verify_then_status_matches_the_simulator(sqlite_db: Database, tmp_path: Path) -> None:
    db = sqlite_db
    db_url = f"sqlite:///{tmp_path / 'takedown.db'}"
    (tmp_path / "b.toml").write_text(BEHAVIOUR)
    clock = SimClock(NOTICED)
    sim = SimPlatform(load(str(tmp_path / "b.toml")), clock, secret="s3cret", tick_every=0)
    pid = add_platform(db, "twitter")
    urls = [f"https://twitter.com/user{k % 1000}/status/{10**15 + k}" for k in range(N)]
    with db.session() as s:
        s.execute(
            insert(Item),
            [
                {
                    "target": u,
                    "kind": "url",
                    "host": "twitter.com",
                    "platform_id": pid,
                    "category": "suicide",
                    "basis": "149-FZ art. 15.1",
                    "decision_ref": f"D{k}",
                    "listed_at": NOTICED,
                    "state": "open",
                    "state_at": NOTICED,
                    "flags": "",
                }
                for k, u in enumerate(urls)
            ],
        )
    with db.reading() as s:
        ids = [r for (r,) in s.execute(Item.__table__.select().with_only_columns(Item.id))]
    notice_id = add_notice(db, ids, NOTICED)
    with UvicornThread(create_sim_app(sim)) as srv:
        base = f"http://127.0.0.1:{srv.port}"
        body = json.dumps(
            {
                "notice_id": notice_id,
                "items": [{"id": i, "target": u} for i, u in zip(ids, urls, strict=True)],
            }
        ).encode()
        headers = {
            signing.HEADER: signing.sign("s3cret", body, int(NOTICED.timestamp())),
            signing.IDEMPOTENCY_HEADER: str(notice_id),
            "content-type": "application/json",
        }
        with httpx.Client(base_url=base, trust_env=False, timeout=60) as client:
            assert client.post("/notices", content=body, headers=headers).status_code == 200
            clock.set(MAY17)
            client.post("/_sim/tick").raise_for_status()
            stats = client.get("/_sim/stats").json()
        env = env_with_clock(tmp_path, MAY17)
        run = td(
            db_url,
            "verify",
            "--connect-to",
            f"twitter.com={base}",
            "--only-loopback",
            "--concurrency",
            "64",
            "--json",
            env=env,
        )
        assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout)
    done = math.floor(0.9092 * N + 1e-9)  # what the behaviour implies by 17 May
    assert stats["removed"] + stats["withheld"] == done == N - 563
    assert summary["checked"] == N and summary["finished"]
    assert summary["verdicts"] == {
        "removed": stats["removed"],
        "restricted": stats["withheld"],
        "available": 563,
    }
    st = td(db_url, "status", "--platform", "twitter", "--json", env=env)
    fig = json.loads(st.stdout)
    assert fig["flagged"] == N
    assert (fig["removed"], fig["restricted"]) == (stats["removed"], stats["withheld"])
    assert fig["remaining"] == 563 and fig["claimed"] == 0
    assert fig["overdue"] == 563  # the 24 h deadline of 11 March passed long ago
    assert round(fig["removed_share"], 3) == 0.909
    assert fig["on_time_share"] == 0.0  # nothing was removed within 24 h of the notice
    text = td(db_url, "status", "--platform", "twitter", "--statement", env=env).stdout
    assert text.startswith(
        "As of 17 May 2021, twitter has removed or withheld 91% of the 6,200 items flagged to"
        " it (5,637:"
    )
    assert "563 remain, 563 of them past their deadline" in text
