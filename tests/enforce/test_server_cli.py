"""`takedown enforce` as a process: real TUF feed, curl, the metrics endpoint, workers."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

from test_server_support import (
    CA,
    Origin,
    linkedin_block,
    need_tool,
    run,
    twitter_media_throttle,
)

from takedown.feed.repository import init_repository, publish
from takedown.model import DirectiveSet

LATER = datetime.now(UTC) + timedelta(days=30)


class Proc:
    def __init__(self, *args: str) -> None:
        self.p = subprocess.Popen(
            [sys.executable, "-c", "from takedown.cli import main; main()", "enforce", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.port = self.metrics_port = 0
        assert self.p.stdout is not None
        for _ in range(10):
            line = self.p.stdout.readline()
            if not line:
                break
            if m := re.match(r"metrics on http://[\d.]+:(\d+)/", line):
                self.metrics_port = int(m.group(1))
            if m := re.match(r"listening on [\d.]+:(\d+)", line):
                self.port = int(m.group(1))
                break
        assert self.port, self.p.stderr.read() if self.p.stderr else ""

    def metrics(self) -> str:
        with urllib.request.urlopen(
            f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10
        ) as r:
            return r.read().decode()

    def stop(self) -> str:
        self.p.send_signal(signal.SIGTERM)
        try:
            _, err = self.p.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            self.p.kill()
            _, err = self.p.communicate()
        return err


def sample(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def ds(*directives, sequence: int) -> DirectiveSet:  # type: ignore[no-untyped-def]
    return DirectiveSet(1, sequence, datetime.now(UTC), tuple(directives))


async def wait_metric(proc: Proc, name: str, value: float, **labels: str) -> bool:
    for _ in range(200):
        if sample(proc.metrics(), name, **labels) == value:
            return True
        await asyncio.sleep(0.05)
    return False


async def test_enforce_command_with_tuf_feed(tmp_path: Path, ca: CA, origin: Origin) -> None:
    curl = need_tool("curl")
    repo = tmp_path / "feed"
    init_repository(repo)
    publish(repo, ds(linkedin_block(expires=LATER), sequence=1))
    proc = Proc(
        "--feed",
        str(repo),
        "--state",
        str(tmp_path / "state"),
        "--listen",
        "127.0.0.1:0",
        "--metrics",
        "127.0.0.1:0",
        "--resolve",
        "*:127.0.0.1",
        "--refresh",
        "0.2",
    )
    try:
        proxy = f"http://127.0.0.1:{proc.port}"
        assert await wait_metric(proc, "takedown_enforce_feed_sequence", 1)

        async def get(host: str, n: int = 0) -> tuple[int, bytes]:
            path = f"/bytes/{n}" if n else "/"
            rc, out, _ = await run(
                curl,
                "-sS",
                "--max-time",
                "30",
                "--cacert",
                ca.ca_file,
                "-x",
                proxy,
                f"https://{host}:{origin.tls_port}{path}",
            )
            return rc, out

        assert (await get("pbs.twimg.com", 1000)) == (0, b"x" * 1000)
        rc, _ = await get("www.linkedin.com")
        assert rc != 0
        # the operator publishes a throttle: the running point picks it up
        publish(
            repo,
            ds(
                linkedin_block(expires=LATER),
                twitter_media_throttle(256, expires=LATER),
                sequence=2,
            ),
        )
        assert await wait_metric(proc, "takedown_enforce_feed_sequence", 2)
        assert (await get("pbs.twimg.com", 1000)) == (0, b"x" * 1000)
        text = proc.metrics()
        assert sample(text, "takedown_enforce_flows_total", decision="pass") == 1
        assert sample(text, "takedown_enforce_flows_total", decision="block") == 1
        assert (
            sample(text, "takedown_enforce_flows_total", decision="throttle", content_class="media")
            == 1
        )
        assert sample(text, "takedown_enforce_directive_flows_total", directive="d-throttle") == 1
        assert sample(text, "takedown_enforce_fail_open") == 0
        assert sample(text, "takedown_enforce_feed_age_seconds") >= 0
    finally:
        err = proc.stop()
    assert "directive set 2 applied" in err


async def test_stale_feed_fails_open(tmp_path: Path, ca: CA, origin: Origin) -> None:
    curl = need_tool("curl")
    repo = tmp_path / "feed"
    init_repository(repo)
    # signed metadata whose timestamp expired a minute ago (real time)
    publish(
        repo,
        ds(linkedin_block(expires=LATER), sequence=1),
        timestamp_expiry=timedelta(seconds=1),
        now=datetime.now(UTC) - timedelta(minutes=1),
    )
    proc = Proc(
        "--feed",
        str(repo),
        "--state",
        str(tmp_path / "state"),
        "--listen",
        "127.0.0.1:0",
        "--metrics",
        "127.0.0.1:0",
        "--resolve",
        "*:127.0.0.1",
        "--refresh",
        "0.2",
    )
    try:
        assert await wait_metric(proc, "takedown_enforce_fail_open", 1)
        assert sample(proc.metrics(), "takedown_enforce_feed_rejected_total") >= 1
        rc, out, _ = await run(
            curl,
            "-sS",
            "--max-time",
            "30",
            "--cacert",
            ca.ca_file,
            "-x",
            f"http://127.0.0.1:{proc.port}",
            f"https://www.linkedin.com:{origin.tls_port}/",
        )
        assert rc == 0  # nothing is enforced while the feed is stale
        assert out == b"hello from www.linkedin.com\n"
    finally:
        err = proc.stop()
    assert "FAIL OPEN" in err


async def test_plain_directive_file_and_two_workers(tmp_path: Path, ca: CA, origin: Origin) -> None:
    from takedown.feed.directives import dumps

    curl = need_tool("curl")
    path = tmp_path / "directives.json"
    path.write_bytes(
        dumps(
            ds(
                linkedin_block(expires=LATER),
                twitter_media_throttle(512, expires=LATER),
                sequence=5,
            )
        )
    )
    proc = Proc(
        "--feed",
        str(tmp_path),
        "--listen",
        "127.0.0.1:0",
        "--metrics",
        "127.0.0.1:0",
        "--resolve",
        "*:127.0.0.1",
        "--workers",
        "2",
        "--mode",
        "socks5",
    )
    try:
        for _ in range(12):
            rc, _, err = await run(
                curl,
                "-sS",
                "--max-time",
                "30",
                "--cacert",
                ca.ca_file,
                "--socks5-hostname",
                f"127.0.0.1:{proc.port}",
                f"https://abs.twimg.com:{origin.tls_port}/",
            )
            assert rc == 0, err
        text = proc.metrics()
        assert sample(text, "takedown_enforce_flows_total", decision="throttle") == 12
        assert sample(text, "takedown_enforce_worker_up") == 2
        assert sample(text, "takedown_enforce_feed_sequence") == 5
    finally:
        proc.stop()
    assert proc.p.returncode == 0 or proc.p.returncode == -signal.SIGTERM or os.name != "posix"
