"""nftables sets (``--format nft``): ``table inet takedown`` with ``blocked_v4`` and
``blocked_v6`` interval sets of the listed IP and CIDR items, for ``nft -f``.

Overlapping and adjacent prefixes are merged (nft refuses overlapping interval
elements), an empty set gets no ``elements`` line (nft refuses ``{ }``), and the file
replaces the table atomically (declare, delete, define), so loading it twice is safe.
Only the sets are defined: operators reference ``@blocked_v4`` / ``@blocked_v6`` from
their own chains. Domain, wildcard and URL items are not addresses and are left out
(a URL whose host is an IP is not a block of that IP either).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import BinaryIO

from takedown.model import RegisterEntry, TargetKind
from takedown.registry.formats._base import TargetRow, as_utc, listed_targets

TABLE = "takedown"
_PER_LINE = 8


def write(
    entries: Iterable[RegisterEntry],
    out: BinaryIO,
    *,
    generated_at: datetime,
    left_out: Mapping[str, int] | None = None,  # unused: an nft file says nothing of them
) -> int:
    """Write the listed IP/CIDR entries as nftables interval sets; return how many."""
    return write_targets(listed_targets(entries), out, generated_at=generated_at)


def write_targets(
    rows: Iterable[TargetRow],
    out: BinaryIO,
    *,
    generated_at: datetime,
    left_out: Mapping[str, int] | None = None,  # unused: an nft file says nothing of them
) -> int:
    """``write`` of listed items given as (id, kind, target, host) rows."""
    ranges: dict[int, list[tuple[int, int]]] = {4: [], 6: []}
    count = 0
    for _, kind, value, _ in rows:
        if kind is not TargetKind.IP and kind is not TargetKind.CIDR:
            continue
        version, first, last = _range(value)
        ranges[version].append((first, last))
        count += 1
    out.write(
        (
            f"#!/usr/sbin/nft -f\n"
            f"# takedown register: listed IP addresses and networks, generated "
            f"{as_utc(generated_at).isoformat()}\n"
            f"table inet {TABLE}\n"
            f"delete table inet {TABLE}\n"
            f"table inet {TABLE} {{\n"
        ).encode("ascii")
    )
    _set(out, "blocked_v4", "ipv4_addr", _elements(ranges[4], 4))
    _set(out, "blocked_v6", "ipv6_addr", _elements(ranges[6], 6))
    out.write(b"}\n")
    return count


def _range(text: str) -> tuple[int, int, int]:
    """(version, first, last address as integers) of a canonical address or prefix."""
    addr, _, prefix = text.partition("/")
    if ":" not in addr:  # the common case, without building an ipaddress object
        a, b, c, d = map(int, addr.split("."))
        first = (a << 24) | (b << 16) | (c << 8) | d
        return 4, first, first | ((1 << (32 - int(prefix))) - 1 if prefix else 0)
    net = ipaddress.ip_network(text)
    return 6, int(net.network_address), int(net.broadcast_address)


def _elements(ranges: list[tuple[int, int]], version: int) -> list[str]:
    """The fewest prefixes covering the ranges (nft refuses overlapping interval elements,
    and adjacent ones are one)."""
    merged: list[list[int]] = []
    for first, last in sorted(ranges):
        if merged and first <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], last)
        else:
            merged.append([first, last])
    bits = 32 if version == 4 else 128
    make = ipaddress.IPv4Address if version == 4 else ipaddress.IPv6Address
    out = []
    for first, last in merged:
        size = last - first + 1
        if size & (size - 1) == 0 and first % size == 0:  # one prefix (or one address)
            prefix = bits - size.bit_length() + 1
            shown = _address(first, version, make)
            out.append(shown if prefix == bits else f"{shown}/{prefix}")
        else:
            out.extend(
                _element(net) for net in ipaddress.summarize_address_range(make(first), make(last))
            )
    return out


def _address(value: int, version: int, make: type) -> str:
    if version == 4:
        return f"{value >> 24}.{(value >> 16) & 255}.{(value >> 8) & 255}.{value & 255}"
    return str(make(value))


def _set(out: BinaryIO, name: str, kind: str, elements: list[str]) -> None:
    out.write(f"\tset {name} {{\n\t\ttype {kind}\n\t\tflags interval\n".encode("ascii"))
    if elements:
        out.write(b"\t\telements = {\n")
        for i in range(0, len(elements), _PER_LINE):
            chunk = ", ".join(elements[i : i + _PER_LINE])
            tail = ",\n" if i + _PER_LINE < len(elements) else "\n"
            out.write(f"\t\t\t{chunk}{tail}".encode("ascii"))
        out.write(b"\t\t}\n")
    out.write(b"\t}\n")


def _element(net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> str:
    if net.prefixlen == net.max_prefixlen:
        return str(net.network_address)
    return str(net)
