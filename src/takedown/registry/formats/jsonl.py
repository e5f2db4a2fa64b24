"""JSON Lines: one object per line with every field of an item (see ``_base.FIELDS``).

The reader accepts what the writer produces: ``id``, ``state``, ``delisted_at`` and
``source`` are ignored on import (provenance becomes this file and line); a missing
category, basis, platform or decision is filled from the import's defaults; ``kind``,
if present, must match the target; ``flags`` are kept and the parser's own added.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import BinaryIO

from takedown.errors import InputError
from takedown.model import EntryRecord, RegisterEntry
from takedown.registry.entries import entry_of_item
from takedown.registry.formats._base import (
    FileFacts,
    ReadDefaults,
    Reject,
    RowError,
    entry_fields,
    raw_text,
    record_from_fields,
)


def read(
    stream: BinaryIO, *, source: str, defaults: ReadDefaults, facts: FileFacts | None = None
) -> Iterator[EntryRecord | RowError]:
    """Stream the entries (one item each) and RowErrors of a JSON Lines export."""
    for lineno, raw in enumerate(stream, start=1):
        if lineno == 1:
            if raw.startswith(b"Updated:"):
                raise InputError(
                    "this is an rkn-csv dump, not JSON Lines (use --format rkn-csv)",
                    where=f"{source}:1",
                )
            if raw.lstrip().startswith(b"url,category_code"):
                raise InputError(
                    "this is a Citizen Lab CSV, not JSON Lines (use --format citizenlab)",
                    where=f"{source}:1",
                )
        if not raw.strip():
            continue  # blank lines carry nothing in JSON Lines
        try:
            obj = json.loads(raw)
        except UnicodeDecodeError:
            yield RowError(lineno, "not UTF-8", raw_text(raw, "utf-8"))
            continue
        except ValueError as exc:
            yield RowError(lineno, f"invalid JSON: {exc}", raw_text(raw, "utf-8"))
            continue
        if not isinstance(obj, dict):
            yield RowError(lineno, "expected a JSON object", raw_text(raw, "utf-8"))
            continue
        try:
            yield entry_of_item(record_from_fields(obj, f"{source}:{lineno}", defaults))
        except Reject as exc:
            yield RowError(lineno, str(exc), raw_text(raw, "utf-8"))


def write(entries: Iterable[RegisterEntry], out: BinaryIO, *, generated_at: datetime) -> int:
    """Write every entry (delisted ones too) as one JSON object per line."""
    count = 0
    batch: list[str] = []
    for entry in entries:
        batch.append(json.dumps(entry_fields(entry), ensure_ascii=False))
        count += 1
        if len(batch) >= 4096:
            out.write(("\n".join(batch) + "\n").encode("utf-8"))
            batch.clear()
    if batch:
        out.write(("\n".join(batch) + "\n").encode("utf-8"))
    return count
