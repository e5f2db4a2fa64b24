"""A sharded directive set as a client holds it: each bin's verified bytes.

A fetched bin is verified by python-tuf (its length and sha256 are the ones its signed bin
role lists) and then *scanned* (``scan_bin``): one pass that checks its structure, counts
its directives per validity window and collects its host patterns and IP ranges for the
point's index. The per-field checks of ``loads_bin`` (host patterns, canonical ranges, ids,
decisions, bin membership; the publisher ran them before signing) run when a bin is first
decoded (``bin``): at a million directives they are ~7 s of CPU a cold load need not pay.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

from takedown.errors import InputError
from takedown.feed.bins import (
    BIN_FORMAT,
    PROFILE_FIELDS,
    Manifest,
    check_format,
    check_row,
    dumps_bin,
    load_json,
    load_profile,
    loads_bin,
    split,
)
from takedown.model import Directive, DirectiveSet


class ScannedBin(NamedTuple):
    """A verified bin's bytes, its directives per validity window, its rules' texts."""

    data: bytes
    windows: Counter[tuple[Any, Any]]
    hosts: list[str]
    ips: list[str]


def scan_bin(data: bytes, i: int, bits: int) -> ScannedBin:
    """Check bin ``i``'s structure and profiles (InputError naming the field, UnknownFormat);
    count its directives per window; collect its host patterns and IP ranges."""
    where = f"bin {i}"
    doc = load_json(data, where)
    check_format(doc, where)
    if set(doc) != {"format", "bin", "bits", "profiles", "directives"}:
        raise InputError(f"unexpected fields {sorted(doc)}", where=where)
    if doc["bin"] != i or doc["bits"] != bits:
        raise InputError(
            f"holds bin {doc['bin']!r}/{doc['bits']!r} bits, not {i}/{bits}", where=where
        )
    if type(doc["profiles"]) is not list or type(doc["directives"]) is not list:
        raise InputError("profiles and directives are lists", where=where)
    profiles = [
        _checked_profile(p, f"{where}.profiles[{k}]") for k, p in enumerate(doc["profiles"])
    ]
    n_profiles = len(profiles)
    per_profile = [0] * n_profiles
    hosts: list[str] = []
    ips: list[str] = []
    add_host, add_ips = hosts.append, ips.extend
    last = ""
    for k, row in enumerate(doc["directives"]):
        ok = type(row) is list and len(row) == 5
        if ok:
            ident, p, row_hosts, row_ips, decisions = row
            ok = (type(ident) is str and ident > last and type(p) is int
                  and 0 <= p < n_profiles and type(row_hosts) is list and type(row_ips) is list
                  and type(decisions) is list and bool(row_hosts or row_ips))  # fmt: skip
        if ok:
            for h in row_hosts:
                if type(h) is not list or len(h) != 2 or type(h[0]) is not str:
                    ok = False
                    break
                add_host(h[0])
            for t in row_ips:
                if type(t) is not str:
                    ok = False
        if not ok:
            check_row(row, f"{where}.directives[{k}]", last, n_profiles, i, bits)
            raise InputError("invalid directive", where=f"{where}.directives[{k}]")
        add_ips(row_ips)
        per_profile[p] += 1
        last = ident
    windows: Counter[tuple[Any, Any]] = Counter()
    for p, n in enumerate(per_profile):
        if n:
            windows[(profiles[p]["valid_from"], profiles[p]["expires"])] += n
    return ScannedBin(data, windows, hosts, ips)


# profiles already checked, by their values *and* the types of those that may be numbers
# (1, 1.0 and True are equal keys): a million directives share a few hundred profiles
_PROFILES: dict[tuple[Any, ...], dict[str, Any]] = {}
_PROFILES_MAX = 4096
_PROFILE_KEYS = frozenset(PROFILE_FIELDS)
_TIMES: dict[str, datetime] = {}


def _checked_profile(p: Any, where: str) -> dict[str, Any]:
    """``load_profile``, remembered for a profile seen (and found good) before."""
    key: tuple[Any, ...] | None = None
    if type(p) is dict and p.keys() == _PROFILE_KEYS and type(p["scope"]) is dict:
        rate, measure = p.get("rate_kbps"), p.get("measure_id")
        scope = tuple([(k, type(v), v) for k, v in p["scope"].items()])
        key = (p.get("action"), type(rate), rate, scope, p.get("valid_from"), p.get("expires"),
               type(measure), measure, p.get("reference_url"))  # fmt: skip
        try:
            found = _PROFILES.get(key)
        except TypeError:  # an unhashable value: not a good profile, let the check say so
            found = key = None
        if found is not None:
            return found
    if len(_TIMES) > _PROFILES_MAX:
        _TIMES.clear()
    profile = load_profile(p, where, _TIMES)
    if key is not None:
        if len(_PROFILES) >= _PROFILES_MAX:
            _PROFILES.clear()
        _PROFILES[key] = profile
    return profile


def _windows(directives: Iterable[Directive]) -> Counter[tuple[Any, Any]]:
    return Counter((d.valid_from, d.expires) for d in directives)


@dataclass
class BinnedSet:
    """A sharded set as a point holds it: each bin's verified bytes, decoded on demand.

    ``changed``: the bins the last update replaced (every bin at a cold load), so an index
    can replace only their rules. ``windows``: directive count per (valid_from, expires),
    so "how many are in force now" needs no decoding.
    """

    sequence: int
    generated_at: datetime
    bits: int
    raw: dict[int, bytes] = field(default_factory=dict)
    changed: frozenset[int] = frozenset()
    windows: Counter[tuple[Any, Any]] = field(default_factory=Counter)
    bin_windows: dict[int, Counter[tuple[Any, Any]]] = field(default_factory=dict)
    schema_version: int = BIN_FORMAT
    # the changed bins' (host patterns, IP ranges) from their scan, until an index takes them
    rules: dict[int, tuple[list[str], list[str]]] = field(default_factory=dict)

    def bin(self, i: int) -> tuple[Directive, ...]:
        """The directives of bin ``i`` (decoded from its verified bytes)."""
        data = self.raw.get(i)
        return () if data is None else loads_bin(data, i, self.bits)

    def iter_directives(self) -> Iterator[Directive]:
        for i in sorted(self.raw):
            yield from self.bin(i)

    @property
    def directives(self) -> tuple[Directive, ...]:
        """Every directive (decodes every bin: for small sets and for ``feed pull``)."""
        return tuple(sorted(self.iter_directives(), key=lambda d: d.id))

    def __len__(self) -> int:
        return sum(self.windows.values())

    def updated(
        self,
        manifest: Manifest,
        bins: Mapping[int, ScannedBin | tuple[bytes, Counter[tuple[Any, Any]]] | None],
    ) -> BinnedSet:
        """A new set: these bins (bytes, directive count per validity window, from a scan
        also their rules) replaced (None: now empty), the others shared."""
        raw = dict(self.raw)
        windows = Counter(self.windows)
        bin_windows = dict(self.bin_windows)
        for i, new in bins.items():
            old = bin_windows.pop(i, None)
            if old:
                windows.subtract(old)
            raw.pop(i, None)
            if new is not None and new[1]:
                raw[i] = new[0]
                bin_windows[i] = new[1]
                windows.update(new[1])
        windows = Counter({k: v for k, v in windows.items() if v > 0})
        rules = {
            i: (new.hosts, new.ips)
            for i, new in bins.items()
            if isinstance(new, ScannedBin) and i in raw
        }
        return BinnedSet(
            manifest.sequence,
            manifest.generated_at,
            manifest.bits,
            raw,
            frozenset(bins),
            windows,
            bin_windows,
            rules=rules,
        )

    @classmethod
    def from_set(cls, ds: DirectiveSet, bits: int) -> BinnedSet:
        """``ds`` held as bins (what a client holds after fetching it whole)."""
        manifest = Manifest(ds.sequence, ds.generated_at, bits, len(ds.directives))
        bins = {}
        for i, group in split(ds.directives, bits).items():
            bins[i] = (dumps_bin(i, bits, group), _windows(group))
        return cls(ds.sequence, ds.generated_at, bits).updated(manifest, bins)

    def to_directive_set(self) -> DirectiveSet:
        """The same set as format 1 (``directives.dumps`` writes it)."""
        return DirectiveSet(1, self.sequence, self.generated_at, self.directives)
