"""Staff accounts, who is acting, and what each may do; bearer tokens for both APIs.

Four eyes means two authenticated accounts, never two strings. An **account** has a
normalised, unique name (NFKC, case-folded, letters, digits and ``._@-`` only: no
invisible or control characters), one or more roles and an Argon2id password hash. Every
action is done by an ``Actor``:

- an account, authenticated by a console session, an API token or, on the CLI, a token in
  ``TAKEDOWN_TOKEN`` / ``--token``;
- the **local bootstrap** (the OS user running the CLI without a token, recorded as
  ``local:NAME``), which may manage accounts and run the system but never approve or
  decide;
- the **system** (the ladder loop, the outbox), recorded under its own name.

``authorise`` is the one check of what an actor may do; ``policy.measures.approve`` and
the appeal decision call it, whether the request came from the console, the API or the CLI.

A token is random text shown once; only its SHA-256 hex is stored. A presented token is
looked up by its hash (an unknown token learns nothing about stored ones) and the final
comparison is constant-time all the same. Staff tokens (``api_tokens``) open the regulator
API; platform tokens (``platform_tokens``, see ``takedown.platforms``) open the platform API;
neither opens the other.

Example::

    add_account(db, "Alice", roles=["analyst"], password="…", now=now, actor=bootstrap())
    token = issue_token(db, "alice", now=now, actor="local:root")
    with db.reading() as session:
        assert authenticate(session, token).name == "alice"
"""

from __future__ import annotations

import getpass
import hashlib
import hmac
import secrets
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from takedown.errors import AuthError, Conflict, Forbidden, InputError, NotFound
from takedown.store import audit
from takedown.store.db import Database
from takedown.store.schema import ApiToken, StaffAccount

ROLES = ("analyst", "approver", "auditor", "admin")
MAX_NAME = 64
MIN_PASSWORD = 12
MAX_PASSWORD = 1024  # Argon2 hashes any length; a megabyte "password" is an attack
NAME_PUNCTUATION = frozenset("._@-")
_NO_DIGEST = "0" * 64  # compared against when no row matched, so both paths do the same work

# What each permission needs. The bootstrap may do what an admin may, and anything an
# analyst may, but never approve or decide: those are the two-person acts.
PERMISSIONS: dict[str, frozenset[str]] = {
    "read": frozenset(ROLES),
    "write": frozenset({"analyst", "approver"}),  # list, delist, propose, lift, resend
    "approve": frozenset({"approver"}),  # approve or reject a proposed measure
    "decide": frozenset({"analyst", "approver"}),  # decide an appeal
    "accounts": frozenset({"admin"}),
}
BOOTSTRAP_MAY_NOT = frozenset({"approve", "decide"})

_hasher = PasswordHasher()  # Argon2id with the library's current (RFC 9106 low-memory) profile
_DUMMY_HASH = _hasher.hash("takedown: no such account")  # same work when the name is unknown


# --- who is acting --------------------------------------------------------------------------


@dataclass(frozen=True)
class Actor:
    """Who is acting: an account, the local bootstrap or the system."""

    name: str  # the account's normalised name, ``local:USER`` or a system name
    roles: frozenset[str] = frozenset()
    account_id: int | None = None
    kind: str = "account"  # account, bootstrap, system

    @property
    def label(self) -> str:
        """What the audit log records as the actor."""
        return self.name

    @property
    def is_account(self) -> bool:
        return self.kind == "account" and self.account_id is not None

    def may(self, permission: str) -> bool:
        """Whether this actor may do ``permission`` (see ``PERMISSIONS``)."""
        if self.kind == "bootstrap":
            return permission not in BOOTSTRAP_MAY_NOT
        if self.kind == "system":
            return permission not in BOOTSTRAP_MAY_NOT and permission != "accounts"
        return not self.roles.isdisjoint(PERMISSIONS[permission])

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "roles": sorted(self.roles)}


