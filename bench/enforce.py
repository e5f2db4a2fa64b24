"""Enforcement point figures on loopback, all in one run.

(a) bulk pass-through throughput: direct vs. our relay vs. ``socat -b 65536``, HAProxy
    (splice) and a minimal splice relay;
(b) throttle precision: achieved/target over a transfer at 128 kbit/s, 1 and 10 Mbit/s;
(c) 10,000 concurrent mostly idle flows through ``--workers 2``: memory per flow;
(d) classification cost: connect -> first response byte, direct vs. through the relay.

``python -m bench enforce [--quick]``
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from takedown.feed.directives import dumps
from takedown.model import Directive, DirectiveSet, HostRule, MeasureAction

# A source that sends N bytes (from a file, with sendfile) to every client, then closes;
# and an HTTP responder for the latency figure; and an echo server for idle flows.
ORIGIN = r"""
import os, socket, sys, threading, tempfile, asyncio
mode, total = sys.argv[1], int(sys.argv[2])
ls = socket.socket(); ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("127.0.0.1", 0)); ls.listen(4096)
print(ls.getsockname()[1], flush=True)
if mode == "source":
    f = tempfile.TemporaryFile(); f.write(b"x" * (64 << 20)); f.flush()
    def serve(c):
        try:
            left = total
            while left > 0:
                n = os.sendfile(c.fileno(), f.fileno(), 0, min(left, 64 << 20))
                if n == 0: break
                left -= n
        except OSError: pass
        finally: c.close()
    while True:
        c, _ = ls.accept(); threading.Thread(target=serve, args=(c,), daemon=True).start()
elif mode == "http":
    resp = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
    def serve(c):
        try:
            buf = b""
            while b"\r\n\r\n" not in buf:
                d = c.recv(4096)
                if not d: return
                buf += d
            c.sendall(resp)
        finally: c.close()
    while True:
        c, _ = ls.accept(); threading.Thread(target=serve, args=(c,), daemon=True).start()
else:
    async def echo(r, w):
        try:
            while d := await r.read(65536):
                w.write(d); await w.drain()
        except OSError: pass
        w.close()
    async def main():
        ls.setblocking(False)
        srv = await asyncio.start_server(echo, sock=ls, backlog=4096)
        await srv.serve_forever()
    asyncio.run(main())
"""


def start_origin(mode: str, total: int = 0) -> tuple[subprocess.Popen[str], int]:
    p = subprocess.Popen(
        [sys.executable, "-c", ORIGIN, mode, str(total)], stdout=subprocess.PIPE, text=True
    )
    assert p.stdout is not None
    return p, int(p.stdout.readline())


class Relay:
    """``takedown enforce`` as a child process (CONNECT mode, plain directive file)."""

    def __init__(self, feed: Path, *extra: str) -> None:
        self.p = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from takedown.cli import main; main()",
                "enforce",
                "--feed",
                str(feed),
                "--listen",
                "127.0.0.1:0",
                "--resolve",
                "*:127.0.0.1",
                "--log-level",
                "warning",
                *extra,
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.p.stdout is not None
        self.pids = [self.p.pid]
        while True:
            line = self.p.stdout.readline()
            if not line:
                raise RuntimeError("relay did not start")
            if m := re.match(r"listening on [\d.]+:(\d+)", line):
                self.port = int(m.group(1))
            if m := re.match(r"\d+ workers: ([\d ]+)", line):
                self.pids = [int(x) for x in m.group(1).split()]
                break
            if self.port and "--workers" not in extra:
                break

    port = 0

    def stop(self) -> None:
        self.p.send_signal(signal.SIGTERM)
        try:
            self.p.wait(20)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()


def tunnel(relay_port: int, host: str, port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", relay_port))
    s.sendall(f"CONNECT {host}:{port} HTTP/1.1\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        d = s.recv(4096)
        if not d:
            raise RuntimeError("tunnel refused")
        head += d
    if not head.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(head.decode(errors="replace"))
    return s


def drain(s: socket.socket, seconds: float | None = None) -> tuple[int, float]:
    """Read until EOF (or for ``seconds`` after the first byte): (bytes, seconds)."""
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    n = s.recv_into(view)
    t0 = time.perf_counter()
    total = 0  # bytes after the first read: the clock starts when that read returned
    while True:
        if seconds is not None and time.perf_counter() - t0 >= seconds:
            break
        k = s.recv_into(view)
        if k == 0:
            break
        total += k
    elapsed = time.perf_counter() - t0
    s.close()
    return (total if seconds is not None else total + n), elapsed


# A minimal relay for reference: blocking sockets, a thread per direction, os.splice through
# a 1 MiB pipe each; no classification, no event loop. The floor a Python relay can reach.
SPLICE_FLOOR = r"""
import fcntl, os, socket, sys, threading
dst = int(sys.argv[1])
cc = sys.argv[2].encode() if len(sys.argv) > 2 else None  # congestion control, client leg
ls = socket.socket(); ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("127.0.0.1", 0)); ls.listen(16); print(ls.getsockname()[1], flush=True)
def pump(a, b):
    r, w = os.pipe()
    fcntl.fcntl(w, 1031, 1 << 20)
    try:
        while n := os.splice(a.fileno(), w, 1 << 20, flags=os.SPLICE_F_MOVE):
            while n:
                n -= os.splice(r, b.fileno(), n, flags=os.SPLICE_F_MOVE)
    except OSError:
        pass
    try: b.shutdown(socket.SHUT_WR)
    except OSError: pass
