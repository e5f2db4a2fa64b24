"""The steering set: the address prefixes an operator diverts to its enforcement points.

An operator cannot pass all its traffic through a relay; it diverts only flows towards
addresses a directive may concern, and everything else never touches the enforcement
points. Those addresses are: every IP directive's ranges; and for each host directive,
the addresses its hosts are served from, known from the platforms' declared ranges
(``takedown platform add … --range``) and from resolution maps (``--resolved FILE``).
A host directive whose hosts have no known address cannot be steered: it is reported, so
an operator never believes a measure is applied that no flow ever reaches.

Sans-IO: ``steering_set`` is pure over directives, ranges and maps; ``to_nft`` and
``to_prefixes`` render it. The CLI reads the database and files around it
(``takedown feed export-steering``).

The resolved map is the collateral guard's (``takedown.match.parse_resolved``: one
``host ip [ip…]`` per line), so one file serves ``feed publish`` and this export.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from takedown.errors import InputError
from takedown.model import Directive, DirectiveSet
from takedown.names import split_pattern
from takedown.store.db import Database

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

NFT_TABLE = "takedown_steering"
NFT_SET4 = "steer4"
NFT_SET6 = "steer6"


@dataclass(frozen=True)
class PlatformRanges:
    """A platform's host patterns and the address ranges it declares it serves them from."""

    slug: str
    patterns: tuple[str, ...]
    ranges: tuple[str, ...]


@dataclass(frozen=True)
class SteeringSet:
    """The prefixes to divert, aggregated, and the host rules no address is known for."""

    v4: tuple[ipaddress.IPv4Network, ...]
    v6: tuple[ipaddress.IPv6Network, ...]
    sequence: int | None = None
    generated_at: datetime | None = None
    unsteered: tuple[str, ...] = ()  # "directive-id pattern" with no address
    sources: dict[str, int] = field(default_factory=dict)  # prefixes in, by source

    @property
    def prefixes(self) -> list[Network]:
        return [*self.v4, *self.v6]

    def as_json(self) -> dict[str, object]:
        return {
            "sequence": self.sequence,
            "v4": [str(n) for n in self.v4],
            "v6": [str(n) for n in self.v6],
            "prefixes": len(self.v4) + len(self.v6),
            "addresses_v4": sum(n.num_addresses for n in self.v4),
            "unsteered": list(self.unsteered),
            "sources": dict(self.sources),
        }


def parse_network(text: str, *, where: str) -> Network:
    """An address or prefix (host bits must be zero), as a network; InputError naming
    ``where`` otherwise."""
    try:
        return ipaddress.ip_network(text.strip(), strict=True)
    except ValueError as exc:
        raise InputError(
            f"not an address or prefix: {text.strip()[:80]!r} ({exc})", where=where
        ) from None


def pattern_covers(pattern: str, host: str) -> bool:
    """Whether host pattern ``pattern`` (``t.co``, ``*.twimg.com``) matches ``host``, on
    label boundaries (``*.x`` matches names under ``x``, not ``x`` itself)."""
    base, wildcard = split_pattern(pattern)
    if wildcard:
        return host.endswith("." + base)
    return host == base


def patterns_overlap(rule: str, declared: str) -> bool:
    """Whether a directive's host rule can match a name a platform's pattern declares."""
    rbase, rwild = split_pattern(rule)
    dbase, dwild = split_pattern(declared)
    if not rwild and not dwild:
        return rbase == dbase
    if rwild and dwild:
        return rbase == dbase or rbase.endswith("." + dbase) or dbase.endswith("." + rbase)
    if rwild:  # *.r against the name d
        return dbase.endswith("." + rbase)
    return rbase.endswith("." + dbase)  # the name r against *.d


