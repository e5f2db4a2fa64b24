"""The sharded directive set (wire format 2): directives split into hash bins.

Each directive belongs to one bin, chosen by a stable hash of its *bin key*: its first host
pattern's base (``*.twimg.com`` → ``twimg.com``), or its first IP range when it has no
host. ``bin_of(key, bits)`` is the top ``bits`` bits of ``sha256(key)``. A bin is one
signed TUF target (``bin_target_names``); TUF hashed-bin delegation (python-tuf
``SuccinctRoles``) gives ``2**(bits - 4)`` delegated roles ``bin-XXX``, each listing 16
bins: a publication re-signs only the roles whose bins changed, and a client fetches only
the changed bins (and their roles' metadata). See docs/feed-format.md.

Bin file (format 2, canonical JSON: sorted keys, no whitespace, directives sorted by id)::

    {"bin":12,"bits":14,"format":2,
     "profiles":[{"action":"block","expires":"2021-05-15T00:00:00Z","measure_id":7,
                  "rate_kbps":null,"reference_url":null,"scope":{"*":100.0},
                  "valid_from":"2021-03-10T00:00:00Z"}],
     "directives":[["item-1",0,[["host1.example.org","any"]],["192.0.2.1"],["D-1"]]]}

A directive row is ``[id, profile, hosts, ip_ranges, decisions]``: the fields a measure's
directives share (action, rate, scope, validity, measure, reference) are written once per
bin as a *profile*. The set's manifest (``set.json``, a top-level target) names the format,
the bin width, the sequence and the size::

    {"bits":14,"directives":1000000,"format":2,"generated_at":"...Z","sequence":7}

A client refuses a manifest or bin whose ``format`` it does not know (``UnknownFormat``)
and keeps its last good set. Everything else is checked as strictly as format 1
(``directives.loads``): the same host and IP checks, the same error naming the field.
"""

from __future__ import annotations

import functools
import hashlib
import json
import operator
import re
import socket
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from takedown.errors import InputError
from takedown.feed.directives import _parse_time, format_time
from takedown.match.host_patterns import psl_rules as _psl_rules
from takedown.match.matcher import MIN_PREFIX_V6
from takedown.match.rules import _FAST_PATTERN, host_pattern_problem, ip_range_problem
from takedown.model import Directive, DirectiveSet, HostRule, MeasureAction
from takedown.names import MAX_NAME

BIN_FORMAT = 2
MANIFEST_NAME = "set.json"
BIN_ROLE_PREFIX = "bin"
DEFAULT_BITS = 14  # 16,384 bins: at 1M directives ~60 a bin; 100 changes touch < 1%
FILES_PER_ROLE_BITS = 4  # 16 bin files per delegated role

_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}").fullmatch
_TOKEN_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}").fullmatch
_SCOPE_RE = re.compile(r"\*|[a-z0-9][a-z0-9_-]{0,31}").fullmatch
_TIME_RE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z").fullmatch
_URL_RE = re.compile(r"https?://[^\s]+").fullmatch


_PSL = _psl_rules()


class UnknownFormat(InputError):
    """A manifest or bin in a format this version of takedown does not know."""


# --- bins -------------------------------------------------------------------------------


def bin_of(key: str, bits: int) -> int:
    """The bin of a bin key: the top ``bits`` bits of its sha256."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "big") >> (32 - bits)


def bin_key(d: Directive) -> str:
    """What a directive is binned by: its first host pattern's base, else its first range."""
    if d.hosts:
        pattern = min(h.pattern for h in d.hosts)
        return pattern[2:] if pattern.startswith("*.") else pattern
    return min(d.ip_ranges) if d.ip_ranges else d.id


def role_bits(bits: int) -> int:
    """Bits of the delegated roles: each role lists ``2**FILES_PER_ROLE_BITS`` bin files,
    so a cold load verifies 16 times fewer signed metadata files than bin files."""
    return max(1, bits - FILES_PER_ROLE_BITS)


def role_of(i: int, bits: int) -> int:
    """The delegated role (number) that lists bin ``i``."""
    return i >> (bits - role_bits(bits))


def bin_role(i: int, bits: int) -> str:
    """The name of the delegated role listing bin ``i`` (python-tuf ``SuccinctRoles``
    naming, ``bin-XXX`` over ``role_bits(bits)`` bits)."""
    rbits = role_bits(bits)
    width = (rbits + 3) // 4
    return f"{BIN_ROLE_PREFIX}-{role_of(i, bits):0{width}x}"


