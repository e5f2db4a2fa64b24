"""Register targets: parse and normalise URLs, domains, wildcards, addresses and networks.

One text has one canonical form, so that the same target under the same decision is one item:

- URL: scheme lower-case; host UTS-46 / punycode (or a canonical IP, v6 in brackets);
  default port stripped (80 for http, 443 for https); path and query percent-encoding
  normalised (unreserved characters decoded, hex upper-case, anything not allowed in a
  URI -- non-ASCII as UTF-8, spaces, ``"<>\\^`{|}`` -- encoded, a stray ``%`` becomes
  ``%25``); empty path becomes ``/``; an empty query and the fragment are dropped.
  ``Target.host`` is the host.
- domain: lower-case, one trailing dot stripped, UTS-46 (punycode). ``Target.host`` too.
- wildcard ``*.example.com``: kind WILDCARD, value ``*.`` + the normalised base,
  ``Target.host`` the base. It covers names *under* the base, not the base itself.
- malformed mask (any other ``*``: ``*example.com``, ``*t.co*``, ``a.*.b``): kept as a
  plain DOMAIN whose value is the literal text lower-cased (the parts between the
  ``*`` IDNA-encoded) and ``Target.host`` None, so that no matcher ever treats it as a
  pattern or a host; flagged ``malformed-mask``.
- IPv4 / IPv6 address: canonical (compressed) text; scope ids (``%eth0``) refused.
- CIDR: canonical network text; a prefix with host bits set (``10.1.2.3/8``) is refused
  (InputError naming the network it probably meant); a full-length prefix (``/32``,
  ``/128``) is the single address (kind IP).
"""

from __future__ import annotations

import ipaddress
import re

from takedown.errors import InputError, PatternError
from takedown.model import Target, TargetKind
from takedown.names import MAX_NAME, is_public_suffix, normalise_host

FLAG_MALFORMED_MASK = "malformed-mask"
FLAG_PUBLIC_SUFFIX = "public-suffix"  # a wildcard at or above a public suffix (*.com)

DEFAULT_PORTS = {"http": 80, "https": 443}

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*\Z")
# Characters that may stand as they are in a normalised path or query.
_CLEAN = re.compile(r"[A-Za-z0-9\-._~!$&'()*+,;=:@/?]*\Z")
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_ALLOWED = _UNRESERVED | frozenset("!$&'()*+,;=:@/?")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_LOOSE_PIECE = re.compile(r"[a-z0-9._\-]+\Z")
_HEX = frozenset("0123456789abcdefABCDEF")


def parse_target(text: str, *, where: str | None = None) -> Target:
    """Normalise one register target (URL, domain, wildcard, IP, CIDR); raise InputError."""
    return parse_target_flags(text, where=where)[0]


def parse_target_flags(text: str, *, where: str | None = None) -> tuple[Target, tuple[str, ...]]:
    """Like :func:`parse_target`, also returning flags (``malformed-mask``, ``public-suffix``)."""
    text = text.strip()
    hit = _CACHE.get(text)
    if hit is not None:
        return hit
    try:
        result = _parse_fast(text) or _parse_general(text)
    except InputError as exc:
        raise InputError(exc.message, where=where) from None
    if len(_CACHE) >= _CACHE_SIZE:
        _CACHE.clear()
    _CACHE[text] = result
    return result


# Parsed targets by text (a target recurs under several decisions). A plain dict emptied
# when full: a miss costs half what an lru_cache miss does, and most imports miss.
_CACHE: dict[str, tuple[Target, tuple[str, ...]]] = {}
_CACHE_SIZE = 65536


def _parse_general(text: str) -> tuple[Target, tuple[str, ...]]:
    if not text:
        raise InputError("empty target")
    if "://" in text:
        return _parse_url(text), ()
    if "/" in text:
        return _parse_network(text), ()
    if ":" in text or _looks_ipv4(text):
        return _parse_address(text), ()
    if "*" in text:
        return _parse_mask(text)
    try:
        host = normalise_host(text)
    except PatternError as exc:
        raise InputError(exc.message) from None
    return Target(TargetKind.DOMAIN, host, host), ()


