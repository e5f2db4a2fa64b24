"""Subscriber classes by source address, and stable keyed shares of subscribers.

The file is TOML, one table per class::

    key = "5f0c…"                      # optional: hex key of the share hash
    ipv6_prefix = 64                   # optional: an IPv6 subscriber is its /64
    [subscribers.mobile]
    ranges = ["10.64.0.0/10", "2001:db8:64::/48"]
    [subscribers.fixed]
    ranges = ["192.0.2.0/24"]

Ranges may nest (a carve-out in another class; the longest prefix wins); the same
network in two classes is refused as ambiguous. A directive's share (e.g. 50% of fixed)
selects subscribers by a keyed BLAKE2b hash of the canonical address, so a subscriber is
always in or always out, and about the share of many subscribers is in.
"""

from __future__ import annotations

import hashlib
import ipaddress
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from takedown.errors import InputError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

DEFAULT_KEY = b"takedown subscriber share v1"
DEFAULT_IPV6_PREFIX = 64
_TOP_KEYS = {"subscribers", "key", "ipv6_prefix"}
_CLASS_KEYS = {"ranges"}
_HASH_SPACE = 1 << 64


class Subscribers:
    """Subscriber classes (longest-prefix match) and keyed share selection."""

    def __init__(
        self,
        classes: Mapping[str, list[IPNetwork]],
        *,
        key: bytes | None = None,
        ipv6_prefix: int = DEFAULT_IPV6_PREFIX,
    ) -> None:
        self.classes: dict[str, tuple[IPNetwork, ...]] = {
            name: tuple(nets) for name, nets in classes.items()
        }
        self.key = key or DEFAULT_KEY
        self.ipv6_prefix = ipv6_prefix
        # prefix length -> {network address as int: class}, per IP version
        self._tables: dict[int, list[tuple[int, dict[int, str]]]] = {4: [], 6: []}
        by_len: dict[tuple[int, int], dict[int, str]] = {}
        for name, nets in self.classes.items():
            for net in nets:
                by_len.setdefault((net.version, net.prefixlen), {})[int(net.network_address)] = name
        for (version, plen), table in sorted(by_len.items(), key=lambda kv: -kv[0][1]):
            self._tables[version].append((plen, table))

    @classmethod
    def load(cls, path: str | Path) -> Subscribers:
        """Read a subscribers TOML file; InputError names the file and field."""
        p = Path(path)
        try:
            data = tomllib.loads(p.read_text(encoding="utf-8"))
        except OSError as exc:
            raise InputError(f"cannot read: {exc.strerror}", where=str(p)) from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise InputError(f"not valid TOML: {exc}", where=str(p)) from None
        return cls._parse(data, where=str(p), key=None)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, key: bytes | None = None) -> Subscribers:
        """Build from parsed TOML-shaped data (``{"subscribers": {...}}`` or the tables)."""
        if "subscribers" not in data and all(isinstance(v, Mapping) for v in data.values()):
            data = {"subscribers": dict(data)}
        return cls._parse(data, where="subscribers", key=key)

    @classmethod
    def _parse(cls, data: Mapping[str, Any], *, where: str, key: bytes | None) -> Subscribers:
        def at(field: str) -> str:
            return f"{where}: {field}" if where != "subscribers" else field

        for k in data:
            if k not in _TOP_KEYS:
                raise InputError(f"unknown key {k!r}", where=at(k))
        if key is None and "key" in data:
            raw = data["key"]
            try:
                key = bytes.fromhex(raw) if isinstance(raw, str) else None
            except ValueError:
                key = None
            if not key or len(key) > 64:
                raise InputError("key must be 1 to 64 bytes as hex", where=at("key"))
        ipv6_prefix = data.get("ipv6_prefix", DEFAULT_IPV6_PREFIX)
        if type(ipv6_prefix) is not int or not 0 < ipv6_prefix <= 128:
            raise InputError("ipv6_prefix must be an integer 1..128", where=at("ipv6_prefix"))
        tables = data.get("subscribers")
        if not isinstance(tables, Mapping) or not tables:
            raise InputError("no [subscribers.CLASS] tables", where=at("subscribers"))
        classes: dict[str, list[IPNetwork]] = {}
        owner: dict[IPNetwork, str] = {}
        for name, table in tables.items():
            field = f"subscribers.{name}"
            if not isinstance(table, Mapping):
                raise InputError("must be a table with 'ranges'", where=at(field))
            for k in table:
                if k not in _CLASS_KEYS:
                    raise InputError(f"unknown key {k!r}", where=at(f"{field}.{k}"))
            ranges = table.get("ranges")
            if not isinstance(ranges, list):
                raise InputError("'ranges' must be a list of CIDRs", where=at(f"{field}.ranges"))
            nets: list[IPNetwork] = []
            for i, text in enumerate(ranges):
                place = at(f"{field}.ranges[{i}]")
                net = _parse_network(text, place)
                other = owner.get(net)
                if other is not None and other != name:
                    raise InputError(
                        f"{net} is already in class {other!r}; a network belongs to one class",
                        where=place,
                    )
                owner[net] = name
                nets.append(net)
            classes[str(name)] = nets
        return cls(classes, key=key, ipv6_prefix=ipv6_prefix)

    def classify(self, addr: str | IPAddress) -> str | None:
        """The class of a source address (longest prefix wins), None if in no class."""
        ip = canonical_address(addr)
        value = int(ip)
        bits = ip.max_prefixlen
        for plen, table in self._tables[ip.version]:
            found = table.get(value >> (bits - plen) << (bits - plen) if plen else 0)
            if found is not None:
                return found
        return None

    def in_share(self, addr: str | IPAddress, share_percent: float, salt: str = "") -> bool:
        """True if the subscriber at ``addr`` falls in ``share_percent`` of all subscribers.

        Stable: the same address, key and salt (e.g. a directive id) always answer the same.
        """
        if share_percent <= 0:
            return False
        if share_percent >= 100:
            return True
        return share_point(addr, self.key, salt, self.ipv6_prefix) < share_percent


