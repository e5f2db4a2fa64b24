"""`takedown demo`: the 2021 case end to end, as a newcomer runs it (real processes)."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from takedown.enforce.subscribers import Subscribers

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def free_base_port() -> int:
    """A base port whose next five ports are free on 127.0.0.1."""
    for base in range(20000 + os.getpid() % 5000 * 5, 60000, 7):
        ok = True
        for p in range(base, base + 5):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", p))
                except OSError:
                    ok = False
                    break
        if ok:
            return base
    raise RuntimeError("no free ports")


def demo(out: Path, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "takedown",
            "demo",
            "--out",
            str(out),
            "--base-port",
            str(free_base_port()),
            "--json",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
    )


def children_of(out: Path) -> list[str]:
    """Command lines of live processes started for ``out`` (none may outlive the demo)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            env = (proc / "environ").read_bytes()
        except OSError:
            continue
        if str(out).encode() in env and "takedown" in cmd and "demo" not in cmd:
            found.append(cmd)
    return found


def rows(db: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql).fetchall()


@pytest.fixture(scope="module")
def run_2021(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict]]:
    out = tmp_path_factory.mktemp("demo2021")
    r = demo(out, "--measure-seconds", "2")
    assert r.returncode == 0, r.stderr[-2000:]
    yield out, json.loads(r.stdout)


def test_outputs_exist_and_report_is_self_contained(run_2021: tuple[Path, dict]) -> None:
    out, summary = run_2021
    for name in ("report.html", "compliance.png", "rates.png", "timeline.jsonl", "takedown.db"):
        assert (out / name).stat().st_size > 1000, name
    page = (out / "report.html").read_text()
    assert summary["statement"] in page.replace("&#x27;", "'")
    assert 'src="http' not in page and 'href="http' not in page  # opens offline
    assert page.count("data:image/png;base64,") == 2
    events = [json.loads(line) for line in (out / "timeline.jsonl").read_text().splitlines()]
    assert events == sorted(events, key=lambda e: e["seq"])
    assert {"notice.issued", "measure.active", "feed.publish"} <= {e["type"] for e in events}
    assert not children_of(out), "a service outlived the demo"


def test_the_enforcement_point_reported_the_last_publication(run_2021: tuple[Path, dict]) -> None:
    out, summary = run_2021
    db = out / "takedown.db"
    [(latest,)] = rows(db, "SELECT max(sequence) FROM feed_publications")
    [point] = summary["points"]
    assert (point["operator"], point["point_id"]) == ("demo-isp", "demo-1")
    assert point["sequence"] == latest and point["lag"] == 0 and not point["fail_open"]
    # the point's signed reports are stored, ordered, and counted the throttled flows
    reports = rows(db, "SELECT sequence, directives FROM point_reports ORDER BY id")
    assert len(reports) > 10 and reports[-1][0] == latest
    assert any(json.loads(r[1]) for r in reports)
    page = (out / "report.html").read_text()
    assert "<h2>Enforcement points</h2>" in page
    assert f"<td>demo-isp</td><td>demo-1</td><td>{latest}</td><td>0</td>" in page


def test_reuploads_found_by_verification_and_removed_by_the_platform(
    run_2021: tuple[Path, dict],
) -> None:
    out, _ = run_2021
    db = out / "takedown.db"
    evidence = rows(db, "SELECT item_id, pdq, quality, kept_path FROM media_evidence ORDER BY id")
    assert len(evidence) == 6 and all(e[1] and e[2] >= 50 and e[3] is None for e in evidence)
    found = rows(
        db,
        "SELECT item_id, url, distance, found_by, found_at, removed_at FROM reuploads ORDER BY id",
    )
    # verification on 17 May finds every re-post of a removed photo under its new URL …
    assert [(f[0], f[1]) for f in found] == [
        (e[0], f"https://pbs.twimg.com/media/R{k:06d}.jpg") for k, e in enumerate(evidence)
    ]
    assert all(f[3] == "verify" and f[4].startswith("2021-05-17") and f[2] <= 31 for f in found)
    # … and the platform, matching the shared hashes, takes them down and reports them
    assert all(f[5] is not None and f[5] > f[4] for f in found)
    fig = json.loads(
        subprocess.run(
            [sys.executable, "-m", "takedown", "--db", str(db), "status", "--platform",
             "twitter", "--json"],
            capture_output=True, text=True, check=True,
        ).stdout
    )  # fmt: skip
    assert (fig["reuploads_found"], fig["reuploads_removed"], fig["reuploads_open"]) == (6, 6, 0)
    page = (out / "report.html").read_text()
    assert "<h2>Re-uploads</h2>" in page and "6 found, 6 removed" in page
    assert page.count("https://pbs.twimg.com/media/R0000") == 6