# Fast paths for the shapes that make up most of a register: each either returns exactly
# what _parse_general would, or None (then _parse_general decides, errors included).
_OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
# A dotted quad as ipaddress writes it (no leading zeros), so the text is canonical.
_IPV4 = re.compile(rf"{_OCTET}\.{_OCTET}\.{_OCTET}\.{_OCTET}\Z")
_IPV4_NET = re.compile(rf"{_OCTET}\.{_OCTET}\.{_OCTET}\.{_OCTET}/(3[0-2]|[12]?[0-9])\Z")
_LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
# A lower-case ASCII host name that normalise_host keeps as it is (bar one trailing dot).
_PLAIN_HOST = re.compile(rf"(?:{_LABEL}\.)*{_LABEL}\.?\Z")
# scheme://host[/path][?query] with nothing to re-encode in path or query, and no
# userinfo, port, IPv6 literal, fragment, percent sign, space or control character.
_PLAIN_URL = re.compile(
    r"([a-z][a-z0-9+.\-]*)://([^/?#@:\[\]%\s\x00-\x1f\x7f]+)"
    r"(/[A-Za-z0-9\-._~!$&'()*+,;=:@/]*)?(?:\?([A-Za-z0-9\-._~!$&'()*+,;=:@/?]*))?\Z"
)


def is_plain_ipv4(text: str) -> bool:
    """True if ``text`` is an IPv4 address written canonically (the common case, cheaply)."""
    return _IPV4.match(text) is not None


def _parse_fast(text: str) -> tuple[Target, tuple[str, ...]] | None:
    first = text[:1]
    if first.isdigit():
        if _IPV4.match(text):
            return Target(TargetKind.IP, text), ()
        match = _IPV4_NET.match(text)
        if match:
            a, b, c, d, prefix = map(int, match.groups())
            address = (a << 24) | (b << 16) | (c << 8) | d
            if address & ((1 << (32 - prefix)) - 1):
                return None  # host bits set: the general path words the error
            addr = text.partition("/")[0]
            if prefix == 32:
                return Target(TargetKind.IP, addr), ()
            return Target(TargetKind.CIDR, f"{addr}/{prefix}"), ()
    if "://" in text:
        match = _PLAIN_URL.match(text)
        if match is None:
            return None
        scheme, raw_host, path, query = match.groups()
        try:
            host, shown = _url_host(raw_host, text, False)
        except InputError:
            return None
        value = f"{scheme}://{shown}{path or '/'}" + (f"?{query}" if query else "")
        return Target(TargetKind.URL, value, host), ()
    if ":" in text:
        return _parse_fast_v6(text)
    if _PLAIN_HOST.match(text) and not _looks_ipv4(text):
        host = text[:-1] if text.endswith(".") else text
        if len(host) <= MAX_NAME and not (host.startswith("xn--") or ".xn--" in host):
            return Target(TargetKind.DOMAIN, host, host), ()
    return None


_V6 = re.compile(r"([0-9a-fA-F:]{2,39})(?:/(12[0-8]|1[01][0-9]|[1-9]?[0-9]))?\Z")


