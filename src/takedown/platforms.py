"""Platforms: add, list, API tokens and webhook signing keys.

Tokens are 32 random bytes (URL-safe text), shown once and stored as their SHA-256 hex;
a presented token is hashed and compared in constant time. The webhook secret must be
usable to sign, so it is stored as is and only ever printed when it is created.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import urlsplit

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from takedown import config as config_mod
from takedown.accounts import digest_matches, hash_token, presented_digest
from takedown.errors import AuthError, Conflict, InputError, NotFound
from takedown.names import split_pattern
from takedown.notices.signing import new_secret
from takedown.store import audit
from takedown.store.db import Database
from takedown.store.schema import Platform, PlatformHost, PlatformRange, PlatformToken

SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
CLASS = re.compile(r"^[a-z][a-z0-9-]{0,31}$")


@dataclass(frozen=True)
class HostSpec:
    pattern: str  # normalised: "twitter.com" or "*.twimg.com"
    content_class: str


@dataclass(frozen=True)
class PlatformInfo:
    id: int
    slug: str
    name: str
    notice_url: str | None
    profile: str
    hosts: list[HostSpec] = field(default_factory=list)
    tokens: int = 0  # active API tokens
    ranges: list[str] = field(default_factory=list)  # declared address ranges (steering)

    def as_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "slug": self.slug,
            "name": self.name,
            "notice_url": self.notice_url,
            "profile": self.profile,
            "hosts": [{"pattern": h.pattern, "class": h.content_class} for h in self.hosts],
            "tokens": self.tokens,
            "ranges": list(self.ranges),
        }


def parse_host_spec(text: str, *, where: str = "--host") -> HostSpec:
    """``PATTERN=CLASS`` (e.g. ``*.twimg.com=media``) → HostSpec; the pattern is validated."""
    pattern, sep, cls = text.partition("=")
    if not sep or not pattern.strip() or not cls.strip():
        raise InputError(f"expected PATTERN=CLASS, got {text!r}", where=where)
    cls = cls.strip().lower()
    if not CLASS.match(cls):
        raise InputError(f"bad content class {cls!r} (e.g. text, media, links)", where=where)
    base, wildcard = split_pattern(pattern)
    return HostSpec(f"*.{base}" if wildcard else base, cls)


def parse_ranges(texts: list[str], *, where: str = "--range") -> list[str]:
    """Declared address ranges (``203.0.113.0/24``, ``2001:db8::/32``, an address) in
    canonical form, each once; InputError naming ``where`` on a malformed one."""
    import ipaddress

    out: list[str] = []
    for text in texts:
        try:
            net = ipaddress.ip_network(text.strip(), strict=True)
        except ValueError as exc:
            raise InputError(f"not an address range: {text[:80]!r} ({exc})", where=where) from None
        if net.prefixlen == 0:
            raise InputError(f"{text!r} is every address; refusing to steer it all", where=where)
        if str(net) not in out:
            out.append(str(net))
    return out


def check_notice_url(url: str, *, where: str = "--notice-url") -> str:
    """An http(s) URL with a host."""
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise InputError(f"notice URL must be http(s)://host/...: {url!r}", where=where)
    return url


def _get(session: Session, slug: str) -> Platform:
    platform = session.scalar(select(Platform).where(Platform.slug == slug))
    if platform is None:
        raise NotFound(f"unknown platform {slug!r}", where="platform")
    return platform


def add_platform(
    db: Database,
    slug: str,
    *,
    name: str,
    notice_url: str | None,
    hosts: list[HostSpec],
    profile: str = "ru-2021",
    ranges: list[str] | None = None,
    now: datetime,
    actor: str,
) -> tuple[PlatformInfo, str]:
    """Add a platform; return it and its webhook signing secret (shown once)."""
    if not SLUG.match(slug):
        raise InputError(f"bad slug {slug!r}: lower-case letters, digits, '-'", where="SLUG")
    config_mod.default().profile(profile, where="--profile")
    if notice_url is not None:
        check_notice_url(notice_url)
    patterns = [h.pattern for h in hosts]
    if len(set(patterns)) != len(patterns):
        raise InputError("a host pattern is given twice", where="--host")
    ranges = parse_ranges(ranges or [])
    secret = new_secret()
    with db.session() as session:
        if session.scalar(select(Platform.id).where(Platform.slug == slug)) is not None:
            raise Conflict(f"platform {slug!r} exists", where="SLUG")
        platform = Platform(
            slug=slug,
            name=name,
            notice_url=notice_url,
            webhook_secret=secret,
            profile=profile,
            created_at=now,
        )
        session.add(platform)
        session.flush()
        for h in hosts:
            session.add(
                PlatformHost(
                    platform_id=platform.id, pattern=h.pattern, content_class=h.content_class
                )
            )
        for prefix in ranges:
            session.add(PlatformRange(platform_id=platform.id, prefix=prefix))
        audit.record(
            session,
            at=now,
            actor=actor,
            type="platform.added",
            payload={
                "platform": slug,
                "name": name,
                "notice_url": notice_url,
                "profile": profile,
                "hosts": [[h.pattern, h.content_class] for h in hosts],
                "ranges": ranges,
            },
        )
        info = PlatformInfo(platform.id, slug, name, notice_url, profile, list(hosts), 0, ranges)
    return info, secret


def list_platforms(db: Database) -> list[PlatformInfo]:
    """All platforms with their host patterns and the number of active tokens."""
    with db.reading() as session:
        platforms = session.scalars(select(Platform).order_by(Platform.slug)).all()
        hosts: dict[int, list[HostSpec]] = {}
        for h in session.scalars(select(PlatformHost).order_by(PlatformHost.id)):
            hosts.setdefault(h.platform_id, []).append(HostSpec(h.pattern, h.content_class))
        tokens: dict[int, int] = {}
        for pid in session.scalars(
            select(PlatformToken.platform_id).where(PlatformToken.revoked_at.is_(None))
        ):
            tokens[pid] = tokens.get(pid, 0) + 1
        ranges: dict[int, list[str]] = {}
        for r in session.scalars(select(PlatformRange).order_by(PlatformRange.id)):
            ranges.setdefault(r.platform_id, []).append(r.prefix)
        return [
            PlatformInfo(
                p.id,
                p.slug,
                p.name,
                p.notice_url,
                p.profile,
                hosts.get(p.id, []),
                tokens.get(p.id, 0),
                ranges.get(p.id, []),
            )
            for p in platforms
        ]


def set_ranges(
    db: Database, slug: str, ranges: list[str], *, now: datetime, actor: str
) -> PlatformInfo:
    """Replace ``slug``'s declared address ranges (an empty list clears them)."""
    ranges = parse_ranges(ranges)
    with db.session() as session:
        platform = _get(session, slug)
        old = list(
            session.scalars(
                select(PlatformRange.prefix)
                .where(PlatformRange.platform_id == platform.id)
                .order_by(PlatformRange.id)
            )
        )
        session.execute(delete(PlatformRange).where(PlatformRange.platform_id == platform.id))
        session.flush()
        for prefix in ranges:
            session.add(PlatformRange(platform_id=platform.id, prefix=prefix))
        audit.record(
            session,
            at=now,
            actor=actor,
            type="platform.ranges_set",
            payload={"platform": slug, "ranges": ranges, "previous": old},
        )
    return get_platform(db, slug)


