"""Feed: publish and client-verify-and-load a large directive set.

``python -m bench feed [--quick] [--n 1000000] [--dir]``

Phases, in one process: build N directives (mixed throttle/block, exact and wildcard
hosts, IPv4 addresses, IPv6 prefixes), ``dumps``, ``loads``, ``publish`` (validate with
loads, hash, write, sign targets/snapshot/timestamp), then a client ``refresh`` over HTTP
on loopback (TUF verification, download, sha256, loads) and an unchanged ``refresh``.
Baselines measured in the same run on the same bytes: ``json.loads`` (parsing with no
validation: the floor for ``loads``), ``json.dumps`` of the same dicts (the floor for
``dumps``) and ``hashlib.sha256``. Peak RSS is the process high-water mark after each phase.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import resource
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TypeVar

from takedown.clock import SystemClock
from takedown.feed import FeedClient, init_repository
from takedown.feed.directives import dumps, loads, to_dict
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


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        if not self.path.startswith("/feed/"):
            self.send_error(404)
            return
        self.path = self.path[len("/feed") :]
        super().do_GET()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench feed")
    parser.add_argument("--quick", action="store_true", help="20,000 directives")
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--dir", action="store_true", help="client reads the directory, no HTTP")
    args = parser.parse_args(argv)
    n = 20_000 if args.quick else args.n
    rows: list[tuple[str, float, float]] = []  # label, wall s, CPU s
    print(f"feed benchmark: {n:,} directives")

    ds = timed("build DirectiveSet (not a target)", functools.partial(build, n), rows)
    data = timed("dumps (canonical JSON)", functools.partial(dumps, ds), rows)
    plain = to_dict(ds)
    timed("baseline json.dumps of the same dicts", functools.partial(json.dumps, plain), rows)
    del plain, ds
    print(f"  directive file: {len(data) / 1e6:.1f} MB")
    timed("baseline json.loads (no validation)", functools.partial(json.loads, data), rows)
    timed("baseline sha256", functools.partial(hashlib.sha256, data), rows)
    loaded = timed("loads (strict validation)", functools.partial(loads, data), rows)
    assert len(loaded.directives) == n
    del loaded

    with tempfile.TemporaryDirectory(prefix="bench-feed-") as tmp:
        base = Path(tmp)
        init_repository(base / "repo")
        repo = Repository(base / "repo")
        publish_it = functools.partial(repo.publish_bytes, data)
        timed("publish (loads + hash + write + sign)", publish_it, rows)
        del publish_it
        del data
        server = None
        if args.dir:
            source = str(base / "repo")
        else:
            handler = functools.partial(_Quiet, directory=str(base / "repo"))
            server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
            threading.Thread(target=server.serve_forever, daemon=True).start()
            source = f"http://127.0.0.1:{server.server_address[1]}/feed/"
        try:
            root = (base / "repo" / "metadata" / "1.root.json").read_bytes()
            client = FeedClient(source, base / "state", root=root, clock=SystemClock())
            got = timed("client refresh: TUF verify + download + loads", client.refresh, rows)
            assert got is not None and len(got.directives) == n
            del got
            again = timed("client refresh, unchanged", client.refresh, rows)
            assert again is None
        finally:
            if server is not None:
                server.shutdown()
                server.server_close()

    for column, name in ((1, "wall"), (2, "CPU")):
        by = {row[0]: row[column] for row in rows}
        t_dumps, t_loads = by["dumps (canonical JSON)"], by["loads (strict validation)"]
        floor_dumps = by["baseline json.dumps of the same dicts"]
        floor_loads = by["baseline json.loads (no validation)"]
        refresh = by["client refresh: TUF verify + download + loads"]
        print(f"ratios ({name} time, same run):")
        print(f"  dumps / json.dumps floor      {t_dumps / floor_dumps:.2f}x")
        print(f"  loads / json.loads floor      {t_loads / floor_loads:.2f}x")
        print(f"  loads rate                    {n / t_loads:,.0f} directives/s")
        print(f"  refresh / loads               {refresh / t_loads:.2f}x")
    print(f"peak RSS {rss_mib():.0f} MiB")
    return 0