while True:
    c, _ = ls.accept(); u = socket.create_connection(("127.0.0.1", dst))
    if cc: c.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, cc)
    threading.Thread(target=pump, args=(c, u), daemon=True).start()
    threading.Thread(target=pump, args=(u, c), daemon=True).start()
"""


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """CPU seconds all CPUs spent on anything but idling since boot (user to steal)."""
    with open("/proc/stat") as f:
        ticks = [int(x) for x in f.readline().split()[1:9]]
    idle, iowait = ticks[3], ticks[4]
    return (sum(ticks) - idle - iowait) / CLOCK_TICKS


def process_split(pid: int) -> tuple[float, float]:
    """CPU seconds (user, system) a process and its threads used so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) / CLOCK_TICKS, int(fields[12]) / CLOCK_TICKS


def congestion_control() -> str:
    try:
        return Path("/proc/sys/net/ipv4/tcp_congestion_control").read_text().strip()
    except OSError:
        return "unknown"


def may_use(congestion: str) -> bool:
    """Whether this process may set ``congestion`` on a socket (allowed list, or root)."""
    with socket.socket() as s:
        try:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, congestion.encode())
        except OSError:
            return False
    return True


# HAProxy in TCP mode with kernel splicing both ways, the usual C relay for this job; its
# pipes as large as ours (1 MiB), as 64 KiB ones cost it a fifth of its speed here.
HAPROXY_CFG = """global
  nbthread 1
  tune.pipesize 1048576
defaults
  mode tcp
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  option splice-request
  option splice-response
listen bulk
  bind 127.0.0.1:{listen}
  server origin 127.0.0.1:{origin}
"""


class Variant:
    """One way to fetch from the origin: how to connect and, if any, the process between."""

    def __init__(self, label: str, connect: Callable[[], socket.socket], pid: int = 0) -> None:
        self.label, self.connect, self.pid = label, connect, pid
        self.rates: list[float] = []
        self.machine_cpu: list[float] = []  # CPU s/GB, whole machine
        self.middle_cpu: list[tuple[float, float]] = []  # CPU s/GB of ``pid``: user, system


