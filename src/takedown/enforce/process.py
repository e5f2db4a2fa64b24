"""The ``takedown enforce`` process: feed loop, one server, or workers sharing the port."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import resource
import signal
import socket
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from prometheus_client import CollectorRegistry

from takedown.clock import Clock, SystemClock, clock_from_env
from takedown.enforce import metrics as metrics_mod
from takedown.enforce.feed_guard import FeedGuard
from takedown.enforce.metrics import EnforceMetrics
from takedown.enforce.reporting import ReportConfig, report_loop
from takedown.enforce.server import EnforcementServer, ServerConfig
from takedown.enforce.subscribers import Subscribers
from takedown.errors import TakedownError
from takedown.feed.source import FeedSource, open_feed

log = logging.getLogger("takedown.enforce")


async def feed_loop(
    server: EnforcementServer, feed: FeedSource, interval: float, clock: Clock
) -> None:
    """Poll the feed; swap in new sets; fail open while the feed is stale past its expiry.

    No failure ends this task: a set that cannot be applied (refused by the feed or by the
    matcher, memory, a bug) leaves the last good one in force until the feed's promise for
    it runs out, then the point fails open (``FeedGuard``). Each distinct cause is logged
    at ERROR once and counted in ``takedown_enforce_feed_rejected_total{reason}``.
    ``clock`` is the real-time clock the feed's expiry is judged on (the server's own clock
    may be a scenario's simulated one, which directive validity runs on).
    """
    loop = asyncio.get_running_loop()
    guard = FeedGuard()
    first = True
    while True:
        try:
            await _feed_step(server, feed, guard, loop, first=first, now=clock.now())
        except Exception as exc:  # the loop itself must outlive any bug
            _rejected(server, guard, "error", exc)
        first = False
        await asyncio.sleep(interval)


async def _feed_step(
    server: EnforcementServer,
    feed: FeedSource,
    guard: FeedGuard,
    loop: asyncio.AbstractEventLoop,
    *,
    first: bool,
    now: datetime,
) -> None:
    """One poll: fetch, apply, then decide whether to fail open."""
    ds = None
    try:
        ds = await loop.run_in_executor(None, feed.refresh)
    except Exception as exc:
        reason = getattr(exc, "reason", None) if isinstance(exc, TakedownError) else None
        _rejected(server, guard, reason or type(exc).__name__, exc)
    else:
        if ds is None:  # unchanged: the feed vouches again for what it had
            guard.confirmed(feed.expires)
    if ds is None and first:
        ds = feed.last_good  # a set verified by an earlier run
    if ds is not None:
        try:
            server.swap(ds)
        except Exception as exc:
            _rejected(server, guard, "apply:" + type(exc).__name__, exc, set_refused=True)
        else:
            guard.applied(ds.sequence, feed.expires)
    try:
        stale = feed.stale(now)
    except Exception as exc:
        _rejected(server, guard, "stale:" + type(exc).__name__, exc)
        stale = True
    answer = guard.fail_open(
        now,
        source_stale=stale,
        source_has_set=feed.last_good is not None,
        source_expires=feed.expires,
    )
    server.set_fail_open(answer.on, answer.reason)


def _rejected(
    server: EnforcementServer,
    guard: FeedGuard,
    reason: str,
    exc: BaseException,
    *,
    set_refused: bool = False,
) -> None:
    server.metrics.feed_rejected.labels(reason).inc()
    if guard.rejected(reason, str(exc), set_refused=set_refused):
        log.error("enforce: feed update not applied (%s): %s", reason, exc)
    else:
        log.debug("enforce: feed update not applied again (%s): %s", reason, exc)


@dataclass
class EnforceOptions:
    """Everything ``takedown enforce`` needs, as plain data."""

    listen: tuple[str, int]
    feed: str | None = None
    state_dir: str = ".takedown-enforce"
    root: str | None = None
    refresh: float = 2.0
    subscribers: str | None = None
    metrics: tuple[str, int] | None = None
    workers: int = 1
    config: ServerConfig = field(default_factory=ServerConfig)
    report: ReportConfig | None = None  # --report URL --token T: report back to the regulator


def raise_nofile() -> int:
    """Raise the open-file soft limit to the hard limit (a flow takes two descriptors)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


