"""The one check of a feed rule: is a host pattern or IP range something every
enforcement point compiles?

``feed.directives.loads`` (publish, pull, the enforcement point), the feed compiler
(``rules check``, ``feed publish``) and the register's breadth check
(``registry.breadth``) all use these, so what one accepts the others accept. They live
here, beside the matcher whose parsers decide, so that the register can use them without
importing the feed's TUF machinery.
"""

from __future__ import annotations

import ipaddress
import re

from takedown.errors import PatternError
from takedown.match.matcher import parse_ip_rule
from takedown.names import MAX_NAME, is_normal_host, is_public_suffix, split_pattern

_IPV4_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_CANONICAL_IPV4 = re.compile(rf"(?:{_IPV4_OCTET}\.){{3}}{_IPV4_OCTET}")


def ip_range_problem(text: str) -> str | None:
    """None if ``text`` is a canonical address or prefix that every enforcement point
    compiles (the matcher's own parser and limits decide), else what is wrong with it.

    The one check of an IP rule: ``loads`` (publish, pull, the enforcement point) and the
    compiler (``rules check``, ``feed publish``) both use it, so a /7 is left out of a set
    with a reason instead of freezing the points that would refuse it.
    """
    if _CANONICAL_IPV4.fullmatch(text):  # the common case, without building an object
        return None
    try:
        parse_ip_rule(text)
        if "/" in text:
            canon = str(ipaddress.ip_network(text, strict=True))
        else:
            canon = str(ipaddress.ip_address(text))
    except PatternError as exc:
        return exc.message
    except ValueError as exc:
        return f"invalid IP address or prefix {text!r}: {exc}"
    if canon != text:
        return f"IP range {text!r} is not canonical (expected {canon!r})"
    return None


# Canonical ASCII patterns take a fast path equivalent to names.split_pattern's ASCII
# branch (lower-case labels of [a-z0-9_-], 1-63 long, no leading/trailing '-'); anything
# else (IDNA, digits-only last label, odd forms) goes through split_pattern itself.
# tests/feed/test_feed_directives.py checks the two agree.
_FAST_PATTERN = re.compile(
    r"(?:\*\.)?((?:[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?\.)+"
    r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?)"
)


def host_pattern_problem(pattern: str) -> str | None:
    """None if ``pattern`` is a canonical host pattern every point compiles, else why not."""
    m = _FAST_PATTERN.fullmatch(pattern)
    # an IDNA name is checked by decoding it, unless it is one this process normalised
    # (a register import checks each name right after normalising it)
    if (
        m is not None
        and len(m.group(1)) <= MAX_NAME
        and ("xn--" not in pattern or is_normal_host(m.group(1)))
    ):
        host = m.group(1)
        if not host.rpartition(".")[2].isdigit():
            if is_public_suffix(host):
                return f"{pattern!r} is at or above a public suffix; refusing so broad a rule"
            return None
    return _slow_pattern_problem(pattern)


def _slow_pattern_problem(pattern: str) -> str | None:
    try:
        base, wildcard = split_pattern(pattern)
    except PatternError as exc:
        return exc.message
    canon = f"*.{base}" if wildcard else base
    if canon != pattern:
        return f"host pattern {pattern!r} is not canonical (expected {canon!r})"
    return None