def role_bins(r: int, bits: int) -> range:
    """The bins role ``r`` lists."""
    per = 1 << (bits - role_bits(bits))
    return range(r * per, (r + 1) * per)


@functools.lru_cache(maxsize=4)
def bin_target_names(bits: int) -> tuple[str, ...]:
    """For each bin, the target name TUF's hashed-bin delegation sends to the role that
    lists the bin.

    ``SuccinctRoles`` picks a role by the sha256 of the target *name*; names
    ``bins-N.json`` (N = 0, 1, ...) are dealt in order to the free bins of the role they
    land in. Deterministic: publisher and clients compute the same table, once.
    """
    rbits = role_bits(bits)
    per = 1 << (bits - rbits)
    names: list[str | None] = [None] * (1 << bits)
    filled = [0] * (1 << rbits)
    missing = 1 << bits
    n = 0
    while missing:
        name = f"bins-{n}.json"
        r = int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "big") >> (32 - rbits)
        if filled[r] < per:
            names[r * per + filled[r]] = name
            filled[r] += 1
            missing -= 1
        n += 1
    return tuple(name for name in names if name is not None)


def split(directives: Iterable[Directive], bits: int) -> dict[int, list[Directive]]:
    """Directives by bin (only the bins that hold any). ``bin_key`` and ``bin_of`` inline:
    a publication splits every directive of the set."""
    out: dict[int, list[Directive]] = {}
    sha256, from_bytes, shift = hashlib.sha256, int.from_bytes, 32 - bits
    for d in directives:
        hosts = d.hosts
        if hosts:
            first = hosts[0].pattern if len(hosts) == 1 else min(h.pattern for h in hosts)
            key = first[2:] if first.startswith("*.") else first
        else:
            key = min(d.ip_ranges) if d.ip_ranges else d.id
        i = from_bytes(sha256(key.encode()).digest()[:4], "big") >> shift
        group = out.get(i)
        if group is None:
            out[i] = [d]
        else:
            group.append(d)
    return out


# --- out --------------------------------------------------------------------------------


def _profile(d: Directive, time_text: Any) -> tuple[Any, ...]:
    return (
        str(d.action),
        d.rate_kbps,
        tuple(sorted((k, float(v)) for k, v in d.scope.items())),
        time_text(d.valid_from) if d.valid_from is not None else None,
        time_text(d.expires) if d.expires is not None else None,
        d.measure_id,
        d.reference_url,
    )


PROFILE_FIELDS = (
    "action",
    "rate_kbps",
    "scope",
    "valid_from",
    "expires",
    "measure_id",
    "reference_url",
)


def dumps_bin(i: int, bits: int, directives: Iterable[Directive]) -> bytes:
    """A bin's canonical bytes (the same directives always give the same bytes)."""
    time_text = _time_text()
    seen: dict[tuple[Any, ...], int] = {}  # as the directive holds them -> profile number
    canonical: dict[tuple[Any, ...], int] = {}  # canonical profile -> number
    rows = []
    for d in sorted(directives, key=_BY_ID):
        scope = d.scope
        raw = (d.action, d.rate_kbps, tuple(scope.items()), d.valid_from, d.expires,
               d.measure_id, d.reference_url)  # fmt: skip
        p = seen.get(raw)
        if p is None:
            prof = _profile(d, time_text)
            p = canonical.get(prof)
            if p is None:
                p = canonical[prof] = len(canonical)
            seen[raw] = p
        hosts = d.hosts
        if len(hosts) == 1:
            host_rows = [[hosts[0].pattern, hosts[0].content_class]]
        else:
            host_rows = sorted([h.pattern, h.content_class] for h in hosts)
        ips = d.ip_ranges
        rows.append([d.id, p, host_rows, sorted(ips, key=_ip_key) if len(ips) > 1 else list(ips),
                     list(d.decisions)])  # fmt: skip
    doc = {
        "format": BIN_FORMAT,
        "bin": i,
        "bits": bits,
        "profiles": [
            dict(zip(PROFILE_FIELDS, (*prof[:2], dict(prof[2]), *prof[3:]), strict=True))
            for prof in canonical
        ],
        "directives": rows,
    }
    return _canonical(doc)


_BY_ID = operator.attrgetter("id")


def _ip_key(text: str) -> tuple[int, str]:
    return (6 if ":" in text else 4, text)


@functools.lru_cache(maxsize=1)
def _time_text() -> Any:
    return functools.lru_cache(maxsize=4096)(format_time)


