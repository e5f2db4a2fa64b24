"""Over-broad register targets: the one check of what the register admits.

A target is refused when it is broader than the jurisdiction profile allows or could not
be published: a public suffix or a wildcard at or above one (``com``, ``co.uk``,
``*.com``), an IP prefix broader than the profile's minimum (default /16 for IPv4, /32 for
IPv6), a text longer than 8 KiB, a control character. A whole-host or whole-address target
(domain, wildcard, address, prefix) must also pass the feed's own rule check
(``match.rules``), so whatever the register admits compiles.

Import and ``registry add`` refuse what :func:`target_problem` (and, on the raw text before
parsing, :func:`text_problem`) returns a reason for, unless a person admits it with a
reason; the feed compiler applies the same function to every register item, so an item
admitted anyway is left out of the directive set with its reason and publication goes on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from takedown import config as config_mod
from takedown.errors import PatternError
from takedown.match.matcher import parse_ip_rule
from takedown.match.rules import host_pattern_problem, ip_range_problem
from takedown.model import Target, TargetKind
from takedown.names import is_public_suffix

MAX_TARGET_BYTES = 8192  # UTF-8 bytes of a target's text

# Unicode category Cc: C0, DEL and C1. Parsing refuses some of them and silently strips
# others (at either end of the text; C1 in a URL path is percent-encoded), so the raw
# text is checked too.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")

_URL, _DOMAIN, _WILDCARD = TargetKind.URL, TargetKind.DOMAIN, TargetKind.WILDCARD
_IP, _CIDR = TargetKind.IP, TargetKind.CIDR


@dataclass(frozen=True, slots=True)
class BreadthLimits:
    """How broad a register target may be (from a jurisdiction profile)."""

    min_prefix_v4: int = config_mod.DEFAULT_MIN_PREFIX_V4
    min_prefix_v6: int = config_mod.DEFAULT_MIN_PREFIX_V6
    max_bytes: int = MAX_TARGET_BYTES
    profile: str | None = None  # named in reasons: where the limit is configured

    @classmethod
    def of(cls, profile: config_mod.Profile) -> BreadthLimits:
        """The limits ``profile`` sets."""
        return cls(profile.min_prefix_v4, profile.min_prefix_v6, MAX_TARGET_BYTES, profile.code)


def limits_for(
    profile: str | None = None, *, config: config_mod.Config | None = None
) -> BreadthLimits:
    """The limits of ``profile`` (default: the profile of items of no platform, as for
    deadlines) in ``config`` (default: this process's configuration)."""
    cfg = config if config is not None else config_mod.default()
    return BreadthLimits.of(cfg.profile(profile, where="profile"))


def _shown(text: str) -> str:
    return repr(text) if len(text) <= 80 else repr(text[:80]) + "…"


def text_problem(text: str, limits: BreadthLimits) -> str | None:
    """Why a target's text as read (before parsing) is refused, else None: longer than
    ``limits.max_bytes`` UTF-8 bytes, or a control character anywhere in it.

    Pass the text the format gives for one target (after its own field and line
    splitting), not a stripped copy: a stray tab or NUL at the end is refused here because
    parsing would drop it without a word.
    """
    # a character is at most 4 UTF-8 bytes: short texts need no encoding
    if len(text) > limits.max_bytes // 4:
        size = len(text.encode("utf-8", "surrogatepass"))
        if size > limits.max_bytes:
            return f"target is {size} bytes long; the limit is {limits.max_bytes} ({_shown(text)})"
    control = _CONTROL.search(text)
    if control is not None:
        return (
            f"target contains a control character (U+{ord(control.group()):04X} at position "
            f"{control.start()}): {_shown(text)}"
        )
    return None


def is_rule(target: Target) -> bool:
    """True if ``target`` names a whole host or address, so a feed rule can carry it: a
    domain, wildcard, address or prefix. A URL never is; neither is a malformed mask (kept
    as its literal text, ``*t.co*``), which is a name to look up, not a pattern."""
    if target.kind == _DOMAIN:
        return "*" not in target.value
    return target.kind != _URL


def target_problem(target: Target, limits: BreadthLimits) -> str | None:
    """Why the register refuses ``target`` as too broad or unpublishable, else None.

    Every target: longer than ``limits.max_bytes``, control characters. A domain or
    wildcard: a public suffix or at or above one, then the feed's host-pattern check. An
    address or prefix: broader than the profile's minimum prefix, then the feed's IP-range
    check. A URL or a malformed mask is never a whole-host rule, so only its text is
    checked (a URL on a big shared host is not broad).
    """
    text = target.value
    # the feed compiler runs this on every register item: the clean case stays cheap
    # (a control character is never printable; isprintable is a plain C loop)
    if len(text) > limits.max_bytes // 4 or not text.isprintable():
        problem = text_problem(text, limits)
        if problem is not None:
            return problem
    kind = target.kind
    if kind == _IP:
        return ip_range_problem(text)
    if kind == _CIDR:
        return _prefix_problem(text, limits) or ip_range_problem(text)
    if kind == _WILDCARD or (kind == _DOMAIN and "*" not in text):
        problem = host_pattern_problem(text)
        if problem is not None:
            base = text[2:] if kind == _WILDCARD else text
            if "." not in base or is_public_suffix(base):
                if kind == _WILDCARD:
                    return f"{text!r} covers every name under the public suffix {base!r}"
                return f"{text!r} is a public suffix, not a registrable domain"
        return problem
    return None


def _prefix_problem(text: str, limits: BreadthLimits) -> str | None:
    addr, _, length = text.partition("/")
    if ":" not in addr and length.isdecimal() and length.isascii():
        version, prefixlen = 4, int(length)
    else:
        try:
            # the matcher's own view: an IPv4-mapped IPv6 prefix is the IPv4 prefix it maps
            rule = parse_ip_rule(text, min_prefix_v4=0, min_prefix_v6=0)
        except PatternError:
            return None  # malformed: ip_range_problem words it
        version, prefixlen = rule.version, rule.prefixlen
    limit = limits.min_prefix_v4 if version == 4 else limits.min_prefix_v6
    if prefixlen >= limit:
        return None
    bits = (32 if version == 4 else 128) - prefixlen
    count = f"{1 << bits:,}" if bits <= 32 else f"2^{bits}"
    whose = f" of profile {limits.profile}" if limits.profile else ""
    return (
        f"IP prefix {text!r} covers {count} addresses: broader than /{limit}, "
        f"the IPv{version} limit{whose}"
    )
