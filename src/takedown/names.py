"""Host names: UTS-46 normalisation, wildcards and the public-suffix guard.

Shared by the register (normalising targets), the matcher (compiling rules) and the
enforcement point (names a flow reveals), so that all three agree on what a name is.
"""

from __future__ import annotations

import functools
import ipaddress

import idna
from publicsuffixlist import PublicSuffixList

from takedown.errors import PatternError

MAX_NAME = 253


@functools.lru_cache(maxsize=65536)
def normalise_host(name: str) -> str:
    """Lower-case, strip one trailing dot, IDNA-encode (UTS-46). Raise PatternError."""
    host = name.strip()
    if host.endswith("."):
        host = host[:-1]
    if not host:
        raise PatternError("empty host name")
    if host.isascii():
        host = host.lower()
        labels = host.split(".")
        if all(_ascii_label_ok(label) for label in labels) and len(host) <= MAX_NAME:
            if any(label.startswith("xn--") for label in labels):
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


# Lower-case Cyrillic letters (а-я, ё) are PVALID in IDNA 2008 and need no context rule;
# UTS-46 maps their capitals to them exactly as str.lower() does. Labels made only of
# these, ASCII letters, digits and hyphens can skip the general (slow) IDNA path.
_CYRILLIC_SAFE = frozenset("абвгдежзийклмнопрстуфхцчшщъыьэюяё")
_ASCII_SAFE = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-")


def _fast_cyrillic(host: str) -> str | None:
    labels = host.lower().split(".")
    out = []
    for label in labels:
        if not label or label[0] == "-" or label[-1] == "-":
            return None
        if label.isascii():
            if not _ascii_label_ok(label) or label.startswith("xn--"):
                return None
            out.append(label)
            continue
        if not all(c in _CYRILLIC_SAFE or c in _ASCII_SAFE for c in label):
            return None
        if len(label) > 2 and label[2:4] == "--":
            return None
        encoded = "xn--" + label.encode("punycode").decode("ascii")
        if len(encoded) > 63:
            return None
        out.append(encoded)
    result = ".".join(out)
    return result if len(result) <= MAX_NAME else None


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
    """True if ``host`` (normalised) is a public suffix such as ``com`` or ``com.ru``."""
    return _psl().is_public(host)


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
