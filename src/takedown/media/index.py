"""Near-duplicate search over 256-bit PDQ hashes: multi-index hashing, exact by construction.

Multi-index hashing (Norouzi, Punjani and Fleet, "Fast Exact Search in Hamming Space with
Multi-Index Hashing", 2012/2014): the 256 bits are cut into 16 substrings of 16 bits, and
each substring position gets a table from its 65,536 values to the rows holding them. Two
hashes within Hamming distance ``r`` differ in at most ``r // 16`` bits in at least one
substring (pigeonhole: 16 substrings each with more would make more than ``r``), so
probing every substring's value and its neighbours within ``r // 16`` bits (for the PDQ
threshold 31: the value and its 16 one-bit flips, 272 probes) finds every hash within
``r`` with no false negatives; candidates are then checked by their full distance. The
answers are exactly those of a linear scan (``linear_scan``; ``bench pdq`` checks it).

Why this and not faiss' binary indexes: it is exact with no tuning, it is plain numpy
(already a dependency), its tables are two arrays per substring (about 70 MB at 1M
hashes), and at 1M random hashes a probe meets about 4,000 candidates — well under a
millisecond. ``IndexBinaryMultiHash`` implements the same idea in C++ but brings a large
binary wheel for a speed-up the bench does not need.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations

import numpy as np

from takedown.media.hashing import PDQ_HEX, check_pdq_hex

SUBSTRINGS = 16
SUB_BITS = 256 // SUBSTRINGS
_VALUES = 1 << SUB_BITS


def hashes_from_hex(values: Sequence[str]) -> np.ndarray:
    """64-hex-digit PDQ hashes as an ``(n, 32)`` array of bytes."""
    if not values:
        return np.zeros((0, 32), dtype=np.uint8)
    joined = "".join(check_pdq_hex(v, where=f"hash {n}") for n, v in enumerate(values))
    return np.frombuffer(bytes.fromhex(joined), dtype=np.uint8).reshape(len(values), 32)


def hash_from_hex(value: str) -> np.ndarray:
    """One PDQ hash as 32 bytes."""
    return np.frombuffer(bytes.fromhex(check_pdq_hex(value)), dtype=np.uint8)


def as_words(hashes: np.ndarray) -> np.ndarray:
    """``(n, 32)`` bytes as ``(n, 4)`` 64-bit words (for XOR and popcount)."""
    return np.ascontiguousarray(hashes, dtype=np.uint8).view(np.uint64).reshape(-1, 4)


def distances(words: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Hamming distance of ``query`` (32 bytes) to each row of ``words`` (``(n, 4)``)."""
    q = as_words(query.reshape(1, 32))[0]
    x = words ^ q
    # the four per-word counts (0..64) as the bytes of one uint32, summed in two 16-bit
    # lanes and then across: three cheap passes instead of numpy's slow 4-wide row sum
    v = np.bitwise_count(x).view(np.uint32).reshape(-1)
    pairs = (v & _LOW_BYTES) + ((v >> _EIGHT) & _LOW_BYTES)
    return (pairs & _LOW_HALF) + (pairs >> _SIXTEEN)


_LOW_BYTES = np.uint32(0x00FF00FF)
_LOW_HALF = np.uint32(0xFFFF)
_EIGHT, _SIXTEEN = np.uint32(8), np.uint32(16)


def linear_scan(words: np.ndarray, query: np.ndarray, radius: int) -> list[tuple[int, int]]:
    """(row, distance) of every row within ``radius`` of ``query``, by distance then row: the
    baseline (and the reference) for ``PdqIndex.query``."""
    d = distances(words, query)
    rows = np.flatnonzero(d <= radius)
    order = np.lexsort((rows, d[rows]))
    return [(int(rows[i]), int(d[rows[i]])) for i in order]


def _flip_masks(bits: int, radius: int) -> np.ndarray:
    """Every ``bits``-wide value with at most ``radius`` bits set (0 first)."""
    out = [0]
    for k in range(1, radius + 1):
        for positions in combinations(range(bits), k):
            out.append(sum(1 << p for p in positions))
    return np.array(out, dtype=np.int64)


