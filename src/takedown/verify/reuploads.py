"""Re-uploads: fetch URLs, hash their media, flag those that are a listed item's media.

``takedown verify --reuploads URLS_FILE``. Each URL is probed as items are (the same
prober, vantage and routes) but its body is read whole (up to ``MAX_MEDIA``) and hashed:
an image's PDQ, any body's SHA-256. A URL whose media matches a listed item's evidence
(``media.matcher``: the category's PDQ bounds) is recorded as a re-upload of that item,
once while it is open; a URL recorded before that now answers ``removed`` / ``restricted``
or serves other media closes its open re-uploads. Unreachable URLs change nothing.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from takedown.errors import InputError
from takedown.media import store as media_store
from takedown.media.hashing import MediaHash
from takedown.model import Verdict
from takedown.store.db import Database
from takedown.verify.probe import Prober, ProbeResult, ProbeSettings, Route
from takedown.verify.vantage import LOCAL, Vantage

MAX_MEDIA = 32 * 1024 * 1024
_GONE = (Verdict.REMOVED, Verdict.RESTRICTED)


@dataclass
class ReuploadSummary:
    checked: int = 0
    images: int = 0
    found: list[dict[str, Any]] = field(default_factory=list)
    closed: int = 0
    failed: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "checked": self.checked,
            "images": self.images,
            "found": self.found,
            "closed": self.closed,
            "failed": self.failed,
        }


def read_urls(path: Path) -> list[str]:
    """The URLs of a file, one a line (blank lines and ``#`` comments skipped); a line that
    is not an http(s) URL is refused naming file:line."""
    try:
        text = path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read: {exc}", where=str(path)) from None
    urls = []
    for n, line in enumerate(text.splitlines(), 1):
        value = line.strip()
        if not value or value.startswith("#"):
            continue
        try:
            url = httpx.URL(value)
        except (httpx.InvalidURL, ValueError):
            url = None
        if url is None or url.scheme not in ("http", "https") or not url.host:
            raise InputError(f"not an http(s) URL: {value!r}", where=f"{path}:{n}")
        urls.append(value)
    return urls


async def _probe_all(urls: list[str], prober: Prober) -> list[ProbeResult]:
    async with prober:
        return list(await asyncio.gather(*(prober.probe(u) for u in urls)))


def check_reuploads(
    db: Database,
    urls: list[str],
    *,
    now: datetime,
    actor: str,
    vantage: Vantage = LOCAL,
    settings: ProbeSettings | None = None,
    connect_to: dict[str, Route] | None = None,
    only_loopback: bool = False,
) -> ReuploadSummary:
    """Probe ``urls`` and record what they show (see the module's docstring)."""
    settings = replace(settings or ProbeSettings(), max_body=MAX_MEDIA)
    prober = Prober(
        settings=settings,
        source_address=vantage.source_address,
        proxy=vantage.proxy,
        connect_to=connect_to or {},
        only_loopback=only_loopback,
    )
    results = asyncio.run(_probe_all(urls, prober))
    summary = ReuploadSummary(checked=len(results))
    with db.session() as session:
        matcher = media_store.load_matcher(session)
        for res in results:
            if res.verdict in _GONE:
                summary.closed += media_store.record_gone(session, res.url, now=now, actor=actor)
                continue
            if res.verdict != Verdict.AVAILABLE or res.truncated:
                summary.failed += res.verdict != Verdict.AVAILABLE
                continue
            summary.images += res.pdq is not None
            matches = matcher.match(res.pdq, res.pdq_quality, res.digest)
            if not matches:  # it serves something else now
                summary.closed += media_store.record_gone(session, res.url, now=now, actor=actor)
                continue
            hashed = MediaHash("image", res.digest or "", res.body_bytes, res.pdq, res.pdq_quality)
            ids = media_store.record_found(
                session, matches, url=res.url, hashed=hashed, found_by="verify", now=now,
                actor=actor,
            )  # fmt: skip
            for m in matches:
                summary.found.append(
                    {"url": res.url, "item_id": m.item_id, "distance": m.distance,
                     "new": bool(ids)}
                )  # fmt: skip
    return summary
