"""Domain types that cross stage boundaries: plain data, no I/O."""

from __future__ import annotations

from dataclasses import MISSING, asdict, dataclass, field, fields
from datetime import datetime
from enum import StrEnum
from typing import Any, TypeVar

R = TypeVar("R")


def record(cls: type[R]) -> type[R]:
    """``@dataclass(frozen=True, slots=True)`` with a constructor twice as fast.

    For the types a register import makes millions of (an entry, its cells, decision and
    targets): the dataclass constructor of a frozen class sets each field through
    ``object.__setattr__``; this one calls each slot's own setter. Same signature,
    defaults and immutability; fields with a default factory are not supported.
    """
    made = dataclass(frozen=True, slots=True)(cls)
    names = [f.name for f in fields(made)]
    scope: dict[str, Any] = {}
    params = []
    for f in fields(made):
        if f.default_factory is not MISSING or not f.init:
            raise TypeError(f"{cls.__name__}.{f.name}: @record takes plain fields only")
        scope[f"_set_{f.name}"] = getattr(made, f.name).__set__
        if f.default is MISSING:
            params.append(f.name)
        else:
            scope[f"_default_{f.name}"] = f.default
            params.append(f"{f.name}=_default_{f.name}")
    body = "".join(f"\n    _set_{name}(self, {name})" for name in names)
    exec(f"def __init__(self, {', '.join(params)}):{body}", scope)  # the fields are our own names
    init = scope["__init__"]
    init.__qualname__ = f"{made.__qualname__}.__init__"
    init.__annotations__ = made.__init__.__annotations__
    made.__init__ = init  # type: ignore[misc]
    return made


class TargetKind(StrEnum):
    URL = "url"
    DOMAIN = "domain"
    WILDCARD = "wildcard"  # *.example.com
    IP = "ip"
    CIDR = "cidr"


class BlockType(StrEnum):
    """What a register entry blocks, decided by what it names (see DESIGN "Register entries")."""

    URL = "url"  # the URLs; its domains and IPs are resolution hints
    DOMAIN = "domain"  # the domain names, exactly
    DOMAIN_MASK = "domain-mask"  # *.example.com
    IP = "ip"  # addresses and prefixes only


class ItemState(StrEnum):
    OPEN = "open"
    CLAIMED = "claimed"  # the platform says done, not yet verified
    REMOVED = "removed"
    RESTRICTED = "restricted"
    DELISTED = "delisted"


class ResponseAction(StrEnum):
    REMOVED = "removed"
    RESTRICTED = "restricted"
    REJECTED = "rejected"
    NEEDS_INFO = "needs_info"


class Verdict(StrEnum):
    AVAILABLE = "available"
    REMOVED = "removed"
    RESTRICTED = "restricted"
    UNREACHABLE = "unreachable"
    ERROR = "error"


class NoticeKind(StrEnum):
    INITIAL = "initial"
    REPEAT = "repeat"


