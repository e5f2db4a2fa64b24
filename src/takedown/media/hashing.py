"""Hashes of media: SHA-256 of the bytes and the PDQ perceptual hash of an image.

PDQ is computed by the maintained ``pdqhash`` bindings of Meta's reference C++
implementation (never re-implemented here). The hash is written as ThreatExchange writes
it: 64 lower-case hex digits, bit 0 of the 256-bit vector first (most significant), so
hashes exchanged with platforms' Hasher-Matcher-Actioner tooling compare as they are.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass

import numpy as np

from takedown.errors import InputError

PDQ_BITS = 256
PDQ_HEX = PDQ_BITS // 4
# Pillow refuses larger images as a decompression bomb; PDQ needs no more pixels than this
MAX_PIXELS = 64_000_000
# Every image is resampled to this working size (up or down, Lanczos) before PDQ. PDQ's own
# pre-filter (two box passes ceil(side / 128) pixels wide, then 64 x 64 samples) depends on
# the input's size, so the same picture at 256 and at 512 pixels went through different
# filters (a brick texture came out 56 bits apart); at one working size both take the same
# path (2 bits). 512 x 512 is the size the reference hasher reduces large images to, its
# aspect ratio not kept either (PDQ samples 64 x 64 whatever the shape). The comparison of
# working sizes and filters is in bench/pdq_robustness.py.
WORK_SIDE = 512

_IMAGE_MAGIC = (
    b"\xff\xd8\xff",  # JPEG
    b"\x89PNG\r\n\x1a\n",
    b"GIF87a",
    b"GIF89a",
    b"BM",
)
_VIDEO_MAGIC_AT_4 = (b"ftyp",)  # MP4 / MOV / 3GP
_VIDEO_MAGIC = (b"\x1a\x45\xdf\xa3",)  # Matroska / WebM


@dataclass(frozen=True, slots=True)
class MediaHash:
    """What evidence keeps of a media file: never the media itself."""

    kind: str  # "image" or "video"
    sha256: str
    size: int
    pdq: str | None = None  # 64 hex digits (images)
    quality: int | None = None  # PDQ quality 0..100 (images)


def media_kind(data: bytes) -> str | None:
    """'image', 'video' or None, from the file's first bytes."""
    if data.startswith(_IMAGE_MAGIC) or (data[:4] == b"RIFF" and data[8:12] == b"WEBP"):
        return "image"
    if data[4:8] in _VIDEO_MAGIC_AT_4 or data.startswith(_VIDEO_MAGIC):
        return "video"
    return None


def bits_to_hex(bits: np.ndarray) -> str:
    """A 256-bit vector (0/1 values, bit 0 first) as ThreatExchange's 64 hex digits."""
    packed = np.packbits(np.asarray(bits, dtype=np.uint8))
    return packed.tobytes().hex()


def check_pdq_hex(text: str, *, where: str | None = None) -> str:
    """``text`` as a PDQ hash (64 hex digits, lower-cased), else InputError."""
    value = text.lower() if isinstance(text, str) else ""
    if len(value) != PDQ_HEX or any(c not in "0123456789abcdef" for c in value):
        raise InputError("a PDQ hash is 64 hexadecimal digits", where=where)
    return value


def pdq_of_pixels(rgb: np.ndarray) -> tuple[str, int]:
    """PDQ hash (hex) and quality of an RGB ``uint8`` array of shape (h, w, 3)."""
    import pdqhash

    bits, quality = pdqhash.compute(np.ascontiguousarray(rgb, dtype=np.uint8))
    return bits_to_hex(bits), int(quality)


def pdq_pixels(image: object) -> np.ndarray:
    """The RGB ``uint8`` array PDQ hashes for a Pillow image: resampled to the working size."""
    from PIL import Image

    assert isinstance(image, Image.Image)
    rgb = image.convert("RGB")
    if rgb.size != (WORK_SIDE, WORK_SIDE):
        # reducing_gap: a box reduction first while far above the size (a 12 MP photo in
        # ~50 ms instead of ~250 ms; no corpus hash changes)
        rgb = rgb.resize((WORK_SIDE, WORK_SIDE), Image.Resampling.LANCZOS, reducing_gap=2.0)
    return np.asarray(rgb)


def pdq_of_image(image: object) -> tuple[str, int]:
    """PDQ hash (hex) and quality of a Pillow image."""
    return pdq_of_pixels(pdq_pixels(image))


def decode_image(data: bytes, *, where: str | None = None) -> object:
    """The Pillow image in ``data`` (the first frame of an animation), else InputError."""
    from PIL import Image, UnidentifiedImageError

    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise InputError(f"not a readable image: {exc}", where=where) from None
    return image


def hash_media(data: bytes, *, where: str | None = None) -> MediaHash:
    """SHA-256 of ``data`` and, for an image, its PDQ hash and quality.

    Video gets its SHA-256 only: no maintained vPDQ binding installs here (see README)."""
    kind = media_kind(data)
    digest = hashlib.sha256(data).hexdigest()
    if kind == "video":
        return MediaHash("video", digest, len(data))
    if kind is None:
        raise InputError("not an image or video this system reads (JPEG, PNG, GIF, BMP, WebP, "
                         "MP4, WebM)", where=where)  # fmt: skip
    pdq, quality = pdq_of_image(decode_image(data, where=where))
    return MediaHash("image", digest, len(data), pdq, quality)


def image_pdq(data: bytes) -> tuple[str, int] | None:
    """PDQ hash and quality of ``data`` if it is a readable image, else None (the probe's
    question about any response body: never raises)."""
    if media_kind(data) != "image":
        return None
    try:
        return pdq_of_image(decode_image(data))
    except InputError:
        return None
