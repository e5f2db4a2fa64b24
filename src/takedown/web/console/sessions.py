"""Console logins: sessions in cookies, CSRF tokens, and the login rate limit.

- **Session**: logging in (``accounts.verify_login``) creates a fresh random token (never
  one the browser brought: no session fixation), sent as cookie ``takedown_session``
  (HttpOnly, SameSite=Strict, Path=/console, Secure when the request came over https or
  the configured public URL is https). Only its SHA-256 is stored (``console_sessions``).
  A session lasts at most ``absolute`` (12 h) from login and ends after ``idle`` (1 h)
  without a request; ``expires_at`` holds the earlier of the two and moves on with use
  (written at most once per ``touch`` interval). Logging out, disabling the account or
  resetting its password ends it (``ended_at``). The actor's roles are read from the
  account on every request, so a role change takes effect at once.
- **CSRF**: each session has its own random token, put in every form as ``csrf``; every
  POST must carry it (form field or ``X-CSRF-Token`` header), compared in constant time,
  else 403. The login form, before there is a session, uses a double-submit cookie
  (``takedown_login_csrf``) whose value the form repeats.
- **Login limit**: ``LoginLimiter`` is the pure core (time comes in as ``now``, seconds
  from any monotonic source): at most ``failures`` failed logins per ``window`` per client
  address (IPv6 by /64) and per account name; past that, 429 with ``Retry-After`` without
  even checking the password. Success clears the name's count (not the address's).

Example::

    opened = open_session(db, actor, now=now, settings=ConsoleSettings())
    response.set_cookie(SESSION_COOKIE, opened.token, **cookie_flags(secure=False))
    info = lookup(db, opened.token, now=now, settings=ConsoleSettings())
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update

from takedown.accounts import Actor, actor_of, hash_token, normalise_name
from takedown.errors import InputError
from takedown.store import audit
from takedown.store.db import Database
from takedown.store.schema import ConsoleSession, StaffAccount

SESSION_COOKIE = "takedown_session"
LOGIN_CSRF_COOKIE = "takedown_login_csrf"
COOKIE_PATH = "/console"
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"


@dataclass(frozen=True)
class ConsoleSettings:
    """How console sessions and logins behave.

    ``secure``: send cookies with Secure (None: when the request is https or the public
    URL is); ``failures`` failed logins per ``window`` seconds per address and per name;
    ``monotonic``: seconds, for the limiter (tests inject a fake).
    """

    idle: timedelta = timedelta(hours=1)
    absolute: timedelta = timedelta(hours=12)
    touch: timedelta = timedelta(minutes=1)
    secure: bool | None = None
    failures: int = 5
    window: float = 300.0
    max_clients: int = 100_000
    monotonic: Callable[[], float] = field(default=time.monotonic, compare=False)


# --- sessions -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Opened:
    """A new session: the cookie value (shown to the browser only) and its CSRF token."""

    token: str
    csrf: str
    expires_at: datetime


@dataclass(frozen=True)
class SessionInfo:
    """A live session: who is acting, and the CSRF token its forms carry."""

    id: int
    actor: Actor
    csrf: str
    expires_at: datetime


def new_token() -> str:
    return secrets.token_urlsafe(32)


def open_session(
    db: Database,
    actor: Actor,
    *,
    now: datetime,
    settings: ConsoleSettings,
    replacing: str | None = None,
    client: str | None = None,
) -> Opened:
    """Start a session for ``actor`` (an account); end the one the browser brought, if any."""
    token, csrf = new_token(), secrets.token_hex(32)
    expires = now + min(settings.idle, settings.absolute)
    with db.session() as session:
        if replacing:
            session.execute(
                update(ConsoleSession)
                .where(
                    ConsoleSession.token_hash == hash_token(replacing),
                    ConsoleSession.ended_at.is_(None),
                )
                .values(ended_at=now)
            )
        assert actor.account_id is not None
        session.add(
            ConsoleSession(
                token_hash=hash_token(token),
                account_id=actor.account_id,
                csrf=csrf,
                created_at=now,
                expires_at=expires,
            )
        )
        audit.record(
            session,
            at=now,
            actor=actor.label,
            type="console.login",
            payload={"name": actor.name, "client": client},
        )
    return Opened(token, csrf, expires)


def lookup(
    db: Database, token: str | None, *, now: datetime, settings: ConsoleSettings
) -> SessionInfo | None:
    """The live session of cookie value ``token`` (None: none, ended, expired, or its account
    disabled); its idle expiry moves on."""
    if not token or len(token) > 200:
        return None
    digest = hash_token(token)
    with db.reading() as session:
        row = session.execute(
            select(ConsoleSession, StaffAccount)
            .join(StaffAccount, StaffAccount.id == ConsoleSession.account_id)
            .where(ConsoleSession.token_hash == digest)
        ).first()
        if row is None:
            return None
        cs, account = row
        if not hmac.compare_digest(cs.token_hash, digest):  # pragma: no cover - found by it
            return None
        if cs.ended_at is not None or cs.expires_at <= now or account.disabled_at is not None:
            return None
        info = SessionInfo(cs.id, actor_of(account), cs.csrf, cs.expires_at)
        created = cs.created_at
    wanted = min(created + settings.absolute, now + settings.idle)
    if wanted - info.expires_at >= settings.touch:
        with db.session() as session:
            session.execute(
                update(ConsoleSession)
                .where(ConsoleSession.id == info.id, ConsoleSession.ended_at.is_(None))
                .values(expires_at=wanted)
            )
    return info


def end_session(db: Database, token: str | None, *, now: datetime) -> str | None:
    """End the session of cookie value ``token``; the account name it was, if it was live."""
    if not token or len(token) > 200:
        return None
    with db.session() as session:
        row = session.execute(
            select(ConsoleSession, StaffAccount.name)
            .join(StaffAccount, StaffAccount.id == ConsoleSession.account_id)
            .where(ConsoleSession.token_hash == hash_token(token))
        ).first()
        if row is None or row[0].ended_at is not None:
            return None
        row[0].ended_at = now
        audit.record(session, at=now, actor=row[1], type="console.logout", payload={"name": row[1]})
        return row[1]


# --- CSRF and cookies -----------------------------------------------------------------------


def csrf_matches(expected: str | None, presented: str | None) -> bool:
    """Whether ``presented`` is the CSRF token ``expected`` (constant time; None never is)."""
    if not expected or not presented:
        return False
    return hmac.compare_digest(expected.encode("utf-8"), presented.encode("utf-8"))


def cookie_flags(*, secure: bool, max_age: int | None = None) -> dict[str, Any]:
    """The flags every console cookie carries."""
    return {
        "httponly": True,
        "samesite": "strict",
        "path": COOKIE_PATH,
        "secure": secure,
        "max_age": max_age,
    }


# --- the login limit (pure core) ------------------------------------------------------------


def name_key(username: str) -> str:
    """The per-name key of the limiter: the account name as stored, or the text as typed."""
    try:
        return "name:" + normalise_name(username[:200])
    except InputError:
        return "name:" + username[:200].casefold()


class LoginLimiter:
    """Failed logins per key in a sliding window; ``wait`` says how long a key must wait."""

    def __init__(self, failures: int, window: float, max_keys: int = 100_000) -> None:
        self.failures, self.window, self.max_keys = failures, window, max_keys
        self._failed: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, key: str, now: float) -> deque[float]:
        times = self._failed.get(key)
        if times is None:
            return deque()
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            del self._failed[key]
        return times

    def wait(self, keys: Iterable[str], now: float) -> float:
        """0.0 if none of ``keys`` is over the limit, else seconds until all may try again."""
        longest = 0.0
        for key in keys:
            times = self._recent(key, now)
            if len(times) >= self.failures:
                longest = max(longest, times[-self.failures] + self.window - now)
        return longest

    def fail(self, keys: Iterable[str], now: float) -> None:
        """Count a failed login against each of ``keys``."""
        for key in keys:
            times = self._recent(key, now)
            times.append(now)
            self._failed[key] = times
            self._failed.move_to_end(key)
            while len(times) > self.failures:
                times.popleft()
        while len(self._failed) > self.max_keys:
            self._failed.popitem(last=False)

    def forget(self, key: str) -> None:
        """Clear ``key``'s failures (a successful login clears its name's)."""
        self._failed.pop(key, None)
