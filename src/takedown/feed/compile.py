"""Compile what is in force into one directive set: active measures and register items.

Active measures become directives over their platform's host patterns of the measure's
content classes. Register items that name a whole domain, wildcard, address or prefix and
that no platform answers for become block directives (the operators' register duty), one
per decision; an item the register's breadth check refuses (``registry.breadth``: one
admitted anyway, with a reason) is left out with its reason, so publication goes on.
Output is deterministic: the same database state and ``now`` give the same bytes
(``feed.directives.dumps``).
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from urllib.parse import quote

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from takedown.errors import NotFound
from takedown.model import (
    Directive,
    DirectiveSet,
    HostRule,
    MeasureAction,
    MeasureRecord,
    MeasureState,
    Target,
    TargetKind,
)
from takedown.policy.records import measure_record
from takedown.registry.breadth import BreadthLimits, is_rule, limits_for, target_problem
from takedown.store.db import Database
from takedown.store.schema import FeedPublication, Item, Measure, Platform, PlatformHost

SCHEMA_VERSION = 1
# Register-derived directives have no end of their own; they are re-issued with every
# publication, so an enforcement point that stops hearing from the feed stops enforcing.
REGISTER_HORIZON = timedelta(days=7)
WHOLE_TARGETS = (TargetKind.DOMAIN, TargetKind.WILDCARD, TargetKind.IP, TargetKind.CIDR)
_KINDS = {k.value: k for k in WHOLE_TARGETS}


@dataclass
class Compiled:
    directives: DirectiveSet
    refused: list[str] = field(default_factory=list)  # targets that cannot become rules
    # host pattern → what owns it (platform slug or item id), for the collateral guard
    owners: dict[str, str] = field(default_factory=dict)


def _measure_directive(
    m: MeasureRecord, hosts: Sequence[HostRule], now: datetime, public_url: str
) -> Directive:
    """The directive of an active measure over its platform's hosts of its content classes."""
    classes = set(m.classes)
    rules = tuple(
        sorted(
            (h for h in hosts if not classes or "*" in classes or h.content_class in classes),
            key=lambda r: (r.pattern, r.content_class),
        )
    )
    decisions = [m.decision_ref] if m.decision_ref else []
    if m.rule:
        decisions.append(f"ladder rule {m.rule}")
    return Directive(
        id=f"m{m.id}",
        action=m.action,
        hosts=rules,
        rate_kbps=m.rate_kbps if m.action == MeasureAction.THROTTLE else None,
        scope=dict(sorted((m.scope or {"*": 100.0}).items())),
        valid_from=m.starts_at,
        expires=m.expires_at or m.review_at or now + REGISTER_HORIZON,
        measure_id=m.id,
        decisions=tuple(decisions),
        reference_url=f"{public_url}/public/measures/{m.id}",
    )


def _register_directives(
    session: Session, now: datetime, public_url: str, compiled: Compiled, limits: BreadthLimits
) -> list[Directive]:
    by_decision: dict[str, tuple[set[str], set[str]]] = defaultdict(lambda: (set(), set()))
    query = (
        select(Item.id, Item.target, Item.kind, Item.host, Item.decision_ref)
        .where(Item.platform_id.is_(None))
        .where(Item.kind.in_([k.value for k in WHOLE_TARGETS]))
        .where(Item.listed_at <= now)
        .where(or_(Item.delisted_at.is_(None), Item.delisted_at > now))
        .order_by(Item.id)
    )
    for item_id, value, kind, host, decision in session.execute(query):
        target = Target(_KINDS[kind], value, host)
        # the register's own check, which includes the one loads applies: a set never
        # carries what the points refuse, nor what the register would not admit unasked
        problem = target_problem(target, limits)
        if problem is None and not is_rule(target):
            problem = f"{value!r} is a malformed mask kept as a literal name, never a rule"
        if problem is not None:
            compiled.refused.append(f"item {item_id}: {problem}")
            continue
        hosts, ips = by_decision[decision]
        (ips if kind in (TargetKind.IP, TargetKind.CIDR) else hosts).add(value)
        compiled.owners[value] = f"item {item_id}"
    out = []
    for decision, (hosts, ips) in sorted(by_decision.items()):
        if not hosts and not ips:
            continue
        digest = hashlib.sha256(decision.encode("utf-8")).hexdigest()[:16]
        out.append(
            Directive(
                id=f"r{digest}",
                action=MeasureAction.BLOCK,
                hosts=tuple(HostRule(h, "any") for h in sorted(hosts)),
                ip_ranges=tuple(sorted(ips)),
                scope={"*": 100.0},
                valid_from=None,
                expires=now + REGISTER_HORIZON,
                decisions=(decision,),
                reference_url=f"{public_url}/public/lookup?decision={quote(decision, safe='')}",
            )
        )
    return out


def next_sequence(session: Session) -> int:
    last = session.scalar(
        select(FeedPublication.sequence).order_by(FeedPublication.sequence.desc())
    )
    return (last or 0) + 1


