"""Test support: staff accounts and the actors and tokens they act with."""

from __future__ import annotations

from datetime import datetime

from takedown import accounts
from takedown.accounts import Actor
from takedown.store.db import Database

BOOTSTRAP = accounts.bootstrap("root")


def account(db: Database, name: str, *roles: str, now: datetime) -> Actor:
    """Add an account (no password) with ``roles``; return the actor it acts as."""
    info = accounts.add_account(
        db, name, roles=roles or ("analyst",), password=None, now=now, actor=BOOTSTRAP
    )
    return Actor(info.name, frozenset(info.roles), info.id)


def token(db: Database, name: str, *roles: str, now: datetime) -> str:
    """Add an account with ``roles`` and issue its API token."""
    account(db, name, *roles, now=now)
    return accounts.issue_token(db, name, now=now, actor=BOOTSTRAP)
