"""The relay: the two directions of a flow, token buckets, and the splice pipes.

A pass-through direction moves bytes with ``os.splice`` through one shared pipe (nothing is
copied into Python); a throttled direction reads at most one burst at a time and waits for
the token bucket, so unsent data stays in the kernel and the sender is slowed by TCP itself.

Splice goes socket -> pipe -> socket. A flow starts on the process's shared pipe, which is
left empty after every event, in 64 KiB pieces; the first time a destination cannot take
everything (a bulk flow meeting backpressure), or once the direction has moved
``BULK_AFTER`` bytes, it gets a kernel pipe of its own (from ``PipePool``, capped by
``ServerConfig.max_pipes``: two descriptors each; what is left in the shared pipe moves into
it pipe-to-pipe, so the pass path never copies into Python) and from then on splices up to
a whole pipe (1 MiB) per call. Idle and short flows hold no pipe.

Throttle scope (``ThrottleScope``): ``flow`` gives every throttled flow a token bucket per
direction of its own at the directive's rate; ``subscriber`` makes all throttled flows of
one subscriber address under the same directive(s) share one ``SharedBucket`` per
direction, so parallel downloads together get the directive's rate. Its flows wait in one
first-in first-out queue for tokens, so none of them starves.

The hot path (``Direction.on_readable`` / ``_splice``) does per event only what it did
before the split: no per-chunk Python work beyond the splice calls and the byte count.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import socket
from collections import deque
from enum import StrEnum
from typing import TYPE_CHECKING

from takedown.enforce.shaper import TokenBucket

if TYPE_CHECKING:
    from takedown.enforce.flow import Flow
    from takedown.enforce.server import EnforcementServer

# bytes per splice through the shared pipe (and per recv without splice): what is left in
# the shared pipe after an event may have to be copied into Python, so this stays small
CHUNK = 1 << 16
PIPE_SIZE = 1 << 20
# a direction that has moved this much is bulk: it takes a private pipe (if the cap allows)
# and splices a whole pipe per call; bench (a) measured 1.5 GB/s with 64 KiB pieces, 2.3 with
# 1 MiB, as per-call costs (syscalls, wake-ups, TCP pushes) are paid 16 times less often
BULK_AFTER = 1 << 20
F_SETPIPE_SZ = 1031
SPLICE_FLAGS = getattr(os, "SPLICE_F_MOVE", 1) | getattr(os, "SPLICE_F_NONBLOCK", 2)
# per readable event at most, then other flows get a turn
BUDGET = 16 << 20  # bytes
BUDGET_SPLICES = 256  # splices, should a source trickle in small pieces just as fast
POOL_SIZE = 32  # idle private pipes a process keeps for the next bulk flows

KernelPipe = tuple[int, int]  # (read end, write end)


class ThrottleScope(StrEnum):
    """What one token bucket limits: each flow, or a subscriber's flows under a directive."""

    FLOW = "flow"
    SUBSCRIBER = "subscriber"


def new_kernel_pipe() -> KernelPipe:
    """A non-blocking pipe of PIPE_SIZE (if the system allows), for splicing."""
    r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    with contextlib.suppress(OSError):
        fcntl.fcntl(w, F_SETPIPE_SZ, PIPE_SIZE)
    return r, w