class PdqIndex:
    """An immutable index over ``(n, 32)`` PDQ hashes; rows are their positions."""

    def __init__(self, hashes: np.ndarray) -> None:
        hashes = np.ascontiguousarray(hashes, dtype=np.uint8).reshape(-1, 32)
        self.size = len(hashes)
        self.words = as_words(hashes)
        # (n, 16) substrings, big-endian so substring j is bits 16j..16j+15 of the hex
        subs = hashes.view(">u2").astype(np.int64)
        n = self.size
        # per substring position: rows sorted by substring value (one flat array, position j
        # at offset j*n) and where each value's run starts (CSR offsets, already offset)
        self._rows = np.empty(SUBSTRINGS * n, dtype=np.int32)
        self._starts = np.empty((SUBSTRINGS, _VALUES + 1), dtype=np.int64)
        for j in range(SUBSTRINGS):
            col = subs[:, j]
            order = np.argsort(col, kind="stable")
            self._rows[j * n : (j + 1) * n] = order
            counts = np.bincount(col, minlength=_VALUES)
            self._starts[j, 0] = j * n
            np.cumsum(counts, out=self._starts[j, 1:])
            self._starts[j, 1:] += j * n
        self._starts_flat = self._starts.reshape(-1)
        self._masks: dict[int, np.ndarray] = {}
        # substring j's value v is at self._starts_flat[j * (_VALUES + 1) + v]
        self._position = (np.arange(SUBSTRINGS) * (_VALUES + 1))[:, None]

    @classmethod
    def from_hex(cls, values: Sequence[str]) -> PdqIndex:
        return cls(hashes_from_hex(values))

    def _masks_for(self, sub_radius: int) -> np.ndarray:
        if sub_radius not in self._masks:
            self._masks[sub_radius] = _flip_masks(SUB_BITS, sub_radius)
        return self._masks[sub_radius]

    def candidates(self, query: np.ndarray, radius: int) -> np.ndarray:
        """Rows sharing a substring within ``radius // 16`` bits with ``query`` (a superset
        of the rows within ``radius``; may repeat a row)."""
        q = np.ascontiguousarray(query, dtype=np.uint8).reshape(32).view(">u2").astype(np.int64)
        keys = (q[:, None] ^ self._masks_for(radius // SUBSTRINGS)[None, :]) + self._position
        keys = keys.reshape(-1)
        begins = self._starts_flat[keys]
        lengths = self._starts_flat[keys + 1] - begins
        total = int(lengths.sum())
        # concatenate the runs [begin, begin + length) without a Python loop: each
        # candidate's place in _rows is its run's begin plus its offset in the run
        at = np.repeat(begins - (np.cumsum(lengths) - lengths), lengths)
        at += np.arange(total)
        return self._rows[at]

    def query(self, query: np.ndarray, radius: int) -> list[tuple[int, int]]:
        """(row, distance) of every hash within ``radius`` of ``query`` (32 bytes), by
        distance then row: the same list as ``linear_scan``."""
        if radius < 0 or self.size == 0:
            return []
        cand = self.candidates(query, radius)
        # np.take, not words[cand]: numpy's fancy indexing of rows is ~10x slower here
        d = distances(np.take(self.words, cand, axis=0), query)
        hit = np.flatnonzero(d <= radius)
        # a row found through several substrings is checked more than once: cheaper than
        # making the candidates unique first (the survivors are few, so a dict does it)
        found = dict(zip(cand[hit].tolist(), d[hit].tolist(), strict=True))
        return sorted(found.items(), key=lambda row_distance: (row_distance[1], row_distance[0]))

    def query_hex(self, value: str, radius: int) -> list[tuple[int, int]]:
        return self.query(hash_from_hex(value), radius)


__all__ = ["PDQ_HEX", "PdqIndex", "hash_from_hex", "hashes_from_hex", "linear_scan"]
