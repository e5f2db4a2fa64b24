"""What a flow gets: the pure decision over a compiled directive set.

``compile_index`` turns a DirectiveSet into an index over the Matcher once per feed update;
``decide`` is then a pure function of the index, the names a flow revealed, its
destination address, its subscriber and ``now``. No I/O, no clock of its own.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, NamedTuple

from takedown.enforce.subscribers import Subscribers
from takedown.errors import InputError, PatternError
from takedown.match.matcher import Matcher
from takedown.model import SEVERITY, Directive, DirectiveSet, MeasureAction
from takedown.names import normalise_host

if TYPE_CHECKING:
    from takedown.enforce.bin_index import BinnedIndex

ANY_CLASS = "any"
NO_CLASS = "none"  # content class of a flow no rule matched
OTHER_SUBSCRIBERS = "other"  # subscriber class of an address in no configured class
_NO_SUBSCRIBERS = Subscribers({})


class Action(StrEnum):
    PASS = "pass"
    THROTTLE = "throttle"
    BLOCK = "block"


@dataclass(frozen=True, slots=True)
class Verdict:
    """What to do with one flow, and why (not a legal decision: see ``model.Decision``)."""

    action: Action
    rate_kbps: int | None = None
    directives: tuple[str, ...] = ()  # ids of the directives that impose the action
    measures: tuple[int | None, ...] = ()  # their measures' ids, in the same order
    content_class: str = NO_CLASS
    subscriber_class: str = OTHER_SUBSCRIBERS
    reason: str = ""
    decisions: tuple[str, ...] = ()  # legal decision references, for the 451 body
    reference_urls: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class _Key:
    """What a matcher rule points at: a directive (by position) and the rule's content class."""

    slot: int
    content_class: str
    rule: str


# what a lookup yields: the directive, the matched rule's content class, the rule
Hit = tuple[Directive, str, str]


class InForce(NamedTuple):
    """What is in force at an instant: a value that changes when the set in force changes
    (compare it to the last one), and the number of directives in force."""

    key: Hashable
    count: int


@dataclass(frozen=True, slots=True)
class Index:
    """A directive set compiled for lookups; swapped as a whole on every feed update
    (``enforce.bin_index.BinnedIndex`` is the sharded set's, updated bin by bin)."""

    matcher: Matcher[_Key]
    directives: tuple[Directive, ...]
    sequence: int = -1
    generated_at: datetime | None = None

    def in_force_ids(self, now: datetime) -> frozenset[str]:
        """The ids of the directives in force at ``now`` (a change means: re-decide flows)."""
        return frozenset(d.id for d in self.directives if d.in_force(now))

    def in_force(self, now: datetime) -> InForce:
        """The ids in force at ``now`` (the key) and their number."""
        ids = self.in_force_ids(now)
        return InForce(ids, len(ids))

    def host_hits(self, name: str) -> list[Hit]:
        """(directive, content class, rule) of every host rule matching ``name``."""
        directives = self.directives
        return [
            (directives[k.slot], k.content_class, k.rule) for k in self.matcher.match_host(name)
        ]

    def ip_hits(self, addr: str) -> list[Hit]:
        """(directive, content class, rule) of every IP rule covering ``addr``."""
        directives = self.directives
        return [(directives[k.slot], k.content_class, k.rule) for k in self.matcher.match_ip(addr)]


def compile_index(directives: DirectiveSet | Iterable[Directive]) -> Index:
    """Compile directives into an Index. Raise PatternError on a rule the matcher refuses."""
    if isinstance(directives, DirectiveSet):
        items = tuple(directives.directives)
        sequence, generated_at = directives.sequence, directives.generated_at
    else:
        items = tuple(directives)
        sequence, generated_at = -1, None
    host_rules: list[tuple[str, _Key]] = []
    ip_rules: list[tuple[str, _Key]] = []
    for slot, directive in enumerate(items):
        for rule in directive.hosts:
            host_rules.append((rule.pattern, _Key(slot, rule.content_class, rule.pattern)))
        for network in directive.ip_ranges:
            ip_rules.append((network, _Key(slot, ANY_CLASS, network)))
    matcher = Matcher.compile(host_rules, ip_rules)
    return Index(matcher, items, sequence, generated_at)


EMPTY_INDEX_DIRECTIVES: tuple[Directive, ...] = ()


def empty_index() -> Index:
    """An index with no directives: every flow passes."""
    return compile_index(EMPTY_INDEX_DIRECTIVES)


