"""A slow, obviously correct matcher with the same semantics and API as ``Matcher``.

Each query compares against every rule: a name matches ``base`` if it equals it, and
``*.base`` if it ends with ``"." + base``; an address matches a network if it lies between
the network's first and last address (as ipaddress computes them). Used by the property
tests and the benchmark to judge the fast matcher.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Generic, TypeVar

from takedown import names
from takedown.errors import PatternError

K = TypeVar("K")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")


def reference_network(text: str) -> Network:
    """The network an IP rule names, IPv4-mapped IPv6 networks as IPv4; PatternError."""
    try:
        net = ipaddress.ip_network(text.strip(), strict=True)
    except (ValueError, TypeError, AttributeError) as exc:
        raise PatternError(f"invalid IP rule {text!r}: {exc}") from None
    if isinstance(net, ipaddress.IPv6Network) and net.subnet_of(_MAPPED):
        mapped = net.network_address.ipv4_mapped
        assert mapped is not None
        return ipaddress.IPv4Network((int(mapped), net.prefixlen - 96))
    return net


def reference_address(
    addr: object,
) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address a query names, IPv4-mapped IPv6 as IPv4; None if it is not one."""
    if isinstance(addr, ipaddress.IPv4Address | ipaddress.IPv6Address):
        parsed = addr
    elif isinstance(addr, str):
        try:
            parsed = ipaddress.ip_address(addr)
        except ValueError:
            return None
    else:
        return None
    if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped is not None:
        return parsed.ipv4_mapped
    return parsed


class ReferenceMatcher(Generic[K]):
    """Linear scan over the rules; same results and order as ``Matcher``."""

    def __init__(
        self,
        hosts: list[tuple[str, bool, int, K]],
        ips: list[tuple[Network, int, int, int, K]],
    ) -> None:
        self.hosts = hosts
        self.ips = ips

    @classmethod
    def compile(
        cls,
        host_rules: Iterable[tuple[str, K]] = (),
        ip_rules: Iterable[tuple[str, K]] = (),
        *,
        min_prefix_v4: int = 8,
        min_prefix_v6: int = 32,
    ) -> ReferenceMatcher[K]:
        """Compile (pattern, key) pairs, refusing what ``Matcher.compile`` refuses."""
        hosts = []
        for i, (pattern, key) in enumerate(host_rules):
            base, wildcard = names.split_pattern(pattern)
            hosts.append((base, wildcard, i, key))
        ips = []
        for i, (text, key) in enumerate(ip_rules):
            net = reference_network(text)
            limit = min_prefix_v4 if net.version == 4 else min_prefix_v6
            if net.prefixlen < limit:
                raise PatternError(f"IP rule {text!r} is broader than /{limit}")
            first, last = int(net.network_address), int(net.broadcast_address)
            ips.append((net, first, last, i, key))
        return cls(hosts, ips)

    def match_host(self, name: object) -> list[K]:
        """Every matching rule's key: exact first, then wildcards nearest base first."""
        if not isinstance(name, str):
            return []
        try:
            host = names.normalise_host(name)
        except PatternError:
            return []
        hits = []
        for base, wildcard, index, key in self.hosts:
            if (not wildcard and host == base) or (wildcard and host.endswith("." + base)):
                hits.append(((wildcard, -len(base), index), key))
        return [key for _, key in sorted(hits, key=lambda h: h[0])]

    def match_ip(self, addr: object) -> list[K]:
        """Every covering rule's key, longest prefix first."""
        parsed = reference_address(addr)
        if parsed is None:
            return []
        value = int(parsed)
        hits = []
        for net, first, last, index, key in self.ips:
            if net.version == parsed.version and first <= value <= last:
                hits.append(((-net.prefixlen, index), key))
        return [key for _, key in sorted(hits, key=lambda h: h[0])]

    def match_hosts(self, names_: Iterable[str]) -> list[list[K]]:
        return [self.match_host(n) for n in names_]

    def match_ips(self, addrs: Iterable[object]) -> list[list[K]]:
        return [self.match_ip(a) for a in addrs]
