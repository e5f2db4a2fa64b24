"""DNS Response Policy Zone (``--format rpz``), NXDOMAIN policy, for any RPZ resolver.

Load it as a zone of any name (``rpz.takedown.`` in the examples): owner names are
written relative to the origin. What goes in, and why:

- a domain item ``example.com`` -> ``example.com CNAME .`` (that name only: a domain item
  is an exact name, as everywhere in takedown);
- a wildcard item ``*.example.com`` -> ``*.example.com CNAME .`` (names under it, not
  ``example.com`` itself);
- URL items contribute nothing: answering NXDOMAIN for a host would block every page of it
  to remove one (the 2021 failure this system must make impossible); URLs are for the
  platform and for URL-aware enforcement.
- IP and CIDR items contribute nothing either: an ``rpz-ip`` trigger would blank every
  name that resolves into that address space (the 2018 cloud-address failure); they go
  to the nftables export.
- malformed masks (flagged, kept literally) and names too long to sit under an origin
  (over 230 characters) are skipped with a comment. Duplicate names are written once.

The serial is the generation time in Unix seconds (mod 2**32), so it grows between exports.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import BinaryIO

from takedown.model import RegisterEntry, TargetKind
from takedown.registry.formats._base import TargetRow, as_utc, listed_targets

MAX_OWNER = 230  # leaves room for the zone's origin within DNS's 255-octet limit
TTL = 300


def write(
    entries: Iterable[RegisterEntry],
    out: BinaryIO,
    *,
    generated_at: datetime,
    left_out: Mapping[str, int] | None = None,
) -> int:
    """Write the listed domain and wildcard entries as an RPZ zone; return how many.
    ``left_out`` counts, by kind, items the caller did not pass (for the final comment)."""
    return write_targets(listed_targets(entries), out, generated_at=generated_at, left_out=left_out)


def write_targets(
    rows: Iterable[TargetRow],
    out: BinaryIO,
    *,
    generated_at: datetime,
    left_out: Mapping[str, int] | None = None,
) -> int:
    """``write`` of listed items given as (id, kind, target, host) rows."""
    moment = as_utc(generated_at)
    serial = int(moment.timestamp()) % 2**32
    out.write(
        (
            f"; takedown register as a DNS response policy zone, generated "
            f"{moment.isoformat()}\n"
            f"$TTL {TTL}\n"
            f"@ IN SOA localhost. hostmaster.localhost. {serial} 3600 600 86400 {TTL}\n"
            f"@ IN NS localhost.\n"
        ).encode("ascii")
    )
    seen: set[str] = set()
    skipped = {"url": 0, "ip": 0}
    count = 0
    batch: list[str] = []
    for iid, kind, name, host in rows:
        if kind is TargetKind.URL:
            skipped["url"] += 1
            continue
        if kind is TargetKind.IP or kind is TargetKind.CIDR:
            skipped["ip"] += 1
            continue
        if kind is TargetKind.DOMAIN and host is None:
            batch.append(f"; skipped item {iid}: malformed mask {name!r} is not a DNS name\n")
            continue
        if len(name) > MAX_OWNER:
            batch.append(f"; skipped item {iid}: name longer than {MAX_OWNER} characters\n")
            continue
        count += 1
        if name in seen:
            continue
        seen.add(name)
        batch.append(f"{name} CNAME .\n")
        if len(batch) >= 4096:
            out.write("".join(batch).encode("ascii", errors="replace"))
            batch.clear()
    for kind, n in (left_out or {}).items():  # what the caller did not even read
        skipped["url" if kind == TargetKind.URL else "ip"] += n
    batch.append(
        f"; {skipped['url']} URL items and {skipped['ip']} IP/CIDR items are not "
        f"expressed in DNS (see the nft export for addresses)\n"
    )
    out.write("".join(batch).encode("ascii", errors="replace"))
    return count
