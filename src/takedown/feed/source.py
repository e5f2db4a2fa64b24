"""Where an enforcement point gets its directives: one small interface, two sources.

``FeedSource`` is all the enforcement point's feed loop uses: ``refresh()`` (a new set or
None), ``last_good`` (the set verified by an earlier run, to start from), ``stale(now)`` and
``expires``. ``FeedClient`` (a signed TUF feed) and ``DirectoryFeed`` (a trusted local file,
unsigned) implement it; ``open_feed`` picks one for a ``--feed`` argument.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from typing import Protocol

from takedown.clock import Clock
from takedown.errors import InputError
from takedown.feed.client import FeedClient
from takedown.feed.directives import TARGET_NAME, loads
from takedown.model import DirectiveSet


class FeedSource(Protocol):
    """A source of directive sets, polled by the enforcement point."""

    @property
    def expires(self) -> datetime | None:
        """When the source's current promise of freshness ends (None: no expiry known)."""
        ...

    @property
    def last_good(self) -> DirectiveSet | None:
        """The last set that verified and loaded (possibly by an earlier run)."""
        ...

    def refresh(self) -> DirectiveSet | None:
        """The new directive set, or None if unchanged; raises TakedownError if refused."""
        ...

    def stale(self, now: datetime) -> bool:
        """True if the source cannot vouch for its directives at ``now``: fail open."""
        ...


class DirectoryFeed:
    """A plain (unsigned) directive file, or a directory holding ``directives.json``.

    For a trusted local path only: nothing is verified but the format. Re-read when the
    file changes. It has no timestamp expiry, so it never makes the point fail open; the
    directives' own ``expires`` still apply.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        p = os.fspath(path)
        self.path = os.path.join(p, TARGET_NAME) if os.path.isdir(p) else p
        self._seen: tuple[int, int] | None = None
        self.expires: datetime | None = None
        self.last_good: DirectiveSet | None = None

    def refresh(self) -> DirectiveSet | None:
        """The directive set if the file changed since the last call, else None."""
        try:
            st = os.stat(self.path)
        except OSError as exc:
            raise InputError(f"cannot read: {exc.strerror}", where=self.path) from None
        key = (st.st_mtime_ns, st.st_size)
        if key == self._seen:
            return None
        with open(self.path, "rb") as f:
            ds = loads(f.read())
        self._seen = key
        self.last_good = ds
        return ds

    def stale(self, now: datetime) -> bool:
        """Never: a trusted local file has no freshness promise to break."""
        return False


def open_feed(source: str, state_dir: str, root: str | None, *, clock: Clock) -> FeedSource:
    """A FeedClient for a TUF repository (URL or directory with metadata/), else a
    DirectoryFeed for a plain directive file or directory. ``clock`` is the real-time clock
    TUF expiries run on."""
    if not source.startswith(("http://", "https://")):
        p = Path(source)
        if p.is_file() or (p.is_dir() and not (p / "metadata").is_dir()):
            return DirectoryFeed(p)
    return FeedClient(source, state_dir, root=Path(root) if root else None, clock=clock)
