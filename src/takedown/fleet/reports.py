"""An enforcement point's report to the regulator: its body, its signature, its checks.

Sans-IO: building, signing, verifying and validating a report are pure functions over
bytes and ``now``; ``fleet.store`` keeps them, ``enforce.reporting`` sends them.

**The signature is Ed25519, with a key derived from the operator's token.** The point is
given only its token (``--token``); it derives an Ed25519 key pair from it
(``signing_key``), sends the token as the bearer credential (which operator) and signs
``<t>.<body>`` (``Takedown-Signature: t=<unix seconds>,ed25519=<hex>``). When the token is
issued the regulator stores its SHA-256 and the derived *public* key, never the token. Why
not an HMAC: an HMAC key must be stored where it is checked, so a copy of the regulator's
database (or the regulator itself) could write reports in an operator's name; with
Ed25519 the stored public key verifies but cannot sign, so a stored report is evidence of
what the operator's point said. ``t`` bounds replays to ``MAX_SKEW`` and a point's
``(point_id, sent_at)`` is stored once.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from takedown.errors import AuthError, InputError

SIGNATURE_HEADER = "Takedown-Signature"
MAX_SKEW = 300  # seconds between the point's t and the regulator's clock
MAX_BODY = 1024 * 1024
MAX_DIRECTIVES = 10_000  # per report: the counters of directives that saw flows
POINT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,99}$")
OPERATOR = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
_KDF_LABEL = b"takedown operator report key v1"


def signing_key(token: str) -> Ed25519PrivateKey:
    """The Ed25519 key a point signs with, derived from its operator token."""
    seed = hmac.new(_KDF_LABEL, token.encode("utf-8"), hashlib.sha256).digest()
    return Ed25519PrivateKey.from_private_bytes(seed)


def public_key_hex(token: str) -> str:
    """The public half of ``signing_key(token)``, raw, hex (what the regulator stores)."""
    raw = signing_key(token).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return raw.hex()


def sign(token: str, body: bytes, t: int) -> str:
    """The ``Takedown-Signature`` value for ``body`` sent at unix time ``t``."""
    signature = signing_key(token).sign(f"{t}.".encode() + body)
    return f"t={t},ed25519={signature.hex()}"


def verify(public_hex: str, header: str | None, body: bytes, now: datetime) -> None:
    """Raise AuthError (naming the header) unless ``header`` signs ``body`` with the key,
    at a ``t`` within ``MAX_SKEW`` of ``now``."""
    where = SIGNATURE_HEADER
    if not header:
        raise AuthError("missing report signature", where=where)
    parts = dict(p.partition("=")[::2] for p in header.split(","))
    t_text, sig_hex = parts.get("t", ""), parts.get("ed25519", "")
    if not t_text.isdigit() or len(t_text) > 12 or not re.fullmatch(r"[0-9a-f]{128}", sig_hex):
        raise AuthError("malformed signature: expected t=<unix>,ed25519=<hex>", where=where)
    if abs(now.timestamp() - int(t_text)) > MAX_SKEW:
        raise AuthError(f"signature time {t_text} is more than {MAX_SKEW} s off", where=where)
    try:
        Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_hex)).verify(
            bytes.fromhex(sig_hex), f"{t_text}.".encode() + body
        )
    except (InvalidSignature, ValueError):
        raise AuthError("bad report signature", where=where) from None


@dataclass(frozen=True)
class DirectiveCounters:
    """Flows and bytes a point applied one directive to, since the point started."""

    id: str
    flows: int
    bytes: int
    measure_id: int | None = None

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "measure_id": self.measure_id, "flows": self.flows,
                "bytes": self.bytes}  # fmt: skip


@dataclass(frozen=True)
class Report:
    """What a point reports: who, which set, how fresh, failing open or not, counters."""

    operator: str
    point_id: str
    sent_at: datetime
    sequence: int | None
    set_age_seconds: float | None
    fail_open: bool
    fail_open_reason: str = ""
    directives: tuple[DirectiveCounters, ...] = field(default_factory=tuple)

    def as_json(self) -> dict[str, Any]:
        return {
            "operator": self.operator,
            "point_id": self.point_id,
            "sent_at": format_sent_at(self.sent_at),
            "sequence": self.sequence,
            "set_age_seconds": self.set_age_seconds,
            "fail_open": self.fail_open,
            "fail_open_reason": self.fail_open_reason,
            "directives": [d.as_json() for d in self.directives],
        }

    def body(self) -> bytes:
        return json.dumps(self.as_json(), separators=(",", ":"), sort_keys=True).encode()


def format_time(when: datetime) -> str:
    """RFC 3339 UTC to the second (for people and listings)."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def format_sent_at(when: datetime) -> str:
    """RFC 3339 UTC with microseconds: a point's reports are strictly ordered by it."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _int(value: Any, where: str, *, nullable: bool = False) -> int | None:
    if value is None and nullable:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**63:
        raise InputError("expected a non-negative integer", where=where)
    return value


def parse_report(body: bytes) -> Report:
    """A report body → Report; InputError naming the field (``directives[2].bytes``)."""
    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"malformed JSON: {exc}", where="body") from None
    if not isinstance(doc, dict):
        raise InputError("expected a JSON object", where="body")
    known = {"operator", "point_id", "sent_at", "sequence", "set_age_seconds", "fail_open",
             "fail_open_reason", "directives"}  # fmt: skip
    for key in doc:
        if key not in known:
            raise InputError(f"unknown field {str(key)[:40]!r}", where=str(key)[:40])
    operator, point = doc.get("operator"), doc.get("point_id")
    if not isinstance(operator, str) or not OPERATOR.match(operator):
        raise InputError("expected an operator name", where="operator")
    if not isinstance(point, str) or not POINT_ID.match(point):
        raise InputError("expected a point id: letters, digits, '._:-', ≤ 100", where="point_id")
    sent = doc.get("sent_at")
    try:
        if not isinstance(sent, str) or not sent.endswith("Z"):
            raise ValueError
        sent_at = datetime.fromisoformat(sent[:-1] + "+00:00")
    except ValueError:
        raise InputError("expected an RFC 3339 UTC time", where="sent_at") from None
    age = doc.get("set_age_seconds")
    if age is not None and (
        isinstance(age, bool) or not isinstance(age, int | float) or not math.isfinite(age)
    ):
        raise InputError("expected a number of seconds or null", where="set_age_seconds")
    fail_open = doc.get("fail_open")
    if not isinstance(fail_open, bool):
        raise InputError("expected true or false", where="fail_open")
    reason = doc.get("fail_open_reason", "")
    if not isinstance(reason, str) or len(reason) > 1000 or "\x00" in reason:
        raise InputError("expected a short text", where="fail_open_reason")
    rows = doc.get("directives", [])
    if not isinstance(rows, list) or len(rows) > MAX_DIRECTIVES:
        raise InputError(f"expected a list of at most {MAX_DIRECTIVES}", where="directives")
    counters = []
    for i, row in enumerate(rows):
        where = f"directives[{i}]"
        if not isinstance(row, dict) or set(row) - {"id", "measure_id", "flows", "bytes"}:
            raise InputError("expected {id, measure_id, flows, bytes}", where=where)
        did = row.get("id")
        if not isinstance(did, str) or not 0 < len(did) <= 200:
            raise InputError("expected a directive id", where=f"{where}.id")
        counters.append(
            DirectiveCounters(
                did,
                _int(row.get("flows"), f"{where}.flows") or 0,
                _int(row.get("bytes"), f"{where}.bytes") or 0,
                _int(row.get("measure_id"), f"{where}.measure_id", nullable=True),
            )
        )
    return Report(
        operator,
        point,
        sent_at.astimezone(UTC),
        _int(doc.get("sequence"), "sequence", nullable=True),
        None if age is None else float(age),
        fail_open,
        reason,
        tuple(counters),
    )
