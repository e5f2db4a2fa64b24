"""The directive-set file: canonical JSON out (``dumps``), strict validation in (``loads``).

The file is the one target of the feed's TUF repository. Its bytes are deterministic
(sorted keys, no insignificant whitespace, UTC times with ``Z``, directives sorted by id,
host rules and IP ranges sorted), so the same set always hashes the same. ``loads`` refuses
anything the enforcement point should not act on; a set that fails is never returned.

Format (schema_version 1)::

    {"directives":[{"action":"throttle","decisions":["..."],"expires":"2021-05-15T00:00:00Z",
      "hosts":[{"content_class":"media","pattern":"*.twimg.com"}],"id":"m1",
      "ip_ranges":["192.0.2.0/24"],"measure_id":1,"rate_kbps":128,
      "reference_url":"https://...","scope":{"fixed":50.0,"mobile":100.0},
      "valid_from":"2021-03-10T00:00:00Z"}],
     "generated_at":"2021-03-10T00:00:00Z","schema_version":1,"sequence":1}
"""

from __future__ import annotations

import functools
import ipaddress
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, NotRequired

from pydantic import ConfigDict, Field, StringConstraints, TypeAdapter, ValidationError, with_config
from typing_extensions import TypedDict

from takedown.clock import as_utc
from takedown.errors import InputError
from takedown.match.rules import host_pattern_problem, ip_range_problem
from takedown.model import Directive, DirectiveSet, HostRule, MeasureAction

SCHEMA_VERSION = 1
TARGET_NAME = "directives.json"

_TIME_RE = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z$"
_TOKEN_RE = r"^[a-z0-9][a-z0-9_-]{0,31}$"

_Time = Annotated[str, StringConstraints(pattern=_TIME_RE)]
_Token = Annotated[str, StringConstraints(pattern=_TOKEN_RE)]
_ScopeKey = Annotated[str, StringConstraints(pattern=r"^(\*|[a-z0-9][a-z0-9_-]{0,31})$")]
_Share = Annotated[float, Field(ge=0.0, le=100.0, allow_inf_nan=False)]
_Id = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$")]
_Text = Annotated[str, StringConstraints(min_length=1, max_length=500)]
_Url = Annotated[str, StringConstraints(pattern=r"^https?://[^\s]+$", max_length=2000)]


_STRICT = ConfigDict(strict=True, extra="forbid")


# TypedDicts validated by one TypeAdapter: pydantic-core checks structure, types, ranges
# and regexes in Rust without building model instances (measured faster than BaseModel
# and than json.loads + Python checks; see bench/feed.py).
@with_config(_STRICT)
class HostDoc(TypedDict):
    pattern: Annotated[str, StringConstraints(min_length=1, max_length=300)]
    content_class: NotRequired[_Token]


@with_config(_STRICT)
class DirectiveDoc(TypedDict):
    id: _Id
    action: Literal["throttle", "block"]
    hosts: NotRequired[list[HostDoc]]
    ip_ranges: NotRequired[list[Annotated[str, StringConstraints(min_length=1, max_length=64)]]]
    rate_kbps: NotRequired[Annotated[int, Field(gt=0, le=100_000_000)] | None]
    scope: Annotated[dict[_ScopeKey, _Share], Field(min_length=1)]
    valid_from: NotRequired[_Time | None]
    expires: _Time
    measure_id: NotRequired[Annotated[int, Field(ge=1)] | None]
    decisions: NotRequired[list[_Text]]
    reference_url: NotRequired[_Url | None]


@with_config(_STRICT)
class DirectiveSetDoc(TypedDict):
    schema_version: int
    sequence: Annotated[int, Field(ge=0)]
    generated_at: _Time
    directives: list[DirectiveDoc]


