"""Fetch one media file over HTTP for ``registry evidence --fetch`` (bounded size and time)."""

from __future__ import annotations

import httpx

from takedown.errors import InputError

MAX_MEDIA = 64 * 1024 * 1024


def fetch_media(url: str, *, where: str, timeout: float = 30.0, limit: int = MAX_MEDIA) -> bytes:
    """The body of ``url`` (redirects followed), at most ``limit`` bytes; InputError naming
    ``where`` when it cannot be had."""
    try:
        with (
            httpx.Client(follow_redirects=True, timeout=timeout) as client,
            client.stream("GET", url) as response,
        ):
            if response.status_code != 200:
                raise InputError(f"{url} answered HTTP {response.status_code}", where=where)
            body = bytearray()
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > limit:
                    raise InputError(f"{url} is larger than {limit} bytes", where=where)
            return bytes(body)
    except httpx.HTTPError as exc:
        raise InputError(f"cannot fetch {url}: {exc}", where=where) from None