class DeliveryState(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"  # gave up after the retry budget


class MeasureAction(StrEnum):
    THROTTLE = "throttle"
    BLOCK = "block"


class MeasureState(StrEnum):
    PROPOSED = "proposed"
    ACTIVE = "active"
    LIFTED = "lifted"
    EXPIRED = "expired"


@record
class Target:
    """A normalised register target: what it is and its canonical text."""

    kind: TargetKind
    value: str  # canonical: punycode host, canonical URL, compressed IP / network
    host: str | None = None  # the host name a URL or domain names, if any


@record
class Decision:
    """The legal act an item or measure rests on."""

    reference: str
    authority: str | None = None
    date: str | None = None  # YYYY-MM-DD


@dataclass(frozen=True, slots=True)
class ItemRecord:
    """One register row as read from a file or the CLI, before it is stored."""

    target: Target
    category: str
    basis: str
    decision: Decision
    platform: str | None = None
    listed_at: datetime | None = None
    source: str | None = None  # provenance: file:line
    flags: tuple[str, ...] = ()  # e.g. "malformed-mask"


@record
class EntryCells:
    """What a register entry lists, as the register wrote it (kept for lossless export)."""

    ips: tuple[str, ...] = ()
    domains: tuple[str, ...] = ()
    urls: tuple[str, ...] = ()


@record
class EntryRecord:
    """One register entry as read (a CSV row, an XML ``<content>``), before it is stored.

    One decision, one block type. ``targets`` are what it blocks, one item each; whatever
    else ``cells`` lists (a URL entry's domain and IPs) is a resolution hint, never a target.
    """

    block_type: BlockType
    targets: tuple[tuple[Target, tuple[str, ...]], ...]  # (target, flags)
    cells: EntryCells
    category: str
    basis: str
    decision: Decision
    platform: str | None = None
    listed_at: datetime | None = None  # the register's include time, if it states one
    source: str | None = None  # provenance: file:line
    source_id: str | None = None  # the register's own id (``<content id>``), if any
    attrs: tuple[tuple[str, str], ...] = ()  # other facts the register states, kept as given
    # 64 bits identifying the row as the register wrote it, where the reader keeps one
    fingerprint: int | None = None

    def items(self) -> list[ItemRecord]:
        """One ItemRecord per target, sharing the entry's decision and provenance."""
        return [
            ItemRecord(
                target,
                self.category,
                self.basis,
                self.decision,
                self.platform,
                self.listed_at,
                self.source,
                flags,
            )
            for target, flags in self.targets
        ]


@dataclass(frozen=True, slots=True)
class HostRule:
    pattern: str  # "t.co" or "*.twimg.com", normalised
    content_class: str = "any"


@dataclass(frozen=True, slots=True)
class Directive:
    """A measure compiled for the network."""

    id: str
    action: MeasureAction
    hosts: tuple[HostRule, ...] = ()
    ip_ranges: tuple[str, ...] = ()  # canonical addresses / networks
    rate_kbps: int | None = None
    # percent of each subscriber class in scope; "*" is the default for classes not named
    scope: dict[str, float] = field(default_factory=lambda: {"*": 100.0})
    valid_from: datetime | None = None
    expires: datetime | None = None
    measure_id: int | None = None
    decisions: tuple[str, ...] = ()
    reference_url: str | None = None

    def share_for(self, subscriber_class: str) -> float:
        """The percentage of ``subscriber_class`` this directive applies to."""
        if subscriber_class in self.scope:
            return self.scope[subscriber_class]
        return self.scope.get("*", 0.0)

    def describe(self) -> str:
        """``block`` or ``throttle 128 kbit/s``."""
        return describe_action(self.action, self.rate_kbps)

    def in_force(self, now: datetime) -> bool:
        if self.valid_from is not None and now < self.valid_from:
            return False
        return not (self.expires is not None and now >= self.expires)


@dataclass(frozen=True, slots=True)
class DirectiveSet:
    schema_version: int
    sequence: int
    generated_at: datetime
    directives: tuple[Directive, ...]


SEVERITY = {MeasureAction.THROTTLE: 1, MeasureAction.BLOCK: 2}


def describe_action(action: MeasureAction | str, rate_kbps: int | None) -> str:
    """How an action is written for people everywhere: ``block`` or ``throttle 128 kbit/s``."""
    action = MeasureAction(action)
    if action == MeasureAction.THROTTLE and rate_kbps:
        return f"{action.value} {rate_kbps} kbit/s"
    return action.value


def describe_scope(scope: dict[str, float]) -> str:
    """A scope as people read it: ``fixed 50%, mobile 100%`` (classes in name order)."""
    return ", ".join(f"{k} {v:g}%" for k, v in sorted(scope.items()))


@dataclass(frozen=True, slots=True)
class MeasureRecord:
    """A stored measure as the stages after policy see it (feed, web, reports): plain data."""

    id: int
    platform: str
    action: MeasureAction
    state: MeasureState
    proposed_at: datetime
    reason: str
    created_by: str
    rate_kbps: int | None = None
    classes: tuple[str, ...] = ()  # content classes; empty or "*" means all
    scope: dict[str, float] = field(default_factory=dict)  # subscriber class -> percent
    starts_at: datetime | None = None
    review_at: datetime | None = None
    expires_at: datetime | None = None
    lifted_at: datetime | None = None
    rule: str | None = None  # the ladder rule that fired, None for a decided measure
    ladder: str | None = None
    figures: dict[str, object] = field(default_factory=dict)  # what fired the rule
    decision_ref: str | None = None
    lift_decision: str | None = None
    needs_approval: bool = False
    supersedes_id: int | None = None

    def describe(self) -> str:
        """``block`` or ``throttle 128 kbit/s``."""
        return describe_action(self.action, self.rate_kbps)

    def state_at(self, at: datetime) -> MeasureState | None:
        """The state as of ``at`` (None if not yet proposed then)."""
        if self.proposed_at > at:
            return None
        if self.lifted_at is not None and self.lifted_at <= at:
            return MeasureState.LIFTED
        if self.expires_at is not None and self.expires_at <= at:
            return MeasureState.EXPIRED
        if self.starts_at is not None and self.starts_at <= at:
            return MeasureState.ACTIVE
        if self.state == MeasureState.LIFTED and self.lifted_at is None:  # pragma: no cover
            return self.state
        return MeasureState.PROPOSED

    def as_json(self) -> dict[str, Any]:
        """The measure as ``measures list --json`` and ``GET /api/measures`` show it."""
        return {
            "id": self.id,
            "platform": self.platform,
            "action": self.action.value,
            "rate_kbps": self.rate_kbps,
            "classes": list(self.classes),
            "scope": dict(self.scope),
            "state": self.state.value,
            "proposed_at": self.proposed_at,
            "starts_at": self.starts_at,
            "review_at": self.review_at,
            "expires_at": self.expires_at,
            "lifted_at": self.lifted_at,
            "rule": self.rule,
            "ladder": self.ladder,
            "reason": self.reason,
            "decision_ref": self.decision_ref,
            "lift_decision": self.lift_decision,
            "needs_approval": self.needs_approval,
            "created_by": self.created_by,
            "supersedes_id": self.supersedes_id,
        }


@dataclass(frozen=True, slots=True)
class DecisionBasis:
    """One legal decision behind a measure's platform: how many live items it covers."""

    decision: str
    authority: str | None
    date: str | None
    items: int
    by_category: dict[str, int]


@dataclass(frozen=True, slots=True)
class LegalBasis:
    """The register items live on the platform when a measure was proposed, by decision."""

    items: int
    by_category: dict[str, int]
    decisions_total: int
    decisions: tuple[DecisionBasis, ...]  # the largest first, at most the asked number


@dataclass(frozen=True, slots=True)
class ObligationRecord:
    kind: str
    state: str
    decision: str
    at: datetime


@dataclass(frozen=True, slots=True)
class ApprovalRecord:
    by: str
    at: datetime


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One audit-log event as read back."""

    seq: int
    at: datetime
    actor: str
    type: str
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class MeasureExplanation:
    """The chain from a measure to the facts and legal decisions behind it."""

    measure: MeasureRecord
    legal_basis: LegalBasis
    obligations: tuple[ObligationRecord, ...]  # recorded by the time it was proposed
    approvals: tuple[ApprovalRecord, ...]
    supersedes: tuple[MeasureRecord, ...]  # the measures it replaced, nearest first
    superseded_by: int | None
    events: tuple[AuditRecord, ...]  # of this measure and those it replaced

    def as_json(self) -> dict[str, Any]:
        """As ``measures explain --json`` and ``GET /api/measures/{id}`` show it."""
        basis = self.legal_basis
        return {
            **self.measure.as_json(),
            "figures": self.measure.figures,
            "legal_basis": {
                "items": basis.items,
                "by_category": dict(basis.by_category),
                "decisions_total": basis.decisions_total,
                "decisions": [asdict(d) for d in basis.decisions],
            },
            "obligations": [asdict(o) for o in self.obligations],
            "approvals": [asdict(a) for a in self.approvals],
            "supersedes": [
                {
                    "id": m.id,
                    "scope": dict(m.scope),
                    "proposed_at": m.proposed_at,
                    "lifted_at": m.lifted_at,
                    "reason": m.reason,
                }
                for m in self.supersedes
            ],
            "superseded_by": self.superseded_by,
            "events": [asdict(e) for e in self.events],
        }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


@dataclass(frozen=True, slots=True)
class NoticeRecord:
    """A stored notice with its item counts, as listings show it."""

    id: int
    platform: str
    kind: str
    issued_at: datetime
    deadline_at: datetime
    delivery_state: str
    attempts: int
    delivered_at: datetime | None
    acknowledged_at: datetime | None
    items: int
    open_items: int

    def overdue(self, now: datetime) -> bool:
        return self.open_items > 0 and now >= self.deadline_at

    def as_json(self, now: datetime) -> dict[str, object]:
        return {
            "id": self.id,
            "platform": self.platform,
            "kind": self.kind,
            "issued_at": _iso(self.issued_at),
            "deadline_at": _iso(self.deadline_at),
            "delivery_state": self.delivery_state,
            "attempts": self.attempts,
            "delivered_at": _iso(self.delivered_at),
            "acknowledged_at": _iso(self.acknowledged_at),
            "items": self.items,
            "open_items": self.open_items,
            "overdue": self.overdue(now),
        }


@dataclass(frozen=True, slots=True)
class RegisterEntry:
    """A stored register item, as the exporters see it."""

    id: int
    record: ItemRecord
    state: ItemState = ItemState.OPEN
    delisted_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Figures:
    """Compliance figures of one platform (or category) as of a moment (the ledger's output).

    Raw counts are the facts; shares are derived from them (fractions 0..1, None if the
    denominator is zero). ``remaining`` = flagged - removed - restricted (claims that are
    not verified still count as remaining).
    """

    platform: str
    as_of: datetime
    flagged: int = 0
    removed: int = 0
    restricted: int = 0
    claimed: int = 0
    remaining: int = 0
    overdue: int = 0
    removed_share: float | None = None  # (removed + restricted) / flagged
    on_time_share: float | None = None  # removed or restricted by the deadline / due so far
    ttr_median_h: float | None = None
    ttr_p90_h: float | None = None
    category: str | None = None
    # the items' media found again under other URLs (takedown.media), and those removed
    reuploads_found: int = 0
    reuploads_removed: int = 0
    reuploads_open: int = 0
