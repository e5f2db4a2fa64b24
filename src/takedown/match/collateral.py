"""Collateral analysis: which unrelated hosts and addresses a compiled rule set would hit.

A host is collateral for a rule when the rule matches it and it is not *owned*, i.e. it
belongs to no listed platform or item. Ownership is given as another Matcher (the hosts'
patterns of every platform and item) or as a predicate. The functions here are pure; the
readers at the bottom only turn files into plain data.
"""

from __future__ import annotations

import csv
import io
import ipaddress
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar
from urllib.parse import urlsplit

from takedown import names
from takedown.errors import InputError, PatternError
from takedown.match.matcher import IPRule, Matcher, address_key, normalised_query

K = TypeVar("K")

Owned = Matcher[Any] | Callable[[str], bool] | None


@dataclass(frozen=True, slots=True)
class HostHit(Generic[K]):
    """A rule matching a reference host that belongs to no listed platform or item."""

    key: K
    pattern: str  # the normalised rule: "t.co", "*.twimg.com"
    host: str


@dataclass(frozen=True, slots=True)
class IPHit(Generic[K]):
    """An IP rule covering an address that an unowned host resolves to."""

    key: K
    rule: IPRule
    address: str
    host: str

    @property
    def prefixlen(self) -> int:
        return self.rule.prefixlen


def _owned_predicate(owned: Owned) -> Callable[[str], bool]:
    if owned is None:
        return lambda host: False
    if isinstance(owned, Matcher):
        return lambda host: bool(owned.match_host(host))
    return owned


def host_collateral(
    rules: Matcher[K], hosts: Iterable[str], owned: Owned = None
) -> list[HostHit[K]]:
    """Every (rule, host) where a rule matches a reference host that is not owned.

    Hosts are normalised and de-duplicated; invalid names are skipped (they cannot be hit).
    Order: hosts in first-seen order, rules in match order.
    """
    is_owned = _owned_predicate(owned)
    seen: set[str] = set()
    hits: list[HostHit[K]] = []
    for raw in hosts:
        host = normalised_query(raw)
        if host is None or host in seen:
            continue
        seen.add(host)
        matched = rules.explain_host(host)
        if matched and not is_owned(host):
            hits.extend(HostHit(key, pattern, host) for pattern, key in matched)
    return hits


def ip_collateral(
    rules: Matcher[K], resolved: Mapping[str, Sequence[str]], owned: Owned = None
) -> list[IPHit[K]]:
    """Every (IP rule, address) where the address belongs to a host that is not owned.

    ``resolved`` maps host names (or address literals) to the addresses they resolve to.
    An address shared by an owned host and an unowned one (shared hosting, a CDN, a cloud)
    is collateral: blocking it cuts off the unowned host too.
    """
    is_owned = _owned_predicate(owned)
    hits: list[IPHit[K]] = []
    for raw_host, addresses in resolved.items():
        host = normalised_query(raw_host) or raw_host
        if is_owned(host):
            continue
        for address in addresses:
            hits.extend(IPHit(key, rule, address, host) for rule, key in rules.explain_ip(address))
    return hits


def broad_ip_rules(
    rules: Matcher[K], *, max_v4: int = 24, max_v6: int = 48
) -> list[tuple[IPRule, K]]:
    """IP rules broader than /``max_v4`` (IPv4) or /``max_v6`` (IPv6), for review."""
    return [
        (rule, key)
        for rule, key in rules.ip_rules()
        if rule.prefixlen < (max_v4 if rule.version == 4 else max_v6)
    ]


def substring_rule_hits(substring: str, hosts: Iterable[str]) -> list[str]:
    """Hosts a substring rule (the 2021 ``*t.co*`` style) would hit; for comparison only."""
    needle = substring.strip("*").lower()
    out: list[str] = []
    seen: set[str] = set()
    for raw in hosts:
        host = normalised_query(raw)
        if host is not None and host not in seen and needle in host:
            seen.add(host)
            out.append(host)
    return out


# -- readers ------------------------------------------------------------------------------


def hosts_from_citizenlab(path: str | Path) -> list[str]:
    """Normalised hosts of the ``url`` column of a Citizen Lab test-list CSV, first-seen order.

    Raises InputError naming ``file:line`` for a missing ``url`` column or a URL without a
    valid host.
    """
    path = Path(path)
    with path.open(encoding="utf-8", newline="") as f:
        return parse_citizenlab_hosts(f.read(), source=str(path))


def parse_citizenlab_hosts(text: str, *, source: str = "<citizenlab>") -> list[str]:
    """The pure core of ``hosts_from_citizenlab``."""
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if header is None or "url" not in header:
        raise InputError("no 'url' column in the header", where=f"{source}:1")
    column = header.index("url")
    hosts: dict[str, None] = {}
    for row in reader:
        line = reader.line_num
        if not row:
            continue
        if column >= len(row):
            raise InputError("row has no url field", where=f"{source}:{line}")
        url = row[column].strip()
        try:
            raw = urlsplit(url if "//" in url else "//" + url).hostname
        except ValueError as exc:
            raise InputError(f"invalid URL {url!r}: {exc}", where=f"{source}:{line}") from None
        if not raw:
            raise InputError(f"URL {url!r} has no host", where=f"{source}:{line}")
        host = _canonical_host(raw)
        if host is None:
            raise InputError(f"URL {url!r} has an invalid host", where=f"{source}:{line}")
        hosts.setdefault(host)
    return list(hosts)


def _canonical_host(raw: str) -> str | None:
    found = address_key(raw)
    if found is not None and "%" not in raw:
        return _format_address(*found)
    return normalised_query(raw)


def read_resolved(path: str | Path) -> dict[str, list[str]]:
    """Read a resolved-names file: one ``host ip [ip...]`` per line, ``#`` comments."""
    path = Path(path)
    return parse_resolved(path.read_text(encoding="utf-8"), source=str(path))


def parse_resolved(text: str, *, source: str = "<resolved>") -> dict[str, list[str]]:
    """The pure core of ``read_resolved``; InputError names ``file:line`` of a bad line.

    Hosts are normalised and addresses canonical (IPv4-mapped IPv6 written as IPv4); a host
    listed twice has its addresses
    merged in order, without repeats.
    """
    out: dict[str, list[str]] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split("#", 1)[0].split()
        if not fields:
            continue
        where = f"{source}:{number}"
        if len(fields) < 2:
            raise InputError(f"expected 'host ip [ip...]', got {line.strip()!r}", where=where)
        try:
            host = names.normalise_host(fields[0])
        except PatternError as exc:
            raise InputError(exc.message, where=where) from None
        addresses = out.setdefault(host, [])
        for field in fields[1:]:
            found = address_key(field)
            if found is None or "%" in field:
                raise InputError(f"invalid IP address {field!r}", where=where)
            canonical = _format_address(*found)
            if canonical not in addresses:
                addresses.append(canonical)
    return out


def _format_address(version: int, value: int) -> str:
    return str(ipaddress.IPv4Address(value) if version == 4 else ipaddress.IPv6Address(value))
