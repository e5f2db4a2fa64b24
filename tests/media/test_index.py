"""The PDQ index: the threshold boundary, and the same answers as a linear scan."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from takedown.config import PdqThreshold
from takedown.media.index import PdqIndex, hash_from_hex, hashes_from_hex, linear_scan
from takedown.media.matcher import IndexedHash, MediaMatcher
from tests.media.support import flip_bits

BASE = "72069555782808fbd585849b05e87e1da7b5af52b0748c3e3bf88330fb1e751b"


def _matcher(rows: list[IndexedHash], **bounds: PdqThreshold) -> MediaMatcher:
    return MediaMatcher(rows, lambda cat: bounds.get(cat, PdqThreshold()))


def test_distance_31_matches_and_32_does_not() -> None:
    stored = [flip_bits(BASE, 31), flip_bits(BASE, 32, start=100)]
    index = PdqIndex.from_hex(stored)
    assert index.query_hex(BASE, 31) == [(0, 31)]
    assert index.query_hex(BASE, 32) == [(0, 31), (1, 32)]
    matcher = _matcher(
        [
            IndexedHash(1, 10, 1, "drugs", "a" * 64, stored[0], 90),
            IndexedHash(2, 11, 1, "drugs", "b" * 64, stored[1], 90),
        ]
    )
    assert [(m.item_id, m.distance) for m in matcher.match(BASE, 90)] == [(10, 31)]


def test_every_distance_near_the_threshold_spread_over_the_substrings() -> None:
    # the pigeonhole bound must hold however the differing bits fall on the 16 substrings
    rng = np.random.default_rng(7)
    for distance in (0, 1, 15, 16, 17, 30, 31, 32, 33):
        for _ in range(20):
            bits = np.unpackbits(hash_from_hex(BASE))
            bits[rng.choice(256, distance, replace=False)] ^= 1
            other = np.packbits(bits).tobytes().hex()
            found = PdqIndex.from_hex([other]).query_hex(BASE, 31)
            assert found == ([(0, distance)] if distance <= 31 else [])


def test_quality_below_the_bound_never_matches() -> None:
    rows = [IndexedHash(1, 10, 1, "drugs", "a" * 64, BASE, 49)]
    assert _matcher(rows).match(BASE, 100) == []  # the evidence is too poor
    rows = [IndexedHash(1, 10, 1, "drugs", "a" * 64, BASE, 50)]
    assert [m.item_id for m in _matcher(rows).match(BASE, 50)] == [10]
    assert _matcher(rows).match(BASE, 49) == []  # the image asked about is too poor


def test_bounds_per_category() -> None:
    near = flip_bits(BASE, 20)
    rows = [
        IndexedHash(1, 10, 1, "csam", "a" * 64, near, 90),
        IndexedHash(2, 11, 1, "drugs", "b" * 64, near, 90),
    ]
    strict = _matcher(rows, drugs=PdqThreshold(max_distance=19, min_quality=50))
    assert [m.item_id for m in strict.match(BASE, 90)] == [10]
    wide = _matcher(rows, csam=PdqThreshold(max_distance=40, min_quality=50))
    assert {m.item_id for m in wide.match(flip_bits(BASE, 20, start=128), 90)} == {10}


def test_video_matches_by_sha256_only() -> None:
    rows = [IndexedHash(1, 10, 1, "drugs", "c" * 64, None, None)]
    matcher = _matcher(rows)
    assert [m.item_id for m in matcher.match(None, None, "c" * 64)] == [10]
    assert matcher.match(BASE, 100, "d" * 64) == []


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 400),
    flips=st.integers(0, 48),
    radius=st.integers(0, 47),
)
def test_same_answers_as_the_linear_scan(seed: int, n: int, flips: int, radius: int) -> None:
    rng = np.random.default_rng(seed)
    stored = rng.integers(0, 256, (n, 32), dtype=np.uint8)
    # near-duplicates of one stored hash at several distances, so that there is something
    # to find near the radius
    for k in range(min(n, 8)):
        bits = np.unpackbits(stored[0])
        bits[rng.choice(256, min(256, flips + k), replace=False)] ^= 1
        stored[k] = np.packbits(bits)
    index = PdqIndex(stored)
    for query in (stored[0], stored[-1], rng.integers(0, 256, 32, dtype=np.uint8)):
        assert index.query(query, radius) == linear_scan(index.words, query, radius)


def test_hex_round_trip_and_refusals() -> None:
    assert hashes_from_hex([BASE])[0].tobytes().hex() == BASE
    for bad in ("", "zz" * 32, BASE[:-1], BASE + "0"):
        try:
            hashes_from_hex([bad])
        except Exception as exc:
            assert "64 hexadecimal digits" in str(exc)
        else:
            raise AssertionError(f"{bad!r} accepted")
