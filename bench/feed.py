"""Feed: today's whole-set format (1) against the sharded one (2), at N directives.

``python -m bench feed [--quick] [--n 1000000] [--bits 14] [--changes 100] [--skip-whole]``

Build N directives (mixed throttle/block, exact and wildcard hosts, IPv4 addresses, IPv6
prefixes); the format-1 codec phases and their floors (``json.dumps``/``json.loads``/
``sha256`` of the same data). Then, for each format in the same run: publish the set into a
fresh repository, served over HTTP/1.1 on loopback; an enforcement point in a *child
process* cold-loads it (TUF refresh + verify + load + the point's index) and waits; the
parent publishes a change of ``--changes`` directives (timed); the point fetches it (timed)
and puts it in force (index swap or in-place bin update, then a lookup that sees the
change; timed). The server counts the bytes it sends. The child's peak RSS and CPU come
from ``os.wait4`` (its own rusage); its cold-load CPU is also measured inside it.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TypeVar

from takedown.clock import SystemClock
from takedown.feed import FeedClient, init_repository
from takedown.feed.bins import DEFAULT_BITS
from takedown.feed.directives import dumps, to_dict
from takedown.feed.repository import Repository
from takedown.model import Directive, DirectiveSet, HostRule, MeasureAction

T = TypeVar("T")
T0 = datetime(2021, 3, 10, tzinfo=UTC)


def build(n: int) -> DirectiveSet:
    """N directives: a quarter each throttle/exact, block/wildcard, block+IPv4, block+IPv6."""
    out = []
    expires = T0 + timedelta(days=30)
    for i in range(n):
        kind = i % 4
        host = f"{'*.' if kind == 1 else ''}h{i}.site{i % 5000}.example"
        if kind == 2:
            ips: tuple[str, ...] = (f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}",)
        elif kind == 3:
            ips = (f"2001:db8:{i & 0xFFFF:x}::/48",)
        else:
            ips = ()
        out.append(
            Directive(
                id=f"d{i:08d}",
                action=MeasureAction.THROTTLE if kind == 0 else MeasureAction.BLOCK,
                hosts=(HostRule(host, "media" if kind == 0 else "any"),),
                ip_ranges=ips,
                rate_kbps=128 if kind == 0 else None,
                scope={"mobile": 100.0, "fixed": 50.0} if kind == 0 else {"*": 100.0},
                valid_from=T0,
                expires=expires,
                measure_id=1 + i % 7,
                decisions=(f"D-{i}",),
            )
        )
    return DirectiveSet(1, 1, T0, tuple(out))


def vm_hwm_mib() -> float:
    """This process's peak resident set (``VmHWM``: since exec, unlike ``ru_maxrss``)."""
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(label: str, fn: Callable[[], T], rows: list[tuple[str, float, float]]) -> T:
    """Run ``fn``; record wall and CPU seconds (CPU is steadier on a shared machine)."""
    start, cpu = time.perf_counter(), time.process_time()
    result = fn()
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    rows.append((label, seconds, cpu))
    print(
        f"  {label:<46} {seconds:8.2f} s wall {cpu:8.2f} s CPU   peak RSS {rss_mib():6.0f} MiB",
        flush=True,
    )
    return result


class _Counting(SimpleHTTPRequestHandler):
    """Serves ``/feed/…`` from the repository over HTTP/1.1 and counts the bytes sent."""

    protocol_version = "HTTP/1.1"
    server: _CountingServer

    def setup(self) -> None:
        super().setup()
        # headers and body go out in separate writes: without this, delayed ACKs cost 40 ms
        # a request on a kept-alive connection (production servers set it too)
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        if not self.path.startswith("/feed/"):
            self.send_error(404)
            return
        self.path = self.path[len("/feed") :]
        super().do_GET()

    def copyfile(self, source, outputfile) -> None:  # type: ignore[no-untyped-def]
        while block := source.read(1 << 20):
            outputfile.write(block)
            self.server.sent += len(block)


class _CountingServer(ThreadingHTTPServer):
    daemon_threads = True
    sent = 0