def get_platform(db: Database, slug: str) -> PlatformInfo:
    for info in list_platforms(db):
        if info.slug == slug:
            return info
    raise NotFound(f"unknown platform {slug!r}", where="platform")


def issue_token(
    db: Database, slug: str, *, now: datetime, actor: str, revoke_others: bool = False
) -> str:
    """Issue a new API token for ``slug``; return it (it is stored only as a hash)."""
    token = secrets.token_urlsafe(32)
    with db.session() as session:
        platform = _get(session, slug)
        if revoke_others:
            session.execute(
                update(PlatformToken)
                .where(PlatformToken.platform_id == platform.id, PlatformToken.revoked_at.is_(None))
                .values(revoked_at=now)
            )
        session.add(
            PlatformToken(platform_id=platform.id, token_hash=hash_token(token), created_at=now)
        )
        audit.record(
            session,
            at=now,
            actor=actor,
            type="platform.token_issued",
            payload={"platform": slug, "token_sha256_prefix": hash_token(token)[:12]},
        )
    return token


def rotate_key(db: Database, slug: str, *, now: datetime, actor: str) -> str:
    """Replace ``slug``'s webhook signing secret; return the new one."""
    secret = new_secret()
    with db.session() as session:
        platform = _get(session, slug)
        platform.webhook_secret = secret
        audit.record(
            session, at=now, actor=actor, type="platform.key_rotated", payload={"platform": slug}
        )
    return secret


def authenticate(session: Session, token: str | None) -> int:
    """The platform id a bearer token belongs to; AuthError if missing, unknown or revoked."""
    digest = presented_digest(token)
    row = session.execute(
        select(PlatformToken.platform_id, PlatformToken.token_hash).where(
            PlatformToken.token_hash == digest, PlatformToken.revoked_at.is_(None)
        )
    ).first()
    # The lookup is by hash (an unknown token learns nothing about stored ones); the
    # final comparison is constant-time all the same (takedown.accounts).
    if not digest_matches(row[1] if row else None, digest) or row is None:
        raise AuthError("invalid token", where="Authorization")
    return int(row[0])


def platform_for_token(db: Database, token: str) -> int:
    """``authenticate`` in a read transaction of its own (for the web layer)."""
    with db.reading() as session:
        return authenticate(session, token)
