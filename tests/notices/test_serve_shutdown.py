"""`takedown serve` stops promptly on SIGTERM even with every request thread stuck, and
nothing a stuck request was doing is half-written (it ignored SIGTERM for over 10 s)."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
from sqlalchemy import func, select

from takedown.store.audit import verify_chain
from takedown.store.db import Database
from takedown.store.migrate import upgrade
from takedown.store.schema import Response

from .support import add_items, free_port, make_platform

TAKEDOWN = str(Path(sys.executable).parent / "takedown")
STUCK = 12  # requests blocked on the database when the signal comes


def test_sigterm_with_a_busy_thread_pool_stops_within_5_s(tmp_path: Path) -> None:
    path = tmp_path / "takedown.db"
    db = Database(str(path))
    upgrade(db)
    pid, _secret, token = make_platform(db, notice_url=None)
    items = add_items(db, pid, STUCK)
    port = free_port()
    env = {**os.environ, "TAKEDOWN_DB": str(path)}
    serve = subprocess.Popen([TAKEDOWN, "serve", "--port", str(port), "--no-worker"], env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{url}/public/", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        # another writer holds the database: every response a platform posts now waits
        lock = sqlite3.connect(path, isolation_level=None)
        lock.execute("BEGIN IMMEDIATE")
        answers: list[object] = []

        def respond(item_id: int) -> None:
            try:
                answers.append(
                    httpx.post(
                        f"{url}/api/platform/items/{item_id}/response",
                        headers={"Authorization": f"Bearer {token}"},
                        json={"action": "removed"},
                        timeout=30,
                    ).status_code
                )
            except httpx.HTTPError as exc:
                answers.append(type(exc).__name__)

        threads = [threading.Thread(target=respond, args=(i,)) for i in items]
        for t in threads:
            t.start()
        time.sleep(1.0)  # let the requests reach the server and block on the lock
        serve.send_signal(signal.SIGTERM)
        assert serve.wait(timeout=5) is not None  # TimeoutExpired here is the bug
        lock.execute("ROLLBACK")
        lock.close()
        for t in threads:
            t.join(timeout=30)
        assert len(answers) == STUCK and 200 not in answers  # cut, not answered
    finally:
        if serve.poll() is None:
            serve.kill()
            serve.wait()
    with db.reading() as s:
        assert s.scalar(select(func.count()).select_from(Response)) == 0
        assert verify_chain(s).ok
