"""CSV (``--format csv``): a header row of every field (see ``_base.FIELDS``), UTF-8.

``flags`` are joined with ``|``. The reader accepts what the writer produces, by column
name (extra columns are ignored, ``target`` and ``decision`` are required); the rules of
:mod:`jsonl` apply (``id``, ``state``, ``delisted_at``, ``source`` ignored on import).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import BinaryIO

from takedown.errors import InputError
from takedown.model import EntryRecord, RegisterEntry
from takedown.registry.entries import entry_of_item
from takedown.registry.formats._base import (
    FIELDS,
    FileFacts,
    ReadDefaults,
    Reject,
    RowError,
    entry_fields,
    record_from_fields,
)


def read(
    stream: BinaryIO, *, source: str, defaults: ReadDefaults, facts: FileFacts | None = None
) -> Iterator[EntryRecord | RowError]:
    """Stream the entries (one item each) and RowErrors of a takedown CSV export."""
    text = io.TextIOWrapper(stream, encoding="utf-8-sig", newline="")
    try:
        rows = csv.reader(text)
        header = [h.strip().lower() for h in next(rows, [])]
        if "target" not in header or "decision" not in header:
            raise InputError(
                f"not a takedown CSV: the header must name at least target and decision "
                f"(got {','.join(header)[:60]!r})",
                where=f"{source}:1",
            )
        line = rows.line_num
        for row in rows:
            lineno, line = line + 1, rows.line_num
            raw = ",".join(row)
            if not any(cell.strip() for cell in row):
                yield RowError(lineno, "empty row", raw)
                continue
            if len(row) != len(header):
                yield RowError(lineno, f"expected {len(header)} fields, got {len(row)}", raw)
                continue
            try:
                fields: dict[str, object] = dict(zip(header, row, strict=True))
                fields["flags"] = [f for f in str(fields.get("flags") or "").split("|") if f]
                yield entry_of_item(record_from_fields(fields, f"{source}:{lineno}", defaults))
            except Reject as exc:
                yield RowError(lineno, str(exc), raw)
    except UnicodeDecodeError as exc:
        raise InputError(f"file is not UTF-8 ({exc.reason})", where=source) from None
    finally:
        text.detach()


def write(entries: Iterable[RegisterEntry], out: BinaryIO, *, generated_at: datetime) -> int:
    """Write every entry (delisted ones too) as a CSV row under a header of every field."""
    text = io.TextIOWrapper(out, encoding="utf-8", newline="")
    try:
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(FIELDS)
        count = 0
        for entry in entries:
            fields = entry_fields(entry)
            fields["flags"] = "|".join(entry.record.flags)
            writer.writerow(["" if fields[f] is None else fields[f] for f in FIELDS])
            count += 1
        text.flush()
    finally:
        text.detach()
    return count
