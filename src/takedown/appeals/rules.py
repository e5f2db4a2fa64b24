"""The appeals' records and checks, with no I/O: what a filing and a decision must hold,
deadlines, impartiality, receipts. ``appeals.store`` applies them to the database."""

from __future__ import annotations

import hashlib
import re
import secrets
import string
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from takedown import config as config_mod
from takedown.accounts import Actor
from takedown.errors import Forbidden, InputError

APPELLANTS = ("platform", "author", "user", "other")
MAX_GROUNDS = 5000  # characters
MAX_CONTACT = 500
MAX_REASONS = 5000
RECEIPT_BYTES = 18  # 144 random bits, 24 URL-safe characters
MAX_RECEIPT = 64  # anything longer is no receipt of ours
MAX_PAGE = 500
PUBLIC_DECISIONS = 50  # decided appeals listed on a measure's public page, newest first
_RECEIPT_CHARS = frozenset(string.ascii_letters + string.digits + "-_")
_TEXT_CONTROLS_OK = frozenset("\n\t")
_DIGITS = re.compile(r"0*[0-9]{1,12}")  # leading zeros aside, few enough for int()


class AppealState(StrEnum):
    OPEN = "open"
    UPHELD = "upheld"  # the measure or listing stands
    REVERSED = "reversed"  # lifted or delisted


OUTCOMES = (AppealState.UPHELD.value, AppealState.REVERSED.value)


@dataclass(frozen=True, slots=True)
class AppealRecord:
    """A stored appeal as staff see it (``as_json``) and, less its grounds and contact,
    as the appellant's status page shows it (``public_json``)."""

    id: int
    measure_id: int | None
    item_id: int | None
    platform: str | None  # the slug of the subject's platform (None: an item of none)
    filed_by: str | None  # the slug of the platform that filed it through its API
    appellant: str
    grounds: str
    contact: str  # staff only: never on a public page
    filed_at: datetime
    due_at: datetime
    state: AppealState
    decided_at: datetime | None = None
    decided_by: str | None = None
    reasons: str | None = None

    @property
    def subject(self) -> str:
        """``measure 3`` or ``item 7``."""
        if self.measure_id is not None:
            return f"measure {self.measure_id}"
        return f"item {self.item_id}"

    def overdue(self, now: datetime) -> bool:
        """Still open at ``now``, past its decision deadline."""
        return self.state == AppealState.OPEN and self.due_at <= now

    def as_json(self) -> dict[str, Any]:
        """Everything, contact included: for staff (the console, the CLI) only."""
        return {
            **self.public_json(),
            "platform": self.platform,
            "filed_by": self.filed_by,
            "grounds": self.grounds,
            "contact": self.contact,
        }

    def public_json(self) -> dict[str, Any]:
        """What the appellant's status page shows: no grounds, no contact."""
        return {
            "id": self.id,
            "subject": self.subject,
            "measure_id": self.measure_id,
            "item_id": self.item_id,
            "appellant": self.appellant,
            "filed_at": self.filed_at,
            "due_at": self.due_at,
            "state": self.state.value,
            "decided_at": self.decided_at,
            "decided_by": self.decided_by,
            "reasons": self.reasons,
        }


# --- the checks (no I/O) --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Filing:
    """A checked, normalised appeal as it will be stored."""

    measure_id: int | None
    item_id: int | None
    appellant: str
    grounds: str
    contact: str


def _text(value: object, *, where: str, limit: int, required: bool, lines: bool) -> str:
    """``value`` as stored text: a string, stripped, CRLF as LF, no control characters (but
    newline and tab where ``lines``), 1..``limit`` characters (0 allowed unless
    ``required``)."""
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise InputError("must be text", where=where)
    text = value.replace("\r\n", "\n").replace("\r", "\n").strip()
    if required and not text:
        raise InputError("is required", where=where)
    if len(text) > limit:
        raise InputError(f"is at most {limit} characters (got {len(text)})", where=where)
    for ch in text:
        if unicodedata.category(ch) == "Cc" and not (lines and ch in _TEXT_CONTROLS_OK):
            raise InputError(f"holds a control character (U+{ord(ch):04X})", where=where)
    return text


def row_id(value: object, where: str) -> int | None:
    """A row id given as a number or text (ASCII digits, white space around allowed; empty:
    None), 1..2^31-1; InputError at ``where`` otherwise."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise InputError("must be a whole number", where=where)
    if isinstance(value, float) and value.is_integer():  # JSON has one kind of number
        value = int(value)
    if isinstance(value, str):
        text = value.strip()
        if not _DIGITS.fullmatch(text):  # ASCII digits: not "²", which int() refuses
            raise InputError("must be a whole number", where=where)
        value = int(text.lstrip("0") or "0")
    if not isinstance(value, int) or not 1 <= value <= 2**31 - 1:
        raise InputError("must be a whole number from 1", where=where)
    return value


def check_filing(
    *,
    measure_id: object = None,
    item_id: object = None,
    appellant: object,
    grounds: object,
    contact: object = "",
) -> Filing:
    """The appeal as given, checked field by field (InputError naming the field): exactly
    one of a measure or an item, an appellant kind of ``APPELLANTS``, grounds of
    1..``MAX_GROUNDS`` characters, a contact of at most ``MAX_CONTACT``."""
    mid, iid = row_id(measure_id, "measure_id"), row_id(item_id, "item_id")
    if (mid is None) == (iid is None):
        raise InputError("name exactly one measure or one item", where="measure_id")
    if appellant not in APPELLANTS:
        raise InputError(f"must be one of {', '.join(APPELLANTS)}", where="appellant")
    assert isinstance(appellant, str)
    return Filing(
        mid,
        iid,
        appellant,
        _text(grounds, where="grounds", limit=MAX_GROUNDS, required=True, lines=True),
        _text(contact, where="contact", limit=MAX_CONTACT, required=False, lines=False),
    )


def check_decision(outcome: object, reasons: object) -> tuple[AppealState, str]:
    """The outcome (upheld or reversed) and the reasons (required), checked."""
    if outcome not in OUTCOMES:
        raise InputError(f"must be one of {', '.join(OUTCOMES)}", where="outcome")
    text = _text(reasons, where="reasons", limit=MAX_REASONS, required=True, lines=True)
    return AppealState(str(outcome)), text


def due_at(filed_at: datetime, profile: config_mod.Profile) -> datetime:
    """When an appeal filed at ``filed_at`` must be decided under ``profile``."""
    return filed_at + profile.appeal_deadline


def check_impartial(
    actor: Actor, *, subject: str, proposed_by: str | None, listed_by: str | None
) -> None:
    """Forbidden unless ``actor`` is someone other than the one who proposed the measure
    (``proposed_by``) or listed the item (``listed_by``) under appeal."""
    if proposed_by is not None and actor.name == proposed_by:
        raise Forbidden(
            f"{actor.name} proposed {subject}; another account must decide the appeal",
            where="account",
        )
    if listed_by is not None and actor.name == listed_by:
        raise Forbidden(
            f"{actor.name} listed {subject}; another account must decide the appeal",
            where="account",
        )


def new_receipt() -> str:
    """A fresh receipt: ``RECEIPT_BYTES`` random bytes as URL-safe text."""
    return secrets.token_urlsafe(RECEIPT_BYTES)


def receipt_digest(receipt: str) -> str | None:
    """The stored form of a receipt (SHA-256 hex); None for text that is no receipt."""
    if not 0 < len(receipt) <= MAX_RECEIPT or not set(receipt) <= _RECEIPT_CHARS:
        return None
    return hashlib.sha256(receipt.encode("ascii")).hexdigest()