def bootstrap(user: str | None = None) -> Actor:
    """The local bootstrap actor: the OS user running the CLI without a token."""
    return Actor(f"local:{user or getpass.getuser()}", kind="bootstrap")


def system(name: str) -> Actor:
    """A system actor (the ladder loop, the outbox) recorded under ``name``."""
    return Actor(name, kind="system")


def authorise(actor: Actor, permission: str) -> None:
    """Raise Forbidden (with the reason) unless ``actor`` may do ``permission``."""
    if actor.may(permission):
        return
    if actor.kind == "bootstrap":
        raise Forbidden(
            f"{actor.name} is the local bootstrap, which may manage accounts but never "
            f"{permission}; act with an account's token (TAKEDOWN_TOKEN or --token)",
            where="account",
        )
    need = " or ".join(sorted(PERMISSIONS[permission]))
    raise Forbidden(
        f"{actor.name} ({', '.join(sorted(actor.roles)) or 'no role'}) may not {permission}; "
        f"it needs the {need} role",
        where="account",
    )


# --- names and passwords --------------------------------------------------------------------


def normalise_name(text: str, *, where: str = "NAME") -> str:
    """An account name as stored and compared: NFKC, case-folded; InputError if it holds
    anything but letters, digits and ``._@-`` (no spaces, invisible or control characters)."""
    name = unicodedata.normalize("NFKC", text).casefold()
    name = unicodedata.normalize("NFKC", name)  # casefold can denormalise (e.g. 'ǰ')
    if not name:
        raise InputError("an account name is required", where=where)
    if len(name) > MAX_NAME:
        raise InputError(f"an account name is at most {MAX_NAME} characters", where=where)
    for ch in name:
        if ch in NAME_PUNCTUATION:
            continue
        category = unicodedata.category(ch)
        if category[0] not in "LN":
            raise InputError(
                f"account name {text!r} holds {_describe(ch)}; use letters, digits and "
                f"'.', '_', '@', '-' only",
                where=where,
            )
    if name[0] in NAME_PUNCTUATION:
        raise InputError(f"account name {text!r} must start with a letter or digit", where=where)
    return name


def _describe(ch: str) -> str:
    name = unicodedata.name(ch, "")
    return f"U+{ord(ch):04X}" + (f" {name}" if name else "")


def check_password(password: str, *, where: str = "password") -> None:
    """InputError unless ``password`` is a usable password (length only: no rules to game)."""
    if len(password) < MIN_PASSWORD:
        raise InputError(f"a password has at least {MIN_PASSWORD} characters", where=where)
    if len(password) > MAX_PASSWORD:
        raise InputError(f"a password has at most {MAX_PASSWORD} characters", where=where)


def hash_password(password: str) -> str:
    """The Argon2id hash of ``password`` (salted, with its parameters)."""
    return _hasher.hash(password)


def _password_matches(stored: str | None, password: str) -> bool:
    try:
        return _hasher.verify(stored or _DUMMY_HASH, password) and stored is not None
    except (VerificationError, InvalidHashError):
        return False


def check_roles(roles: Iterable[str]) -> list[str]:
    """The roles, sorted and unique; InputError (where ``--role``) for none or an unknown one."""
    out = sorted({r.strip().lower() for r in roles if r.strip()})
    if not out:
        raise InputError(f"an account needs a role: {', '.join(ROLES)}", where="--role")
    for r in out:
        if r not in ROLES:
            raise InputError(f"unknown role {r!r}; known: {', '.join(ROLES)}", where="--role")
    return out


# --- accounts -------------------------------------------------------------------------------


@dataclass(frozen=True)
class AccountInfo:
    """An account as listed (never its password hash)."""

    id: int
    name: str
    roles: tuple[str, ...]
    created_at: datetime
    created_by: str
    has_password: bool
    disabled_at: datetime | None

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "roles": list(self.roles),
            "created_at": self.created_at,
            "created_by": self.created_by,
            "has_password": self.has_password,
            "disabled_at": self.disabled_at,
            "active": self.disabled_at is None,
        }