class PipePool:
    """The process's shared splice pipe and its private pipes (pooled when idle, capped)."""

    __slots__ = ("idle", "limit", "open", "pooling", "shared")

    def __init__(self, limit: int) -> None:
        self.limit = limit  # private pipes at most (two descriptors each)
        self.shared: KernelPipe | None = None  # None: relay without splice
        self.open = 0  # private pipes, pooled or in use
        self.idle: list[KernelPipe] = []
        self.pooling = False  # while the server listens, returned empty pipes are kept

    def start(self, use_splice: bool) -> None:
        """Open the shared pipe (if splicing) and keep returned pipes from now on."""
        if use_splice and self.shared is None and hasattr(os, "splice"):
            self.shared = new_kernel_pipe()
        self.pooling = True

    def take(self) -> KernelPipe | None:
        """A private splice pipe for a congested pass-through direction, or None (at the cap,
        or out of descriptors)."""
        if self.idle:
            return self.idle.pop()
        if self.open >= self.limit:
            return None
        try:
            pipe = new_kernel_pipe()
        except OSError:
            return None
        self.open += 1
        return pipe

    def give(self, pipe: KernelPipe, *, empty: bool) -> None:
        """Return a private pipe: pooled when empty, closed otherwise."""
        if empty and len(self.idle) < POOL_SIZE and self.pooling:
            self.idle.append(pipe)
            return
        for fd in pipe:
            os.close(fd)
        self.open -= 1

    def close(self) -> None:
        """Close the shared pipe and the idle ones (after every flow gave its pipe back)."""
        self.pooling = False
        if self.shared is not None:
            for fd in self.shared:
                os.close(fd)
            self.shared = None
        for pipe in self.idle:
            for fd in pipe:
                os.close(fd)
        self.open -= len(self.idle)
        self.idle.clear()


# (subscriber address, directive ids, upstream direction)
SharedKey = tuple[str, tuple[str, ...], bool]