async def serve(
    opts: EnforceOptions,
    *,
    worker: int = 0,
    metrics: EnforceMetrics | None = None,
    ready: Callable[[tuple[str, int]], None] | None = None,
    report_registry: CollectorRegistry | None = None,
) -> None:
    """Run one enforcement process until SIGTERM / SIGINT. With ``opts.report``, the
    process given ``report_registry`` (all workers' counters) reports back."""
    subs = Subscribers.load(opts.subscribers) if opts.subscribers else None
    metrics = metrics or EnforceMetrics()
    server = EnforcementServer(
        opts.config, subscribers=subs, metrics=metrics, clock=clock_from_env()
    )
    real_time = SystemClock()  # TUF metadata expiry runs on real time
    feed = None
    if opts.feed:
        state = os.path.join(opts.state_dir, f"worker-{worker}")
        feed = open_feed(opts.feed, state, opts.root, clock=real_time)
    bound = await server.start(*opts.listen)
    if ready is not None:
        ready(bound)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    tasks = []
    if feed is not None:
        tasks.append(loop.create_task(feed_loop(server, feed, opts.refresh, real_time)))
    if opts.report is not None and report_registry is not None:
        tasks.append(
            loop.create_task(report_loop(opts.report, report_registry, server, server.clock))
        )
    try:
        await stop.wait()
    finally:
        for task in tasks:
            task.cancel()
        await server.close()


def run(opts: EnforceOptions) -> int:
    """``takedown enforce``: one process, or ``workers`` processes sharing the port."""
    raise_nofile()
    if opts.workers <= 1:
        m = EnforceMetrics()
        if opts.metrics:
            port = m.serve(*opts.metrics)
            print(f"metrics on http://{opts.metrics[0]}:{port}/metrics", flush=True)
        asyncio.run(
            serve(
                opts,
                metrics=m,
                ready=lambda bound: _announce(opts, bound),
                report_registry=m.registry,
            )
        )
        return 0
    return _run_workers(opts)


def _announce(opts: EnforceOptions, bound: tuple[str, int]) -> None:
    print(f"listening on {bound[0]}:{bound[1]} ({opts.config.mode} mode)", flush=True)


def _hold_port(opts: EnforceOptions) -> socket.socket:
    """Bind (SO_REUSEPORT, not listening) so every worker binds the same port; fix
    ``opts.listen`` to the port bound."""
    opts.config.reuse_port = True
    host, port = opts.listen
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    holder = socket.socket(family, socket.SOCK_STREAM)
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    holder.bind((host, port))
    opts.listen = (host, holder.getsockname()[1])
    return holder


def _worker(
    opts: EnforceOptions, i: int, holder: socket.socket, mdir: str, ready: tuple[int, int]
) -> None:
    """The body of forked worker ``i``: serve until told to stop, then exit the process."""
    code = 0
    try:
        holder.close()
        os.close(ready[0])
        metrics_mod.use_multiprocess(mdir)

        def listening(_bound: tuple[str, int]) -> None:
            os.write(ready[1], b"+")

        shared = metrics_mod.multiprocess_registry(mdir) if i == 0 else None  # one reporter
        asyncio.run(
            serve(opts, worker=i, metrics=EnforceMetrics(), ready=listening, report_registry=shared)
        )
    except BaseException as exc:  # a worker reports and exits, never returns to the CLI
        print(f"worker {i}: {exc}", file=sys.stderr, flush=True)
        code = 1
    finally:
        os._exit(code)


def _run_workers(opts: EnforceOptions) -> int:
    """Fork ``opts.workers`` processes on one port; wait for them; 1 if any failed."""
    holder = _hold_port(opts)
    mdir = tempfile.mkdtemp(prefix="takedown-enforce-metrics-")
    pids: list[int] = []
    ready_r, ready_w = os.pipe()
    for i in range(opts.workers):
        pid = os.fork()
        if pid == 0:
            _worker(opts, i, holder, mdir, (ready_r, ready_w))
        pids.append(pid)
    if opts.metrics:
        mport = metrics_mod.serve_registry(metrics_mod.multiprocess_registry(mdir), *opts.metrics)
        print(f"metrics on http://{opts.metrics[0]}:{mport}/metrics", flush=True)
    os.close(ready_w)
    started = 0
    while started < opts.workers:
        got = os.read(ready_r, opts.workers)
        if not got:
            break  # a worker died before listening; its exit status tells below
        started += len(got)
    os.close(ready_r)
    _announce(opts, opts.listen)
    print(f"{opts.workers} workers: {' '.join(map(str, pids))}", flush=True)

    def forward(signum: int, _frame: object) -> None:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    status = _wait_all(pids, mdir)
    holder.close()
    return status


def _wait_all(pids: list[int], mdir: str) -> int:
    """Reap the workers; 1 if any exited non-zero."""
    status = 0
    remaining = set(pids)
    while remaining:
        try:
            pid, st = os.wait()
        except ChildProcessError:
            break
        remaining.discard(pid)
        metrics_mod.worker_exited(mdir, pid)
        if os.waitstatus_to_exitcode(st) != 0:
            status = 1
    return status
