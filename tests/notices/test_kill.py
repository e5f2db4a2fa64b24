"""SIGKILL of a `takedown serve` process mid-batch loses no notice and acts on none twice.

Real processes: `takedown sim platform` and `takedown serve` (with its delivery worker),
sharing a file clock. The simulator counts receipts per Idempotency-Key.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from takedown.clock import FileClock
from takedown.notices import outbox
from takedown.store.db import Database
from takedown.store.schema import Event, Notice

from .support import START, add_items, free_port, make_platform

TAKEDOWN = str(Path(sys.executable).parent / "takedown")
NOTICES = 200


def wait_until(predicate, what: str, limit: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def delivered(db: Database) -> int:
    with db.reading() as s:
        return int(
            s.scalar(
                select(func.count()).select_from(Notice).where(Notice.delivery_state == "delivered")
            )
        )


@pytest.mark.slow
def test_sigkill_mid_batch(db_url: str, tmp_path: Path) -> None:
    clock_path = tmp_path / "clock"
    clock = FileClock(clock_path)
    clock.write(START)
    env = {
        **os.environ,
        "TAKEDOWN_CLOCK": f"file:{clock_path}",
        "TAKEDOWN_DB": db_url,
    }
    db = Database(db_url)
    sim_port, api_port = free_port(), free_port()
    sim_url = f"http://127.0.0.1:{sim_port}"
    pid, secret, _token = make_platform(db, notice_url=f"{sim_url}/notices")
    add_items(db, pid, NOTICES * 3)
    [res] = outbox.send(db, now=START, actor="t", max_items=3)
    assert len(res.notices) == NOTICES
    serve_cmd = [TAKEDOWN, "serve", "--port", str(api_port), "--lease", "60", "--poll", "0.05"]
    procs: list[subprocess.Popen[bytes]] = []
    try:
        sim = subprocess.Popen(
            [
                TAKEDOWN,
                "sim",
                "platform",
                "--port",
                str(sim_port),
                "--secret",
                secret,
                "--tick-every",
                "0",
            ],
            env=env,
        )
        procs.append(sim)
        wait_until(lambda: httpx.get(f"{sim_url}/_sim/stats").status_code == 200, "simulator")
        httpx.post(f"{sim_url}/_sim/faults", json={"delay_ms": 100})  # a slowish receiver
        serve = subprocess.Popen(serve_cmd, env=env)
        procs.append(serve)
        wait_until(
            lambda: httpx.get(f"{sim_url}/_sim/stats").json()["received"] >= 40, "deliveries"
        )
        serve.send_signal(signal.SIGKILL)
        serve.wait(timeout=10)
        time.sleep(0.3)  # let requests the dead worker left in flight finish at the receiver
        done_before = delivered(db)
        assert done_before < NOTICES, "the kill came too late to be mid-batch"
        httpx.post(f"{sim_url}/_sim/faults", json={"delay_ms": 0})
        clock.write(START + timedelta(seconds=61))  # the dead worker's leases run out
        serve2 = subprocess.Popen(serve_cmd, env=env)
        procs.append(serve2)
        wait_until(lambda: delivered(db) == NOTICES, "all notices delivered")
        stats = httpx.get(f"{sim_url}/_sim/stats").json()
        receipts = httpx.get(f"{sim_url}/_sim/notices").json()
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
    # nothing lost: every notice reached the platform and every item is known once
    assert sorted(int(k) for k in receipts) == sorted(res.notices)
    assert stats["accepted"] == NOTICES and stats["items"] == NOTICES * 3
    # none acted on twice: repeats (sent before the kill, unrecorded) were recognised
    assert sum(r["receipts"] for r in receipts.values()) == stats["accepted"] + stats["duplicates"]
    assert stats["duplicates"] <= 64  # at most the one batch that was in flight
    with db.reading() as s:
        assert s.scalar(select(func.count()).where(Event.type == "notice.delivered")) == NOTICES
    db.close()
