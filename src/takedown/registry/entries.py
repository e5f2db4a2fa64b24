"""Register entries: what one row of a register blocks, and how an entry is recognised.

An entry lists URLs, domains and IPs; it blocks exactly one kind of them (its block
type), and the rest are resolution hints -- what the register says a URL's host resolved
to. A court order against one video on a shared host must never become a block of the
host or of a CDN address (DESIGN.md, "Register entries"). Sans-IO: the format readers
build entries here and the store keeps them.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from datetime import datetime

from takedown.errors import InputError
from takedown.model import (
    BlockType,
    Decision,
    EntryCells,
    EntryRecord,
    ItemRecord,
    Target,
    TargetKind,
)
from takedown.registry.targets import is_plain_ipv4, parse_target_flags

_IP_KINDS = (TargetKind.IP, TargetKind.CIDR)


class Reject(Exception):
    """A row is bad; the message says why (readers turn it into a RowError)."""


_PARSED = tuple[Target, tuple[str, ...]]
# A domain hint is kept as the register wrote it, not normalised (it blocks nothing), but
# it must at least be one word of a host name.
_HINT_NAME = re.compile(r"[^\s/:@\x00-\x1f\x7f]+\Z")


def _parse(text: str, column: str) -> _PARSED:
    try:
        return parse_target_flags(text)
    except InputError as exc:
        raise Reject(f"{column}: {exc.message}") from None


def _cells(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(filter(None, map(str.strip, values)))


def build_entry(
    *,
    ips: Iterable[str] = (),
    domains: Iterable[str] = (),
    urls: Iterable[str] = (),
    decision: Decision,
    category: str,
    basis: str,
    platform: str | None = None,
    source: str | None = None,
    stated: BlockType | None = None,
    listed_at: datetime | None = None,
    source_id: str | None = None,
    attrs: tuple[tuple[str, str], ...] = (),
    fingerprint: int | None = None,
) -> EntryRecord:
    """The entry listing these cells; raise Reject (the message names the cell) if a cell
    is malformed or the block type the register ``stated`` does not fit what it lists."""
    # (an empty cell is common: the call is skipped)
    cells = EntryCells(
        _cells(ips) if ips else (), _cells(domains) if domains else (), _cells(urls) if urls else ()
    )
    block_type = stated or implied_block_type(cells)
    targets: list[_PARSED] = []
    blocks_ips = block_type is BlockType.IP
    for text in cells.ips:  # checked even as hints: a widened export blocks them
        if not blocks_ips and is_plain_ipv4(text):
            continue  # most hints: a valid dotted quad needs no more
        target, flags = _parse(text, "ips")
        if target.kind not in _IP_KINDS:
            raise Reject(f"ips: {text!r} is a {target.kind}, not an IP address or network")
        if blocks_ips:
            targets.append((target, flags))
    names = block_type is BlockType.DOMAIN or block_type is BlockType.DOMAIN_MASK
    for text in cells.domains:
        if "://" in text:
            raise Reject(f"domains: {text!r} is a URL, not a domain")
        if names:
            targets.append(_parse(text, "domains"))
        elif not _HINT_NAME.match(text):
            raise Reject(f"domains: {text!r} is not a host name")
    for text in cells.urls:
        if "://" not in text:
            raise Reject(f"urls: {text!r} is not a URL (no scheme)")
        if block_type is BlockType.URL:
            target, flags = _parse(text, "urls")
            if target.kind is not TargetKind.URL:
                raise Reject(f"urls: {text!r} is not a URL")
            targets.append((target, flags))
    if not targets:
        column = {BlockType.URL: "url", BlockType.IP: "ip"}.get(block_type, "domain")
        raise Reject(f"block type {block_type} but the entry lists no {column}")
    # the same target written twice in one entry (case, trailing dot) is one target
    if len(targets) == 1:
        unique = (targets[0],)
    else:
        unique = tuple({target.value: (target, flags) for target, flags in targets}.values())
    # in field order: twelve keywords cost this call half again (a microsecond an entry)
    return EntryRecord(
        block_type,
        unique,
        cells,
        category,
        basis,
        decision,
        platform,
        listed_at,
        source,
        source_id,
        attrs,
        fingerprint,
    )


def implied_block_type(cells: EntryCells) -> BlockType:
    """The block type a CSV row implies: URLs if it has any, else a mask, domain or IPs."""
    if cells.urls:
        return BlockType.URL
    if any(d.startswith("*.") and "*" not in d[2:] for d in cells.domains):
        return BlockType.DOMAIN_MASK  # what parse_target reads as a wildcard
    if cells.domains:
        return BlockType.DOMAIN
    if cells.ips:
        return BlockType.IP
    raise Reject("row has no targets (ips, domains and urls are all empty)")


def entry_of_item(record: ItemRecord) -> EntryRecord:
    """The one-target entry of an item that came alone (``registry add``, item exports)."""
    target = record.target
    kind = target.kind
    if kind is TargetKind.URL:
        block_type, cells = BlockType.URL, EntryCells(urls=(target.value,))
    elif kind in _IP_KINDS:
        block_type, cells = BlockType.IP, EntryCells(ips=(target.value,))
    elif kind is TargetKind.WILDCARD:
        block_type, cells = BlockType.DOMAIN_MASK, EntryCells(domains=(target.value,))
    else:
        block_type, cells = BlockType.DOMAIN, EntryCells(domains=(target.value,))
    return EntryRecord(
        block_type=block_type,
        targets=((target, record.flags),),
        cells=cells,
        category=record.category,
        basis=record.basis,
        decision=record.decision,
        platform=record.platform,
        listed_at=record.listed_at,
        source=record.source,
    )


def entry_key(entry: EntryRecord) -> int:
    """How a register recognises an entry across snapshots: its own id where it has one,
    else its decision, block type and targets (so a changed hint or date is an update,
    and a changed target a new entry). 64 bits of SHA-256 (the entries table keeps them as
    hex, ``store.hex64``)."""
    if entry.source_id:
        text = f"id:{entry.source_id}"
    else:
        targets = sorted([t.value for t, _ in entry.targets])
        text = "\n".join([entry.decision.reference, entry.block_type._value_, *targets])
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8])


def entry_digest(entry: EntryRecord) -> int:
    """64 bits digesting everything an entry states; equal digests mean nothing changed."""
    d, cells = entry.decision, entry.cells
    listed = entry.listed_at.isoformat() if entry.listed_at else ""
    fields = (
        entry.block_type,
        "\x1e".join(cells.ips),
        "\x1e".join(cells.domains),
        "\x1e".join(cells.urls),
        d.reference,
        d.authority or "",
        d.date or "",
        entry.category,
        entry.basis,
        entry.platform or "",
        listed,
        "\x1e".join(f"{k}={v}" for k, v in entry.attrs),
    )
    data = "\x1f".join(fields).encode("utf-8")
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")
