"""A sharded directive set indexed for lookups, updated in place bin by bin.

The point does not hold a million ``Directive`` objects: it holds each bin's verified
bytes (``BinnedSet.raw``) and three compact tables from rule to bin: exact host → bin,
wildcard base → bin, and per prefix length, network → bin (a value is a bin number, or a
tuple of them when rules of several bins share a key). A lookup probes the name and each
of its suffixes (one dict probe each) or each prefix length of the address, then asks the
few bins it found; a bin is decoded and compiled into an ``Index`` on first use and kept
in a small LRU cache.

An update replaces the rules of the bins whose bytes changed (compared by identity: the
client shares unchanged bins' bytes between sets), nothing else.
"""

from __future__ import annotations

import json
import logging
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from socket import AF_INET, AF_INET6, inet_pton
from typing import Any

from takedown.enforce.decide import Hit, Index, InForce, compile_index
from takedown.errors import InputError
from takedown.feed.binned_set import BinnedSet
from takedown.match.matcher import address_key, normalised_query
from takedown.model import Directive

_log = logging.getLogger(__name__)
_MAPPED = 0xFFFF  # the top of an IPv4-mapped IPv6 address, shifted down 32 bits
_V4_ALL = (1 << 32) - 1
from_bytes = int.from_bytes
CACHED_BINS = 1024

BinRef = int | tuple[int, ...]


def _add(table: dict[Any, BinRef], key: Any, i: int) -> None:
    had = table.get(key)
    if had is None:
        table[key] = i
    elif type(had) is int:
        if had != i:
            table[key] = (had, i)
    elif i not in had:
        table[key] = (*had, i)


def _remove(table: dict[Any, BinRef], key: Any, i: int) -> None:
    had = table.get(key)
    if had is None:
        return
    if type(had) is int:
        if had == i:
            del table[key]
        return
    rest = tuple(b for b in had if b != i)
    table[key] = rest[0] if len(rest) == 1 else rest


def _rules(data: bytes) -> tuple[list[str], list[str]]:
    """The host patterns and IP ranges of a verified bin, without building directives."""
    hosts: list[str] = []
    ips: list[str] = []
    for row in json.loads(data)["directives"]:
        hosts.extend(pattern for pattern, _cls in row[2])
        ips.extend(row[3])
    return hosts, ips


@dataclass(frozen=True, slots=True)
class _Counted:
    """Directives of a BinnedSet for ``len()`` (the server logs the size)."""

    n: int

    def __len__(self) -> int:
        return self.n