def _platform_hosts(session: Session, compiled: Compiled) -> dict[int, list[HostRule]]:
    """Each platform's host rules; their patterns go into ``compiled.owners``."""
    slugs = dict(session.execute(select(Platform.id, Platform.slug)).all())
    hosts: dict[int, list[HostRule]] = defaultdict(list)
    for h in session.scalars(select(PlatformHost).order_by(PlatformHost.pattern)):
        hosts[h.platform_id].append(HostRule(h.pattern, h.content_class))
        compiled.owners[h.pattern] = slugs[h.platform_id]
    return hosts


def compile_measure(
    session: Session, measure_id: int, now: datetime, *, public_url: str
) -> Compiled:
    """The directive measure ``measure_id`` compiles to if it is (or were) in force, whatever
    its state: what an approver looks at, with the collateral guard, before approving."""
    compiled = Compiled(DirectiveSet(SCHEMA_VERSION, 0, now, ()))
    m = session.get(Measure, measure_id)
    if m is None:
        raise NotFound(f"no measure {measure_id}", where="ID")
    hosts = _platform_hosts(session, compiled)
    slug = session.scalar(select(Platform.slug).where(Platform.id == m.platform_id))
    directive = _measure_directive(measure_record(m, slug), hosts[m.platform_id], now, public_url)
    compiled.directives = DirectiveSet(SCHEMA_VERSION, 0, now, (directive,))
    return compiled


def compile_directives(
    session: Session,
    now: datetime,
    *,
    sequence: int | None = None,
    public_url: str = "http://127.0.0.1:8470",
    limits: BreadthLimits | None = None,
) -> Compiled:
    """The directive set in force at ``now``; register items are checked against
    ``limits`` (default: those of the profile of items of no platform)."""
    compiled = Compiled(DirectiveSet(SCHEMA_VERSION, 0, now, ()))
    slugs = dict(session.execute(select(Platform.id, Platform.slug)).all())
    hosts = _platform_hosts(session, compiled)
    measures = session.scalars(
        select(Measure).where(Measure.state == MeasureState.ACTIVE.value).order_by(Measure.id)
    ).all()
    directives = []
    for m in measures:
        record = measure_record(m, slugs[m.platform_id])
        directive = _measure_directive(record, hosts[m.platform_id], now, public_url)
        if directive.in_force(now) or (directive.valid_from and directive.valid_from > now):
            directives.append(directive)
    limits = limits if limits is not None else limits_for()
    directives += _register_directives(session, now, public_url, compiled, limits)
    seq = sequence if sequence is not None else next_sequence(session)
    compiled.directives = DirectiveSet(
        SCHEMA_VERSION, seq, now, tuple(sorted(directives, key=lambda d: d.id))
    )
    return compiled


def directives_in_force(db: Database, now: datetime, *, public_url: str) -> Compiled:
    """``compile_directives`` in a read transaction of its own (the API's and the public
    pages' view of what the next publication would carry)."""
    with db.reading() as session:
        return compile_directives(session, now, public_url=public_url)


@dataclass(frozen=True)
class InputsVersion:
    """A cheap fingerprint of what ``compile_directives`` reads, and the first clock time
    after ``now`` at which its output may change by time alone (an item listed or delisted,
    a measure starting, due for review or expiring). Two equal fingerprints compile to the
    same set until ``changes_at``."""

    fingerprint: str
    changes_at: datetime


def inputs_version(session: Session, now: datetime) -> InputsVersion:
    """The version of the compiler's inputs at ``now``: platforms, host patterns and
    measures row by row (small tables), and the register items no platform answers for as
    aggregates over one index (``ix_items_platform_listing``), never item by item."""
    h = hashlib.sha256()
    h.update(
        repr(
            session.execute(select(Platform.id, Platform.slug).order_by(Platform.id)).all()
        ).encode()
    )
    h.update(
        repr(
            session.execute(
                select(
                    PlatformHost.id,
                    PlatformHost.platform_id,
                    PlatformHost.pattern,
                    PlatformHost.content_class,
                ).order_by(PlatformHost.id)
            ).all()
        ).encode()
    )
    times: list[datetime] = [now + REGISTER_HORIZON / 2]
    for row in session.execute(
        select(
            Measure.id,
            Measure.platform_id,
            Measure.action,
            Measure.rate_kbps,
            Measure.classes,
            Measure.scope,
            Measure.state,
            Measure.starts_at,
            Measure.review_at,
            Measure.expires_at,
            Measure.rule,
            Measure.decision_ref,
        ).order_by(Measure.id)
    ):
        h.update(repr(tuple(row)).encode())
        times += [t for t in (row.starts_at, row.review_at, row.expires_at) if t and t > now]
    unowned = (Item.platform_id.is_(None),)
    agg = session.execute(
        select(
            func.count(),
            func.max(Item.id),
            func.count(Item.delisted_at),
            func.max(Item.delisted_at),
            func.max(Item.listed_at),
        ).where(*unowned)
    ).one()
    h.update(repr(tuple(agg)).encode())
    for column in (Item.listed_at, Item.delisted_at):
        nxt = session.scalar(select(func.min(column)).where(*unowned, column > now))
        if nxt is not None:
            times.append(nxt)
    return InputsVersion(h.hexdigest(), min(times))
