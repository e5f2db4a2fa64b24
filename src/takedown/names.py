"""Host names: UTS-46 normalisation, wildcards and the public-suffix guard.

Shared by the register (normalising targets), the matcher (compiling rules) and the
enforcement point (names a flow reveals), so that all three agree on what a name is.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Mapping, Sequence

import idna
from publicsuffixlist import PublicSuffixList

from takedown.errors import InputError, PatternError

MAX_NAME = 253


def normalise_host(name: str) -> str:
    """Lower-case, strip one trailing dot, IDNA-encode (UTS-46). Raise PatternError."""
    host = _HOSTS.get(name)
    if host is None:
        host = _normalise_host(name)
        if len(_HOSTS) >= 65536:
            _HOSTS.clear()
        _HOSTS[name] = host
        # a normalised name is its own normal form: the breadth and rule checks that
        # normalise it again right after (an ``xn--`` name would be IDNA-decoded) hit
        _HOSTS[host] = host
    return host


# Normalised names by spelling; a plain dict emptied when full (cheaper than lru_cache
# on the misses that most names of a large import are).
_HOSTS: dict[str, str] = {}


def is_normal_host(host: str) -> bool:
    """True if ``host`` is known (cheaply) to be a normalised name: one ``normalise_host``
    returned lately. False says nothing."""
    return _HOSTS.get(host) == host


def _normalise_host(name: str) -> str:
    host = name.strip()
    if host.endswith("."):
        host = host[:-1]
    if not host:
        raise PatternError("empty host name")
    if host.endswith("."):  # "a.." would otherwise come out as "a." (an empty label)
        raise PatternError(f"invalid host name {name!r}: empty label")
    if host.isascii():
        host = host.lower()
        if len(host) <= MAX_NAME and _ASCII_HOST.match(host):
            if host.startswith("xn--") or ".xn--" in host:
                _check_idna(host)
            return host
    fast = _fast_cyrillic(host)
    if fast is not None:
        return fast
    try:
        encoded = idna.encode(host, uts46=True, transitional=False).decode("ascii")
    except (idna.IDNAError, UnicodeError) as exc:
        raise PatternError(f"invalid host name {name!r}: {exc}") from None
    if len(encoded) > MAX_NAME:
        raise PatternError(f"host name longer than {MAX_NAME} characters: {name!r}")
    return encoded


# An ASCII label as _ascii_label_ok accepts it (1-63 of [a-z0-9_-], no hyphen at either
# end), for lower-cased text; one regex over the whole name instead of a loop per label.
_ASCII_LABEL_RE = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
_ASCII_HOST = re.compile(rf"(?:{_ASCII_LABEL_RE}\.)*{_ASCII_LABEL_RE}\Z")
_ASCII_LABEL = re.compile(rf"{_ASCII_LABEL_RE}\Z")

# Lower-case Cyrillic letters (а-я, ё) are PVALID in IDNA 2008 and need no context rule;
# UTS-46 maps their capitals to them exactly as str.lower() does. Labels made only of
# these, ASCII letters, digits and hyphens can skip the general (slow) IDNA path.
_SAFE_CHAR = "a-z0-9\u0430-\u044f\u0451"
_SAFE_LABEL = re.compile(f"[{_SAFE_CHAR}](?:[{_SAFE_CHAR}-]*[{_SAFE_CHAR}])?\\Z")


def _fast_cyrillic(host: str) -> str | None:
    out = []
    for label in host.lower().split("."):
        if label.isascii():
            if not _ASCII_LABEL.match(label) or label.startswith("xn--"):
                return None
            out.append(label)
            continue
        if not _SAFE_LABEL.match(label):
            return None
        if len(label) > 2 and label[2:4] == "--":
            return None
        encoded = _xn_label(label)
        if len(encoded) > 63:
            return None
        out.append(encoded)
    result = ".".join(out)
    return result if len(result) <= MAX_NAME else None


@functools.lru_cache(maxsize=16384)
def _xn_label(label: str) -> str:
    """``xn--`` + the Punycode of a non-ASCII label (TLDs such as ``рф`` recur)."""
    return "xn--" + punycode(label)


_DIGITS = "abcdefghijklmnopqrstuvwxyz0123456789"


def punycode(text: str) -> str:
    """RFC 3492 Punycode of ``text``, as ``text.encode("punycode")`` gives it, only faster
    (the standard codec sorts and rescans the whole label once per code point)."""
    codes = [ord(c) for c in text]
    out = [c for c in text if c < "\x80"]
    done = basic = len(out)
    if basic:
        out.append("-")
    n, delta, bias = 128, 0, 72
    for m in sorted({c for c in codes if c >= 128}):  # each code point in turn, once
        delta += (m - n) * (done + 1)
        n = m
        for c in codes:
            if c < n:
                delta += 1
            elif c == n:
                q, k = delta, 36
                while True:
                    t = 1 if k <= bias else 26 if k >= bias + 26 else k - bias
                    if q < t:
                        break
                    out.append(_DIGITS[t + (q - t) % (36 - t)])
                    q = (q - t) // (36 - t)
                    k += 36
                out.append(_DIGITS[q])
                # adapt the bias (RFC 3492 6.1)
                delta = delta // 700 if done == basic else delta // 2
                delta += delta // (done + 1)
                k = 0
                while delta > 455:
                    delta //= 35
                    k += 36
                bias = k + 36 * delta // (delta + 38)
                delta = 0
                done += 1
        delta += 1
        n += 1
    return "".join(out)


def _ascii_label_ok(label: str) -> bool:
    if not 0 < len(label) <= 63:
        return False
    if label[0] == "-" or label[-1] == "-":
        return False
    return all(c.isalnum() or c in "-_" for c in label)


def _check_idna(host: str) -> None:
    try:
        idna.decode(host)
    except (idna.IDNAError, UnicodeError) as exc:
        raise PatternError(f"invalid IDNA host name {host!r}: {exc}") from None


def to_unicode(host: str) -> str:
    """The display form of an ASCII (punycode) host name."""
    try:
        return idna.decode(host)
    except (idna.IDNAError, UnicodeError):
        return host


def is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


@functools.lru_cache(maxsize=1)
def _psl() -> PublicSuffixList:
    return PublicSuffixList()


def is_public_suffix(host: str) -> bool:
    """True if ``host`` (normalised) is a public suffix such as ``com`` or ``com.ru``.

    What the list's ``is_public`` says, in at most four set lookups: the register checks
    every name it stores, and the list's general walk over all suffixes is the slow part.
    Only the name itself and its parent can make it public: the name as a rule (exact or
    the root of a wildcard) unless an exception names it, or its parent as a wildcard. A
    single label is a top-level domain, public even if unlisted.
    """
    if not host or host[0] == "." or host[-1] == "." or ".." in host or host != host.lower():
        return _psl().is_public(host)  # not a normalised name: the list decides
    rules = _psl_rules()
    if "!" + host in rules:
        return False
    if host in rules or "*." + host in rules:
        return True
    parent = host.partition(".")[2]
    if not parent:
        return True
    return "*." + parent in rules


@functools.lru_cache(maxsize=1)
def _psl_rules() -> frozenset[str]:
    # the list's own rule set (exact rules, "*." wildcards, "!" exceptions, IDNA forms too);
    # a private attribute, so tests/test_names.py checks every rule against is_public
    return _psl()._publicsuffix  # type: ignore[no-any-return]


def split_pattern(pattern: str) -> tuple[str, bool]:
    """Normalise a host pattern; return (base name, is_wildcard) for ``*.base`` or ``base``.

    Raises PatternError for malformed masks and for rules at or above a public suffix.
    """
    text = pattern.strip()
    wildcard = text.startswith("*.")
    base = text[2:] if wildcard else text
    if "*" in base:
        raise PatternError(f"malformed wildcard {pattern!r}: only a leading '*.' is allowed")
    host = normalise_host(base)
    if is_ip(host):
        raise PatternError(f"{pattern!r} is an address, not a host pattern")
    if "." not in host or is_public_suffix(host):
        raise PatternError(f"{pattern!r} is at or above a public suffix; refusing so broad a rule")
    return host, wildcard


def parse_resolve(items: Sequence[str], *, where: str = "--resolve") -> dict[str, str]:
    """``HOST:IP`` items (curl's --resolve without the port) as a name -> address map.

    HOST is a host name, normalised as every name is here, or ``*`` for any name; IP is
    an IPv4 or IPv6 address, brackets optional (``t.co:[::1]``, ``t.co:::1``). The one
    parser for every command that takes ``--resolve``. InputError names the item.
    """
    out: dict[str, str] = {}
    for i, item in enumerate(items):
        host, colon, addr = item.partition(":")
        addr = addr.strip().removeprefix("[").removesuffix("]")
        try:
            if not colon or not host:
                raise ValueError
            out[host if host == "*" else normalise_host(host)] = str(ipaddress.ip_address(addr))
        except (ValueError, PatternError):
            raise InputError(
                f"expected HOST:IP (or *:IP), got {item!r}", where=f"{where}[{i}]"
            ) from None
    return out


def resolve_lookup(mapping: Mapping[str, str], host: str) -> str | None:
    """The address ``parse_resolve``'s map gives ``host`` (its own entry, else ``*``)."""
    return mapping.get(host.lower().rstrip(".")) or mapping.get("*")