def throughput(size: int, relay: Relay, repeats: int) -> None:
    """Every variant: the same origin (sendfile), the same client loop, the same size; one
    warm-up transfer each, then ``repeats`` rounds in rotating order; median and best.

    Baselines beside the relay: ``socat -b 65536`` and HAProxy (splice) where installed, and
    a minimal blocking splice relay. Also CPU seconds per GB moved, medians: the whole
    machine's (origin, client, relay and kernel together; anything else running counts too)
    and the relay's own, user and system. On a machine whose CPUs all take part, what a relay
    adds per byte bounds its speed; direct transfers are bounded by how well the two ends
    overlap instead (the noise)."""
    src, sport = start_origin("source", size)
    children: list[subprocess.Popen[str]] = [src]
    tmp = Path(tempfile.mkdtemp(prefix="bench-relays-"))
    variants = {
        "direct": Variant(
            "direct (no relay)", lambda: socket.create_connection(("127.0.0.1", sport))
        ),
        "relay": Variant(
            "takedown enforce, 1 worker",
            lambda: tunnel(relay.port, "bulk.example", sport),
            relay.p.pid,
        ),
    }

    def spawn_relay(
        name: str, label: str, argv: list[str], port: int = 0, *, forks: bool = False
    ) -> None:
        """Start a relay; ``port`` given: it listens there, else it prints its port. One that
        forks per connection works in its children: its own CPU is not the relay's."""
        p = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
        children.append(p)
        if not port:
            assert p.stdout is not None
            port = int(p.stdout.readline())
        variants[name] = Variant(label, lambda: connect_when_up(port), 0 if forks else p.pid)

    try:
        if socat := shutil.which("socat"):
            port = free_port()
            listen = f"TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork"
            spawn_relay(
                "socat",
                "socat -b 65536",
                [socat, "-b", "65536", listen, f"TCP:127.0.0.1:{sport}"],
                port,
                forks=True,
            )
        if haproxy := shutil.which("haproxy"):
            port = free_port()
            cfg = tmp / "haproxy.cfg"
            cfg.write_text(HAPROXY_CFG.format(listen=port, origin=sport))
            spawn_relay(
                "haproxy", "HAProxy, TCP mode, splice, 1 thread", [haproxy, "-f", str(cfg)], port
            )
        spawn_relay(
            "splice",
            "reference: blocking os.splice relay, 2 threads",
            [sys.executable, "-c", SPLICE_FLOOR, str(sport)],
        )
        if congestion_control() != "cubic" and may_use("cubic"):
            # the same reference with its sending leg towards the client on CUBIC: how much of
            # a relay's cost is the second leg's congestion control (BBR paces every segment
            # with a timer when no fq qdisc does it)
            spawn_relay(
                "splice-cubic",
                "  same, client leg on CUBIC (diagnostic)",
                [sys.executable, "-c", SPLICE_FLOOR, str(sport), "cubic"],
            )
        for v in variants.values():  # warm-up: page cache, socket buffers, code paths
            drain(v.connect())
        names = list(variants)
        for r in range(repeats):
            for name in names[r % len(names) :] + names[: r % len(names)]:
                v = variants[name]
                sock = v.connect()
                busy = machine_busy_seconds()
                user, system = process_split(v.pid) if v.pid else (0.0, 0.0)
                n, t = drain(sock)
                gb = n / 1e9
                v.rates.append(n / t)
                v.machine_cpu.append((machine_busy_seconds() - busy) / gb)
                if v.pid:
                    user2, system2 = process_split(v.pid)
                    v.middle_cpu.append(((user2 - user) / gb, (system2 - system) / gb))
    finally:
        for child in children:
            child.kill()
            child.wait()
        shutil.rmtree(tmp, ignore_errors=True)
    med = {k: statistics.median(v.rates) for k, v in variants.items()}
    best = {k: max(v.rates) for k, v in variants.items()}
    print(
        f"(a) bulk pass-through, {size >> 20} MiB per transfer, {repeats} rounds "
        f"(rotating order, after a warm-up); congestion control {congestion_control()}"
    )
    print(f"    {'':52s} GB/s median (best)  CPU s/GB: machine [relay user+system]")
    for k, v in variants.items():
        cpu = f"{statistics.median(v.machine_cpu):5.2f}"
        if v.middle_cpu:
            user = statistics.median(u for u, _ in v.middle_cpu)
            system = statistics.median(s for _, s in v.middle_cpu)
            cpu += f" [{user:.3f}+{system:.2f}]"
        print(f"    {v.label:52s} {med[k] / 1e9:6.2f} ({best[k] / 1e9:.2f})  {cpu}")
    print(
        f"    relay/direct = {med['relay'] / med['direct']:.2f}x median, "
        f"{best['relay'] / best['direct']:.2f}x best (goal >= 0.8x)"
    )
    # each round runs every variant back to back: its own ratio shows how much of the spread
    # is the direct transfer's (the scheduler placing client and origin on one core or two)
    relay_rates, direct_rates = variants["relay"].rates, variants["direct"].rates
    rounds = [f"{r / d:.2f}" for r, d in zip(relay_rates, direct_rates, strict=True)]
    print(f"    relay/direct by round: {' '.join(rounds)}")
    for k, goal in (("socat", " (goal >= 1.0x)"), ("haproxy", ""), ("splice", "")):
        if k in med:
            print(
                f"    relay/{k:7s}= {med['relay'] / med[k]:.2f}x median, "
                f"{best['relay'] / best[k]:.2f}x best{goal}"
            )
    for k in ("haproxy", "splice", "splice-cubic"):
        if k in med:
            print(f"    {k}/direct = {med[k] / med['direct']:.2f}x median")