class BinnedIndex:
    """The index of a ``BinnedSet``: lookups like ``Index``, updates bin by bin."""

    def __init__(self, bset: BinnedSet) -> None:
        self.bits = bset.bits
        self._ints = list(range(1 << bset.bits))  # one int object per bin, shared
        self._exact: dict[str, BinRef] = {}
        self._wild: dict[str, BinRef] = {}
        self._v4: dict[int, dict[int, BinRef]] = {}  # prefix length -> network >> shift -> bin
        self._v6: dict[int, dict[int, BinRef]] = {}
        self._v4_lens: list[int] = []
        self._v6_lens: list[int] = []
        self._cache: OrderedDict[int, Index] = OrderedDict()
        self.refused_bins: dict[int, str] = {}  # bin -> why its first decoding failed
        self._set = BinnedSet(bset.sequence, bset.generated_at, bset.bits)
        self.update(bset)

    # the Index interface used by decide() and the server

    @property
    def sequence(self) -> int:
        return self._set.sequence

    @property
    def generated_at(self) -> datetime | None:
        return self._set.generated_at

    @property
    def directives(self) -> _Counted:
        return _Counted(len(self._set))

    def in_force(self, now: datetime) -> InForce:
        """Which validity windows are open at ``now`` and how many directives they hold."""
        open_ = frozenset(
            w for w in self._set.windows if (w[0] is None or w[0] <= now) and now < w[1]
        )
        return InForce(open_, sum(self._set.windows[w] for w in open_))

    def host_hits(self, name: str) -> list[Hit]:
        """(directive, content class, rule) of every host rule matching ``name``."""
        host = normalised_query(name)
        if host is None:
            return []
        found: list[int] = []
        _extend(found, self._exact.get(host))
        wild = self._wild
        i = host.find(".")
        while i >= 0:
            _extend(found, wild.get(host[i + 1 :]))
            i = host.find(".", i + 1)
        out: list[Hit] = []
        for b in found:
            out.extend(self._bin_index(b).host_hits(host))
        return out

    def ip_hits(self, addr: str) -> list[Hit]:
        """(directive, content class, rule) of every IP rule covering ``addr``."""
        key = address_key(addr)
        if key is None:
            return []
        version, value = key
        bits, tables, lens = (32, self._v4, self._v4_lens) if version == 4 else (
            128, self._v6, self._v6_lens)  # fmt: skip
        found: list[int] = []
        for plen in lens:
            _extend(found, tables[plen].get(value >> (bits - plen)))
        out: list[Hit] = []
        for b in found:
            out.extend(self._bin_index(b).ip_hits(addr))
        return out

    def bin_directives(self, i: int) -> tuple[Directive, ...]:
        return self._bin_index(i).directives

    # updates

    def accepts(self, bset: BinnedSet) -> bool:
        """True if ``bset`` can be applied in place (same bin width)."""
        return bset.bits == self.bits

    def update(self, bset: BinnedSet) -> list[int]:
        """Make this the index of ``bset``: replace the rules of the bins whose bytes
        changed; return those bins. Decodes first, then changes the tables (no half
        update if a bin fails to decode)."""
        old = self._set.raw
        new = bset.raw
        changed = [i for i in old.keys() | new.keys() if old.get(i) is not new.get(i)]
        pending = bset.rules  # what the scan of a fetched bin collected: no second parse
        removed = {i: _rules(old[i]) for i in changed if i in old}
        added = {i: pending.pop(i, None) or _rules(new[i]) for i in changed if i in new}
        for i, (hosts, ips) in removed.items():
            self._apply(hosts, ips, i, _remove)
        for i, (hosts, ips) in added.items():
            self._apply(hosts, ips, self._ints[i], _add)
        for i in changed:
            self._cache.pop(i, None)
            self.refused_bins.pop(i, None)
        self._v4_lens = sorted((p for p, t in self._v4.items() if t), reverse=True)
        self._v6_lens = sorted((p for p, t in self._v6.items() if t), reverse=True)
        self._set = bset
        return changed

    def _apply(self, hosts: list[str], ips: list[str], i: int, op: Any) -> None:
        exact, wild, v4, v6 = self._exact, self._wild, self._v4, self._v6
        adding = op is _add
        for text in hosts:
            table, key = (wild, text[2:]) if text.startswith("*.") else (exact, text)
            # adding, the common case is a key no other bin has: one call, no function
            if not adding or table.setdefault(key, i) is not i:
                op(table, key, i)
        for text in ips:
            addr, _, plen_text = text.partition("/")
            try:
                if ":" in addr:
                    version, value = 6, from_bytes(inet_pton(AF_INET6, addr), "big")
                    if value >> 32 == _MAPPED:
                        version, value = 4, value & _V4_ALL
                else:
                    version, value = 4, from_bytes(inet_pton(AF_INET, addr), "big")
            except OSError:
                key = address_key(addr)  # the forms inet_pton does not take
                if key is None:
                    continue  # not an address: refused when the bin is first decoded
                version, value = key
            bits = 32 if version == 4 else 128
            plen = int(plen_text) if plen_text.isdigit() else bits
            if version == 4 and ":" in addr:
                plen -= 96  # an IPv4-mapped prefix is its IPv4 prefix
            if not 0 <= plen <= bits:
                continue  # refused when the bin is first decoded
            tables = v4 if version == 4 else v6
            table = tables.get(plen)
            if table is None:
                table = tables[plen] = {}
            key = value >> (bits - plen)
            if not adding or table.setdefault(key, i) is not i:
                op(table, key, i)

    def _bin_index(self, i: int) -> Index:
        index = self._cache.get(i)
        if index is None:
            try:
                index = compile_index(self._set.bin(i))
            except InputError as exc:
                # verified by TUF and scanned, yet a field fails its check (a publisher
                # bug): none of the bin's directives is applied; said in logs and metrics
                if i not in self.refused_bins:
                    _log.error("bin %d of sequence %d refused: %s", i, self.sequence, exc)
                self.refused_bins[i] = str(exc)
                index = compile_index(())
            self._cache[i] = index
            if len(self._cache) > CACHED_BINS:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(i)
        return index


def _extend(found: list[int], ref: BinRef | None) -> None:
    if ref is None:
        return
    if type(ref) is int:
        if ref not in found:
            found.append(ref)
        return
    for b in ref:
        if b not in found:
            found.append(b)
