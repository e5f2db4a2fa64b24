"""Transparent mode in network namespaces we create: client -> enforcement point -> server.

td-cli (10.200.1.2, fd00:200:1::2) --veth-- td-enf (10.200.1.1 | 10.200.2.1, fd00:200:1::1 |
fd00:200:2::1; an nftables ``inet`` table REDIRECTs tcp/443 of both families to the
enforcement point) --veth-- td-srv (10.200.2.2, fd00:200:2::2, openssl s_server).
Needs root, ip and nft; skipped otherwise unless CI=true.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from test_server_support import IN_CI, linkedin_block, make_ca, twitter_media_throttle

from takedown.feed.directives import dumps
from takedown.model import DirectiveSet

NS = ("td-cli", "td-enf", "td-srv")
PORT = 15001


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, check=check, capture_output=True, text=True, timeout=60)


def ns(name: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return sh("ip", "netns", "exec", name, *args, check=check)


@pytest.fixture
def netns() -> Iterator[None]:
    missing = [t for t in ("ip", "nft") if shutil.which(t) is None]
    if os.geteuid() != 0 or missing:
        if IN_CI:
            pytest.fail(f"transparent mode test needs root, ip and nft (missing: {missing})")
        pytest.skip("needs root, ip and nft")
    for n in NS:
        sh("ip", "netns", "del", n, check=False)
    try:
        for n in NS:
            sh("ip", "netns", "add", n)
            ns(n, "ip", "link", "set", "lo", "up")
        sh("ip", "link", "add", "tdc0", "netns", "td-cli", "type", "veth", "peer", "name", "tdc1",
           "netns", "td-enf")  # fmt: skip
        sh("ip", "link", "add", "tds0", "netns", "td-srv", "type", "veth", "peer", "name", "tds1",
           "netns", "td-enf")  # fmt: skip
        for n, dev, v4, v6 in (
            ("td-cli", "tdc0", "10.200.1.2/24", "fd00:200:1::2/64"),
            ("td-enf", "tdc1", "10.200.1.1/24", "fd00:200:1::1/64"),
            ("td-enf", "tds1", "10.200.2.1/24", "fd00:200:2::1/64"),
            ("td-srv", "tds0", "10.200.2.2/24", "fd00:200:2::2/64"),
        ):
            ns(n, "ip", "addr", "add", v4, "dev", dev)
            ns(n, "ip", "-6", "addr", "add", v6, "dev", dev, "nodad")  # usable at once
            ns(n, "ip", "link", "set", dev, "up")
        ns("td-cli", "ip", "route", "add", "default", "via", "10.200.1.1")
        ns("td-cli", "ip", "-6", "route", "add", "default", "via", "fd00:200:1::1")
        ns("td-srv", "ip", "route", "add", "default", "via", "10.200.2.1")
        ns("td-srv", "ip", "-6", "route", "add", "default", "via", "fd00:200:2::1")
        ns("td-enf", "sysctl", "-qw", "net.ipv4.ip_forward=1")
        ns("td-enf", "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
        ns("td-enf", "nft", "add", "table", "inet", "td")
        ns("td-enf", "nft", "add", "chain", "inet", "td", "pre",
           "{ type nat hook prerouting priority dstnat; }")  # fmt: skip
        ns("td-enf", "nft", "add", "rule", "inet", "td", "pre", "iifname", "tdc1", "tcp",
           "dport", "443", "redirect", "to", f":{PORT}")  # fmt: skip
        yield
    finally:
        for n in NS:
            sh("ip", "netns", "del", n, check=False)


@pytest.mark.parametrize(
    ("listen", "servers"),
    [
        pytest.param(f"0.0.0.0:{PORT}", ("10.200.2.2",), id="ipv4"),
        # one dual-stack socket: IPv4 flows arrive as v4-mapped addresses
        pytest.param(f"[::]:{PORT}", ("fd00:200:2::2", "10.200.2.2"), id="ipv6-and-ipv4"),
    ],
)
def test_transparent_mode_in_namespaces(
    netns: None, tmp_path: Path, listen: str, servers: tuple[str, ...]
) -> None:
    ca = make_ca(str(tmp_path))
    pem = tmp_path / "server.pem"
    ca.cert.private_key_and_cert_chain_pem.write_to_path(str(pem))
    later = datetime.now(UTC) + timedelta(days=1)
    feed = tmp_path / "directives.json"
    feed.write_bytes(
        dumps(
            DirectiveSet(
                1, 1, datetime.now(UTC),
                (twitter_media_throttle(1000, expires=later), linkedin_block(expires=later)),
            )
        )
    )  # fmt: skip
    srv = subprocess.Popen(
        ["ip", "netns", "exec", "td-srv", "openssl", "s_server", "-accept", "443", "-www",
         "-cert", str(pem), "-key", str(pem), "-quiet"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    enf = subprocess.Popen(
        ["ip", "netns", "exec", "td-enf", sys.executable, "-c",
         "from takedown.cli import main; main()", "enforce", "--mode", "transparent",
         "--listen", listen, "--feed", str(feed), "--metrics", "127.0.0.1:0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert enf.stdout is not None
        mport = 0
        for _ in range(5):
            line = enf.stdout.readline()
            if m := re.search(r"metrics on http://[\d.]+:(\d+)", line):
                mport = int(m.group(1))
            if line.startswith("listening"):
                break
        assert mport
        time.sleep(0.5)  # s_server up

        def curl(host: str, address: str) -> subprocess.CompletedProcess[str]:
            resolve = f"{host}:443:{address if ':' not in address else f'[{address}]'}"
            return ns("td-cli", "curl", "-sS", "--max-time", "20", "--cacert", ca.ca_file,
                      "--resolve", resolve, f"https://{host}/", check=False)  # fmt: skip

        def metric(decision: str) -> float:
            text = ns("td-enf", "curl", "-s", f"http://127.0.0.1:{mport}/metrics").stdout
            return sum(
                float(line.rsplit(" ", 1)[1])
                for line in text.splitlines()
                if line.startswith("takedown_enforce_flows_total{")
                and f'decision="{decision}"' in line
            )

        for address in servers:
            passed = curl("example.org", address)
            assert passed.returncode == 0 and "s_server" in passed.stdout, passed.stderr
            assert curl("pbs.twimg.com", address).returncode == 0
            assert curl("www.linkedin.com", address).returncode != 0
        # every flow was redirected, classified by its SNI and relayed to where it was going
        assert metric("pass") == len(servers)
        assert metric("throttle") == len(servers)
        assert metric("block") == len(servers)
    finally:
        enf.terminate()
        srv.terminate()
        enf.wait(20)
        srv.wait(20)