def _info(row: StaffAccount) -> AccountInfo:
    return AccountInfo(
        row.id,
        row.name,
        tuple(row.roles or ()),
        row.created_at,
        row.created_by,
        row.password_hash is not None,
        row.disabled_at,
    )


def _account(session: Session, name: str) -> StaffAccount:
    key = normalise_name(name)
    row = session.scalar(select(StaffAccount).where(StaffAccount.name == key))
    if row is None:
        raise NotFound(f"no account named {key!r}", where="NAME")
    return row


def add_account(
    db: Database,
    name: str,
    *,
    roles: Iterable[str],
    password: str | None,
    now: datetime,
    actor: Actor,
) -> AccountInfo:
    """Create an account (Conflict if the normalised name is taken)."""
    authorise(actor, "accounts")
    key = normalise_name(name)
    role_list = check_roles(roles)
    if password is not None:
        check_password(password)
    with db.session() as session:
        if session.scalar(select(StaffAccount.id).where(StaffAccount.name == key)) is not None:
            raise Conflict(f"an account named {key!r} exists", where="NAME")
        row = StaffAccount(
            name=key,
            roles=role_list,
            password_hash=hash_password(password) if password is not None else None,
            password_set_at=now if password is not None else None,
            created_at=now,
            created_by=actor.label,
        )
        session.add(row)
        session.flush()
        audit.record(
            session,
            at=now,
            actor=actor.label,
            type="staff.added",
            payload={"name": key, "roles": role_list, "given_as": name if name != key else None},
        )
        return _info(row)


def list_accounts(db: Database) -> list[AccountInfo]:
    """Every account, oldest first."""
    with db.reading() as session:
        return [_info(r) for r in session.scalars(select(StaffAccount).order_by(StaffAccount.id))]


def disable_account(db: Database, name: str, *, now: datetime, actor: Actor) -> AccountInfo:
    """Disable an account: it can no longer log in, its tokens and sessions stop working."""
    authorise(actor, "accounts")
    with db.session() as session:
        row = _account(session, name)
        if row.disabled_at is not None:
            raise Conflict(f"account {row.name!r} is already disabled", where="NAME")
        row.disabled_at = now
        session.execute(
            update(ApiToken)
            .where(ApiToken.account_id == row.id, ApiToken.revoked_at.is_(None))
            .values(revoked_at=now)
        )
        _end_sessions(session, row.id, now)
        audit.record(
            session, at=now, actor=actor.label, type="staff.disabled", payload={"name": row.name}
        )
        return _info(row)


def reset_password(
    db: Database, name: str, *, password: str, now: datetime, actor: Actor
) -> AccountInfo:
    """Set a new password; the account's console sessions end."""
    authorise(actor, "accounts")
    check_password(password)
    with db.session() as session:
        row = _account(session, name)
        row.password_hash, row.password_set_at = hash_password(password), now
        _end_sessions(session, row.id, now)
        audit.record(
            session,
            at=now,
            actor=actor.label,
            type="staff.password_reset",
            payload={"name": row.name},
        )
        return _info(row)


def _end_sessions(session: Session, account_id: int, now: datetime) -> None:
    from takedown.store.schema import ConsoleSession

    session.execute(
        update(ConsoleSession)
        .where(ConsoleSession.account_id == account_id, ConsoleSession.ended_at.is_(None))
        .values(ended_at=now)
    )


def actor_of(row: StaffAccount) -> Actor:
    """The actor an (enabled) account row acts as."""
    return Actor(row.name, frozenset(row.roles or ()), row.id)


def verify_login(session: Session, username: str, password: str) -> Actor:
    """The account ``username``/``password`` log in as; AuthError (one message for every
    failure, with the same Argon2 work) if the name is unknown, disabled or the password
    wrong."""
    try:
        key = normalise_name(username, where="username")
    except InputError:
        key = None
    row = session.scalar(select(StaffAccount).where(StaffAccount.name == key)) if key else None
    stored = row.password_hash if row is not None and row.disabled_at is None else None
    if len(password) > MAX_PASSWORD or not _password_matches(stored, password) or row is None:
        raise AuthError("wrong username or password", where="username")
    return actor_of(row)