def connect_when_up(port: int) -> socket.socket:
    """socat forks per connection and listens a moment after it starts."""
    for _ in range(100):
        try:
            return socket.create_connection(("127.0.0.1", port))
        except ConnectionRefusedError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def throttle_precision(relay: Relay, seconds: float) -> None:
    src, sport = start_origin("source", 1 << 40)
    print(f"(b) throttle precision over {seconds:.0f} s (from the first byte):")
    try:
        for kbps in (128, 1000, 10000):
            n, t = drain(tunnel(relay.port, f"r{kbps}.media.example", sport), seconds)
            achieved = n * 8 / t / 1000
            print(
                f"    {kbps:6d} kbit/s: achieved {achieved:10.2f} kbit/s  "
                f"ratio {achieved / kbps:.4f} ({(achieved / kbps - 1) * 100:+.2f}%, goal ±0.5%)"
            )
    finally:
        src.kill()


def rss_kib(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total


def idle_flows(feed: Path, count: int) -> None:
    echo, eport = start_origin("echo")
    relay = Relay(feed, "--workers", "2", "--sniff-timeout", "0.5")
    socks: list[socket.socket] = []
    try:
        time.sleep(0.5)
        before = rss_kib(relay.pids)
        for i in range(count):
            s = tunnel(relay.port, "idle.example", eport)
            s.sendall(b"hello %d\r\n" % i)
            socks.append(s)
        for s in socks[:: max(1, count // 100)]:
            s.recv(64)  # a sample answers: the flows are live, not just accepted
        time.sleep(1.0)  # sniff verdicts (unknown bytes) and timers settle
        after = rss_kib(relay.pids)
        per = (after - before) * 1024 / count
        print(
            f"(c) {count} concurrent idle flows, 2 workers: RSS {before} -> {after} KiB, "
            f"{per / 1024:.2f} KiB per flow (goal < 8 KiB)"
        )
    finally:
        for s in socks:
            s.close()
        relay.stop()
        echo.kill()


def first_byte(relay: Relay, samples: int) -> None:
    http, hport = start_origin("http")
    req = b"GET / HTTP/1.1\r\nHost: example.org\r\nConnection: close\r\n\r\n"
    direct: list[float] = []
    relayed: list[float] = []
    try:
        for _ in range(samples):
            t0 = time.perf_counter()
            s = socket.create_connection(("127.0.0.1", hport))
            s.sendall(req)
            s.recv(1)
            direct.append(time.perf_counter() - t0)
            s.close()
            t0 = time.perf_counter()
            s = tunnel(relay.port, "example.org", hport)
            s.sendall(req)
            s.recv(1)
            relayed.append(time.perf_counter() - t0)
            s.close()
    finally:
        http.kill()

    def pct(v: list[float], q: float) -> float:
        return sorted(v)[min(len(v) - 1, int(q * len(v)))] * 1000

    print(f"(d) connect -> first response byte, {samples} samples (ms):")
    print(f"    direct   p50 {pct(direct, 0.5):.3f}  p99 {pct(direct, 0.99):.3f}")
    print(f"    relayed  p50 {pct(relayed, 0.5):.3f}  p99 {pct(relayed, 0.99):.3f}")
    print(
        f"    added    p50 {pct(relayed, 0.5) - pct(direct, 0.5):.3f}  "
        f"p99 {pct(relayed, 0.99) - pct(direct, 0.99):.3f}"
        f"  (CONNECT round trip + upstream connect + sniff + decide; mean "
        f"{(statistics.mean(relayed) - statistics.mean(direct)) * 1000:.3f})"
    )


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench enforce")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--parts", default="abcd", help="which figures: any of a b c d (default all)")
    args = ap.parse_args(argv)
    parts = set(args.parts)
    import resource

    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    quick = args.quick
    later = datetime.now(UTC) + timedelta(days=1)
    directives = tuple(
        Directive(
            id=f"t{kbps}",
            action=MeasureAction.THROTTLE,
            hosts=(HostRule(f"r{kbps}.media.example", "media"),),
            rate_kbps=kbps,
            expires=later,
        )
        for kbps in (128, 1000, 10000)
    )
    tmp = Path(tempfile.mkdtemp(prefix="bench-enforce-"))
    feed = tmp / "directives.json"
    feed.write_bytes(dumps(DirectiveSet(1, 1, datetime.now(UTC), directives)))
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        f"bench enforce ({'quick' if quick else 'full'}), {os.cpu_count()} CPUs, loopback, "
        f"load average {load}"
    )
    relay = Relay(feed)
    try:
        if "a" in parts:
            size = 256 << 20 if quick else 1 << 30
            throughput(size, relay, 3 if quick else 7)
        if "b" in parts:
            throttle_precision(relay, 3.0 if quick else 10.0)
        if "d" in parts:
            first_byte(relay, 200 if quick else 2000)
    finally:
        relay.stop()
    if "c" in parts:
        idle_flows(feed, 2000 if quick else 10_000)
    shutil.rmtree(tmp, ignore_errors=True)
    return 0