def steering_set(
    directives: DirectiveSet | Sequence[Directive],
    *,
    now: datetime,
    platforms: Iterable[PlatformRanges] = (),
    resolved: Mapping[str, Sequence[str]] | None = None,
) -> SteeringSet:
    """The prefixes to divert for ``directives`` not expired at ``now`` (one about to start
    is steered already: the diversion must be in place when it starts), aggregated."""
    if isinstance(directives, DirectiveSet):
        sequence, generated = directives.sequence, directives.generated_at
        items: Sequence[Directive] = directives.directives
    else:
        sequence, generated, items = None, None, directives
    platforms = list(platforms)
    resolved = resolved or {}
    nets: list[Network] = []
    sources = {"ip": 0, "platform": 0, "resolved": 0}
    unsteered: list[str] = []
    for d in items:
        if d.expires is not None and now >= d.expires:
            continue
        for text in d.ip_ranges:
            nets.append(parse_network(text, where=f"directive {d.id}"))
            sources["ip"] += 1
        for rule in d.hosts:
            found = 0
            for p in platforms:
                if any(patterns_overlap(rule.pattern, pat) for pat in p.patterns):
                    for text in p.ranges:
                        nets.append(parse_network(text, where=f"platform {p.slug}"))
                        found += 1
            sources["platform"] += found
            for host, addresses in resolved.items():
                if pattern_covers(rule.pattern, host):
                    nets.extend(parse_network(a, where=f"resolved {host}") for a in addresses)
                    found += len(addresses)
                    sources["resolved"] += len(addresses)
            if not found:
                unsteered.append(f"{d.id} {rule.pattern}")
    v4, v6 = aggregate(nets)
    return SteeringSet(v4, v6, sequence, generated, tuple(sorted(set(unsteered))), sources)


def aggregate(
    nets: Iterable[Network],
) -> tuple[tuple[ipaddress.IPv4Network, ...], tuple[ipaddress.IPv6Network, ...]]:
    """Overlapping and adjacent prefixes merged, per family, in address order."""
    v4 = [n for n in nets if isinstance(n, ipaddress.IPv4Network)]
    v6 = [n for n in nets if isinstance(n, ipaddress.IPv6Network)]
    return tuple(ipaddress.collapse_addresses(v4)), tuple(ipaddress.collapse_addresses(v6))


def _header(steering: SteeringSet) -> list[str]:
    lines = ["# takedown steering set: divert these prefixes to the enforcement points"]
    if steering.sequence is not None:
        lines.append(f"# directive set sequence {steering.sequence}")
    for rule in steering.unsteered:
        lines.append(f"# NOT STEERED (no known address): {rule}")
    return lines


def to_prefixes(steering: SteeringSet) -> str:
    """One prefix per line (IPv4 then IPv6), ``#`` comments first: for routers."""
    body = [str(n) for n in steering.prefixes]
    return "\n".join([*_header(steering), *body]) + "\n"


def to_nft(steering: SteeringSet, *, table: str = NFT_TABLE) -> str:
    """An ``nft -f`` file: the two sets (``steer4``, ``steer6``) in ``table inet TABLE``,
    flushed and refilled in one transaction, so loading it again replaces the set and
    leaves the operator's own chains in that table alone."""
    lines = [
        *_header(steering),
        f"table inet {table} {{",
        f"\tset {NFT_SET4} {{ type ipv4_addr; flags interval; }}",
        f"\tset {NFT_SET6} {{ type ipv6_addr; flags interval; }}",
        "}",
        f"flush set inet {table} {NFT_SET4}",
        f"flush set inet {table} {NFT_SET6}",
    ]
    for name, nets in ((NFT_SET4, steering.v4), (NFT_SET6, steering.v6)):
        for start in range(0, len(nets), 1000):  # long element lists, in chunks
            chunk = ", ".join(str(n) for n in nets[start : start + 1000])
            lines.append(f"add element inet {table} {name} {{ {chunk} }}")
    return "\n".join(lines) + "\n"


def platform_ranges(db: Database) -> list[PlatformRanges]:
    """Every platform's host patterns and declared ranges (the one database read here)."""
    from takedown.platforms import list_platforms

    return [
        PlatformRanges(p.slug, tuple(h.pattern for h in p.hosts), tuple(p.ranges))
        for p in list_platforms(db)
        if p.ranges
    ]
