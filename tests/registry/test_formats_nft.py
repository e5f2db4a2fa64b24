"""nftables export: merged interval sets that the real ``nft -c -f`` accepts."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from takedown.model import Decision, ItemRecord, ItemState, RegisterEntry
from takedown.registry.formats import WRITERS
from takedown.registry.targets import parse_target

WHEN = datetime(2021, 3, 10, 6, 0, tzinfo=UTC)


def need_nft() -> str:
    """nft's path; skip without it, except under CI=true, where it must be there."""
    found = shutil.which("nft") or next(
        (p for p in ("/usr/sbin/nft", "/sbin/nft") if os.access(p, os.X_OK)), None
    )
    if found is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("nft is not installed (Debian: apt-get install nftables)")
        pytest.skip("nft is not installed (Debian: apt-get install nftables)")
    return found


def entries(*targets: str, state: ItemState = ItemState.OPEN) -> list[RegisterEntry]:
    return [
        RegisterEntry(n, ItemRecord(parse_target(t), "other", "b", Decision(f"D{n}")), state)
        for n, t in enumerate(targets)
    ]


OVERLAPPING = entries(
    "10.0.0.0/8",
    "10.1.0.0/16",  # inside 10/8
    "10.2.3.4",  # inside 10/8
    "192.0.2.0/25",
    "192.0.2.128/25",  # adjacent: one /24
    "198.51.100.7",
    "198.51.100.7",  # the same address under two decisions
    "2001:db8::/32",
    "2001:db8:1::/48",  # inside 2001:db8::/32
    "2001:db8::1",
    "::1",
    "example.com",  # not an address: left out
    "https://192.0.2.200/x",  # a URL on an IP host is not a block of that IP
)


def export(items: list[RegisterEntry]) -> tuple[str, int]:
    out = io.BytesIO()
    count = WRITERS["nft"](items, out, generated_at=WHEN)
    return out.getvalue().decode("ascii"), count


def check(nft: str, text: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "takedown.nft"
    path.write_text(text)
    return subprocess.run([nft, "-c", "-f", str(path)], capture_output=True, text=True, timeout=60)


def test_sets_are_merged() -> None:
    text, count = export(OVERLAPPING)
    assert count == 11
    assert "\t\t\t10.0.0.0/8, 192.0.2.0/24, 198.51.100.7\n" in text
    assert "\t\t\t::1, 2001:db8::/32\n" in text
    assert "192.0.2.200" not in text


def test_nft_accepts_the_export(tmp_path: Path) -> None:
    nft = need_nft()
    text, _ = export(OVERLAPPING)
    result = check(nft, text, tmp_path)
    assert result.returncode == 0, result.stderr


def test_nft_accepts_an_export_without_addresses(tmp_path: Path) -> None:
    nft = need_nft()
    text, count = export(entries("example.com") + entries("192.0.2.1", state=ItemState.DELISTED))
    assert count == 0
    assert "elements" not in text
    result = check(nft, text, tmp_path)
    assert result.returncode == 0, result.stderr


def test_nft_accepts_many_elements(tmp_path: Path) -> None:
    nft = need_nft()
    many = [f"198.18.{n // 256}.{n % 256}" for n in range(0, 20000, 3)]
    many += [f"2001:db8:{n:x}::/48" for n in range(0, 3000, 2)]
    result = check(nft, export(entries(*many))[0], tmp_path)
    assert result.returncode == 0, result.stderr


def test_nft_check_does_refuse_overlaps(tmp_path: Path) -> None:
    """The control: nft -c is a real check, so the merge above is what makes it pass."""
    nft = need_nft()
    text, _ = export(entries("192.0.2.1"))
    broken = text.replace("192.0.2.1\n", "10.0.0.0/8, 10.1.0.0/16\n")
    assert broken != text
    result = check(nft, broken, tmp_path)
    assert result.returncode != 0
    assert "conflicting intervals" in result.stderr
