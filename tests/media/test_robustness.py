"""PDQ on real photographs (public domain / CC0, shipped in scikit-image): re-encoded and
grayscale copies match their original, distinct photographs never match each other."""

from __future__ import annotations

import itertools

import pytest

from takedown.media.hashing import hash_media

robustness = pytest.importorskip("bench.pdq_robustness")
NAMES = ("astronaut", "camera", "coffee", "chelsea", "rocket", "immunohistochemistry")


def test_copies_match_and_distinct_photographs_do_not() -> None:
    import skimage.data
    from PIL import Image

    images = {n: Image.fromarray(getattr(skimage.data, n)()) for n in NAMES}
    originals = {n: hash_media(robustness._jpeg(im)).pdq or "" for n, im in images.items()}
    for name, image in images.items():
        for transform in ("jpeg-q30", "jpeg-q70", "grayscale", "resize-200"):
            copy = hash_media(robustness.TRANSFORMS[transform](image)).pdq or ""
            assert robustness._distance(originals[name], copy) <= 31, (name, transform)
    for a, b in itertools.combinations(NAMES, 2):
        assert robustness._distance(originals[a], originals[b]) > 31, (a, b)


def test_half_size_copy_hashes_like_the_original_textures_included() -> None:
    """Every image is resampled to one working size before PDQ, so a copy at half the size
    passes through the same filter (the brick texture was 56 bits away without it)."""
    import skimage.data
    from PIL import Image

    for name in ("brick", "grass", "text", "astronaut"):
        image = Image.fromarray(getattr(skimage.data, name)())
        original = hash_media(robustness._jpeg(image)).pdq or ""
        half = hash_media(robustness.TRANSFORMS["resize-50"](image)).pdq or ""
        assert robustness._distance(original, half) <= 8, name
