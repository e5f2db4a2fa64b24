"""Migration 0004: each name that held a staff token becomes an account; tokens keep working."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from alembic import command
from sqlalchemy import text

from takedown import accounts
from takedown.errors import AuthError
from takedown.store.db import Database
from takedown.store.migrate import alembic_config, upgrade

ISSUED = datetime(2021, 3, 1, tzinfo=UTC)


def test_token_holders_become_accounts_and_their_tokens_still_open_the_api(tmp_path) -> None:  # type: ignore[no-untyped-def]
    db = Database(str(tmp_path / "old.db"))
    command.upgrade(alembic_config(db), "0003")
    tokens = {"Alice": "tdr_alice", "alice": "tdr_alice2", "bob": "tdr_bob", "old": "tdr_old"}
    roles = {"Alice": "analyst", "alice": "approver", "bob": "regulator", "old": "auditor"}
    with db.engine.begin() as conn:
        for name, token in tokens.items():
            conn.execute(
                text(
                    "INSERT INTO api_tokens (name, role, token_hash, created_at, revoked_at) "
                    "VALUES (:n, :r, :h, :at, :rev)"
                ),
                {
                    "n": name,
                    "r": roles[name],
                    "h": accounts.hash_token(token),
                    "at": ISSUED.isoformat(),
                    "rev": ISSUED.isoformat() if name == "old" else None,
                },
            )
    upgrade(db)
    listed = {a.name: a for a in accounts.list_accounts(db)}
    # "Alice" and "alice" were one person spelled twice: one account, both roles
    assert {n: a.roles for n, a in listed.items()} == {
        "alice": ("analyst", "approver"),
        "bob": ("auditor",),  # the old read-only "regulator" role
        "old": ("auditor",),
    }
    assert not any(a.has_password for a in listed.values())
    with db.reading() as s:
        assert accounts.authenticate(s, "tdr_alice").name == "alice"
        assert accounts.authenticate(s, "tdr_alice2").name == "alice"
        assert accounts.authenticate(s, "tdr_bob").roles == frozenset({"auditor"})
        with pytest.raises(AuthError):
            accounts.authenticate(s, "tdr_old")  # revoked before: still revoked
    db.close()