def _canonical(doc: Mapping[str, Any]) -> bytes:
    return json.dumps(
        doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode()


def dumps_manifest(sequence: int, generated_at: datetime, bits: int, directives: int) -> bytes:
    """The set's manifest (``set.json``)."""
    return _canonical(
        {
            "format": BIN_FORMAT,
            "bits": bits,
            "sequence": sequence,
            "generated_at": format_time(generated_at),
            "directives": directives,
        }
    )


def dumps_bins(ds: DirectiveSet, bits: int) -> dict[int, bytes]:
    """Every non-empty bin of ``ds``, as bytes."""
    return {i: dumps_bin(i, bits, ds_bin) for i, ds_bin in split(ds.directives, bits).items()}


# --- in ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Manifest:
    """What ``set.json`` says."""

    sequence: int
    generated_at: datetime
    bits: int
    directives: int


def load_json(data: bytes | str, where: str) -> Any:
    """A bin's or manifest's JSON; InputError at ``where`` if it is not JSON."""
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"not JSON: {exc}", where=where) from None


def check_format(doc: Any, where: str) -> None:
    """Raise InputError unless ``doc`` is an object of a format this client reads."""
    if not isinstance(doc, dict):
        raise InputError("expected an object", where=where)
    version = doc.get("format")
    if version != BIN_FORMAT:
        raise UnknownFormat(
            f"unknown directive-set format {version!r} (this point reads {BIN_FORMAT}): "
            "keeping the last good set; upgrade takedown",
            where=f"{where}.format",
        )


def loads_manifest(data: bytes | str) -> Manifest:
    """Parse and check ``set.json``; UnknownFormat for a format this code does not know."""
    where = MANIFEST_NAME
    doc = load_json(data, where)
    check_format(doc, where)
    if set(doc) != {"format", "bits", "sequence", "generated_at", "directives"}:
        raise InputError(f"unexpected fields {sorted(doc)}", where=where)
    for name in ("bits", "sequence", "directives"):
        if type(doc[name]) is not int or doc[name] < 0:
            raise InputError("expected an integer >= 0", where=f"{where}.{name}")
    if not 1 <= doc["bits"] <= 20:
        raise InputError("bits must be 1..20", where=f"{where}.bits")
    gen = doc["generated_at"]
    if type(gen) is not str or not _TIME_RE(gen):
        raise InputError("expected a UTC time ending in Z", where=f"{where}.generated_at")
    return Manifest(
        doc["sequence"], _parse_time(gen, f"{where}.generated_at"), doc["bits"], doc["directives"]
    )


def _fail(message: str, where: str) -> InputError:
    return InputError(message, where=where)


def _str_list(value: Any, where: str, *, max_len: int) -> list[str]:
    if type(value) is not list or any(type(v) is not str for v in value):
        raise _fail("expected a list of strings", where)
    for k, v in enumerate(value):
        if not 1 <= len(v) <= max_len:
            raise _fail(f"expected 1..{max_len} characters", f"{where}[{k}]")
    return value


def _time_or_none(value: Any, where: str, cache: dict[str, datetime]) -> datetime | None:
    if value is None:
        return None
    if type(value) is not str or not _TIME_RE(value):
        raise _fail("expected a UTC time ending in Z", where)
    when = cache.get(value)
    if when is None:
        when = cache[value] = _parse_time(value, where)
    return when


