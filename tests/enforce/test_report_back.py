"""`takedown enforce --report URL --token T`: a real point process reports its set,
fail-open state and per-directive counters to a real regulator server (uvicorn on
loopback, SQLite), signed; the staff CLI then shows it."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from test_server_cli import Proc
from test_server_support import CA, Origin, need_tool, run, twitter_media_throttle

from takedown.clock import SystemClock
from takedown.feed.directives import dumps
from takedown.fleet import store
from takedown.model import DirectiveSet
from takedown.store.db import Database
from takedown.store.migrate import upgrade
from takedown.web.app import AppSettings, build

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from notices.support import ServerThread

from tests import staff

TAKEDOWN = str(Path(sys.executable).parent / "takedown")


def cli(db: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [TAKEDOWN, "--db", db, *args], capture_output=True, text=True, timeout=60, check=False
    )


async def test_a_point_reports_its_counters_and_the_cli_shows_the_fleet(
    tmp_path: Path, ca: CA, origin: Origin
) -> None:
    curl = need_tool("curl")
    db_path = str(tmp_path / "takedown.db")
    db = Database(db_path)
    upgrade(db)
    added = cli(db_path, "operator", "add", "rostelecom", "--json")
    assert added.returncode == 0, added.stderr
    token = json.loads(added.stdout)["token"]
    listed = json.loads(cli(db_path, "operator", "list", "--json").stdout)
    assert [(o["name"], o["tokens"], o["points"]) for o in listed] == [("rostelecom", 1, 0)]
    later = datetime.now(UTC) + timedelta(days=1)
    throttle = replace(twitter_media_throttle(100_000, expires=later), measure_id=7)
    feed = tmp_path / "directives.json"
    feed.write_bytes(dumps(DirectiveSet(1, 4, datetime.now(UTC), (throttle,))))
    with ServerThread(build(AppSettings(db=db, clock=SystemClock()))) as server:
        proc = Proc(
            "--feed", str(feed), "--listen", "127.0.0.1:0", "--metrics", "127.0.0.1:0",
            "--resolve", "*:127.0.0.1", "--refresh", "0.2",
            "--report", f"{server.url}/api/operators/reports", "--token", token,
            "--point-id", "msk-1", "--report-interval", "1",
        )  # fmt: skip
        try:
            url = f"https://pbs.twimg.com:{origin.tls_port}/bytes/50000"
            rc, out, _ = await run(
                curl, "-sS", "--max-time", "30", "--cacert", ca.ca_file,
                "-x", f"http://127.0.0.1:{proc.port}", url,
            )  # fmt: skip
            assert (rc, len(out)) == (0, 50000)
            latest: dict[str, object] = {}
            for _ in range(100):  # reports every second of the point's (real) clock
                reports = store.recent_reports(db, limit=1)
                if reports and reports[0]["directives"]:
                    latest = reports[0]
                    counters = latest["directives"][0]  # type: ignore[index]
                    if counters["bytes"] >= 50000:
                        break
                await asyncio.sleep(0.1)
        finally:
            proc.stop()
    assert latest["operator"] == "rostelecom" and latest["point_id"] == "msk-1"
    assert latest["sequence"] == 4 and latest["fail_open"] is False
    [counters] = latest["directives"]  # type: ignore[misc]
    assert counters["id"] == "d-throttle" and counters["measure_id"] == 7
    assert counters["flows"] == 1 and counters["bytes"] >= 50000
    status = cli(db_path, "operators", "status", "--json", "--max-lag", "0")
    assert status.returncode == 0, status.stderr
    [rt] = json.loads(status.stdout)
    assert rt["operator"] == "rostelecom" and rt["points"] == 1
    assert rt["point_status"][0]["sequence"] == 4 and rt["point_status"][0]["lag"] == 0
    piped = cli(db_path, "operators", "status")
    header, line = piped.stdout.splitlines()[:2]
    assert header.split("\t")[:3] == ["operator", "flags", "point"]
    assert line.split("\t")[:4] == ["rostelecom", "ok", "msk-1", "4"]


def test_status_flags_a_silent_point_on_the_simulated_clock_and_check_exits_1(
    tmp_path: Path,
) -> None:
    db_path = str(tmp_path / "takedown.db")
    db = Database(db_path)
    upgrade(db)
    t0 = datetime(2021, 3, 12, tzinfo=UTC)
    _, token = store.add_operator(db, "megafon", now=t0, actor=staff.BOOTSTRAP)
    from takedown.fleet import reports as rep

    body = rep.Report("megafon", "nn-1", t0, 2, 1.0, False).body()
    store.receive_report(db, token, rep.sign(token, body, int(t0.timestamp())), body, t0)
    clock = tmp_path / "clock"
    env_cli = [TAKEDOWN, "--db", db_path, "operators", "status", "--json", "--check"]

    def status_at(when: datetime) -> subprocess.CompletedProcess[str]:
        clock.write_text(when.isoformat())
        import os

        env = {**os.environ, "TAKEDOWN_CLOCK": f"file:{clock}"}
        return subprocess.run(env_cli, capture_output=True, text=True, timeout=60, env=env)

    fine = status_at(t0 + timedelta(minutes=9, seconds=59))
    assert fine.returncode == 0 and json.loads(fine.stdout)[0]["flags"] == []
    silent = status_at(t0 + timedelta(minutes=10))
    assert silent.returncode == 1 and "flagged: megafon" in silent.stderr
    assert json.loads(silent.stdout)[0]["silent_points"] == ["nn-1"]


@pytest.mark.parametrize(
    ("args", "where"),
    [
        (["--report", "http://127.0.0.1:9/r"], "--token"),
        (["--report", "http://127.0.0.1:9/r", "--token", "not-a-token"], "--token"),
        (["--token", "tdo_x." + "a" * 43], "--report"),
        (["--report", "ftp://x/", "--token", "tdo_x." + "a" * 43], "--report"),
    ],
)
def test_bad_report_options_are_usage_errors_naming_the_flag(args: list[str], where: str) -> None:
    out = subprocess.run(
        [TAKEDOWN, "enforce", "--listen", "127.0.0.1:0", *args],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert out.returncode == 2 and where in out.stderr, out.stderr