def _parse_fast_v6(text: str) -> tuple[Target, tuple[str, ...]] | None:
    """An IPv6 address or prefix of hex groups only, compressed as ipaddress writes it."""
    match = _V6.match(text)
    if match is None:
        return None
    addr, prefix_text = match.groups()
    head, sep, tail = addr.partition("::")
    groups = head.split(":") if head else []
    if sep:
        low = tail.split(":") if tail else []
        missing = 8 - len(groups) - len(low)
        if missing < 1 or "::" in tail:
            return None
        groups += ["0"] * missing + low
    elif len(groups) != 8:
        return None
    value = 0
    for group in groups:
        if not 0 < len(group) <= 4:
            return None
        value = (value << 16) | int(group, 16)
    if prefix_text is not None:
        prefix = int(prefix_text)
        if value & ((1 << (128 - prefix)) - 1):
            return None  # host bits set: the general path words the error
    else:
        prefix = 128
    hextets = [f"{value >> shift & 0xFFFF:x}" for shift in range(112, -16, -16)]
    # the first longest run of two or more zero groups becomes "::"
    best_at, best_len, run_at, run_len = -1, 1, -1, 0
    for i, hextet in enumerate(hextets):
        if hextet == "0":
            if run_len == 0:
                run_at = i
            run_len += 1
            if run_len > best_len:
                best_at, best_len = run_at, run_len
        else:
            run_len = 0
    if best_at >= 0:
        shown = ":".join(hextets[:best_at]) + "::" + ":".join(hextets[best_at + best_len :])
    else:
        shown = ":".join(hextets)
    if prefix == 128:
        return Target(TargetKind.IP, shown), ()
    return Target(TargetKind.CIDR, f"{shown}/{prefix}"), ()


def _looks_ipv4(text: str) -> bool:
    return text[:1].isdigit() and text.replace(".", "").isdigit()


def _parse_address(text: str) -> Target:
    if "%" in text:
        raise InputError(f"IP address with a scope id is not a register target: {text!r}")
    try:
        if _looks_ipv4(text):
            # A dotted quad that parses is already canonical (leading zeros are refused).
            ipaddress.IPv4Address(text)
            return Target(TargetKind.IP, text)
        addr = ipaddress.IPv6Address(text)
    except ValueError:
        what = "IP address" if _looks_ipv4(text) else "IP address or host name"
        raise InputError(f"invalid {what} {text!r}") from None
    return Target(TargetKind.IP, str(addr))


def _parse_network(text: str) -> Target:
    addr, _, prefix = text.partition("/")
    if not prefix.isdigit() or "%" in addr:
        raise InputError(f"invalid CIDR network {text!r}")
    try:
        net = ipaddress.ip_network(text)
    except ValueError:
        try:
            loose = ipaddress.ip_network(text, strict=False)
            ipaddress.ip_address(addr)
        except ValueError:
            raise InputError(f"invalid CIDR network {text!r}") from None
        raise InputError(
            f"CIDR network {text!r} has host bits set (the network is {loose})"
        ) from None
    if net.prefixlen == net.max_prefixlen:
        return Target(TargetKind.IP, str(net.network_address))
    return Target(TargetKind.CIDR, str(net))


def _parse_mask(text: str) -> tuple[Target, tuple[str, ...]]:
    if text.startswith("*.") and "*" not in text[2:]:
        try:
            base = normalise_host(text[2:])
        except PatternError as exc:
            raise InputError(exc.message) from None
        flags = (FLAG_PUBLIC_SUFFIX,) if "." not in base or is_public_suffix(base) else ()
        return Target(TargetKind.WILDCARD, "*." + base, base), flags
    # Malformed: keep the literal name (never a pattern), normalising the pieces around '*'.
    literal = text[:-1] if text.endswith(".") else text
    parts = []
    for piece in literal.split("*"):
        if not piece or piece.strip(".") == "":
            parts.append(piece.lower())
            continue
        lead = "." if piece.startswith(".") else ""
        tail = "." if piece.endswith(".") else ""
        try:
            parts.append(lead + normalise_host(piece.strip(".")) + tail)
        except PatternError as exc:
            if not _LOOSE_PIECE.match(piece.lower()):
                raise InputError(exc.message) from None
            parts.append(piece.lower())
    value = "*".join(parts)
    if not any(c.isalnum() for c in value):
        raise InputError(f"not a host name or mask: {text!r}")
    return Target(TargetKind.DOMAIN, value), (FLAG_MALFORMED_MASK,)