# --- tokens ---------------------------------------------------------------------------------


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
class TokenInfo:
    """A staff token as listed: never the token or its hash."""

    name: str
    roles: tuple[str, ...]
    created_at: datetime
    revoked_at: datetime | None

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "roles": list(self.roles),
            "created_at": self.created_at,
            "revoked_at": self.revoked_at,
            "active": self.revoked_at is None,
        }


def issue_token(db: Database, name: str, *, now: datetime, actor: Actor) -> str:
    """Issue an API token for account ``name``; return it (stored only as a hash). One
    active token per account."""
    authorise(actor, "accounts")
    token = "tdr_" + secrets.token_urlsafe(32)
    digest = hash_token(token)
    with db.session() as session:
        row = _account(session, name)
        if row.disabled_at is not None:
            raise Conflict(f"account {row.name!r} is disabled", where="NAME")
        active = session.scalar(
            select(ApiToken.id).where(ApiToken.account_id == row.id, ApiToken.revoked_at.is_(None))
        )
        if active is not None:
            raise Conflict(f"{row.name!r} has an active token; revoke it first", where="NAME")
        session.add(ApiToken(account_id=row.id, name=row.name, token_hash=digest, created_at=now))
        audit.record(
            session,
            at=now,
            actor=actor.label,
            type="api_token.issued",
            payload={"name": row.name, "token_sha256_prefix": digest[:12]},
        )
    return token


def revoke_token(db: Database, name: str, *, now: datetime, actor: Actor) -> int:
    """Revoke account ``name``'s active token(s); return how many. NotFound if none."""
    authorise(actor, "accounts")
    with db.session() as session:
        row = _account(session, name)
        n = session.execute(
            update(ApiToken)
            .where(ApiToken.account_id == row.id, ApiToken.revoked_at.is_(None))
            .values(revoked_at=now)
        ).rowcount
        if not n:
            raise NotFound(f"no active token for {row.name!r}", where="NAME")
        audit.record(
            session, at=now, actor=actor.label, type="api_token.revoked", payload={"name": row.name}
        )
    return int(n)


def list_tokens(db: Database) -> list[TokenInfo]:
    """Every staff token, oldest first (never the token or its hash)."""
    with db.reading() as session:
        rows = session.execute(
            select(ApiToken, StaffAccount.roles)
            .join(StaffAccount, StaffAccount.id == ApiToken.account_id)
            .order_by(ApiToken.id)
        ).all()
        return [
            TokenInfo(t.name, tuple(roles or ()), t.created_at, t.revoked_at) for t, roles in rows
        ]


def active_tokens(session: Session) -> int:
    """How many staff tokens are active."""
    n = session.scalar(
        select(func.count()).select_from(ApiToken).where(ApiToken.revoked_at.is_(None))
    )
    return int(n or 0)


def authenticate(session: Session, token: str | None) -> Actor:
    """The account a bearer token belongs to; AuthError if missing, unknown, revoked or the
    account is disabled."""
    digest = presented_digest(token)
    row = session.execute(
        select(ApiToken.token_hash, StaffAccount).where(
            ApiToken.token_hash == digest,
            ApiToken.revoked_at.is_(None),
            ApiToken.account_id == StaffAccount.id,
            StaffAccount.disabled_at.is_(None),
        )
    ).first()
    if not digest_matches(row[0] if row else None, digest) or row is None:
        raise AuthError("invalid token", where="Authorization")
    return actor_of(row[1])


def staff_for(db: Database, token: str) -> Actor:
    """``authenticate`` in a read transaction of its own (for the web layer)."""
    with db.reading() as session:
        return authenticate(session, token)