def changed_set(ds: DirectiveSet, changes: int) -> tuple[DirectiveSet, str]:
    """``ds`` with ``changes`` directives spread over the set given a new decision; a name
    that one of them matches (the probe)."""
    out = list(ds.directives)
    step = max(1, len(out) // changes)
    for k in range(changes):
        i = (k * step + 7) % len(out)
        out[i] = replace(out[i], decisions=("CHANGED",))
    pattern = out[7].hosts[0].pattern
    probe = "www." + pattern[2:] if pattern.startswith("*.") else pattern
    return DirectiveSet(1, ds.sequence + 1, ds.generated_at + timedelta(hours=1), tuple(out)), probe


# --- the point, in a child process -------------------------------------------------------


def _child(argv: list[str]) -> int:
    """``--child SOURCE STATE ROOT``: cold load, say "ready", wait for a line, update."""
    from takedown.enforce.bin_index import BinnedIndex
    from takedown.enforce.decide import compile_index
    from takedown.feed.binned_set import BinnedSet

    source, state, root = argv
    cpu0, wall0 = time.process_time(), time.perf_counter()
    client = FeedClient(source, state, root=Path(root).read_bytes(), clock=SystemClock())
    got = client.refresh()
    index = BinnedIndex(got) if isinstance(got, BinnedSet) else compile_index(got)
    cold = {"cold_cpu": time.process_time() - cpu0, "cold_wall": time.perf_counter() - wall0,
            "directives": len(index.directives), "rss_after_cold": rss_mib()}  # fmt: skip
    del got
    print("ready " + json.dumps(cold), flush=True)
    probe = sys.stdin.readline().strip()
    wall0 = time.perf_counter()
    new = client.refresh()
    fetched = time.perf_counter()
    if isinstance(new, BinnedSet) and isinstance(index, BinnedIndex):
        index.update(new)
    else:
        index = compile_index(new)
    seen = any("CHANGED" in d.decisions for d, _c, _r in index.host_hits(probe))
    in_force = time.perf_counter()
    done = {"fetch_wall": fetched - wall0, "apply_wall": in_force - fetched, "seen": seen,
            "fetched": client.last_fetch, "peak_rss_mib": vm_hwm_mib()}  # fmt: skip
    print("done " + json.dumps(done), flush=True)
    return 0


def point_run(
    label: str, repo: Path, publish_change: Callable[[], object], probe: str, base: Path
) -> dict[str, object]:
    """Serve ``repo``; cold-load it in a child; publish the change; the child follows."""
    server = _CountingServer(("127.0.0.1", 0), functools.partial(_Counting, directory=str(repo)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    source = f"http://127.0.0.1:{server.server_address[1]}/feed/"
    root = repo / "metadata" / "1.root.json"
    state = base / f"state-{label}"
    try:
        child = subprocess.Popen(
            [sys.executable, "-m", "bench", "feed", "--child", source, str(state), str(root)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert child.stdin is not None and child.stdout is not None
        line = child.stdout.readline()
        if not line.startswith("ready "):
            raise SystemExit(f"{label}: the point failed to load")
        result: dict[str, object] = json.loads(line[6:])
        result["cold_bytes"] = server.sent
        print(
            f"  {label}: cold load {result['cold_cpu']:.2f} s CPU "
            f"({result['cold_wall']:.2f} s wall), {server.sent / 1e6:.1f} MB",
            flush=True,
        )
        cpu, wall = time.process_time(), time.perf_counter()
        publish_change()
        result["publish_cpu"] = time.process_time() - cpu
        result["publish_wall"] = time.perf_counter() - wall
        server.sent = 0
        child.stdin.write(probe + "\n")
        child.stdin.flush()
        line = child.stdout.readline()
        if not line.startswith("done "):
            raise SystemExit(f"{label}: the point failed to update")
        result.update(json.loads(line[5:]))
        result["delta_bytes"] = server.sent
        _pid, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        # not usage.ru_maxrss: a forked child's maxrss counts the parent's pages before exec
        result["child_cpu"] = usage.ru_utime + usage.ru_stime
    finally:
        server.shutdown()
        server.server_close()
    return result


def main(argv: list[str]) -> int:
    if argv[:1] == ["--child"]:
        return _child(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m bench feed")
    parser.add_argument("--quick", action="store_true", help="20,000 directives, 10 bits")
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--bits", type=int, default=None, help="bin width (default 14)")
    parser.add_argument("--changes", type=int, default=100)
    parser.add_argument("--skip-whole", action="store_true", help="format 2 only")
    args = parser.parse_args(argv)
    n = 20_000 if args.quick else args.n
    bits = args.bits or (10 if args.quick else DEFAULT_BITS)
    rows: list[tuple[str, float, float]] = []  # label, wall s, CPU s
    print(f"feed benchmark: {n:,} directives, {args.changes} changed; bins: {1 << bits:,}")

    ds = timed("build DirectiveSet (not a target)", functools.partial(build, n), rows)
    data = timed("dumps (canonical JSON, format 1)", functools.partial(dumps, ds), rows)
    plain = to_dict(ds)
    timed("baseline json.dumps of the same dicts", functools.partial(json.dumps, plain), rows)
    del plain
    whole_bytes = len(data)
    print(f"  format-1 directive file: {whole_bytes / 1e6:.1f} MB")
    timed("baseline json.loads (no validation)", functools.partial(json.loads, data), rows)
    timed("baseline sha256", functools.partial(hashlib.sha256, data), rows)
    del data
    changed, probe = changed_set(ds, args.changes)
    results: dict[str, dict[str, object]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-feed-") as tmp:
        base = Path(tmp)
        if not args.skip_whole:
            init_repository(base / "whole")
            whole = Repository(base / "whole")
            timed("format 1: publish the set", functools.partial(whole.publish_set, ds), rows)
            results["format 1"] = point_run(
                "format 1", base / "whole", functools.partial(whole.publish_set, changed),
                probe, base)  # fmt: skip
            shutil.rmtree(base / "whole")
        init_repository(base / "bins", bins=bits)
        sharded = Repository(base / "bins")
        timed("format 2: publish the set (every bin)", functools.partial(sharded.publish_set, ds),
              rows)  # fmt: skip
        bin_bytes = sum(p.stat().st_size for p in (base / "bins" / "targets").glob("*.bins-*"))
        print(f"  format-2 bins: {bin_bytes / 1e6:.1f} MB in all")
        del ds
        results["format 2"] = point_run(
            "format 2", base / "bins", functools.partial(sharded.publish_set, changed), probe,
            base)  # fmt: skip
    _report(results, whole_bytes, bin_bytes)
    print(f"bench parent peak RSS {rss_mib():.0f} MiB (machine shared with other sessions)")
    return 0


def _report(results: dict[str, dict[str, object]], whole_bytes: int, bin_bytes: int) -> None:
    print("the point (child process), per format:")
    keys = [
        ("peak RSS MiB", "peak_rss_mib", "{:.0f}"),
        ("cold load CPU s", "cold_cpu", "{:.2f}"),
        ("cold load wall s", "cold_wall", "{:.2f}"),
        ("cold load bytes", "cold_bytes", "{:,}"),
        ("publish of the change wall s", "publish_wall", "{:.2f}"),
        ("publish of the change CPU s", "publish_cpu", "{:.2f}"),
        ("update bytes on the wire", "delta_bytes", "{:,}"),
        ("update fetch wall s", "fetch_wall", "{:.2f}"),
        ("fetched → in force wall s", "apply_wall", "{:.3f}"),
        ("change seen by a lookup", "seen", "{}"),
    ]
    labels = list(results)
    print(f"  {'':<32}" + "".join(f"{label:>16}" for label in labels))
    for title, key, fmt in keys:
        cells = "".join(f"{fmt.format(results[label][key]):>16}" for label in labels)
        print(f"  {title:<32}{cells}")
    two = results["format 2"]
    one = results.get("format 1")
    share = float(two["delta_bytes"]) / bin_bytes  # type: ignore[arg-type]
    print("goals (format 2):")
    print(
        f"  peak RSS {two['peak_rss_mib']:.0f} MiB (< 600)"
        + (
            f"; format 1: {one['peak_rss_mib']:.0f} MiB, ratio "
            f"{float(two['peak_rss_mib']) / float(one['peak_rss_mib']):.2f}x"
            if one
            else ""
        )
    )  # type: ignore[arg-type]
    print(
        f"  cold load {two['cold_cpu']:.2f} s CPU (< 10)"
        + (
            f"; format 1: {one['cold_cpu']:.2f} s, ratio "
            f"{float(two['cold_cpu']) / float(one['cold_cpu']):.2f}x"
            if one
            else ""
        )
    )  # type: ignore[arg-type]
    print(
        f"  update bytes {share:.3%} of the format-2 set ({bin_bytes:,} B) (< 1%); "
        f"{float(two['delta_bytes']) / whole_bytes:.3%} of the format-1 file"
    )  # type: ignore[arg-type]
    print(f"  in force {two['apply_wall']:.3f} s after the fetch (< 2 s)")
    print(f"  publish of the change {two['publish_wall']:.2f} s wall (< 5 s)")