def load_profile(p: Any, where: str, times: dict[str, datetime]) -> dict[str, Any]:
    """A bin's profile checked field by field (``times`` caches parsed timestamps)."""
    if type(p) is not dict or set(p) != set(PROFILE_FIELDS):
        raise _fail(f"a profile has exactly the fields {list(PROFILE_FIELDS)}", where)
    action, rate = p["action"], p["rate_kbps"]
    if action == "throttle":
        if type(rate) is not int or not 0 < rate <= 100_000_000:
            raise _fail("a throttle needs rate_kbps in 1..100000000", f"{where}.rate_kbps")
        act = MeasureAction.THROTTLE
    elif action == "block":
        if rate is not None:
            raise _fail("a block directive takes no rate_kbps", f"{where}.rate_kbps")
        act = MeasureAction.BLOCK
    else:
        raise _fail("action is throttle or block", f"{where}.action")
    scope = p["scope"]
    if type(scope) is not dict or not scope:
        raise _fail("expected a non-empty object", f"{where}.scope")
    for k, v in scope.items():
        if not _SCOPE_RE(k) or type(v) is not float or not 0.0 <= v <= 100.0:
            raise _fail("a share is a float 0..100 per class", f"{where}.scope.{k}")
    valid_from = _time_or_none(p["valid_from"], f"{where}.valid_from", times)
    expires = _time_or_none(p["expires"], f"{where}.expires", times)
    if expires is None:
        raise _fail("expires is required", f"{where}.expires")
    if valid_from is not None and expires <= valid_from:
        raise _fail("expires must be later than valid_from", f"{where}.expires")
    measure = p["measure_id"]
    if measure is not None and (type(measure) is not int or measure < 1):
        raise _fail("expected an integer >= 1 or null", f"{where}.measure_id")
    url = p["reference_url"]
    if url is not None and (type(url) is not str or len(url) > 2000 or not _URL_RE(url)):
        raise _fail("expected an http(s) URL or null", f"{where}.reference_url")
    return {
        "action": act,
        "rate_kbps": rate,
        "scope": scope,
        "valid_from": valid_from,
        "expires": expires,
        "measure_id": measure,
        "reference_url": url,
    }


def _host_problem(pattern: str) -> str | None:
    """``host_pattern_problem`` with the matcher's fast public-suffix test in front: a
    plain pattern whose base, ``*.base`` and ``*.parent`` are not PSL rules is fine."""
    m = _FAST_PATTERN.fullmatch(pattern)
    if m is not None and "xn--" not in pattern and _PSL is not None:
        host = m.group(1)
        dot = host.find(".")
        if (
            len(host) <= MAX_NAME
            and not host.rpartition(".")[2].isdigit()
            and dot > 0
            and host not in _PSL
            and "*." + host not in _PSL
            and "*." + host[dot + 1 :] not in _PSL
        ):
            return None
    return host_pattern_problem(pattern)


def _ip_problem(text: str) -> str | None:
    """``ip_range_problem``, with canonical IPv6 prefixes accepted without ``ipaddress``
    (``inet_ntop`` prints what ``ipaddress`` prints whenever it prints no dotted quad)."""
    addr, slash, plen_text = text.partition("/")
    if ":" in addr and "." not in addr:
        try:
            packed = socket.inet_pton(socket.AF_INET6, addr)
        except OSError:
            packed = b""
        if packed and socket.inet_ntop(socket.AF_INET6, packed) == addr:
            value = int.from_bytes(packed, "big")
            plen = int(plen_text) if plen_text.isdigit() and plen_text.isascii() else -1
            if (
                value >> 32 != 0xFFFF
                and (not slash or (str(plen) == plen_text and MIN_PREFIX_V6 <= plen <= 128))
                and not (slash and value & ((1 << (128 - plen)) - 1))
            ):
                return None
    return ip_range_problem(text)


_Row = tuple[str, int, list[tuple[str, str]], list[str], list[str]]


def _rows(data: bytes | str, i: int, bits: int) -> tuple[list[dict[str, Any]], list[_Row]]:
    """The checked profiles and rows of bin ``i`` (InputError naming the field)."""
    where = f"bin {i}"
    doc = load_json(data, where)
    check_format(doc, where)
    if set(doc) != {"format", "bin", "bits", "profiles", "directives"}:
        raise _fail(f"unexpected fields {sorted(doc)}", where)
    if doc["bin"] != i or doc["bits"] != bits:
        raise _fail(f"holds bin {doc['bin']!r}/{doc['bits']!r} bits, not {i}/{bits}", where)
    if type(doc["profiles"]) is not list or type(doc["directives"]) is not list:
        raise _fail("profiles and directives are lists", where)
    times: dict[str, datetime] = {}
    profiles = [
        load_profile(p, f"{where}.profiles[{k}]", times) for k, p in enumerate(doc["profiles"])
    ]
    rows: list[_Row] = doc["directives"]
    n_profiles = len(profiles)
    last_id = ""
    id_ok, token_ok, host_problem, ip_problem = _ID_RE, _TOKEN_RE, _host_problem, _ip_problem
    # the common case in one pass with no error paths; any doubt re-checks the row slowly,
    # which names the field
    for k, row in enumerate(rows):
        ok = type(row) is list and len(row) == 5
        if ok:
            ident, p, hosts, ips, decisions = row
            ok = (
                type(ident) is str
                and ident > last_id
                and id_ok(ident) is not None
                and type(p) is int
                and 0 <= p < n_profiles
                and type(hosts) is list
                and type(ips) is list
                and type(decisions) is list
                and bool(hosts or ips)
            )
        if ok:
            for h in hosts:
                if (
                    type(h) is not list
                    or len(h) != 2
                    or type(h[0]) is not str
                    or len(h[0]) > 300
                    or host_problem(h[0]) is not None
                    or type(h[1]) is not str
                    or token_ok(h[1]) is None
                ):
                    ok = False
                    break
        if ok:
            for t in ips:
                if type(t) is not str or not 0 < len(t) <= 64 or ip_problem(t) is not None:
                    ok = False
                    break
        if ok:
            for t in decisions:
                if type(t) is not str or not 0 < len(t) <= 500:
                    ok = False
                    break
        if ok:
            if hosts:
                first = min(h[0] for h in hosts) if len(hosts) > 1 else hosts[0][0]
                key = first[2:] if first.startswith("*.") else first
            else:
                key = min(ips)
            ok = bin_of(key, bits) == i
        if not ok:
            check_row(row, f"{where}.directives[{k}]", last_id, n_profiles, i, bits)
            raise _fail("invalid directive", f"{where}.directives[{k}]")  # not reached
        last_id = ident
    return profiles, rows