SCHEMA = TypeAdapter(DirectiveSetDoc)


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a directive-set file (structure only; ``loads`` checks more)."""
    return SCHEMA.json_schema()


# --- out ---------------------------------------------------------------------------------


def format_time(when: datetime) -> str:
    """UTC ISO 8601 with a ``Z``; microseconds only when non-zero."""
    when = as_utc(when)
    text = when.strftime("%Y-%m-%dT%H:%M:%S")
    if when.microsecond:
        text += f".{when.microsecond:06d}"
    return text + "Z"


def _ip_sort_key(text: str) -> tuple[int, int, int, str]:
    try:
        net = ipaddress.ip_network(text, strict=False)
    except ValueError:
        return (9, 0, 0, text)
    return (net.version, int(net.network_address), net.prefixlen, text)


def _directive_dict(d: Directive, time_text: Callable[[datetime], str]) -> dict[str, Any]:
    hosts = d.hosts
    if len(hosts) > 1:
        hosts = tuple(sorted(hosts, key=lambda h: (h.pattern, h.content_class)))
    ips = d.ip_ranges
    if len(ips) > 1:
        ips = tuple(sorted(ips, key=_ip_sort_key))
    return {
        "id": d.id,
        "action": str(d.action),
        "hosts": [{"pattern": h.pattern, "content_class": h.content_class} for h in hosts],
        "ip_ranges": list(ips),
        "rate_kbps": d.rate_kbps,
        "scope": {k: float(v) for k, v in d.scope.items()},
        "valid_from": time_text(d.valid_from) if d.valid_from is not None else None,
        "expires": time_text(d.expires) if d.expires is not None else None,
        "measure_id": d.measure_id,
        "decisions": list(d.decisions),
        "reference_url": d.reference_url,
    }


def to_dict(ds: DirectiveSet) -> dict[str, Any]:
    """The canonical JSON-ready form of a directive set."""
    # directives of one measure share their instants: format each distinct one once
    time_text = functools.lru_cache(maxsize=4096)(format_time)
    return {
        "schema_version": ds.schema_version,
        "sequence": ds.sequence,
        "generated_at": format_time(ds.generated_at),
        "directives": [
            _directive_dict(d, time_text) for d in sorted(ds.directives, key=lambda d: d.id)
        ],
    }


def dumps(ds: DirectiveSet) -> bytes:
    """Serialise deterministically: the same set always gives the same bytes.

    Does not validate; ``publish`` validates what it signs with ``loads``.
    """
    text = json.dumps(
        to_dict(ds), sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    return text.encode("utf-8")


# --- in ----------------------------------------------------------------------------------


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part == "[key]":
            out += "(key)"
        else:
            out += f".{part}" if out else str(part)
    return out or "$"


def _parse_time(text: str, where: str) -> datetime:
    try:
        return datetime.fromisoformat(text).astimezone(UTC)
    except ValueError as exc:
        raise InputError(f"invalid time {text!r}: {exc}", where=where) from None


def _check_ips(ranges: list[str], i: int) -> None:
    for k, text in enumerate(ranges):
        problem = ip_range_problem(text)
        if problem is not None:
            raise InputError(problem, where=f"directives[{i}].ip_ranges[{k}]")


def loads(data: bytes | str) -> DirectiveSet:
    """Parse and strictly validate a directive-set file; raise InputError naming the field."""
    try:
        raw = SCHEMA.validate_json(data)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        where = _path(tuple(err["loc"]))
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise InputError(f"{err['msg']}{more}", where=where) from None
    if raw["schema_version"] != SCHEMA_VERSION:
        raise InputError(
            f"unsupported schema version {raw['schema_version']} (expected {SCHEMA_VERSION})",
            where="schema_version",
        )
    times: dict[str, datetime] = {}  # the same few instants recur across directives
    seen: set[str] = set()
    out: list[Directive] = []
    throttle, block = MeasureAction.THROTTLE, MeasureAction.BLOCK
    for i, d in enumerate(raw["directives"]):
        ident = d["id"]
        if ident in seen:
            raise InputError(f"duplicate directive id {ident!r}", where=f"directives[{i}].id")
        seen.add(ident)
        rate = d.get("rate_kbps")
        if d["action"] == "throttle":
            action = throttle
            if rate is None:
                raise InputError(
                    "a throttle directive needs rate_kbps > 0", where=f"directives[{i}].rate_kbps"
                )
        else:
            action = block
            if rate is not None:
                raise InputError(
                    "a block directive takes no rate_kbps", where=f"directives[{i}].rate_kbps"
                )
        host_docs = d.get("hosts", ())
        ip_docs = d.get("ip_ranges", ())
        if not host_docs and not ip_docs:
            raise InputError(
                "a directive needs at least one host or IP range", where=f"directives[{i}]"
            )
        hosts = []
        for j, h in enumerate(host_docs):
            pattern = h["pattern"]
            problem = host_pattern_problem(pattern)
            if problem is not None:
                raise InputError(problem, where=f"directives[{i}].hosts[{j}].pattern")
            hosts.append(HostRule(pattern, h.get("content_class", "any")))
        _check_ips(ip_docs, i)
        expires = _cached_time(times, d["expires"], f"directives[{i}].expires")
        valid_from = d.get("valid_from")
        if valid_from is not None:
            valid_from = _cached_time(times, valid_from, f"directives[{i}].valid_from")
            if expires <= valid_from:
                raise InputError(
                    "expires must be later than valid_from", where=f"directives[{i}].expires"
                )
        out.append(
            Directive(
                ident,
                action,
                tuple(hosts),
                tuple(ip_docs),
                rate,
                d["scope"],
                valid_from,
                expires,
                d.get("measure_id"),
                tuple(d.get("decisions", ())),
                d.get("reference_url"),
            )
        )
    return DirectiveSet(
        schema_version=raw["schema_version"],
        sequence=raw["sequence"],
        generated_at=_parse_time(raw["generated_at"], "generated_at"),
        directives=tuple(out),
    )


def _cached_time(cache: dict[str, datetime], text: str, where: str) -> datetime:
    when = cache.get(text)
    if when is None:
        when = cache[text] = _parse_time(text, where)
    return when
