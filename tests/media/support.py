"""Images for the media tests: generated (numpy, Pillow) or from skimage.data (CC0 / public
domain, shipped in the scikit-image wheel; see fixtures/README.md)."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def photo(seed: int, size: tuple[int, int] = (320, 240)) -> Image.Image:
    """A smooth random picture (blobs of colour): a hash of good quality, distinct per seed."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    return Image.fromarray(small).resize(size, Image.Resampling.BICUBIC)


def jpeg(image: Image.Image, quality: int = 90) -> bytes:
    out = io.BytesIO()
    image.convert("RGB").save(out, format="JPEG", quality=quality)
    return out.getvalue()


def png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def flip_bits(hex_hash: str, n: int, *, start: int = 0) -> str:
    """``hex_hash`` with bits ``start .. start+n-1`` inverted (Hamming distance ``n``)."""
    value = int(hex_hash, 16) ^ (((1 << n) - 1) << start)
    return f"{value:064x}"