def check_row(row: Any, at: str, last_id: str, n_profiles: int, i: int, bits: int) -> None:
    """Raise the InputError that names what is wrong with a row."""
    if type(row) is not list or len(row) != 5:
        raise _fail("a directive is [id, profile, hosts, ip_ranges, decisions]", at)
    ident, p, hosts, ips, decisions = row
    if type(ident) is not str or not _ID_RE(ident):
        raise _fail("invalid directive id", f"{at}[0]")
    if ident <= last_id:
        raise _fail(f"directive ids must be unique and sorted ({ident!r})", f"{at}[0]")
    if type(p) is not int or not 0 <= p < n_profiles:
        raise _fail("no such profile", f"{at}[1]")
    if type(hosts) is not list:
        raise _fail("expected a list of [pattern, content_class]", f"{at}[2]")
    for j, h in enumerate(hosts):
        if type(h) is not list or len(h) != 2 or type(h[0]) is not str:
            raise _fail("expected [pattern, content_class]", f"{at}[2][{j}]")
        pattern, cls = h
        problem = _host_problem(pattern) if len(pattern) <= 300 else "too long"
        if problem is not None:
            raise _fail(problem, f"{at}[2][{j}][0]")
        if type(cls) is not str or not _TOKEN_RE(cls):
            raise _fail("invalid content class", f"{at}[2][{j}][1]")
    _str_list(ips, f"{at}[3]", max_len=64)
    for j, text in enumerate(ips):
        problem = _ip_problem(text)
        if problem is not None:
            raise _fail(problem, f"{at}[3][{j}]")
    _str_list(decisions, f"{at}[4]", max_len=500)
    if not hosts and not ips:
        raise _fail("a directive needs at least one host or IP range", at)
    raise _fail(f"directive {ident!r} belongs to another bin", f"{at}[0]")


def check_bin(data: bytes | str, i: int, bits: int) -> Counter[tuple[Any, Any]]:
    """Check bin ``i`` as ``loads_bin`` does, without building directives; return its
    directive count per (valid_from, expires) window."""
    profiles, rows = _rows(data, i, bits)
    per_profile = Counter(row[1] for row in rows)
    out: Counter[tuple[Any, Any]] = Counter()
    for p, n in per_profile.items():
        out[(profiles[p]["valid_from"], profiles[p]["expires"])] += n
    return out


def loads_bin(data: bytes | str, i: int, bits: int) -> tuple[Directive, ...]:
    """Parse and strictly check bin ``i``; InputError naming the field, UnknownFormat for a
    format this code does not know. Every directive must belong to bin ``i``."""
    profiles, rows = _rows(data, i, bits)
    hosts_cache: dict[tuple[str, str], HostRule] = {}
    out: list[Directive] = []
    for ident, p, hosts, ips, decisions in rows:
        rules = []
        for pattern, cls in hosts:
            rule = hosts_cache.get((pattern, cls))
            if rule is None:
                rule = hosts_cache[(pattern, cls)] = HostRule(pattern, cls)
            rules.append(rule)
        out.append(Directive(ident, hosts=tuple(rules), ip_ranges=tuple(ips),
                             decisions=tuple(decisions), **profiles[p]))  # fmt: skip
    return tuple(out)
