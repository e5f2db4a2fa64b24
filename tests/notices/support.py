"""Test support: real uvicorn servers on loopback in threads, platforms and items in a db."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from datetime import datetime
from typing import Any

import uvicorn
from sqlalchemy import insert, select

from takedown import platforms
from takedown.store.db import Database
from takedown.store.schema import Item, Platform

START = datetime.fromisoformat("2021-03-01T00:00:00+00:00")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerThread:
    """A real uvicorn server on 127.0.0.1 in a background thread (its own event loop)."""

    def __init__(self, app: Any, port: int | None = None) -> None:
        self.port = port or free_port()
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.run(self.server.serve())

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ServerThread:
        self.thread.start()
        for _ in range(500):
            if self.server.started:
                return self
            if not self.thread.is_alive():
                raise RuntimeError("server thread died")
            time.sleep(0.01)
        raise RuntimeError("server did not start")

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


def make_platform(
    db: Database,
    slug: str = "twitter",
    notice_url: str | None = "http://127.0.0.1:9/notices",
    *,
    now: datetime = START,
    profile: str = "ru-2021",
) -> tuple[int, str, str]:
    """Add a platform with Twitter-like hosts; return (id, webhook secret, API token)."""
    hosts = [
        platforms.parse_host_spec("twitter.com=text"),
        platforms.parse_host_spec("*.twimg.com=media"),
    ]
    info, secret = platforms.add_platform(
        db,
        slug,
        name=slug.title(),
        notice_url=notice_url,
        hosts=hosts,
        profile=profile,
        now=now,
        actor="test",
    )
    token = platforms.issue_token(db, slug, now=now, actor="test")
    return info.id, secret, token


def add_items(
    db: Database,
    platform_id: int,
    n: int,
    *,
    now: datetime = START,
    category: str = "suicide",
    prefix: str = "p",
) -> list[int]:
    """Insert ``n`` open URL items for the platform directly; return their ids."""
    rows = [
        {
            "target": f"https://twitter.com/{prefix}{platform_id}/status/{k}",
            "kind": "url",
            "host": "twitter.com",
            "platform_id": platform_id,
            "category": category,
            "basis": "Federal Law 149-FZ art. 15.1",
            "decision_ref": f"D-{prefix}-{k}",
            "authority": "Roskomnadzor",
            "decision_date": "2021-02-01",
            "listed_at": now,
            "flags": "",
            "state": "open",
            "state_at": now,
        }
        for k in range(n)
    ]
    with db.session() as session:
        if rows:
            session.execute(insert(Item), rows)
        return list(
            session.scalars(
                select(Item.id)
                .where(Item.platform_id == platform_id, Item.decision_ref.like(f"D-{prefix}-%"))
                .order_by(Item.id)
            )
        )


def platform_id(db: Database, slug: str) -> int:
    with db.reading() as session:
        return int(session.scalar(select(Platform.id).where(Platform.slug == slug)))
