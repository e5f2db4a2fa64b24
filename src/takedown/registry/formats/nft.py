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
from collections.abc import Iterable
from datetime import datetime
from typing import BinaryIO

from takedown.model import RegisterEntry, TargetKind
from takedown.registry.formats._base import as_utc, is_listed

TABLE = "takedown"
_PER_LINE = 8


def write(entries: Iterable[RegisterEntry], out: BinaryIO, *, generated_at: datetime) -> int:
    """Write the listed IP/CIDR entries as nftables interval sets; return how many."""
    v4: list[ipaddress.IPv4Network] = []
    v6: list[ipaddress.IPv6Network] = []
    count = 0
    for entry in entries:
        if not is_listed(entry):
            continue
        target = entry.record.target
        if target.kind is not TargetKind.IP and target.kind is not TargetKind.CIDR:
            continue
        net = ipaddress.ip_network(target.value)
        if net.version == 4:
            v4.append(net)  # type: ignore[arg-type]
        else:
            v6.append(net)  # type: ignore[arg-type]
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
    _set(out, "blocked_v4", "ipv4_addr", ipaddress.collapse_addresses(v4))
    _set(out, "blocked_v6", "ipv6_addr", ipaddress.collapse_addresses(v6))
    out.write(b"}\n")
    return count


def _set(out: BinaryIO, name: str, kind: str, nets: Iterable[object]) -> None:
    out.write(f"\tset {name} {{\n\t\ttype {kind}\n\t\tflags interval\n".encode("ascii"))
    elements = [_element(n) for n in nets]
    if elements:
        out.write(b"\t\telements = {\n")
        for i in range(0, len(elements), _PER_LINE):
            chunk = ", ".join(elements[i : i + _PER_LINE])
            tail = ",\n" if i + _PER_LINE < len(elements) else "\n"
            out.write(f"\t\t\t{chunk}{tail}".encode("ascii"))
        out.write(b"\t\t}\n")
    out.write(b"\t}\n")


def _element(net: object) -> str:
    assert isinstance(net, ipaddress.IPv4Network | ipaddress.IPv6Network)
    if net.prefixlen == net.max_prefixlen:
        return str(net.network_address)
    return str(net)
