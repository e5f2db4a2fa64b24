"""Host patterns and IP rules compiled into dictionaries walked at query time.

Semantics (DESIGN.md, "Matching semantics"): host patterns match on DNS label boundaries
only. ``t.co`` matches exactly ``t.co``; ``*.twimg.com`` matches any name ending in
``.twimg.com`` (``pbs.twimg.com``, ``a.b.twimg.com``) but not ``twimg.com`` itself. Names
are compared after ``takedown.names.normalise_host`` (case, trailing dot, IDNA). IP rules
are addresses or CIDR prefixes; an IPv4-mapped IPv6 address (``::ffff:1.2.3.4``), as a
rule or as a query, is its IPv4 address.

Result order is stable: for a name, the exact rules first, then the wildcard rules from
the nearest base outward; for an address, the longest prefix first; rules with the same
pattern or network in compile order. Results are tuples shared between queries (callers
cannot change them), precomputed at compile time so that a query stops at its first hit.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from takedown import names
from takedown.errors import PatternError
from takedown.match.answers import exact_answers, ip_chains, suffix_answers
from takedown.match.host_patterns import labels as _labels
from takedown.match.host_patterns import odd_char as _odd_char
from takedown.match.host_patterns import plain_bases, psl_rules, split_fast
from takedown.match.host_patterns import plain_host as _plain_host
from takedown.perf import no_cycle_collection

K = TypeVar("K")

Address = str | ipaddress.IPv4Address | ipaddress.IPv6Address

# Default breadth limits: shorter prefixes are refused at compile time. A /8 is 16.7M
# addresses, a /32 of IPv6 a whole ISP allocation; anything broader cannot name a target.
MIN_PREFIX_V4 = 8
MIN_PREFIX_V6 = 32

_MAX_NAME = names.MAX_NAME
_AF_INET = socket.AF_INET
_AF_INET6 = socket.AF_INET6


_MAPPED_PREFIX = 0xFFFF  # the high 96 bits of ::ffff:0:0/96
_V4_ALL = (1 << 32) - 1
_V6_ALL = (1 << 128) - 1


@dataclass(frozen=True, slots=True)
class IPRule:
    """A canonical IP rule: version, network integer, prefix length."""

    version: int  # 4 or 6
    value: int  # network address as an integer (host bits zero)
    prefixlen: int

    @property
    def network(self) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
        if self.version == 4:
            return ipaddress.IPv4Network((self.value, self.prefixlen))
        return ipaddress.IPv6Network((self.value, self.prefixlen))

    @property
    def num_addresses(self) -> int:
        return 1 << ((32 if self.version == 4 else 128) - self.prefixlen)

    def __str__(self) -> str:
        return str(self.network)


def parse_ip_rule(
    text: str, *, min_prefix_v4: int = MIN_PREFIX_V4, min_prefix_v6: int = MIN_PREFIX_V6
) -> IPRule:
    """Parse an address or CIDR prefix into a canonical IPRule.

    Raises PatternError for malformed text, host bits set, or a prefix broader than the
    limits (``min_prefix_v4`` / ``min_prefix_v6``; pass 0 to allow any).
    """
    rule = _parse_ip_rule(text)
    limit = min_prefix_v4 if rule.version == 4 else min_prefix_v6
    if rule.prefixlen < limit:
        raise PatternError(
            f"IP rule {text!r} covers {rule.num_addresses} addresses (/{rule.prefixlen}); "
            f"refusing a rule broader than /{limit}"
        )
    return rule


def _parse_ip_rule(text: str) -> IPRule:
    if type(text) is not str:
        raise PatternError(f"IP rule must be text, not {type(text).__name__}")
    addr, slash, plen_text = text.partition("/")
    try:
        packed = socket.inet_pton(socket.AF_INET, addr)
        version, bits = 4, 32
    except (OSError, ValueError):
        try:
            packed = socket.inet_pton(socket.AF_INET6, addr)
            version, bits = 6, 128
        except (OSError, ValueError):
            packed = b""
            version = bits = 0
    if packed and (not slash or (plen_text.isdecimal() and plen_text.isascii())):
        value = int.from_bytes(packed, "big")
        plen = int(plen_text) if slash else bits
        if plen <= bits and str(plen) == (plen_text if slash else str(bits)):
            if value & ((1 << (bits - plen)) - 1):
                raise PatternError(f"IP rule {text!r} has host bits set")
            return _unmap(version, value, plen)
    # Anything unusual (netmask notation, leading zeros in the length) gets ipaddress's view.
    try:
        net = ipaddress.ip_network(text.strip(), strict=True)
    except ValueError as exc:
        if "host bits set" in str(exc):
            raise PatternError(f"IP rule {text!r} has host bits set") from None
        raise PatternError(f"invalid IP rule {text!r}: {exc}") from None
    return _unmap(net.version, int(net.network_address), net.prefixlen)


def _unmap(version: int, value: int, plen: int) -> IPRule:
    if version == 6 and plen >= 96 and value >> 32 == _MAPPED_PREFIX:
        return IPRule(4, value & _V4_ALL, plen - 96)
    return IPRule(version, value, plen)


def address_key(addr: object) -> tuple[int, int] | None:
    """(version, integer) of a query address, IPv4-mapped IPv6 as IPv4; None if invalid."""
    if type(addr) is str:
        try:
            return 4, int.from_bytes(socket.inet_pton(socket.AF_INET, addr), "big")
        except (OSError, ValueError):
            pass
        try:
            value = int.from_bytes(socket.inet_pton(socket.AF_INET6, addr), "big")
        except (OSError, ValueError):
            try:
                parsed = ipaddress.ip_address(addr)
            except ValueError:
                return None
            return address_key(parsed)
    elif isinstance(addr, ipaddress.IPv4Address):
        return 4, int(addr)
    elif isinstance(addr, ipaddress.IPv6Address):
        value = int(addr)
    else:
        return None
    if value >> 32 == _MAPPED_PREFIX:
        return 4, value & _V4_ALL
    return 6, value


def normalised_query(name: object) -> str | None:
    """The normal form of a query name, or None if it is not a valid host name."""
    if type(name) is not str:
        return None
    if _plain_host(name):
        return name
    try:
        return names.normalise_host(name)
    except PatternError:
        return None


# Labels seen before a wildcard suffix in queries and found plain: a query's labels below
# a listed domain are few (www, pbs, api...), and one set lookup is cheaper than checking
# them again. Emptied when full, as names._HOSTS.
_PLAIN_PREFIXES: set[str] = set()


def _is_plain_prefix(prefix: str) -> bool:
    """True if ``prefix`` is one or more plain lower-case labels (remembered if so)."""
    if (len(prefix) < 64 and prefix.isalnum() and prefix.isascii() and prefix.islower()) or _labels(
        prefix
    ) is not None:
        if len(_PLAIN_PREFIXES) >= 4096:
            _PLAIN_PREFIXES.clear()
        _PLAIN_PREFIXES.add(prefix)
        return True
    return False


class Matcher(Generic[K]):
    """Host patterns and IP rules compiled for lookup; each rule carries a key of type K.

    Every result is precomputed at compile time, so a query stops at its first hit: the
    whole name's entry holds its exact rules and every wildcard above it, a wildcard
    base's entry its own rules and every wildcard above it, and an IP slot its rules and
    every shorter prefix covering it. Results are shared immutable tuples.
    """

    __slots__ = (
        "_chain",
        "_exact",
        "_full",
        "_n_host",
        "_n_ip",
        "_v4",
        "_v4q",
        "_v6",
        "_v6q",
        "_wild",
    )  # fmt: skip

    def __init__(self) -> None:
        # as compiled, for explain_* and *_rules: base -> keys in compile order
        self._exact: dict[str, tuple[K, ...]] = {}
        self._wild: dict[str, tuple[K, ...]] = {}
        # for queries: exact name -> the whole answer; wildcard base -> the answer for
        # any name below it whose longer suffixes are no wildcard base
        self._full: dict[str, tuple[K, ...]] = {}
        self._chain: dict[str, tuple[K, ...]] = {}
        # (prefix length, shift, {network >> shift: keys}), longest prefix first
        self._v4: list[tuple[int, int, dict[int, list[K]]]] = []
        self._v6: list[tuple[int, int, dict[int, list[K]]]] = []
        # for queries: (shift, {network >> shift: the whole answer}), longest first
        self._v4q: list[tuple[int, dict[int, tuple[K, ...]]]] = []
        self._v6q: list[tuple[int, dict[int, tuple[K, ...]]]] = []
        self._n_host = 0
        self._n_ip = 0

    @classmethod
    @no_cycle_collection()
    def compile(
        cls,
        host_rules: Iterable[tuple[str, K]] = (),
        ip_rules: Iterable[tuple[str, K]] = (),
        *,
        min_prefix_v4: int = MIN_PREFIX_V4,
        min_prefix_v6: int = MIN_PREFIX_V6,
    ) -> Matcher[K]:
        """Compile (pattern, key) pairs. Raises PatternError naming the offending rule.
        Each step keeps its per-rule loop inline (no call per rule: bench match)."""
        m: Matcher[K] = cls()
        m._add_host_rules(host_rules)
        m._add_ip_rules(ip_rules, min_prefix_v4, min_prefix_v6)
        return m

    def _add_host_rules(self, host_rules: Iterable[tuple[str, K]]) -> None:
        """Host rules into the exact and wildcard tables (base -> keys), then the answers:
        each exact name's and each wildcard suffix's keys with those of the wildcards above."""
        rules = host_rules if type(host_rules) is list else list(host_rules)
        exact, wild = self._exact, self._wild
        bases = plain_bases(rules)
        if bases is not None:  # the usual case: a feed's patterns are canonical
            # an exact rule's own pattern string is its key (no copy of it)
            exact.update({p: (k,) for p, k in rules if p[0] != "*"})
            wild.update({b: (k,) for b, (p, k) in zip(bases, rules, strict=True) if p[0] == "*"})
            if len(exact) + len(wild) < len(rules):  # repeated patterns: keys in order
                exact.clear()
                wild.clear()
                for base, (pattern, key) in zip(bases, rules, strict=True):
                    table = wild if pattern[0] == "*" else exact
                    keys = table.get(base)
                    table[base] = (key,) if keys is None else (*keys, key)
        else:
            psl = psl_rules()
            for n, (pattern, key) in enumerate(rules):
                try:
                    base, wildcard = split_fast(pattern, psl)
                except PatternError as exc:
                    where = f"host rule {n + 1} ({pattern!r})"
                    raise PatternError(exc.message, where=where) from None
                table = wild if wildcard else exact
                keys = table.get(base)
                table[base] = (key,) if keys is None else (*keys, key)
        self._n_host = len(rules)
        suffixes = suffix_answers(wild)
        self._full = exact_answers(exact, suffixes)
        # a query walks from its longest suffix and stops at the first wildcard base
        self._chain = {base: suffixes[base] for base in wild}

    def _add_ip_rules(self, ip_rules: Iterable[tuple[str, K]], min_v4: int, min_v6: int) -> None:
        """IP rules into per-prefix-length tables, longest first, and the query chains."""
        v4: dict[int, dict[int, list[K]]] = {}
        v6: dict[int, dict[int, list[K]]] = {}
        pton, from_bytes = socket.inet_pton, int.from_bytes
        n = -1
        for n, (text, key) in enumerate(ip_rules):
            # The common case inline (a plain address or address/length, not IPv4-mapped,
            # within the limits); anything else, errors included, goes to parse_ip_rule.
            by_len = None
            if type(text) is str:
                addr, slash, plen_text = text.partition("/")
                try:
                    if ":" in addr:
                        value, bits, by_len = from_bytes(pton(_AF_INET6, addr), "big"), 128, v6
                        limit = min_v6
                    else:
                        value, bits, by_len = from_bytes(pton(_AF_INET, addr), "big"), 32, v4
                        limit = min_v4
                except (OSError, ValueError):
                    by_len = None
                if by_len is not None:
                    if not slash:
                        plen = bits
                    elif plen_text.isascii() and plen_text.isdecimal() and plen_text[0] != "0":
                        plen = int(plen_text)
                    else:
                        plen = -1
                    if (
                        not limit <= plen <= bits
                        or value & ((1 << (bits - plen)) - 1)
                        or (bits == 128 and plen >= 96 and value >> 32 == _MAPPED_PREFIX)
                    ):
                        by_len = None
            if by_len is None:
                try:
                    rule = parse_ip_rule(text, min_prefix_v4=min_v4, min_prefix_v6=min_v6)
                except PatternError as exc:
                    raise PatternError(exc.message, where=f"IP rule {n + 1} ({text!r})") from None
                bits, by_len = (32, v4) if rule.version == 4 else (128, v6)
                value, plen = rule.value, rule.prefixlen
            table = by_len.get(plen)
            if table is None:
                table = by_len[plen] = {}
            slot = value >> (bits - plen)
            keys = table.get(slot)
            if keys is None:
                table[slot] = [key]
            else:
                keys.append(key)
        self._n_ip = n + 1
        self._v4 = [(p, 32 - p, v4[p]) for p in sorted(v4, reverse=True)]
        self._v6 = [(p, 128 - p, v6[p]) for p in sorted(v6, reverse=True)]
        self._v4q = ip_chains(self._v4)
        self._v6q = ip_chains(self._v6)

    def __len__(self) -> int:
        """The number of rules compiled (host and IP)."""
        return self._n_host + self._n_ip

    # -- host names ---------------------------------------------------------------------
    #
    # A name is looked up as given, and normalised only when that could be wrong: a name
    # found whole equals a compiled (normal-form) name; a name with a wildcard hit is in
    # normal form if the labels before the hit are plain and no label is IDNA; a name with
    # no hit, lower-case ASCII letters, digits, '.', '-' and '_' only and no trailing dot,
    # is one that normalising either leaves as it is or refuses. ``match_hosts`` repeats
    # ``match_host``'s body inline (a call per name is a fair share of the cost).

    def match_host(self, name: str) -> Sequence[K]:
        """Keys of every host rule matching ``name`` (a shared tuple); () if none or invalid."""
        try:
            found = self._full.get(name)
            if found is not None:
                return found
            chains = self._chain
            i = name.find(".")
            j = name.find(".", i + 1)
            while j >= 0:
                found = chains.get(name[i + 1 :])
                if found is not None:
                    if len(name) <= _MAX_NAME and "xn--" not in name:
                        prefix = name[:i]
                        if prefix in _PLAIN_PREFIXES or _is_plain_prefix(prefix):
                            return found
                    break
                i = j
                j = name.find(".", i + 1)
            else:
                # i is the last dot: a trailing one means the name is not in normal form
                if i != len(name) - 1 and _odd_char(name) is None:
                    return ()
        except (TypeError, AttributeError):  # not a string
            return ()
        return self._match_slow(name)

    def _match_normal(self, name: str) -> tuple[K, ...]:
        found = self._full.get(name)
        if found is not None:
            return found
        get = self._chain.get
        i = name.find(".")
        j = name.find(".", i + 1)
        while j >= 0:
            found = get(name[i + 1 :])
            if found is not None:
                return found
            i = j
            j = name.find(".", i + 1)
        return ()

    def match_hosts(self, names_: Iterable[str]) -> list[Sequence[K]]:
        """``match_host`` for each name, in order."""
        full_get = self._full.get
        chains_get = self._chain.get
        plain, is_plain = _PLAIN_PREFIXES, _is_plain_prefix
        odd_char = _odd_char
        max_name = _MAX_NAME
        slow = self._match_slow
        out: list[Sequence[K]] = []
        append = out.append
        for name in names_:
            try:
                found = full_get(name)
                if found is not None:
                    append(found)
                    continue
                i = name.find(".")
                j = name.find(".", i + 1)
                while j >= 0:
                    found = chains_get(name[i + 1 :])
                    if found is not None:
                        if len(name) <= max_name and "xn--" not in name:
                            prefix = name[:i]
                            if prefix in plain or is_plain(prefix):
                                break
                        found = None
                        break
                    i = j
                    j = name.find(".", i + 1)
                else:
                    if i != len(name) - 1 and odd_char(name) is None:
                        found = ()
            except (TypeError, AttributeError):  # not a string
                found = ()
            append(slow(name) if found is None else found)
        return out

    def _match_slow(self, name: str) -> Sequence[K]:
        if type(name) is str and name.isascii():
            # normalising ASCII lower-cases it and drops one trailing dot, so the name
            # without them has the same answer and may take the fast path
            host = name.lower()
            if host.endswith(".") and not host.endswith(".."):
                host = host[:-1]
            if host != name:
                return self.match_host(host)
        host = normalised_query(name)
        return () if host is None else self._match_normal(host)

    def explain_host(self, name: str) -> list[tuple[str, K]]:
        """(pattern, key) for every host rule matching ``name``, in ``match_host`` order."""
        host = normalised_query(name)
        if host is None:
            return []
        out = [(host, k) for k in self._exact.get(host, ())]
        labels = host.split(".")
        for i in range(1, len(labels) - 1):
            base = ".".join(labels[i:])
            out.extend(("*." + base, k) for k in self._wild.get(base, ()))
        return out

    # -- addresses ----------------------------------------------------------------------
    #
    # Text is parsed with inet_pton (what ipaddress accepts and more is refused there too);
    # anything it refuses, and address objects, get ``address_key``'s full treatment.

    def match_ip(self, addr: Address) -> Sequence[K]:
        """Keys of every IP rule covering ``addr`` (a shared tuple); () if none or invalid."""
        if type(addr) is str:
            try:
                if ":" in addr:
                    value = int.from_bytes(socket.inet_pton(_AF_INET6, addr), "big")
                    if value >> 32 == _MAPPED_PREFIX:
                        value &= _V4_ALL
                        tables = self._v4q
                    else:
                        tables = self._v6q
                else:
                    value = int.from_bytes(socket.inet_pton(_AF_INET, addr), "big")
                    tables = self._v4q
            except (OSError, ValueError):
                return self._match_ip_slow(addr)
            for shift, table in tables:
                found = table.get(value >> shift)
                if found is not None:
                    return found
            return ()
        return self._match_ip_slow(addr)

    def _match_ip_slow(self, addr: object) -> tuple[K, ...]:
        key = address_key(addr)
        if key is None:
            return ()
        version, value = key
        for shift, table in self._v4q if version == 4 else self._v6q:
            found = table.get(value >> shift)
            if found is not None:
                return found
        return ()

    def match_ips(self, addrs: Iterable[Address]) -> list[Sequence[K]]:
        """``match_ip`` for each address, in order (its body inline, as ``match_hosts``)."""
        pton = socket.inet_pton
        from_bytes = int.from_bytes
        v4q, v6q = self._v4q, self._v6q
        slow = self._match_ip_slow
        mapped, v4_all = _MAPPED_PREFIX, _V4_ALL
        af4, af6 = _AF_INET, _AF_INET6
        out: list[Sequence[K]] = []
        append = out.append
        for addr in addrs:
            if type(addr) is not str:
                append(slow(addr))
                continue
            try:
                if ":" in addr:
                    value = from_bytes(pton(af6, addr), "big")
                    if value >> 32 == mapped:
                        value &= v4_all
                        tables = v4q
                    else:
                        tables = v6q
                else:
                    value = from_bytes(pton(af4, addr), "big")
                    tables = v4q
            except (OSError, ValueError):
                append(slow(addr))
                continue
            for shift, table in tables:
                found = table.get(value >> shift)
                if found is not None:
                    append(found)
                    break
            else:
                append(())
        return out

    def explain_ip(self, addr: Address) -> list[tuple[IPRule, K]]:
        """(rule, key) for every IP rule covering ``addr``, in ``match_ip`` order."""
        found = address_key(addr)
        if found is None:
            return []
        version, value = found
        out: list[tuple[IPRule, K]] = []
        for plen, shift, table in self._v4 if version == 4 else self._v6:
            slot = value >> shift
            rule = IPRule(version, slot << shift, plen)
            out.extend((rule, k) for k in table.get(slot, ()))
        return out

    # -- introspection ------------------------------------------------------------------

    def host_rules(self) -> Iterator[tuple[str, K]]:
        """Every compiled host rule as (normalised pattern, key)."""
        for base, keys in self._exact.items():
            for k in keys:
                yield base, k
        for base, keys in self._wild.items():
            for k in keys:
                yield "*." + base, k

    def ip_rules(self) -> Iterator[tuple[IPRule, K]]:
        """Every compiled IP rule as (canonical rule, key); ``rule.prefixlen`` for guards."""
        for version, tables in ((4, self._v4), (6, self._v6)):
            for plen, shift, table in tables:
                for slot, keys in table.items():
                    rule = IPRule(version, slot << shift, plen)
                    for k in keys:
                        yield rule, k
