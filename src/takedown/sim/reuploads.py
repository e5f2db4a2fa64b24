"""The demo's re-upload steps: the regulator records the media of removed photos as
evidence, and later checks a list of URLs (here: the simulated platform's re-posts, as a
tip line would send them) for copies (``takedown verify --reuploads``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx
from sqlalchemy import select

from takedown.media import store as media_store
from takedown.sim import media
from takedown.store.db import Database
from takedown.store.schema import Item
from takedown.verify.probe import Route
from takedown.verify.reuploads import ReuploadSummary, check_reuploads


def record_evidence(db: Database, media_host: str, *, now: datetime, actor: str) -> list[int]:
    """The first ``media.REPOSTS`` removed photos on ``media_host`` get their media
    recorded as evidence (photo k is the media of the k-th); their item ids."""
    with db.reading() as session:
        ids = list(
            session.scalars(
                select(Item.id)
                .where(Item.host == media_host, Item.state == "removed")
                .order_by(Item.id)
                .limit(media.REPOSTS)
            )
        )
    for k, item_id in enumerate(ids):
        media_store.record_evidence(
            db, item_id, media.original(k), source=f"demo photo {k}", now=now, actor=actor
        )
    return ids


def check(
    db: Database, sim_url: str, route: Route, *, now: datetime, actor: str
) -> ReuploadSummary:
    """Check the URLs the platform's users re-posted photos under."""
    urls = httpx.get(f"{sim_url}/_sim/reposts", timeout=10).json()["urls"]
    host = httpx.URL(urls[0]).host if urls else ""
    return check_reuploads(
        db, urls, now=now, actor=actor, connect_to={host: route}, only_loopback=True
    )


def rows(db: Database) -> list[dict[str, Any]]:
    return media_store.list_reuploads(db)
