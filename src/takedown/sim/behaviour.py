"""Simulator behaviour files (TOML) and the pure per-item draws they drive.

Example (``examples/behaviours/twitter-2021.toml``)::

    name = "twitter-2021"
    seed = 2021
    [[progress]]                # share of backlog items acted on, linear between points
    at = "2021-03-12"
    share = 0.0
    [[progress]]
    at = "2021-05-17"
    share = 0.909
    [prompt]                    # items first noticed from then: acted on within the window
    from = "2021-05-17"
    min_delay = "1h"
    max_delay = "22h"

Keys: ``name``, ``seed``, ``country``, ``ack`` (acknowledge notices through the API),
``respond`` (report actions through the API), ``withhold_share`` (share of actions that
withhold in-country, HTTP 451, instead of removing), ``reject_share`` with
``reject_reason`` / ``reject_policy``, ``abroad`` (source networks that are outside the
country and still see withheld posts), ``media_kib``, ``[hosts]`` (pattern = class),
``[[progress]]`` (``at``, ``share``), ``[prompt]`` (``from``, ``min_delay``, ``max_delay``).
Before the first progress point nothing is done; after the last one its share holds.
Without ``[prompt]`` every item is backlog; without ``[[progress]]`` backlog is ignored.
"""

from __future__ import annotations

import hashlib
import ipaddress
import itertools
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from takedown.clock import parse_time
from takedown.config import parse_duration
from takedown.errors import InputError
from takedown.names import split_pattern

DEFAULT_HOSTS = (("twitter.com", "text"), ("*.twimg.com", "media"), ("t.co", "links"))


@dataclass(frozen=True)
class ProgressPoint:
    at: datetime
    share: float


@dataclass(frozen=True)
class Behaviour:
    name: str = "default"
    seed: int = 0
    country: str = "RU"
    ack: bool = True
    respond: bool = True
    hosts: tuple[tuple[str, str], ...] = DEFAULT_HOSTS
    progress: tuple[ProgressPoint, ...] = ()
    prompt_from: datetime | None = None
    prompt_min: timedelta = timedelta(hours=1)
    prompt_max: timedelta = timedelta(hours=22)
    withhold_share: float = 0.0
    reject_share: float = 0.0
    reject_reason: str = "not unlawful under our terms of service"
    reject_policy: str = "Terms of Service §4"
    abroad: tuple[str, ...] = ()
    media_kib: int = 256
    _abroad_nets: tuple[Any, ...] = field(default=(), repr=False, compare=False)

    def backlog_share(self, now: datetime) -> float:
        """The share of backlog items acted on by ``now`` (piecewise linear)."""
        points = self.progress
        if not points or now < points[0].at:
            return 0.0
        for a, b in itertools.pairwise(points):
            if a.at <= now < b.at:
                span = (b.at - a.at).total_seconds()
                frac = (now - a.at).total_seconds() / span if span else 1.0
                return a.share + (b.share - a.share) * frac
        return points[-1].share

    def is_prompt(self, first_noticed: datetime) -> bool:
        return self.prompt_from is not None and first_noticed >= self.prompt_from

    def draw(self, item_id: int, salt: str) -> float:
        """A uniform number in [0, 1) fixed by (seed, item, salt): same inputs, same fate."""
        digest = hashlib.sha256(f"{self.seed}:{salt}:{item_id}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64

    def prompt_delay(self, item_id: int) -> timedelta:
        span = self.prompt_max - self.prompt_min
        return self.prompt_min + span * self.draw(item_id, "delay")

    def fate(self, item_id: int) -> str:
        """What the platform does with an item when it acts: removed, withheld or rejected."""
        if self.draw(item_id, "reject") < self.reject_share:
            return "rejected"
        if self.draw(item_id, "withhold") < self.withhold_share:
            return "withheld"
        return "removed"

    def is_abroad(self, address: str | None) -> bool:
        if not address or not self._abroad_nets:
            return False
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in net for net in self._abroad_nets)

    def host_class(self, host: str) -> str | None:
        """The content class of ``host`` under this platform's patterns, or None."""
        host = host.lower().rstrip(".")
        for pattern, cls in self.hosts:
            if pattern.startswith("*."):
                if host.endswith(pattern[1:]):
                    return cls
            elif host == pattern:
                return cls
        return None


