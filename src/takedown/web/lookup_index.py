"""The public lookup's index: one per version of the directive set, built off the request path.

A request only reads the index in force (``LookupIndex.current``); nothing it sends (its
Host header above all) selects or rebuilds one. A background task started with the app
(``LookupIndex.run``) looks every ``poll`` seconds at the audit head (one row): when it
moved (every change is audited), when clock time reached the moment the set changes by
time alone (an item listed or delisted, a measure starting or expiring), or at least every
``recheck`` seconds (writes that bypass the audit log), it takes the fingerprint of what
the compiler reads (``feed.compile.inputs_version``, an index scan), and compiles a new
index only when that changed or the time came. An audit event alone never rebuilds.
Reference URLs are not in the index: the public documents put the configured (or the
request's) base in front when they render.

Before the first index exists, one request thread builds it while the others wait up to
``first_wait`` seconds and then get 503 with ``Retry-After``.

Example::

    index = LookupIndex(db, clock, poll=1.0)
    task = asyncio.create_task(index.run(stop))  # the app does this in its lifespan
    compiled = index.current()
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime

from takedown.clock import Clock
from takedown.errors import TakedownError
from takedown.feed.compile import InputsVersion, compile_directives, inputs_version
from takedown.store.audit import current_head
from takedown.store.db import Database
from takedown.transparency import PublicIndex, public_index, register_decisions

log = logging.getLogger(__name__)

# The base the compiler writes into reference URLs; the public documents never show it.
PLACEHOLDER_BASE = "http://public.invalid"


class IndexUnavailable(TakedownError):
    """No lookup index yet (the first is being built): try again shortly."""

    http_status = 503
    http_headers = (("Retry-After", "5"),)


@dataclass(frozen=True)
class Built:
    """An index and the version of the inputs it was compiled from, at ``built_at``, with
    the count of register decisions in force (the same inputs decide it)."""

    version: InputsVersion
    built_at: datetime
    index: PublicIndex
    register_decisions: int


class LookupIndex:
    """The current lookup index, replaced whole (never edited) when the inputs change."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        *,
        poll: float = 1.0,
        recheck: float = 30.0,
        first_wait: float = 5.0,
    ) -> None:
        self.db, self.clock = db, clock
        self.poll, self.recheck, self.first_wait = poll, recheck, first_wait
        self._seen: tuple[int, float] = (-1, -float("inf"))  # audit seq, monotonic at check
        self.builds = 0  # indexes compiled so far
        self.checks = 0  # fingerprints taken so far
        self._built: Built | None = None
        self._building = threading.Lock()
        self._changed = threading.Condition()
        self._last_error: str | None = None

    @property
    def built(self) -> Built | None:
        return self._built

    def current(self) -> PublicIndex:
        """The index in force; the first ever is built here by one thread at most."""
        built = self._built
        if built is not None:
            return built.index
        if not self._building.acquire(timeout=self.first_wait):
            raise IndexUnavailable("the lookup index is being built", where="lookup")
        try:
            if self._built is None:
                self._refresh_locked()
        finally:
            self._building.release()
        assert self._built is not None
        return self._built.index

    def register_decisions(self) -> int | None:
        """The register decisions in force as of the current index (None before one)."""
        built = self._built
        return built.register_decisions if built is not None else None

    def refresh(self) -> bool:
        """Check the inputs once; compile a new index if they changed. True if it did."""
        with self._building:
            return self._refresh_locked()

    def _due(self) -> bool:
        """Whether the fingerprint is worth taking: the audit head moved, the set's time
        came, or ``recheck`` seconds passed since the last one."""
        built = self._built
        if built is None or self.clock.now() >= built.version.changes_at:
            return True
        with self.db.reading() as session:
            seq = current_head(session).seq
        seen_seq, seen_at = self._seen
        return seq != seen_seq or time.monotonic() - seen_at >= self.recheck

    def refresh_if_due(self) -> bool:
        """``refresh`` when ``_due`` says so (what the background task calls)."""
        with self._building:
            return self._due() and self._refresh_locked()

    def _refresh_locked(self) -> bool:
        now = self.clock.now()
        with self.db.reading() as session:
            self._seen = (current_head(session).seq, time.monotonic())
            version = inputs_version(session, now)
            self.checks += 1
            old = self._built
            same = old is not None and old.version.fingerprint == version.fingerprint
            if same and old is not None and now < old.version.changes_at:
                return False
            compiled = compile_directives(session, now, sequence=0, public_url=PLACEHOLDER_BASE)
            decisions = register_decisions(session, now)
        index = public_index(compiled.directives.directives)
        with self._changed:
            self._built = Built(version, now, index, decisions)
            self.builds += 1
            self._changed.notify_all()
        return True

    def wait_for_builds(self, n: int, timeout: float) -> bool:
        """Block until at least ``n`` indexes have been built (tests, the bench)."""
        with self._changed:
            return self._changed.wait_for(lambda: self.builds >= n, timeout=timeout)

    def _check(self) -> None:
        try:
            self.refresh_if_due()
            self._last_error = None
        except Exception as exc:  # keep the last good index, keep polling
            cause = f"{type(exc).__name__}: {exc}"
            if cause != self._last_error:
                log.error("public lookup index not rebuilt: %s", cause, exc_info=exc)
            self._last_error = cause

    async def run(self, stop: asyncio.Event) -> None:
        """Check the inputs every ``poll`` seconds until ``stop`` is set (in a thread of
        the loop's own executor: never one of the request threads)."""
        while not stop.is_set():
            await asyncio.to_thread(self._check)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.poll)
