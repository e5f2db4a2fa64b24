"""Steering in network namespaces we create: the exported set diverts only what a
directive may concern to the enforcement point; everything else never touches it.

    tdst-cli 192.0.2.2 --- 192.0.2.1 tdst-rtr 203.0.113.1 --- tdst-srv 203.0.113.10, .77
                                     198.51.100.1
                                          |
                                     198.51.100.2 tdst-enf (takedown enforce --mode transparent)

The router loads the file `to_nft` wrote (twice: a reload replaces the set) and marks
flows from the client towards ``@steer4``; ``ip rule fwmark 1`` sends them to the
enforcement box, whose nftables redirects tcp/80 to the point. The platform declares
203.0.113.8/29, so 203.0.113.10 is steered and 203.0.113.77 is not. Only TEST-NET
addresses, only inside these namespaces. Needs root, ip, nft, curl; skipped otherwise
unless CI=true.
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
from test_server_support import IN_CI, twitter_media_throttle

from takedown.feed.directives import dumps
from takedown.feed.steering import PlatformRanges, steering_set, to_nft
from takedown.model import DirectiveSet

NS = ("tdst-cli", "tdst-rtr", "tdst-enf", "tdst-srv")
PORT = 15081


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, check=check, capture_output=True, text=True, timeout=60)


def ns(name: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return sh("ip", "netns", "exec", name, *args, check=check)


def veth(a: str, a_ns: str, b: str, b_ns: str) -> None:
    sh("ip", "link", "add", a, "netns", a_ns, "type", "veth", "peer", "name", b, "netns", b_ns)


@pytest.fixture
def steered_net() -> Iterator[None]:
    missing = [t for t in ("ip", "nft", "curl") if shutil.which(t) is None]
    if os.geteuid() != 0 or missing:
        if IN_CI:
            pytest.fail(f"the steering test needs root, ip, nft and curl (missing: {missing})")
        pytest.skip("needs root, ip, nft and curl")
    for n in NS:
        sh("ip", "netns", "del", n, check=False)
    try:
        for n in NS:
            sh("ip", "netns", "add", n)
            ns(n, "ip", "link", "set", "lo", "up")
            ns(n, "sysctl", "-qw", "net.ipv4.conf.all.rp_filter=0")
            ns(n, "sysctl", "-qw", "net.ipv4.conf.default.rp_filter=0")
        veth("stc0", "tdst-cli", "stc1", "tdst-rtr")
        veth("ste1", "tdst-rtr", "ste0", "tdst-enf")
        veth("sts1", "tdst-rtr", "sts0", "tdst-srv")
        for n, dev, addresses in (
            ("tdst-cli", "stc0", ["192.0.2.2/30"]),
            ("tdst-rtr", "stc1", ["192.0.2.1/30"]),
            ("tdst-rtr", "ste1", ["198.51.100.1/30"]),
            ("tdst-enf", "ste0", ["198.51.100.2/30"]),
            ("tdst-rtr", "sts1", ["203.0.113.1/24"]),
            ("tdst-srv", "sts0", ["203.0.113.10/24", "203.0.113.77/24"]),
        ):
            for address in addresses:
                ns(n, "ip", "addr", "add", address, "dev", dev)
            ns(n, "ip", "link", "set", dev, "up")
        ns("tdst-cli", "ip", "route", "add", "default", "via", "192.0.2.1")
        ns("tdst-enf", "ip", "route", "add", "default", "via", "198.51.100.1")
        ns("tdst-srv", "ip", "route", "add", "default", "via", "203.0.113.1")
        for n in ("tdst-rtr", "tdst-enf"):
            ns(n, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        # the enforcement box: what arrives for tcp/80 goes to the point
        ns("tdst-enf", "nft", "add", "table", "inet", "td")
        ns("tdst-enf", "nft", "add", "chain", "inet", "td", "pre",
           "{ type nat hook prerouting priority dstnat; }")  # fmt: skip
        ns("tdst-enf", "nft", "add", "rule", "inet", "td", "pre", "iifname", "ste0", "tcp",
           "dport", "80", "redirect", "to", f":{PORT}")  # fmt: skip
        yield
    finally:
        for n in NS:
            sh("ip", "netns", "del", n, check=False)


def route_steering(steer_file: Path) -> None:
    """The router as the README deploys it: the set file, a marking chain, a rule."""
    ns("tdst-rtr", "nft", "-f", str(steer_file))
    ns("tdst-rtr", "nft", "add", "chain", "inet", "takedown_steering", "divert",
       "{ type filter hook prerouting priority mangle; }")  # fmt: skip
    ns("tdst-rtr", "nft", "add", "rule", "inet", "takedown_steering", "divert", "iifname", "stc1",
       "ip", "daddr", "@steer4", "meta", "mark", "set", "1")  # fmt: skip
    ns("tdst-rtr", "nft", "-f", str(steer_file))  # a reload keeps the operator's chain
    ns("tdst-rtr", "ip", "rule", "add", "fwmark", "1", "lookup", "100")
    ns("tdst-rtr", "ip", "route", "add", "default", "via", "198.51.100.2", "table", "100")


def test_only_steered_flows_reach_the_enforcement_point(steered_net: None, tmp_path: Path) -> None:
    later = datetime.now(UTC) + timedelta(days=1)
    ds = DirectiveSet(1, 5, datetime.now(UTC), (twitter_media_throttle(100_000, expires=later),))
    (tmp_path / "directives.json").write_bytes(dumps(ds))
    twitter = PlatformRanges("twitter", ("*.twimg.com",), ("203.0.113.8/29",))
    steering = steering_set(ds, now=datetime.now(UTC), platforms=[twitter])
    assert [str(n) for n in steering.v4] == ["203.0.113.8/29"]
    (tmp_path / "steer.nft").write_text(to_nft(steering))
    route_steering(tmp_path / "steer.nft")
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "index.html").write_text("origin page\n")
    srv = subprocess.Popen(
        ["ip", "netns", "exec", "tdst-srv", sys.executable, "-m", "http.server", "80",
         "--bind", "0.0.0.0", "--directory", str(tmp_path / "www")],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    enf = subprocess.Popen(
        ["ip", "netns", "exec", "tdst-enf", sys.executable, "-c",
         "from takedown.cli import main; main()", "enforce", "--mode", "transparent",
         "--listen", f"0.0.0.0:{PORT}", "--feed", str(tmp_path / "directives.json"),
         "--metrics", "127.0.0.1:0", "--refresh", "0.2"],
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

        def metric(name: str) -> float:
            text = ns("tdst-enf", "curl", "-s", f"http://127.0.0.1:{mport}/metrics").stdout
            return sum(float(x.rsplit(" ", 1)[1]) for x in text.splitlines() if x.startswith(name))

        for _ in range(100):  # the set applied, the origin up
            up = ns("tdst-srv", "curl", "-s", "http://127.0.0.1/", check=False)
            if metric("takedown_enforce_feed_sequence") == 5 and up.returncode == 0:
                break
            time.sleep(0.1)

        def fetch(address: str) -> str:
            resolve = f"pbs.twimg.com:80:{address}"
            out = ns("tdst-cli", "curl", "-sS", "--max-time", "20", "--resolve", resolve,
                     "http://pbs.twimg.com/", check=False)  # fmt: skip
            assert out.returncode == 0, out.stderr
            return out.stdout

        assert fetch("203.0.113.10") == "origin page\n"  # steered: through the point
        assert metric("takedown_enforce_flows_total") == 1
        assert metric("takedown_enforce_directive_flows_total") == 1  # classified: throttle
        assert fetch("203.0.113.77") == "origin page\n"  # not steered: straight there
        assert metric("takedown_enforce_flows_total") == 1  # the point saw nothing of it
    finally:
        enf.terminate()
        srv.terminate()
        enf.wait(20)
        _, log = srv.communicate(timeout=20)
    # the origin saw the steered flow from the point's address, the other from the client
    clients = re.findall(r"^(\S+) - - ", log, flags=re.M)
    assert clients[-2:] == ["198.51.100.2", "192.0.2.2"], log
