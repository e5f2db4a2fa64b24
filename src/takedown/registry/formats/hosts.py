"""hosts file (``--format hosts``): ``0.0.0.0 name`` and ``:: name`` per listed domain.

Both lines, because a resolver that finds only an IPv4 entry in the hosts file goes on
to DNS for the AAAA query. Names are punycode (what resolvers look up). A hosts file
cannot express wildcards: wildcard items and malformed masks are skipped with a comment
each; URL and IP items are not names to blank and are only counted in a final comment.
Duplicate names are written once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import BinaryIO

from takedown.model import RegisterEntry, TargetKind
from takedown.registry.formats._base import TargetRow, as_utc, listed_targets


def write(
    entries: Iterable[RegisterEntry],
    out: BinaryIO,
    *,
    generated_at: datetime,
    left_out: Mapping[str, int] | None = None,
) -> int:
    """Write the listed domain entries as hosts-file lines; return how many entries.
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
    stamp = as_utc(generated_at).isoformat()
    out.write(f"# takedown register, listed domains, generated {stamp}\n".encode("ascii"))
    seen: set[str] = set()
    other = 0
    count = 0
    batch: list[str] = []
    for iid, kind, value, host in rows:
        if kind is TargetKind.WILDCARD:
            batch.append(f"# skipped item {iid}: {value} (hosts files have no wildcards)\n")
            continue
        if kind is not TargetKind.DOMAIN:
            other += 1
            continue
        if host is None:
            batch.append(f"# skipped item {iid}: malformed mask {value!r}\n")
            continue
        count += 1
        if host in seen:
            continue
        seen.add(host)
        batch.append(f"0.0.0.0 {host}\n:: {host}\n")
        if len(batch) >= 4096:
            out.write("".join(batch).encode("ascii", errors="replace"))
            batch.clear()
    other += sum((left_out or {}).values())  # what the caller did not even read
    batch.append(f"# {other} URL and IP/CIDR items are not names and are not listed here\n")
    out.write("".join(batch).encode("ascii", errors="replace"))
    return count
