"""The simulated platform's photos: a removed item's media and its re-posts under new URLs.

Generated, not shipped: overlapping ellipses and rectangles in random colours from a seed
(numpy, Pillow), slightly blurred, so PDQ gives them a good quality and tells them apart
(a smooth noise field would not: its hash flips under a mere rescale). A re-post is the
same photo as people re-post it: scaled to 75%, re-encoded at JPEG quality 60, every
other one in grayscale.
"""

from __future__ import annotations

import functools
import io
import re

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

REPOSTS = 6  # photos of removed items the platform's users post again
_REPOST_PATH = re.compile(r"^/media/R(\d{6})\.jpg$")


def _colour(rng: np.random.Generator) -> tuple[int, int, int]:
    r, g, b = (int(x) for x in rng.integers(0, 256, 3))
    return r, g, b


def _photo(seed: int) -> Image.Image:
    rng = np.random.default_rng(1000 + seed)
    image = Image.new("RGB", (480, 360), _colour(rng))
    draw = ImageDraw.Draw(image)
    for _ in range(14):
        x, y = (int(v) for v in rng.integers(-60, 360, 2))
        w, h = (int(v) for v in rng.integers(60, 260, 2))
        shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
        shape((x, y, x + w, y + h), fill=_colour(rng))
    return image.filter(ImageFilter.GaussianBlur(2))


def _jpeg(image: Image.Image, quality: int) -> bytes:
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=quality)
    return out.getvalue()


@functools.cache
def original(seed: int) -> bytes:
    """The photo as first posted (the listed item's media)."""
    return _jpeg(_photo(seed), 92)


@functools.cache
def reposted(seed: int) -> bytes:
    """The photo as re-posted."""
    image = _photo(seed).resize((360, 270), Image.Resampling.BILINEAR)
    if seed % 2:
        image = image.convert("L").convert("RGB")
    return _jpeg(image, 60)


def repost_path(seed: int) -> str:
    return f"/media/R{seed:06d}.jpg"


def repost_seed(path: str) -> int | None:
    """The seed of a re-post's path, or None if ``path`` is not one."""
    match = _REPOST_PATH.match(path)
    if match is None or int(match[1]) >= REPOSTS:
        return None
    return int(match[1])
