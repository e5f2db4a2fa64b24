"""hosts export: 0.0.0.0 and :: lines for listed domains; what it cannot say, it says so."""

from __future__ import annotations

import io
from datetime import UTC, datetime

from takedown.model import Decision, ItemRecord, ItemState, RegisterEntry
from takedown.registry.formats import WRITERS
from takedown.registry.targets import parse_target_flags


def entry(target: str, n: int, state: ItemState = ItemState.OPEN) -> RegisterEntry:
    t, flags = parse_target_flags(target)
    return RegisterEntry(n, ItemRecord(t, "other", "b", Decision("D"), flags=flags), state)


def test_hosts_lines() -> None:
    register = [
        entry("Blocked.example", 1),
        entry("blocked.example.", 2),
        entry("пример.испытание", 3),
        entry("*.wild.example", 4),
        entry("*bad.example", 5),
        entry("https://twitter.com/a/status/1", 6),
        entry("192.0.2.1", 7),
        entry("gone.example", 8, ItemState.DELISTED),
    ]
    out = io.BytesIO()
    count = WRITERS["hosts"](register, out, generated_at=datetime(2021, 3, 10, tzinfo=UTC))
    lines = out.getvalue().decode("ascii").splitlines()
    assert [line for line in lines if not line.startswith("#")] == [
        "0.0.0.0 blocked.example",
        ":: blocked.example",
        "0.0.0.0 xn--e1afmkfd.xn--80akhbyknj4f",
        ":: xn--e1afmkfd.xn--80akhbyknj4f",
    ]
    assert count == 3
    comments = "\n".join(line for line in lines if line.startswith("#"))
    assert "skipped item 4: *.wild.example (hosts files have no wildcards)" in comments
    assert "skipped item 5: malformed mask '*bad.example'" in comments
    assert "# 2 URL and IP/CIDR items" in comments
    assert "gone.example" not in comments