class SharedBucket:
    """One token bucket that several directions (of one subscriber's flows) draw from.

    A direction that finds the bucket empty, or others already waiting, joins ``waiters``;
    one timer serves them first-in first-out as tokens arrive, and a direction that needs
    more afterwards queues again at the back, so every flow gets its turn.
    """

    __slots__ = ("bucket", "key", "members", "server", "serving", "timer", "waiters")

    def __init__(self, server: EnforcementServer, key: SharedKey, rate_bps: float) -> None:
        self.server = server
        self.key = key
        self.bucket = TokenBucket(rate_bps, now=server.loop.time())
        self.members = 0
        self.waiters: deque[Direction] = deque()
        self.serving: Direction | None = None
        self.timer: asyncio.TimerHandle | None = None

    def wait(self, direction: Direction) -> None:
        """Queue ``direction`` for tokens (once) and make sure a wake-up is scheduled."""
        if direction not in self.waiters:
            self.waiters.append(direction)
        self._schedule()

    def leave(self, direction: Direction) -> None:
        with contextlib.suppress(ValueError):
            self.waiters.remove(direction)
        if not self.waiters and self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def set_rate(self, rate_bps: float) -> None:
        if rate_bps == self.bucket.rate_bps:
            return
        self.bucket.set_rate(rate_bps, self.server.loop.time())
        if self.timer is not None:  # it waited at the old rate
            self.timer.cancel()
            self.timer = None
        self._schedule()

    def _schedule(self) -> None:
        if self.timer is not None or not self.waiters or self.serving is not None:
            return
        loop = self.server.loop
        now = loop.time()
        # a quarter burst per wake-up, as a flow's own bucket does (see Direction.flush)
        wait = self.bucket.delay(now, max(1, self.bucket.burst_bytes // 4))
        self.timer = loop.call_at(now + max(wait, 0.0005), self._serve)

    def _serve(self) -> None:
        self.timer = None
        now = self.server.loop.time()
        while self.waiters and self.bucket.tokens(now) >= 1:
            direction = self.waiters.popleft()
            self.serving = direction
            try:
                direction.flush()
            finally:
                self.serving = None
        self._schedule()

    def close(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.waiters.clear()


class Direction:
    """One direction of a flow: bytes from ``src`` to ``dst``, maybe through a bucket."""

    __slots__ = (
        "bucket",
        "dfd",
        "dst",
        "eof",
        "flow",
        "granted",
        "kernel_bytes",
        "kernel_pipe",
        "nbytes",
        "pending",
        "reading",
        "sfd",
        "shared",
        "shut",
        "src",
        "timer",
        "up",
        "writing",
    )

    def __init__(self, flow: Flow, src: socket.socket, dst: socket.socket, up: bool) -> None:
        self.flow = flow
        self.src, self.dst = src, dst
        self.sfd, self.dfd = src.fileno(), dst.fileno()
        self.up = up
        self.bucket: TokenBucket | None = None
        self.shared: SharedBucket | None = None  # set: ``bucket`` is its bucket
        self.pending: memoryview | None = None
        self.granted = 0  # bytes of ``pending`` the bucket already let through
        # a private splice pipe and the bytes in it; they go out before ``pending``
        self.kernel_pipe: KernelPipe | None = None
        self.kernel_bytes = 0
        self.timer: asyncio.TimerHandle | None = None
        self.reading = self.writing = False
        self.eof = self.shut = False
        self.nbytes = 0

    # registration -------------------------------------------------------------------
    def start_reading(self) -> None:
        if (
            not self.reading
            and not self.eof
            and self.pending is None
            and self.kernel_bytes == 0
            and self.timer is None
        ):
            self.flow.server.loop.add_reader(self.sfd, self.on_readable)
            self.reading = True

    def stop_reading(self) -> None:
        if self.reading:
            self.flow.server.loop.remove_reader(self.sfd)
            self.reading = False

    def stop(self) -> None:
        self.stop_reading()
        if self.writing:
            self.flow.server.loop.remove_writer(self.dfd)
            self.writing = False
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self._leave_shared()
        self._release_pipe()

    def join_shared(self, shared: SharedBucket) -> None:
        """Draw tokens from ``shared`` (a subscriber's bucket) from now on."""
        self._leave_shared()
        self.shared = shared
        self.bucket = shared.bucket
        shared.members += 1

    def _leave_shared(self) -> None:
        shared = self.shared
        if shared is None:
            return
        self.shared = None
        self.bucket = None
        self.granted = 0
        shared.leave(self)
        self.flow.server.release_bucket(shared)

    def _release_pipe(self) -> None:
        if self.kernel_pipe is not None:
            self.flow.server.pipes.give(self.kernel_pipe, empty=self.kernel_bytes == 0)
            self.kernel_pipe = None
            self.kernel_bytes = 0

    # data -------------------------------------------------------------------------------
    def on_readable(self) -> None:
        pipes = self.flow.server.pipes
        if self.bucket is None and pipes.shared is not None:
            self._splice(pipes)
            return
        size = CHUNK if self.bucket is None else self.bucket.burst_bytes
        try:
            data = self.src.recv(size)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self.flow.abort(f"{'client' if self.up else 'server'} read: {exc.strerror}")
            return
        if not data:
            self.on_eof()
            return
        self._count(len(data))
        self.stop_reading()
        self.pending = memoryview(data)
        self.flush()

    def _splice(self, pipes: PipePool) -> None:
        # keep moving while the source has bytes and the destination takes them: on a busy
        # machine every wake-up waits for a CPU, so each one should move as much as it can
        moved = 0
        for _ in range(BUDGET_SPLICES):
            if moved >= BUDGET:
                return
            if self.kernel_pipe is None and self.nbytes >= BULK_AFTER:
                self.kernel_pipe = pipes.take()
            if self.kernel_pipe is None:
                before = self.nbytes
                if not self._splice_shared(pipes):
                    return
                moved += self.nbytes - before
                continue
            # own pipe, empty (reading stops while it holds bytes): fill it, then drain it
            try:
                n = os.splice(self.sfd, self.kernel_pipe[1], PIPE_SIZE, flags=SPLICE_FLAGS)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self.flow.abort(f"{'client' if self.up else 'server'} read: {exc.strerror}")
                return
            if n == 0:
                self.on_eof()
                return
            self._count(n)
            moved += n
            self.kernel_bytes = n
            if not self._push():
                return
            if self.kernel_bytes:
                self.stop_reading()
                self._want_write()
                return

    def _splice_shared(self, pipes: PipePool) -> bool:
        """One move through the shared pipe; True if it is worth trying another."""
        pr, pw = pipes.shared  # type: ignore[misc]
        try:
            n = os.splice(self.sfd, pw, CHUNK, flags=SPLICE_FLAGS)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError as exc:
            self.flow.abort(f"{'client' if self.up else 'server'} read: {exc.strerror}")
            return False
        if n == 0:
            self.on_eof()
            return False
        self._count(n)
        moved = 0
        error: OSError | None = None
        while moved < n:
            try:
                moved += os.splice(pr, self.dfd, n - moved, flags=SPLICE_FLAGS)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                error = exc
                break
        if moved == n:
            return True
        # the shared pipe must be empty when this event ends
        left = n - moved
        if error is None:
            self.kernel_pipe = pipes.take()
        if self.kernel_pipe is not None:
            while self.kernel_bytes < left:
                try:
                    k = os.splice(
                        pr, self.kernel_pipe[1], left - self.kernel_bytes, flags=SPLICE_FLAGS
                    )
                except OSError:
                    break
                if k <= 0:
                    break
                self.kernel_bytes += k
            left -= self.kernel_bytes
        rest = read_exactly(pr, left)  # only without a pipe of our own (or on an error)
        if error is not None:
            self.flow.abort(f"{'server' if self.up else 'client'} write: {error.strerror}")
            return False
        self.stop_reading()
        if rest:
            self.pending = memoryview(rest)
        self._want_write()
        return False

    def _push(self) -> bool:
        """Splice the private pipe's bytes to the destination; False if the flow failed."""
        assert self.kernel_pipe is not None
        pr = self.kernel_pipe[0]
        while self.kernel_bytes:
            try:
                m = os.splice(pr, self.dfd, self.kernel_bytes, flags=SPLICE_FLAGS)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                self.flow.abort(f"{'server' if self.up else 'client'} write: {exc.strerror}")
                return False
            if m <= 0:
                break
            self.kernel_bytes -= m
        return True

    def _unpipe(self) -> None:
        """Move the private pipe's bytes in front of ``pending`` (the flow is throttled now)."""
        if self.kernel_pipe is None:
            return
        if self.kernel_bytes:
            data = read_exactly(self.kernel_pipe[0], self.kernel_bytes)
            self.kernel_bytes = 0
            self.pending = memoryview(data + bytes(self.pending or b""))
        self._release_pipe()

    def _count(self, n: int) -> None:
        self.nbytes += n
        server = self.flow.server
        verdict = self.flow.verdict
        key = (self.bucket is not None, self.up, verdict.directives if verdict else ())
        server.byte_counts[key] = server.byte_counts.get(key, 0) + n

    def flush(self) -> None:
        """Send what is pending as far as the bucket and the destination allow."""
        loop = self.flow.server.loop
        if self.kernel_bytes:
            if not self._push():
                return
            if self.kernel_bytes:
                self._want_write()
                return
        while self.pending is not None:
            data = self.pending
            if self.shared is not None:
                if self.granted == 0 and not self._take_shared(len(data)):
                    return
                piece = data[: self.granted]
            elif self.bucket is not None:
                if self.granted == 0:
                    now = loop.time()
                    self.granted = self.bucket.take(now, len(data))
                    if self.granted == 0:
                        # wake for a quarter burst, not a full bucket: tokens that would
                        # arrive while the bucket is full (a late timer) are lost
                        quarter = max(1, self.bucket.burst_bytes // 4)
                        wait = self.bucket.delay(now, min(len(data), quarter))
                        self._stop_writing()
                        self.timer = loop.call_at(now + max(wait, 0.0005), self._on_timer)
                        return
                piece = data[: self.granted]
            else:
                piece = data
            try:
                sent = self.dst.send(piece)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError as exc:
                self.flow.abort(f"{'server' if self.up else 'client'} write: {exc.strerror}")
                return
            if self.bucket is not None:
                self.granted = max(0, self.granted - sent)
            rest = data[sent:]
            self.pending = rest if len(rest) else None
            if sent < len(piece):
                self._want_write()
                return
        self.granted = 0
        was_writing = self.writing
        self._stop_writing()
        if self.eof:
            self._shutdown()
            return
        self.start_reading()
        if was_writing and self.reading and self.bucket is None:
            # the destination drained: the source most likely has bytes waiting already,
            # so move them now instead of after another trip through the selector
            self.on_readable()

    def _take_shared(self, nbytes: int) -> bool:
        """Take tokens from the shared bucket in turn; False (queued) if none for us now."""
        shared = self.shared
        assert shared is not None
        if shared.waiters and shared.serving is not self:
            # others are waiting: take a place behind them instead of jumping the queue
            self._stop_writing()
            shared.wait(self)
            return False
        self.granted = shared.bucket.take(self.flow.server.loop.time(), nbytes)
        if self.granted == 0:
            self._stop_writing()
            shared.wait(self)
            return False
        return True

    def _on_timer(self) -> None:
        self.timer = None
        self.flush()

    def _want_write(self) -> None:
        if not self.writing:
            self.flow.server.loop.add_writer(self.dfd, self.flush)
            self.writing = True

    def _stop_writing(self) -> None:
        if self.writing:
            self.flow.server.loop.remove_writer(self.dfd)
            self.writing = False

    def on_eof(self) -> None:
        self.eof = True
        self.stop_reading()
        if self.pending is None and self.kernel_bytes == 0:
            self._shutdown()

    def _shutdown(self) -> None:
        if not self.shut:
            self.shut = True
            with contextlib.suppress(OSError):
                self.dst.shutdown(socket.SHUT_WR)
            self.flow.maybe_done()

    def set_rate(self, rate_bps: float | None, key: SharedKey | None = None) -> None:
        """Throttle to ``rate_bps`` bits/s, or release (None); applies to bytes not yet sent.

        With ``key`` the direction draws from the server's shared bucket for that key
        (created or re-rated as needed) instead of a bucket of its own.
        """
        now = self.flow.server.loop.time()
        if rate_bps is not None and key is not None:
            shared = self.shared
            if shared is None or shared.key != key:
                if shared is None:
                    self._unpipe()
                if self.timer is not None:
                    self.timer.cancel()
                    self.timer = None
                self.join_shared(self.flow.server.acquire_bucket(key, rate_bps))
            self.shared.set_rate(rate_bps)  # type: ignore[union-attr]
        elif rate_bps is None:
            if self.bucket is None:
                return
            self._leave_shared()
            self.bucket = None
            self.granted = 0
            if self.timer is not None:
                self.timer.cancel()
                self.timer = None
        elif self.bucket is None:
            self._unpipe()
            self.bucket = TokenBucket(rate_bps, now=now)
        elif self.shared is not None:
            self._leave_shared()
            self.bucket = TokenBucket(rate_bps, now=now)
        else:
            self.bucket.set_rate(rate_bps, now)
            if self.timer is not None:
                self.timer.cancel()
                self.timer = None
        if self.shared is not None and self.shared.waiters:
            # queued directions resume in turn as tokens arrive; this one waits with them
            if self.pending is not None and self not in self.shared.waiters:
                self.flush()
            elif self.pending is None and not self.kernel_bytes:
                self.start_reading()
        elif self.pending is not None or self.kernel_bytes:
            self.flush()
        else:
            self.start_reading()


def read_exactly(fd: int, n: int) -> bytes:
    """Read ``n`` bytes that are known to be in a pipe."""
    out = bytearray()
    while len(out) < n:
        chunk = os.read(fd, n - len(out))
        if not chunk:
            break
        out += chunk
    return bytes(out)