def strictness(directive: Directive) -> tuple[int, float]:
    """How strict a directive is, for ranking: a block above any throttle, then the lower rate."""
    rate = float(directive.rate_kbps) if directive.rate_kbps else float("inf")
    return (SEVERITY[directive.action], -rate)


def strictest(directives: Iterable[Directive]) -> list[Directive]:
    """The directives that win among those that apply to a flow: the strictest, ties kept.

    The one ranking of directives: the enforcement point, the public lookup and the
    simulator all call it, so what the public is told is what the network does. Order of
    first appearance is kept; a directive seen twice counts once.
    """
    best: list[Directive] = []
    best_rank: tuple[int, float] | None = None
    for directive in directives:
        rank = strictness(directive)
        if best_rank is None or rank > best_rank:
            best_rank, best = rank, [directive]
        elif rank == best_rank and all(d.id != directive.id for d in best):
            best.append(directive)
    return best


def _clean_name(name: str) -> str | None:
    try:
        return normalise_host(name)
    except PatternError:
        return None


def decide(
    index: Index | BinnedIndex,
    names: Sequence[str],
    dest_ip: str | None,
    subscriber_addr: str | None,
    now: datetime,
    subscribers: Subscribers | None = None,
) -> Verdict:
    """The most restrictive directive in force that matches a revealed name or the address.

    A directive applies when one of its host rules matches any of ``names`` (or one of its
    IP ranges matches ``dest_ip``) and the subscriber is inside the directive's share of
    the subscriber's class (a stable keyed hash salted with the directive id). Among
    throttles the lowest rate wins; a block beats any throttle.
    """
    subs = subscribers if subscribers is not None else _NO_SUBSCRIBERS
    sub_class = OTHER_SUBSCRIBERS
    if subscriber_addr:
        sub_class = _classify(subs, subscriber_addr)

    hits: list[tuple[Hit, str]] = []  # (hit, what matched)
    seen_names: list[str] = []
    for raw in names:
        name = _clean_name(raw) if raw else None
        if name is None or name in seen_names:
            continue
        seen_names.append(name)
        hits.extend((hit, name) for hit in index.host_hits(name))
    if dest_ip:
        hits.extend((hit, dest_ip) for hit in index.ip_hits(dest_ip))

    if not hits:
        return Verdict(Action.PASS, subscriber_class=sub_class, reason="no rule matches")

    applicable: list[Directive] = []
    first_hit: dict[str, tuple[Hit, str]] = {}  # directive id -> its first matching rule
    matched_class = NO_CLASS
    out_of_scope: list[str] = []
    for hit, what in hits:
        directive, content_class, _rule = hit
        if matched_class == NO_CLASS:
            matched_class = content_class
        if not directive.in_force(now):
            continue
        share = directive.share_for(sub_class)
        if not _in_share(subs, subscriber_addr, share, directive.id):
            out_of_scope.append(directive.id)
            continue
        if directive.id not in first_hit:
            first_hit[directive.id] = (hit, what)
            applicable.append(directive)
    best = strictest(applicable)

    if not best:
        why = "no directive in force matches"
        if out_of_scope:
            why = f"subscriber outside the share of {', '.join(sorted(set(out_of_scope)))}"
        return Verdict(
            Action.PASS, content_class=matched_class, subscriber_class=sub_class, reason=why
        )

    first = best[0]
    (_d, first_class, first_rule), first_what = first_hit[first.id]
    action = Action.BLOCK if first.action == MeasureAction.BLOCK else Action.THROTTLE
    decisions: list[str] = []
    urls: list[str] = []
    for directive in best:
        decisions.extend(d for d in directive.decisions if d not in decisions)
        if directive.reference_url and directive.reference_url not in urls:
            urls.append(directive.reference_url)
    return Verdict(
        action=action,
        rate_kbps=first.rate_kbps if action == Action.THROTTLE else None,
        directives=tuple(d.id for d in best),
        measures=tuple(d.measure_id for d in best),
        content_class=first_class,
        subscriber_class=sub_class,
        reason=f"{first_what} matches {first_rule} ({first.id})",
        decisions=tuple(decisions),
        reference_urls=tuple(urls),
    )


def _classify(subs: Subscribers, addr: str) -> str:
    try:
        return subs.classify(addr) or OTHER_SUBSCRIBERS
    except InputError:
        return OTHER_SUBSCRIBERS


def _in_share(subs: Subscribers, addr: str | None, share: float, salt: str) -> bool:
    if share >= 100.0:
        return True
    if share <= 0.0 or not addr:
        # without a subscriber address there is nothing stable to hash: out of a partial share
        return False
    try:
        return subs.in_share(addr, share, salt=salt)
    except InputError:
        return False