def test_rates_per_phase(run_2021: tuple[Path, dict]) -> None:
    out, _ = run_2021
    db = out / "takedown.db"
    data = rows(
        db, "SELECT phase, subscriber_class, source, content_class, kbps, verdict FROM measurements"
    )
    by_phase: dict[str, list[tuple]] = {}
    for row in data:
        by_phase.setdefault(row[0], []).append(row)
    assert list(by_phase) == ["before 10 March", "slowdown", "after 17 May", "end"]
    unthrottled = 20 * 128  # kbit/s: anything above is not the slowdown
    for phase in ("before 10 March", "end"):
        assert all(r[4] > unthrottled for r in by_phase[phase]), phase
    assert all(r[4] > unthrottled for r in data if r[3] in ("control", "text"))
    # During the slowdown: mobile media at 128 kbit/s within ±5%.
    mobile_media = [r[4] for r in by_phase["slowdown"] if r[1] == "mobile" and r[3] == "media"]
    assert mobile_media and all(abs(k / 128 - 1) <= 0.05 for k in mobile_media), mobile_media
    # Fixed media throttled exactly for the subscribers the 50% share selects.
    (measure_id,) = rows(db, "SELECT id FROM measures WHERE rule = 'slowdown' ORDER BY id LIMIT 1")[
        0
    ]
    subs = Subscribers.load(out / "subscribers.toml")
    fixed = [r for r in by_phase["slowdown"] if r[1] == "fixed" and r[3] == "media"]
    assert len(fixed) >= 4
    for r in fixed:
        selected = subs.in_share(r[2], 50, salt=f"m{measure_id}")
        assert (abs(r[4] / 128 - 1) <= 0.05) == selected, r
        assert (r[4] > unthrottled) == (not selected), r
    # After 17 May: mobile media still slowed, fixed no longer.
    after = by_phase["after 17 May"]
    assert all(abs(r[4] / 128 - 1) <= 0.05 for r in after if r[1] == "mobile" and r[3] == "media")
    assert all(r[4] > unthrottled for r in after if r[1] == "fixed")


def test_17_may_figures_and_lifts(run_2021: tuple[Path, dict]) -> None:
    out, summary = run_2021
    assert "91%" in summary["statement"] and "563 remain" in summary["statement"]
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "takedown",
            "--db",
            str(out / "takedown.db"),
            "status",
            "--platform",
            "twitter",
            "--at",
            "2021-05-17T00:00:00Z",
            "--json",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    fig = json.loads(r.stdout)
    assert fig["remaining"] == 563 and round(100 * fig["removed_share"]) == 91
    measures = rows(
        out / "takedown.db", "SELECT scope, starts_at, lifted_at, state FROM measures ORDER BY id"
    )
    in_force_17_may = [
        json.loads(m[0])
        for m in measures
        if m[1] and m[1] <= "2021-05-17 12:00" and (not m[2] or m[2] > "2021-05-17 12:00")
    ]
    assert in_force_17_may == [{"mobile": 100.0}]
    assert measures[0][1].startswith("2021-03-10")
    assert all(m[3] != "active" for m in measures), "by the end everything is lifted"


def test_a_platform_that_never_complies_is_blocked_after_approval(tmp_path: Path) -> None:
    out = tmp_path / "never"
    r = demo(
        out,
        "--items",
        "120",
        "--measure-seconds",
        "1",
        "--behavior",
        str(REPO / "examples" / "behaviours" / "ignore.toml"),
    )
    assert r.returncode == 0, r.stderr[-2000:]
    db = out / "takedown.db"
    blocks = rows(
        db, "SELECT id, state, starts_at, created_by FROM measures WHERE action = 'block'"
    )
    assert blocks, "no block was proposed"
    block_id, _state, starts_at, proposer = blocks[0]
    approvals = rows(db, f"SELECT by FROM approvals WHERE measure_id = {block_id}")
    # two named accounts: the analyst proposed it, the approver approved it
    assert (proposer, approvals) == ("ivanova", [("petrov",)])
    accounts = rows(db, "SELECT name, roles FROM staff_accounts ORDER BY name")
    assert accounts == [("ivanova", '["analyst"]'), ("petrov", '["approver"]')]
    assert starts_at is not None
    page = (out / "report.html").read_text()
    assert "block" in page and approvals[0][0] in page
    blocked = rows(db, "SELECT content_class FROM measurements WHERE verdict = 'blocked'")
    assert {c for (c,) in blocked} >= {"media", "text"}
    assert all(c != "control" for (c,) in blocked)


def test_unwritable_dir_and_taken_port_fail_cleanly(tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    (ro / "file").write_text("x")
    r = demo(ro / "file" / "sub")
    assert r.returncode == 1 and "cannot write" in r.stderr and r.stderr.count("\n") == 1
    base = free_base_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", base + 3))
        taken.listen()
        out = tmp_path / "ports"
        r = subprocess.run(
            [sys.executable, "-m", "takedown", "demo", "--out", str(out), "--base-port", str(base)],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert r.returncode == 1 and f"port {base + 3}" in r.stderr
    assert r.stderr.strip().count("\n") == 0
    assert not children_of(out)


def test_ctrl_c_stops_every_service(tmp_path: Path) -> None:
    out = tmp_path / "interrupted"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "takedown",
            "demo",
            "--out",
            str(out),
            "--items",
            "50",
            "--base-port",
            str(free_base_port()),
            "--days-per-second",
            "1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (out / "logs" / "enforce.log").exists():
        time.sleep(0.2)
    assert children_of(out), "services did not start"
    time.sleep(1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err
    assert not children_of(out)


def test_keep_running_prints_the_console_and_a_staff_login_that_works(tmp_path: Path) -> None:
    out = tmp_path / "kept"
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "takedown", "demo", "--out", str(out), "--items", "50",
            "--measure-seconds", "0.5", "--base-port", str(free_base_port()), "--keep-running",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        lines: list[str] = []
        for line in proc.stdout:
            lines.append(line.strip())
            if line.strip().startswith("try:"):
                break
        printed = dict(line.split(": ", 1) for line in lines if ": " in line)
        console = printed["console"]
        logins = [line.split(": ", 1)[1] for line in lines if line.startswith("login:")]
        assert len(logins) == 2, lines
        name, password = logins[0].split(" / ")
        with httpx.Client(base_url=console, follow_redirects=False, timeout=30) as c:
            form = c.get("login")
            csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
            assert form.status_code == 200 and csrf, form.text[:500]
            r = c.post(
                "login", data={"username": name, "password": password, "csrf": csrf.group(1)}
            )
            assert r.status_code == 303, r.text[:500]
            dashboard = c.get("")
            assert dashboard.status_code == 200 and name in dashboard.text
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)
    assert not children_of(out)
