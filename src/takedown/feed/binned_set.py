"""A sharded directive set as a client holds it: each bin's verified bytes.

Decoding is on demand (``bin``); what the point needs without decoding (how many
directives are in force, per validity window) is counted when a bin is checked.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from takedown.feed.bins import BIN_FORMAT, Manifest, dumps_bin, loads_bin, split
from takedown.model import Directive, DirectiveSet


def _windows(directives: Iterable[Directive]) -> Counter[tuple[Any, Any]]:
    return Counter((d.valid_from, d.expires) for d in directives)


@dataclass
class BinnedSet:
    """A sharded set as a point holds it: each bin's verified bytes, decoded on demand.

    ``changed``: the bins the last update replaced (every bin at a cold load), so an index
    can replace only their rules. ``windows``: directive count per (valid_from, expires),
    so "how many are in force now" needs no decoding.
    """

    sequence: int
    generated_at: datetime
    bits: int
    raw: dict[int, bytes] = field(default_factory=dict)
    changed: frozenset[int] = frozenset()
    windows: Counter[tuple[Any, Any]] = field(default_factory=Counter)
    bin_windows: dict[int, Counter[tuple[Any, Any]]] = field(default_factory=dict)
    schema_version: int = BIN_FORMAT

    def bin(self, i: int) -> tuple[Directive, ...]:
        """The directives of bin ``i`` (decoded from its verified bytes)."""
        data = self.raw.get(i)
        return () if data is None else loads_bin(data, i, self.bits)

    def iter_directives(self) -> Iterator[Directive]:
        for i in sorted(self.raw):
            yield from self.bin(i)

    @property
    def directives(self) -> tuple[Directive, ...]:
        """Every directive (decodes every bin: for small sets and for ``feed pull``)."""
        return tuple(sorted(self.iter_directives(), key=lambda d: d.id))

    def __len__(self) -> int:
        return sum(self.windows.values())

    def updated(
        self,
        manifest: Manifest,
        bins: Mapping[int, tuple[bytes, Counter[tuple[Any, Any]]] | None],
    ) -> BinnedSet:
        """A new set: these bins (bytes, directive count per validity window) replaced
        (None: now empty), the others shared."""
        raw = dict(self.raw)
        windows = Counter(self.windows)
        bin_windows = dict(self.bin_windows)
        for i, new in bins.items():
            old = bin_windows.pop(i, None)
            if old:
                windows.subtract(old)
            raw.pop(i, None)
            if new is not None and new[1]:
                raw[i] = new[0]
                bin_windows[i] = new[1]
                windows.update(new[1])
        windows = Counter({k: v for k, v in windows.items() if v > 0})
        return BinnedSet(
            manifest.sequence,
            manifest.generated_at,
            manifest.bits,
            raw,
            frozenset(bins),
            windows,
            bin_windows,
        )

    @classmethod
    def from_set(cls, ds: DirectiveSet, bits: int) -> BinnedSet:
        """``ds`` held as bins (what a client holds after fetching it whole)."""
        manifest = Manifest(ds.sequence, ds.generated_at, bits, len(ds.directives))
        bins = {}
        for i, group in split(ds.directives, bits).items():
            bins[i] = (dumps_bin(i, bits, group), _windows(group))
        return cls(ds.sequence, ds.generated_at, bits).updated(manifest, bins)

    def to_directive_set(self) -> DirectiveSet:
        """The same set as format 1 (``directives.dumps`` writes it)."""
        return DirectiveSet(1, self.sequence, self.generated_at, self.directives)
