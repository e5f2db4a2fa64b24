"""Webhook signatures: ``Takedown-Signature: t=<unix seconds>,v1=<hex>``.

``hex`` is HMAC-SHA256(secret, ``<t>.<raw body>``) with the secret's UTF-8 bytes as the
key. Receivers refuse a bad signature, and a ``t`` more than 300 s away from their clock
(a replayed request). ``Idempotency-Key: <notice id>`` names the notice; a receiver acts
on each key once (delivery is at-least-once, so the effect is exactly-once).

A platform can verify a notice with a few lines of its own code (standard library only;
``now`` is the receiver's clock in unix seconds, e.g. ``time.time()``, passed in)::

    import hashlib, hmac

    def verify(secret: str, raw_body: bytes, header: str, now: float) -> bool:
        parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
        t, sig = parts.get("t", ""), parts.get("v1", "")
        if not t.isdigit() or abs(now - int(t)) > 300:
            return False
        mac = hmac.new(secret.encode(), t.encode() + b"." + raw_body, hashlib.sha256)
        return hmac.compare_digest(mac.hexdigest(), sig)

Sign the raw bytes you received, before any JSON parsing.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from takedown.errors import AuthError

HEADER = "Takedown-Signature"
IDEMPOTENCY_HEADER = "Idempotency-Key"
WINDOW_S = 300
SCHEME = "v1"


def new_secret() -> str:
    """A fresh webhook signing secret (32 random bytes, URL-safe text)."""
    return secrets.token_urlsafe(32)


def compute(secret: str, body: bytes, t: int) -> str:
    """The hex HMAC-SHA256 of ``<t>.<body>`` under ``secret``."""
    msg = str(int(t)).encode("ascii") + b"." + body
    return hmac.new(secret.encode("utf-8"), msg, hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes, t: int) -> str:
    """The ``Takedown-Signature`` header value for ``body`` sent at unix time ``t``."""
    return f"t={int(t)},{SCHEME}={compute(secret, body, t)}"


def parse_header(value: str) -> tuple[int, list[str]]:
    """Split a signature header into (t, [v1 signatures]); raise AuthError if malformed."""
    t: int | None = None
    sigs: list[str] = []
    for part in value.split(","):
        key, sep, val = part.strip().partition("=")
        if not sep:
            raise AuthError("malformed signature header", where=HEADER)
        if key == "t":
            if not val.isascii() or not val.isdigit() or len(val) > 12:
                raise AuthError("signature timestamp is not a number", where=HEADER)
            t = int(val)
        elif key == SCHEME:
            sigs.append(val)
    if t is None:
        raise AuthError("signature header has no t=", where=HEADER)
    if not sigs:
        raise AuthError(f"signature header has no {SCHEME}=", where=HEADER)
    return t, sigs


def verify(secret: str, body: bytes, header: str | None, now: float, window: int = WINDOW_S) -> int:
    """Check ``header`` against ``body`` at unix time ``now``; return t or raise AuthError.

    Several ``v1=`` values are allowed (a sender rotating its key may send both).
    """
    if not header:
        raise AuthError("missing signature", where=HEADER)
    t, sigs = parse_header(header)
    if abs(now - t) > window:
        raise AuthError(f"signature timestamp outside the {window} s window", where=HEADER)
    expected = compute(secret, body, t)
    ok = False
    for sig in sigs:
        # compare every candidate so timing does not tell which one matched
        ok |= hmac.compare_digest(expected, sig.strip())
    if not ok:
        raise AuthError("bad signature", where=HEADER)
    return t
