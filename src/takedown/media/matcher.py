"""Which listed items is this media a near-duplicate of: the index plus per-category bounds.

Pure: built from plain rows (``IndexedHash``), asked with a hash and its quality. An image
matches an item's evidence when their PDQ distance is within the item category's
``max_distance`` and both qualities reach its ``min_quality`` (``config.PdqThreshold``);
media without PDQ (video) matches on its SHA-256 only.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from takedown.config import PdqThreshold
from takedown.media.index import PdqIndex, hash_from_hex, hashes_from_hex


@dataclass(frozen=True, slots=True)
class IndexedHash:
    """One evidence row as the matcher holds it."""

    evidence_id: int
    item_id: int
    platform_id: int | None
    category: str
    sha256: str
    pdq: str | None
    quality: int | None


@dataclass(frozen=True, slots=True)
class MediaMatch:
    evidence_id: int
    item_id: int
    platform_id: int | None
    category: str
    distance: int  # PDQ Hamming distance (0 for a SHA-256 match)


class MediaMatcher:
    """An immutable matcher over evidence rows."""

    def __init__(
        self, rows: Sequence[IndexedHash], threshold: Callable[[str], PdqThreshold]
    ) -> None:
        self._threshold = threshold
        self._pdq_rows = [r for r in rows if r.pdq is not None]
        self._index = PdqIndex(hashes_from_hex([r.pdq for r in self._pdq_rows if r.pdq]))
        self._by_sha: dict[str, list[IndexedHash]] = defaultdict(list)
        for r in rows:
            self._by_sha[r.sha256].append(r)
        cats = {r.category for r in rows}
        self._radius = max((threshold(c).max_distance for c in cats), default=-1)

    def __len__(self) -> int:
        return sum(len(v) for v in self._by_sha.values())

    def match(
        self, pdq: str | None, quality: int | None, sha256: str | None = None
    ) -> list[MediaMatch]:
        """Every evidence row this media matches, nearest first (one per evidence row)."""
        found: dict[int, MediaMatch] = {}
        for r in self._by_sha.get(sha256 or "", ()):
            found[r.evidence_id] = MediaMatch(
                r.evidence_id, r.item_id, r.platform_id, r.category, 0
            )
        if pdq is not None and quality is not None and self._radius >= 0:
            for row, distance in self._index.query(hash_from_hex(pdq), self._radius):
                r = self._pdq_rows[row]
                bounds = self._threshold(r.category)
                if (
                    distance <= bounds.max_distance
                    and quality >= bounds.min_quality
                    and (r.quality or 0) >= bounds.min_quality
                    and r.evidence_id not in found
                ):
                    found[r.evidence_id] = MediaMatch(
                        r.evidence_id, r.item_id, r.platform_id, r.category, distance
                    )
        return sorted(found.values(), key=lambda m: (m.distance, m.evidence_id))
