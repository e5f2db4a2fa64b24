"""What the register asks of an entry before it is stored (``registry.sync`` and
``registry add`` alike)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from takedown import config as config_mod
from takedown.errors import InputError
from takedown.model import EntryRecord
from takedown.registry import breadth
from takedown.store import audit

# what the entries and items columns hold
MAX_DECISION, MAX_AUTHORITY, MAX_SOURCE_ID = 200, 500, 64


class EntryChecks:
    """What the register asks of an entry before it is stored: a known category, a basis,
    a decision, columns that fit, and targets no broader than the profile allows
    (``registry.breadth``) -- unless a person admits the broad ones with a reason, each
    then kept in ``admitted`` for the audit log."""

    def __init__(self, accept_broad: str | None = None) -> None:
        self.cfg = config_mod.default()
        self.limits = breadth.limits_for()
        self.accept_broad = accept_broad
        self.categories: set[str] = set()
        self.admitted: list[dict[str, str | None]] = []

    def check(self, entry: EntryRecord) -> None:
        """Raise InputError (naming the entry's file:line) if ``entry`` may not be stored."""
        where = entry.source
        if entry.category not in self.categories:
            self.cfg.check_category(entry.category, where=where)
            self.categories.add(entry.category)
        if not entry.basis.strip():
            raise InputError("an entry needs a legal basis", where=where)
        d = entry.decision
        if not d.reference.strip():
            raise InputError("an entry needs a decision reference", where=where)
        if (
            len(d.reference) > MAX_DECISION
            or (d.authority is not None and len(d.authority) > MAX_AUTHORITY)
            or (entry.source_id is not None and len(entry.source_id) > MAX_SOURCE_ID)
        ):
            _refuse_too_long(entry)
        for target, _ in entry.targets:
            problem = breadth.target_problem(target, self.limits)
            if problem is None:
                continue
            if self.accept_broad is None:
                raise InputError(f"{problem} (--accept-broad REASON admits it)", where=where)
            self.admitted.append({"target": target.value, "problem": problem, "where": where})

    def audit(self, session: Session, *, now: datetime, actor: str) -> None:
        """One audit event per broad target admitted, with the reason given."""
        events = [
            ("registry.broad_admitted", {**a, "reason": self.accept_broad}) for a in self.admitted
        ]
        audit.record_many(session, at=now, actor=actor, events=events)


def _refuse_too_long(entry: EntryRecord) -> None:
    """Raise InputError naming the first of an entry's texts too long for its column."""
    for name, value, limit in (
        ("decision reference", entry.decision.reference, MAX_DECISION),
        ("authority", entry.decision.authority, MAX_AUTHORITY),
        ("register id", entry.source_id, MAX_SOURCE_ID),
    ):
        if value and len(value) > limit:
            raise InputError(
                f"{name} longer than {limit} characters ({len(value)})", where=entry.source
            )