_KEYS = {
    "name",
    "seed",
    "country",
    "ack",
    "respond",
    "hosts",
    "progress",
    "prompt",
    "withhold_share",
    "reject_share",
    "reject_reason",
    "reject_policy",
    "abroad",
    "media_kib",
}


def _share(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise InputError("must be a number from 0 to 1", where=where)
    return float(value)


def _time(value: Any, where: str) -> datetime:
    if isinstance(value, datetime):
        from takedown.clock import as_utc

        return as_utc(value)
    if hasattr(value, "isoformat"):  # a TOML date
        return parse_time(value.isoformat())
    if isinstance(value, str):
        try:
            return parse_time(value)
        except ValueError:
            pass
    raise InputError(f"not a date or time: {value!r}", where=where)


# the plain keys: which, their test, and what the error says they must be
_SCALARS: tuple[tuple[tuple[str, ...], Callable[[Any], bool], str], ...] = (
    (
        ("name", "country", "reject_reason", "reject_policy"),
        lambda v: isinstance(v, str),
        "a string",
    ),
    (
        ("seed", "media_kib"),
        lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0,
        "a non-negative integer",
    ),
    (("ack", "respond"), lambda v: isinstance(v, bool), "true or false"),
)


def parse(data: dict[str, Any], where: str = "behaviour") -> Behaviour:
    """Validate behaviour data (a parsed TOML table)."""
    unknown = set(data) - _KEYS
    if unknown:
        raise InputError(f"unknown keys {sorted(unknown)}", where=where)
    kw: dict[str, Any] = {}
    for keys, valid, wanted in _SCALARS:
        for key in keys:
            if key in data:
                if not valid(data[key]):
                    raise InputError(f"must be {wanted}", where=f"{where}: {key}")
                kw[key] = data[key]
    for key in ("withhold_share", "reject_share"):
        if key in data:
            kw[key] = _share(data[key], f"{where}: {key}")
    if "hosts" in data:
        hosts = []
        if not isinstance(data["hosts"], dict) or not data["hosts"]:
            raise InputError("[hosts] must map patterns to classes", where=f"{where}: hosts")
        for pattern, cls in data["hosts"].items():
            base, wildcard = split_pattern(pattern)
            hosts.append((f"*.{base}" if wildcard else base, str(cls)))
        kw["hosts"] = tuple(hosts)
    points: list[ProgressPoint] = []
    for n, p in enumerate(data.get("progress", [])):
        place = f"{where}: progress[{n}]"
        if not isinstance(p, dict) or set(p) != {"at", "share"}:
            raise InputError("each [[progress]] needs exactly at and share", where=place)
        point = ProgressPoint(_time(p["at"], f"{place}.at"), _share(p["share"], f"{place}.share"))
        if points and (point.at <= points[-1].at or point.share < points[-1].share):
            raise InputError("progress points must go forward in time and share", where=place)
        points.append(point)
    kw["progress"] = tuple(points)
    if "prompt" in data:
        prompt = data["prompt"]
        place = f"{where}: prompt"
        if not isinstance(prompt, dict) or not set(prompt) <= {"from", "min_delay", "max_delay"}:
            raise InputError("[prompt] takes from, min_delay, max_delay", where=place)
        kw["prompt_from"] = _time(prompt.get("from", "1970-01-01"), f"{place}.from")
        if "min_delay" in prompt:
            kw["prompt_min"] = parse_duration(prompt["min_delay"], where=f"{place}.min_delay")
        if "max_delay" in prompt:
            kw["prompt_max"] = parse_duration(prompt["max_delay"], where=f"{place}.max_delay")
        if kw.get("prompt_max", timedelta(hours=22)) < kw.get("prompt_min", timedelta(hours=1)):
            raise InputError("max_delay is shorter than min_delay", where=place)
    nets = []
    for n, text in enumerate(data.get("abroad", [])):
        try:
            nets.append(ipaddress.ip_network(str(text), strict=False))
        except ValueError:
            raise InputError(f"not a network: {text!r}", where=f"{where}: abroad[{n}]") from None
    kw["abroad"] = tuple(str(n) for n in nets)
    kw["_abroad_nets"] = tuple(nets)
    return Behaviour(**kw)


def load(path: str | Path | None) -> Behaviour:
    """Read a behaviour file; None → the default (acknowledge, act on nothing)."""
    if path is None:
        return Behaviour()
    p = Path(path)
    try:
        text = p.read_text("utf-8")
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}", where=str(p)) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"invalid TOML: {exc}", where=str(p)) from None
    return parse(data, str(p))
