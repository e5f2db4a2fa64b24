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

import ipaddress
import json
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from takedown.clock import as_utc
from takedown.errors import InputError, PatternError
from takedown.model import Directive, DirectiveSet, HostRule, MeasureAction
from takedown.names import split_pattern

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


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


class HostModel(_Strict):
    pattern: Annotated[str, StringConstraints(min_length=1, max_length=300)]
    content_class: _Token = "any"


class DirectiveModel(_Strict):
    id: _Id
    action: Literal["throttle", "block"]
    hosts: list[HostModel] = []
    ip_ranges: list[Annotated[str, StringConstraints(min_length=1, max_length=64)]] = []
    rate_kbps: Annotated[int, Field(gt=0, le=100_000_000)] | None = None
    scope: Annotated[dict[_ScopeKey, _Share], Field(min_length=1)]
    valid_from: _Time | None = None
    expires: _Time
    measure_id: Annotated[int, Field(ge=1)] | None = None
    decisions: list[_Text] = []
    reference_url: _Url | None = None


class DirectiveSetModel(_Strict):
    """The JSON schema of a directive set (``DirectiveSetModel.model_json_schema()``)."""

    schema_version: int
    sequence: Annotated[int, Field(ge=0)]
    generated_at: _Time
    directives: list[DirectiveModel]


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


def _directive_dict(d: Directive) -> dict[str, Any]:
    return {
        "id": d.id,
        "action": str(d.action),
        "hosts": [
            {"pattern": h.pattern, "content_class": h.content_class}
            for h in sorted(d.hosts, key=lambda h: (h.pattern, h.content_class))
        ],
        "ip_ranges": sorted(d.ip_ranges, key=_ip_sort_key),
        "rate_kbps": d.rate_kbps,
        "scope": {k: float(v) for k, v in d.scope.items()},
        "valid_from": format_time(d.valid_from) if d.valid_from is not None else None,
        "expires": format_time(d.expires) if d.expires is not None else None,
        "measure_id": d.measure_id,
        "decisions": list(d.decisions),
        "reference_url": d.reference_url,
    }


def to_dict(ds: DirectiveSet) -> dict[str, Any]:
    """The canonical JSON-ready form of a directive set."""
    return {
        "schema_version": ds.schema_version,
        "sequence": ds.sequence,
        "generated_at": format_time(ds.generated_at),
        "directives": [_directive_dict(d) for d in sorted(ds.directives, key=lambda d: d.id)],
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


def _check_ip(text: str, where: str) -> str:
    try:
        if "/" in text:
            canon = str(ipaddress.ip_network(text, strict=True))
        else:
            canon = str(ipaddress.ip_address(text))
    except ValueError as exc:
        raise InputError(f"invalid IP address or prefix {text!r}: {exc}", where=where) from None
    if canon != text:
        raise InputError(f"IP range {text!r} is not canonical (expected {canon!r})", where=where)
    return text


def loads(data: bytes | str) -> DirectiveSet:
    """Parse and strictly validate a directive-set file; raise InputError naming the field."""
    try:
        raw = DirectiveSetModel.model_validate_json(data)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        where = _path(tuple(err["loc"]))
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise InputError(f"{err['msg']}{more}", where=where) from None
    if raw.schema_version != SCHEMA_VERSION:
        raise InputError(
            f"unsupported schema version {raw.schema_version} (expected {SCHEMA_VERSION})",
            where="schema_version",
        )
    patterns: dict[str, str | None] = {}  # pattern -> error message, cached per load
    seen: set[str] = set()
    out: list[Directive] = []
    for i, d in enumerate(raw.directives):
        here = f"directives[{i}]"
        if d.id in seen:
            raise InputError(f"duplicate directive id {d.id!r}", where=f"{here}.id")
        seen.add(d.id)
        if d.action == "throttle" and d.rate_kbps is None:
            raise InputError("a throttle directive needs rate_kbps > 0", where=f"{here}.rate_kbps")
        if d.action == "block" and d.rate_kbps is not None:
            raise InputError("a block directive takes no rate_kbps", where=f"{here}.rate_kbps")
        if not d.hosts and not d.ip_ranges:
            raise InputError("a directive needs at least one host or IP range", where=here)
        hosts = []
        for j, h in enumerate(d.hosts):
            problem = patterns.get(h.pattern, "")
            if problem == "":
                problem = _pattern_problem(h.pattern)
                patterns[h.pattern] = problem
            if problem is not None:
                raise InputError(problem, where=f"{here}.hosts[{j}].pattern")
            hosts.append(HostRule(h.pattern, h.content_class))
        ips = tuple(_check_ip(r, f"{here}.ip_ranges[{k}]") for k, r in enumerate(d.ip_ranges))
        expires = _parse_time(d.expires, f"{here}.expires")
        valid_from = None
        if d.valid_from is not None:
            valid_from = _parse_time(d.valid_from, f"{here}.valid_from")
            if expires <= valid_from:
                raise InputError("expires must be later than valid_from", where=f"{here}.expires")
        out.append(
            Directive(
                id=d.id,
                action=MeasureAction(d.action),
                hosts=tuple(hosts),
                ip_ranges=ips,
                rate_kbps=d.rate_kbps,
                scope=dict(d.scope),
                valid_from=valid_from,
                expires=expires,
                measure_id=d.measure_id,
                decisions=tuple(d.decisions),
                reference_url=d.reference_url,
            )
        )
    return DirectiveSet(
        schema_version=raw.schema_version,
        sequence=raw.sequence,
        generated_at=_parse_time(raw.generated_at, "generated_at"),
        directives=tuple(out),
    )


def _pattern_problem(pattern: str) -> str | None:
    try:
        base, wildcard = split_pattern(pattern)
    except PatternError as exc:
        return exc.message
    canon = f"*.{base}" if wildcard else base
    if canon != pattern:
        return f"host pattern {pattern!r} is not canonical (expected {canon!r})"
    return None
