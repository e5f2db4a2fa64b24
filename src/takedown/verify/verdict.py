"""Pure classification of one probe outcome into a Verdict (no I/O)."""

from __future__ import annotations

from dataclasses import dataclass

from takedown.model import Verdict

# Pages platforms serve instead of the content. Matched case-insensitively in the body
# prefix; a platform may add its own (``Markers``).
DEFAULT_REMOVED = (
    b"this post was removed",
    b"this tweet was deleted",
    b"this page doesn't exist",
    b'data-takedown="removed"',
    b"takedown-removed",
)
DEFAULT_WITHHELD = (
    b"withheld in your country",
    b"withheld in russia",
    b'data-takedown="withheld"',
    b"takedown-withheld",  # the platform simulator's marker
)


@dataclass(frozen=True, slots=True)
class Markers:
    """Body markers of a platform's removed page and withheld-in-country page."""

    removed: tuple[bytes, ...] = DEFAULT_REMOVED
    withheld: tuple[bytes, ...] = DEFAULT_WITHHELD

    def with_extra(self, removed: tuple[str, ...] = (), withheld: tuple[str, ...] = ()) -> Markers:
        """These markers plus a platform's own (given as text)."""
        return Markers(
            self.removed + tuple(m.lower().encode() for m in removed),
            self.withheld + tuple(m.lower().encode() for m in withheld),
        )


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a probe saw: a final HTTP status and body prefix, or an error kind and reason.

    ``error_kind`` is ``network`` (connect, DNS, TLS, timeouts: the place could not be
    reached) or ``protocol`` (a bad URL, a redirect loop, a malformed answer).
    """

    status: int | None = None
    body: bytes = b""
    error_kind: str | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class Classified:
    verdict: Verdict
    reason: str | None = None


def classify(outcome: Outcome, markers: Markers = Markers()) -> Classified:
    """The verdict for ``outcome``: available / removed / restricted / unreachable / error."""
    if outcome.error_kind == "network":
        return Classified(Verdict.UNREACHABLE, outcome.reason or "network error")
    if outcome.error_kind is not None or outcome.status is None:
        return Classified(Verdict.ERROR, outcome.reason or "no answer")
    status = outcome.status
    if status in (404, 410):
        return Classified(Verdict.REMOVED, f"HTTP {status}")
    if status == 451:
        return Classified(Verdict.RESTRICTED, "HTTP 451")
    if 200 <= status < 300:
        body = outcome.body.lower()
        if any(m in body for m in markers.withheld):
            return Classified(Verdict.RESTRICTED, "withheld marker")
        if any(m in body for m in markers.removed):
            return Classified(Verdict.REMOVED, "removed marker")
        return Classified(Verdict.AVAILABLE, None)
    return Classified(Verdict.ERROR, outcome.reason or f"HTTP {status}")
