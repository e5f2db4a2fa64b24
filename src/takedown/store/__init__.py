"""Persistence: schema, engine, migrations, audit chain."""

from takedown.store.db import Database, connect, resolve_url

__all__ = ["Database", "connect", "resolve_url"]
