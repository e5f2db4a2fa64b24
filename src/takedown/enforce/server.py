"""The enforcement point's server: listeners, the live flows, the directive index.

One asyncio event loop per process drives non-blocking sockets through reader/writer
callbacks (the Protocol style, one small object per flow and direction; no streams, no
task per flow), so an idle flow costs a few KiB. Only this module, ``flow`` and ``relay``
touch sockets: the handshakes are the sans-IO ``handshake`` machine, the verdict is the pure
``decide``, and the bytes move in ``relay`` (directions, splice pipes, token buckets).

Throttle scope (``ServerConfig.throttle_scope``, ``--throttle-scope``): with ``subscriber``
the shared buckets live in ``EnforcementServer.shared_buckets``, are created on a flow's
first use and dropped when the subscriber's last flow under the directive closes; a rate
change from a live swap updates the shared bucket.

Modes: HTTP CONNECT, SOCKS5 (no auth, CONNECT; domain, IPv4, IPv6), and transparent
(the original destination of a flow redirected by nftables, from SO_ORIGINAL_DST /
IP6T_SO_ORIGINAL_DST). The process around it (feed loop, workers) is ``process``.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import logging
import socket
import time
from collections.abc import Coroutine, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from takedown.clock import Clock, SystemClock
from takedown.enforce.bin_index import BinnedIndex
from takedown.enforce.decide import (
    Action,
    Index,
    InForce,
    Verdict,
    compile_index,
    decide,
    empty_index,
)
from takedown.enforce.flow import Flow, FlowState
from takedown.enforce.handshake import Mode
from takedown.enforce.metrics import EnforceMetrics
from takedown.enforce.relay import PipePool, SharedBucket, SharedKey, ThrottleScope
from takedown.enforce.subscribers import Subscribers
from takedown.feed.binned_set import BinnedSet
from takedown.model import Directive, DirectiveSet
from takedown.names import resolve_lookup

__all__ = ["EnforcementServer", "Mode", "ServerConfig", "ThrottleScope"]

log = logging.getLogger("takedown.enforce")


@dataclass
class ServerConfig:
    """How the enforcement point runs; every timeout in seconds."""

    mode: Mode = Mode.CONNECT
    sniff_timeout: float = 2.0  # a silent client is decided by its destination address
    handshake_timeout: float = 10.0
    connect_timeout: float = 10.0
    # host name -> address for upstream connections ("*" maps every name); names not
    # mapped are resolved with the system resolver
    resolve: Mapping[str, str] = field(default_factory=dict)
    operator_url: str | None = None  # the Link rel="blocked-by" target of 451 answers
    use_splice: bool = True
    reuse_port: bool = False
    backlog: int = 4096
    tick: float = 0.25  # directive validity check and metrics flush interval
    # private splice pipes per process (two descriptors each); beyond it a congested
    # pass-through direction copies its leftover through Python instead
    max_pipes: int = 1024
    # ``subscriber``: a subscriber's throttled flows under the same directive share a bucket
    throttle_scope: ThrottleScope = ThrottleScope.FLOW


class EnforcementServer:
    """Listeners, the live flow registry and the current directive index of one process."""

    def __init__(
        self,
        config: ServerConfig | None = None,
        *,
        index: Index | None = None,
        subscribers: Subscribers | None = None,
        metrics: EnforceMetrics | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.config = config or ServerConfig()
        self.index: Index | BinnedIndex = index if index is not None else empty_index()
        self.subscribers = subscribers
        self.metrics = metrics or EnforceMetrics()
        self.clock = clock or SystemClock()
        self.flows: set[Flow] = set()
        self.fail_open = False
        self.fail_open_reason = ""
        # (throttled, up, directive ids) -> bytes since the last flush
        self.byte_counts: dict[tuple[bool, bool, tuple[str, ...]], int] = {}
        self.directive_measures: dict[str, str] = {}  # directive id -> its measure's label
        # throttle_scope=subscriber: one bucket per subscriber, directive(s) and direction
        self.shared_buckets: dict[SharedKey, SharedBucket] = {}
        self.pipes = PipePool(self.config.max_pipes)
        self.own_addresses: set[tuple[str, int]] = set()
        self._listeners: list[socket.socket] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._tick: asyncio.TimerHandle | None = None
        self._in_force = InForce(frozenset(), 0)
        self._accept_paused = False
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]

    # lifecycle --------------------------------------------------------------------------
    async def start(self, host: str = "127.0.0.1", port: int = 0) -> tuple[str, int]:
        """Listen on ``host:port`` (port 0 picks one); return the bound address."""
        self.loop = asyncio.get_running_loop()
        self.pipes.start(self.config.use_splice)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        lsock = socket.socket(family, socket.SOCK_STREAM)
        lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if self.config.reuse_port:
            lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            lsock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        lsock.bind((host, port))
        lsock.listen(self.config.backlog)
        lsock.setblocking(False)
        self._listeners.append(lsock)
        bound = lsock.getsockname()[:2]
        self.own_addresses.add((bound[0], bound[1]))
        self.loop.add_reader(lsock.fileno(), self._on_accept, lsock)
        self._in_force = self.index.in_force(self.clock.now())
        self._publish_index()
        if self._tick is None:
            self._tick = self.loop.call_later(self.config.tick, self._on_tick)
        log.info("enforce: listening on %s:%s (%s mode)", bound[0], bound[1], self.config.mode)
        return bound[0], bound[1]

    async def close(self) -> None:
        """Stop listening and close every flow."""
        for lsock in self._listeners:
            with contextlib.suppress(ValueError, OSError):
                self.loop.remove_reader(lsock.fileno())
            lsock.close()
        self._listeners.clear()
        self.pipes.pooling = False  # the flows' pipes are closed, not kept
        for flow in list(self.flows):
            flow.close("server shutdown")
        if self._tick is not None:
            self._tick.cancel()
            self._tick = None
        for task in list(self._tasks):
            task.cancel()
        self._flush_bytes()
        self.pipes.close()

    def acquire_bucket(self, key: SharedKey, rate_bps: float) -> SharedBucket:
        """The shared bucket for ``key``, created at ``rate_bps`` on first use."""
        shared = self.shared_buckets.get(key)
        if shared is None:
            shared = self.shared_buckets[key] = SharedBucket(self, key, rate_bps)
        return shared

    def release_bucket(self, shared: SharedBucket) -> None:
        """One direction stopped drawing from ``shared``; drop it after the last one."""
        shared.members -= 1
        if shared.members <= 0 and self.shared_buckets.get(shared.key) is shared:
            del self.shared_buckets[shared.key]
            shared.close()

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` as a task the server cancels on close."""
        task = self.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _on_accept(self, lsock: socket.socket) -> None:
        for _ in range(256):
            try:
                c, addr = lsock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                # out of descriptors: stop accepting for a moment instead of spinning
                self.metrics.accept_errors.labels(errno.errorcode.get(exc.errno or 0, "?")).inc()
                log.warning("enforce: accept failed: %s", exc.strerror)
                self.loop.remove_reader(lsock.fileno())
                self.loop.call_later(0.1, self._resume_accept, lsock)
                return
            c.setblocking(False)
            with contextlib.suppress(OSError):
                c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            client = addr[0]
            if client.startswith("::ffff:"):
                client = client[7:]
            flow = Flow(self, c, client)
            self.flows.add(flow)
            try:
                flow.start()
            except Exception:  # a bug must cost this flow, never the listener
                log.exception("enforce: a flow from %s failed to start", client)
                flow.close("internal error", reset=True)

    def _resume_accept(self, lsock: socket.socket) -> None:
        if lsock in self._listeners:
            self.loop.add_reader(lsock.fileno(), self._on_accept, lsock)

    def resolve_static(self, host: str) -> str | None:
        try:
            ipaddress.ip_address(host)
        except ValueError:
            pass
        else:
            return host
        return resolve_lookup(self.config.resolve, host)

    # decisions --------------------------------------------------------------------------
    def decide_flow(self, flow: Flow) -> Verdict:
        dest_ip = flow.dest[0] if flow.dest else None
        if self.fail_open:
            d = decide(
                empty_index(), [], None, flow.client_addr, self.clock.now(), self.subscribers
            )
            return Verdict(
                Action.PASS,
                subscriber_class=d.subscriber_class,
                reason=f"fail open: {self.fail_open_reason}",
            )
        return decide(
            self.index, flow.names(), dest_ip, flow.client_addr, self.clock.now(), self.subscribers
        )

    def count_verdict(self, flow: Flow, verdict: Verdict, *, new: bool, gone: bool = False) -> None:
        m = self.metrics
        if gone:
            if verdict.action != Action.BLOCK:
                m.active.labels(verdict.action.value).dec()
            return
        if new:
            m.flows.labels(
                verdict.action.value, verdict.subscriber_class, verdict.content_class
            ).inc()
            log.info(
                "flow %s -> %s %s: %s (%s; sub=%s content=%s)",
                flow.client_addr,
                flow.dest,
                flow.names(),
                verdict.action,
                verdict.reason,
                verdict.subscriber_class,
                verdict.content_class,
            )
        for did, measure_id in zip(verdict.directives, verdict.measures, strict=True):
            label = "" if measure_id is None else str(measure_id)
            self.directive_measures[did] = label
            m.directive_flows.labels(did, label).inc()
        if verdict.action != Action.BLOCK:
            m.active.labels(verdict.action.value).inc()

    def flow_closed(self, flow: Flow, was: FlowState, why: str) -> None:
        self.flows.discard(flow)
        if was == FlowState.RELAYING and flow.verdict is not None:
            self.count_verdict(flow, flow.verdict, new=False, gone=True)
            up = flow.up.nbytes if flow.up else 0
            down = flow.down.nbytes if flow.down else 0
            log.info(
                "flow %s -> %s closed (%s): %s up=%d down=%d seconds=%.3f",
                flow.client_addr,
                flow.dest,
                why,
                flow.verdict.action,
                up,
                down,
                time.monotonic() - flow.opened,
            )
        else:
            log.debug("flow %s closed in %s: %s", flow.client_addr, was, why)

    # live updates -----------------------------------------------------------------------
    def swap(self, new: Index | BinnedSet | DirectiveSet | Iterable[Directive]) -> None:
        """Replace the directives atomically and re-decide every live flow now.

        A sharded set (``BinnedSet``) updates the index in place when it is already a
        ``BinnedIndex`` of the same bin width: only the changed bins' rules are replaced.
        """
        index: Index | BinnedIndex
        if isinstance(new, BinnedSet):
            if isinstance(self.index, BinnedIndex) and self.index.accepts(new):
                index = self.index
                index.update(new)
            else:
                index = BinnedIndex(new)
        else:
            index = new if isinstance(new, Index) else compile_index(new)
        in_force = index.in_force(self.clock.now())
        self.index, self._in_force = index, in_force  # both or neither: compile may raise
        self.metrics.feed_updates.inc()
        self._publish_index()  # after _in_force: the gauge shows this set, not the last
        log.info(
            "enforce: directive set %s applied (%d directives, %d in force)",
            index.sequence,
            len(index.directives),
            self._in_force.count,
        )
        self.redecide_all()

    def set_fail_open(self, on: bool, reason: str = "") -> None:
        """Stop (or resume) enforcing; live flows are re-decided at once."""
        if on == self.fail_open:
            return
        self.fail_open = on
        self.fail_open_reason = reason
        self.metrics.fail_open.set(1 if on else 0)
        if on:
            log.error("enforce: FAIL OPEN, nothing is enforced: %s", reason)
        else:
            log.warning("enforce: enforcing again (%s)", reason or "feed fresh")
        self.redecide_all()

    def redecide_all(self) -> None:
        for flow in list(self.flows):
            flow.redecide()

    def _publish_index(self) -> None:
        self.metrics.feed_sequence.set(self.index.sequence)
        self.metrics.directives_in_force.set(self._in_force.count)

    def _feed_age(self) -> float:
        generated = self.index.generated_at
        if generated is None:
            return float("nan")
        return (self.clock.now() - generated).total_seconds()

    def _on_tick(self) -> None:
        self._tick = self.loop.call_later(self.config.tick, self._on_tick)
        self._flush_bytes()
        self.metrics.feed_age.set(self._feed_age())
        now: datetime = self.clock.now()
        in_force = self.index.in_force(now)
        if in_force.key != self._in_force.key:
            self._in_force = in_force
            self._publish_index()
            log.info("enforce: directives in force changed: %d now", in_force.count)
            self.redecide_all()

    def _flush_bytes(self) -> None:
        counts, self.byte_counts = self.byte_counts, {}
        for (throttled, up, directives), n in counts.items():
            self.metrics.bytes.labels(
                "throttle" if throttled else "pass", "up" if up else "down"
            ).inc(n)
            for did in directives:
                measure = self.directive_measures.get(did, "")
                self.metrics.directive_bytes.labels(did, measure).inc(n)

    # introspection for tests and the CLI -------------------------------------------------------
    def flow_summaries(self) -> list[dict[str, object]]:
        """One dict per live flow: addresses, names, verdict, bytes."""
        out: list[dict[str, object]] = []
        for f in self.flows:
            out.append(
                {
                    "client": f.client_addr,
                    "dest": f.dest,
                    "names": f.names(),
                    "state": f.state.value,
                    "action": f.verdict.action.value if f.verdict else None,
                    "rate_kbps": f.verdict.rate_kbps if f.verdict else None,
                    "up": f.up.nbytes if f.up else 0,
                    "down": f.down.nbytes if f.down else 0,
                }
            )
        return out