def _parse_url(text: str) -> Target:
    scheme, _, rest = text.partition("://")
    if not _SCHEME.match(scheme):
        raise InputError(f"invalid URL scheme in {text!r}")
    if _CONTROL.search(text):
        raise InputError(f"URL contains a control character: {text!r}")
    scheme = scheme.lower()
    rest = rest.partition("#")[0]
    cut = len(rest)
    for mark in "/?":
        at = rest.find(mark)
        if 0 <= at < cut:
            cut = at
    netloc, tail = rest[:cut], rest[cut:]
    path, _, query = tail.partition("?")
    userinfo = ""
    if "@" in netloc:
        info, _, netloc = netloc.rpartition("@")
        userinfo = _normalise_component(info) + "@"
    if netloc.startswith("["):
        raw_host, close, port_text = netloc[1:].partition("]")
        if not close or (port_text and not port_text.startswith(":")):
            raise InputError(f"invalid IPv6 host in URL {text!r}")
        port_text = port_text[1:]
    else:
        raw_host, _, port_text = netloc.partition(":")
    if port_text and not (port_text.isascii() and port_text.isdigit()):
        raise InputError(f"invalid URL {text!r}: port must be a number")
    port = int(port_text) if port_text else None
    if port is not None and port > 65535:
        raise InputError(f"invalid URL {text!r}: port out of range 0-65535")
    if not raw_host:
        raise InputError(f"URL without a host: {text!r}")
    host, shown = _url_host(raw_host, text, netloc.startswith("["))
    if port is not None and port != DEFAULT_PORTS.get(scheme):
        shown += f":{port}"
    path = _normalise_component(path) or "/"
    query = _normalise_component(query)
    value = f"{scheme}://{userinfo}{shown}{path}" + (f"?{query}" if query else "")
    return Target(TargetKind.URL, value, host)


def _url_host(raw: str, text: str, bracketed: bool) -> tuple[str, str]:
    """Return (host, as written in the URL) for a URL's host part."""
    if bracketed:
        try:
            addr = ipaddress.IPv6Address(raw)
        except ValueError:
            raise InputError(f"invalid IPv6 host in URL {text!r}") from None
        return str(addr), f"[{addr}]"
    if _looks_ipv4(raw):
        try:
            ipaddress.IPv4Address(raw)
            return raw, raw
        except ValueError:
            raise InputError(f"invalid IPv4 host in URL {text!r}") from None
    try:
        host = normalise_host(raw)
    except PatternError as exc:
        raise InputError(f"{exc.message} in URL {text!r}") from None
    return host, host


_NOT_ALLOWED = re.compile(r"[^A-Za-z0-9\-._~!$&'()*+,;=:@/?]+")


def _percent_encode(match: re.Match[str]) -> str:
    return "".join(f"%{b:02X}" for c in match.group() for b in c.encode("utf-8", "surrogatepass"))


def _normalise_component(text: str) -> str:
    """Normalise the percent-encoding of a path, query or userinfo (RFC 3986 6.2.2)."""
    if "%" not in text:
        # nothing to decode: only encode what may not stand (as the loop below would)
        return _NOT_ALLOWED.sub(_percent_encode, text) if not _CLEAN.match(text) else text
    return _normalise_percent(text)


def _normalise_percent(text: str) -> str:
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "%":
            if i + 2 < n and text[i + 1] in _HEX and text[i + 2] in _HEX:
                byte = int(text[i + 1 : i + 3], 16)
                ch = chr(byte)
                out.append(ch if ch in _UNRESERVED else f"%{byte:02X}")
                i += 3
                continue
            out.append("%25")
        elif c in _ALLOWED:
            out.append(c)
        else:
            out.append("".join(f"%{b:02X}" for b in c.encode("utf-8", "surrogatepass")))
        i += 1
    return "".join(out)
