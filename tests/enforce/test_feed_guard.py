"""The enforcement point never freezes on a set it cannot apply (attack 1 of the safety
issue): it keeps the last good set until the feed's promise for it runs out, then fails
open, loudly; the feed loop itself survives anything. Time is a simulated clock."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

import pytest
from test_server_support import directive_set, linkedin_block, running_proxy, until

from takedown.clock import SimClock
from takedown.enforce.feed_guard import FeedGuard
from takedown.enforce.process import _feed_step, feed_loop
from takedown.enforce.server import EnforcementServer, Mode
from takedown.feed.client import FeedError
from takedown.model import Directive, DirectiveSet, MeasureAction

T0 = datetime(2021, 3, 10, 12, 0, tzinfo=UTC)
PROMISE = timedelta(hours=1)  # how long each answer of the feed vouches for its set


def broad_set(sequence: int) -> DirectiveSet:
    """A set the matcher refuses (a /7): built directly, as a buggy or older publisher might."""
    bad = Directive("d-broad", MeasureAction.BLOCK, ip_ranges=("10.0.0.0/7",))
    return directive_set(linkedin_block(), bad, sequence=sequence)


class ScriptedFeed:
    """A FeedSource whose every refresh does what the script says (a set, None or an
    exception); ``expires`` moves with the simulated clock like a renewed timestamp."""

    def __init__(self, clock: SimClock, script: list[object]) -> None:
        self.clock = clock
        self.script = list(script)
        self.last_good: DirectiveSet | None = None
        self.expires: datetime | None = None
        self.stale_error: Exception | None = None

    def refresh(self) -> DirectiveSet | None:
        step = self.script.pop(0) if self.script else None
        if isinstance(step, BaseException):
            raise step
        self.expires = self.clock.now() + PROMISE
        if isinstance(step, DirectiveSet):
            self.last_good = step
        return step  # type: ignore[return-value]

    def stale(self, now: datetime) -> bool:
        if self.stale_error is not None:
            raise self.stale_error
        return self.expires is None or now >= self.expires


async def step(server: EnforcementServer, feed: ScriptedFeed, guard: FeedGuard, *, first=False):
    await _feed_step(
        server, feed, guard, asyncio.get_running_loop(), first=first, now=feed.clock.now()
    )


def rejected(server: EnforcementServer, reason: str) -> float:
    return server.metrics.value("takedown_enforce_feed_rejected_total", {"reason": reason})


async def test_failures_at_each_step_keep_the_last_good_set_then_fail_open(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = SimClock(T0)
    good = directive_set(linkedin_block(), sequence=1)
    feed = ScriptedFeed(
        clock,
        [
            good,
            FeedError("BadSignatureError", "timestamp signature does not verify"),
            broad_set(2),  # the point's matcher refuses it
            MemoryError(),  # loading a huge set
            RuntimeError("a bug in the client"),
            None,
            None,
        ],
    )
    guard = FeedGuard()
    caplog.set_level(logging.DEBUG, logger="takedown.enforce")
    async with running_proxy(Mode.CONNECT) as server:
        await step(server, feed, guard, first=True)
        assert server.index.sequence == 1 and not server.fail_open
        good_until = clock.now() + PROMISE
        for _ in range(4):  # the refusal, the broad set, memory, the bug
            clock.advance(timedelta(minutes=5))
            await step(server, feed, guard)
            assert server.index.sequence == 1, "the last good set stays in force"
            assert not server.fail_open
        feed.stale_error = OSError("clock file unreadable")  # the staleness check fails too
        clock.advance(timedelta(minutes=5))
        await step(server, feed, guard)
        assert server.fail_open, "an unknown freshness is stale"
        feed.stale_error = None
        await step(server, feed, guard)
        assert not server.fail_open
        # the feed keeps answering (renewed timestamps) but the set in force is outdated:
        # once its own promise has run out, the point stops enforcing it
        clock.set(good_until - timedelta(seconds=1))
        await step(server, feed, guard)
        assert not server.fail_open and server.index.sequence == 1
        clock.set(good_until)
        await step(server, feed, guard)
        assert server.fail_open
        assert "set 1 expired" in server.fail_open_reason
        assert server.metrics.value("takedown_enforce_fail_open") == 1
        # a set that applies again ends it
        feed.script = [directive_set(linkedin_block(), sequence=3)]
        await step(server, feed, guard)
        assert server.index.sequence == 3 and not server.fail_open
    assert rejected(server, "BadSignatureError") == 1
    assert rejected(server, "apply:PatternError") == 1
    assert rejected(server, "MemoryError") == 1
    assert rejected(server, "RuntimeError") == 1
    assert rejected(server, "stale:OSError") == 1
    errors = [r for r in caplog.records if r.levelno == logging.ERROR and "not applied" in r.msg]
    assert len(errors) == 5  # one per distinct cause


async def test_the_same_cause_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    clock = SimClock(T0)
    feed = ScriptedFeed(clock, [directive_set(linkedin_block()), *[broad_set(2)] * 5])
    guard = FeedGuard()
    async with running_proxy(Mode.CONNECT) as server:
        for i in range(6):
            await step(server, feed, guard, first=i == 0)
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert rejected(server, "apply:PatternError") == 5


async def test_a_restarted_point_with_only_an_unusable_set_says_it_fails_open() -> None:
    """A restart used to enforce nothing while reporting fail_open 0."""
    clock = SimClock(T0)
    feed = ScriptedFeed(clock, [None])
    feed.last_good = broad_set(7)  # verified earlier, refused by this point's matcher
    feed.expires = T0 + PROMISE
    async with running_proxy(Mode.CONNECT) as server:
        await step(server, feed, FeedGuard(), first=True)
        assert server.fail_open and server.metrics.value("takedown_enforce_fail_open") == 1
        assert "no directive set could be applied" in server.fail_open_reason
        assert len(server.index.directives) == 0


async def test_no_exception_ends_the_feed_task() -> None:
    class Exploding:
        last_good = None
        expires = None

        def refresh(self) -> None:
            raise ZeroDivisionError

        def stale(self, now: datetime) -> bool:
            raise KeyError("x")

    async with running_proxy(Mode.CONNECT) as server:
        task = asyncio.ensure_future(feed_loop(server, Exploding(), 0.001, SimClock(T0)))  # type: ignore[arg-type]
        assert await until(lambda: rejected(server, "ZeroDivisionError") >= 3)
        assert not task.done()
        assert server.fail_open
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_the_in_force_gauge_shows_the_set_just_applied() -> None:
    async with running_proxy(Mode.CONNECT) as server:
        server.swap(directive_set(linkedin_block("a")))
        assert server.metrics.value("takedown_enforce_directives_in_force") == 1
        server.swap(directive_set(linkedin_block("a"), linkedin_block("b"), sequence=2))
        assert server.metrics.value("takedown_enforce_directives_in_force") == 2
        with pytest.raises(Exception, match="broader than"):
            server.swap(broad_set(3))
        assert server.index.sequence == 2  # a refused set changes nothing
        assert server.metrics.value("takedown_enforce_directives_in_force") == 2


async def test_a_failed_fetch_does_not_shorten_the_life_of_the_set_in_force() -> None:
    """A passing network error is the feed's staleness, judged by the feed: renewed
    timestamps afterwards keep the set in force as long as they promise."""
    clock = SimClock(T0)
    feed = ScriptedFeed(clock, [directive_set(linkedin_block()), OSError("reset"), None, None])
    guard = FeedGuard()
    async with running_proxy(Mode.CONNECT) as server:
        await step(server, feed, guard, first=True)
        for _ in range(3):  # the error, then two renewals 50 minutes apart
            clock.advance(timedelta(minutes=50))
            await step(server, feed, guard)
        assert clock.now() > T0 + PROMISE  # past the first promise, within the renewed one
        assert not server.fail_open and server.index.sequence == 1


async def test_a_refused_set_does_not_extend_the_set_in_force() -> None:
    clock = SimClock(T0)
    feed = ScriptedFeed(clock, [directive_set(linkedin_block()), broad_set(2), None])
    guard = FeedGuard()
    async with running_proxy(Mode.CONNECT) as server:
        await step(server, feed, guard, first=True)
        clock.advance(timedelta(minutes=50))
        await step(server, feed, guard)  # set 2 arrives with a fresh timestamp, refused
        clock.set(T0 + PROMISE)
        await step(server, feed, guard)  # the feed still answers, but set 1's promise ended
        assert server.fail_open and "set 1 expired" in server.fail_open_reason
