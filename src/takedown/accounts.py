"""Bearer tokens: regulator staff tokens, and the hashing and checking platform tokens share.

A token is random text shown once; only its SHA-256 hex is stored. A presented token is
looked up by its hash (an unknown token learns nothing about stored ones) and the final
comparison is constant-time all the same. Staff tokens (``api_tokens``) open the regulator
API; platform tokens (``platform_tokens``, see ``takedown.platforms``) open the platform API;
neither opens the other.

Example::

    token = issue_token(db, "alice", role="analyst", now=now, actor="root")
    with db.reading() as session:
        assert authenticate(session, token) == Staff("alice", "analyst")
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from takedown.errors import AuthError, Conflict, InputError, NotFound
from takedown.store import audit
from takedown.store.db import Database
from takedown.store.schema import ApiToken

ROLES = ("regulator", "analyst", "approver", "auditor")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,99}$")
_NO_DIGEST = "0" * 64  # compared against when no row matched, so both paths do the same work


def hash_token(token: str) -> str:
    """The stored form of a token: its SHA-256, hex."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def digest_matches(stored: str | None, digest: str) -> bool:
    """Whether the stored hash (None: no row) equals ``digest``, compared in constant time."""
    return hmac.compare_digest(stored if stored is not None else _NO_DIGEST, digest) and (
        stored is not None
    )


def presented_digest(token: str | None) -> str:
    """The hash of a presented bearer token; AuthError if there is none."""
    if not token:
        raise AuthError("missing bearer token", where="Authorization")
    return hash_token(token)


@dataclass(frozen=True)
class Staff:
    """Who a staff token belongs to."""

    name: str
    role: str


@dataclass(frozen=True)
class TokenInfo:
    """A staff token as listed: never the token or its hash."""

    name: str
    role: str
    created_at: datetime
    revoked_at: datetime | None

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "role": self.role,
            "created_at": self.created_at.isoformat(),
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
            "active": self.revoked_at is None,
        }


def issue_token(db: Database, name: str, *, role: str, now: datetime, actor: str) -> str:
    """Issue a staff token; return it (stored only as a hash). One active token per name."""
    if not NAME.match(name):
        raise InputError(f"bad name {name!r}: letters, digits, '.', '_', '@', '-'", where="NAME")
    if role not in ROLES:
        raise InputError(f"unknown role {role!r}; known: {', '.join(ROLES)}", where="--role")
    token = "tdr_" + secrets.token_urlsafe(32)
    digest = hash_token(token)
    with db.session() as session:
        active = session.scalar(
            select(ApiToken.id).where(ApiToken.name == name, ApiToken.revoked_at.is_(None))
        )
        if active is not None:
            raise Conflict(f"{name!r} has an active token; revoke it first", where="NAME")
        session.add(ApiToken(name=name, role=role, token_hash=digest, created_at=now))
        audit.record(
            session,
            at=now,
            actor=actor,
            type="api_token.issued",
            payload={"name": name, "role": role, "token_sha256_prefix": digest[:12]},
        )
    return token


def revoke_token(db: Database, name: str, *, now: datetime, actor: str) -> int:
    """Revoke ``name``'s active token(s); return how many. NotFound if none is active."""
    with db.session() as session:
        n = session.execute(
            update(ApiToken)
            .where(ApiToken.name == name, ApiToken.revoked_at.is_(None))
            .values(revoked_at=now)
        ).rowcount
        if not n:
            raise NotFound(f"no active token named {name!r}", where="NAME")
        audit.record(session, at=now, actor=actor, type="api_token.revoked", payload={"name": name})
    return int(n)


def list_tokens(db: Database) -> list[TokenInfo]:
    """Every staff token, oldest first (never the token or its hash)."""
    with db.reading() as session:
        rows = session.scalars(select(ApiToken).order_by(ApiToken.id)).all()
        return [TokenInfo(r.name, r.role, r.created_at, r.revoked_at) for r in rows]


def active_tokens(session: Session) -> int:
    """How many staff tokens are active."""
    n = session.scalar(
        select(func.count()).select_from(ApiToken).where(ApiToken.revoked_at.is_(None))
    )
    return int(n or 0)


def authenticate(session: Session, token: str | None) -> Staff:
    """The staff member a bearer token belongs to; AuthError if missing, unknown or revoked."""
    digest = presented_digest(token)
    row = session.execute(
        select(ApiToken.name, ApiToken.role, ApiToken.token_hash).where(
            ApiToken.token_hash == digest, ApiToken.revoked_at.is_(None)
        )
    ).first()
    if not digest_matches(row[2] if row else None, digest) or row is None:
        raise AuthError("invalid token", where="Authorization")
    return Staff(row[0], row[1])


def staff_for(db: Database, token: str) -> Staff:
    """``authenticate`` in a read transaction of its own (for the web layer)."""
    with db.reading() as session:
        return authenticate(session, token)