def canonical_address(addr: str | IPAddress) -> IPAddress:
    """An address object; IPv4-mapped IPv6 becomes IPv4, a zone index is dropped."""
    if isinstance(addr, str):
        try:
            ip: IPAddress = ipaddress.ip_address(addr.strip().strip("[]").split("%", 1)[0])
        except ValueError:
            raise InputError(f"not an IP address: {addr!r}", where="address") from None
    else:
        ip = addr
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        if ip.scope_id:
            return ipaddress.IPv6Address(int(ip))
    return ip


def share_point(addr: str | IPAddress, key: bytes, salt: str = "", ipv6_prefix: int = 64) -> float:
    """Where the subscriber falls in [0, 100): keyed BLAKE2b of its canonical address.

    An IPv6 subscriber is its /``ipv6_prefix`` (a host picks new interface ids at will).
    """
    ip = canonical_address(addr)
    if ip.version == 6:
        shift = 128 - ipv6_prefix
        ip = ipaddress.IPv6Address(int(ip) >> shift << shift)
    salt_bytes = salt.encode("utf-8")
    message = bytes([ip.version]) + ip.packed + len(salt_bytes).to_bytes(4, "big") + salt_bytes
    digest = hashlib.blake2b(message, key=key[:64], digest_size=8).digest()
    return int.from_bytes(digest, "big") * 100.0 / _HASH_SPACE


def _parse_network(text: object, where: str) -> IPNetwork:
    if not isinstance(text, str):
        raise InputError(f"a CIDR string is required, not {text!r}", where=where)
    try:
        net = ipaddress.ip_network(text.strip(), strict=True)
    except ValueError as exc:
        raise InputError(f"bad CIDR {text!r}: {exc}", where=where) from None
    if isinstance(net, ipaddress.IPv6Network) and net.prefixlen >= 96:
        mapped = net.network_address.ipv4_mapped
        if mapped is not None:
            return ipaddress.ip_network(f"{mapped}/{net.prefixlen - 96}")
    return net
