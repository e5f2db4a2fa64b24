"""The steering export: which prefixes an operator diverts, aggregated, as files that
`nft -c` and routers accept; the CLI against a real database."""

from __future__ import annotations

import ipaddress
import itertools
import json
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from takedown.feed import dumps
from takedown.feed.steering import (
    PlatformRanges,
    aggregate,
    steering_set,
    to_nft,
    to_prefixes,
)
from takedown.model import Directive, DirectiveSet, HostRule, MeasureAction

TAKEDOWN = str(Path(sys.executable).parent / "takedown")
NOW = datetime(2021, 3, 12, tzinfo=UTC)
LATER = NOW + timedelta(days=30)
TWITTER = PlatformRanges(
    "twitter", ("twitter.com", "*.twimg.com", "t.co"), ("203.0.113.0/25", "2001:db8:1::/48")
)


def _set(*directives: Directive) -> DirectiveSet:
    return DirectiveSet(1, 7, NOW, directives)


def media_throttle(expires: datetime = LATER) -> Directive:
    return Directive(
        "m1",
        MeasureAction.THROTTLE,
        hosts=(HostRule("*.twimg.com", "media"),),
        rate_kbps=128,
        expires=expires,
        measure_id=1,
    )


def ip_block(*ranges: str, expires: datetime = LATER) -> Directive:
    return Directive("i1", MeasureAction.BLOCK, ip_ranges=ranges, expires=expires)


def test_ip_directives_and_declared_ranges_are_merged_when_adjacent_or_overlapping() -> None:
    ds = _set(
        media_throttle(),
        ip_block("203.0.113.128/25", "203.0.113.7", "198.51.100.0/25", "198.51.100.128/25"),
    )
    result = steering_set(ds, now=NOW, platforms=[TWITTER])
    # 203.0.113.0/25 (declared) + .128/25 (IP) → one /24; .7 is inside it; the two halves
    # of 198.51.100.0/24 → one /24
    assert [str(n) for n in result.v4] == ["198.51.100.0/24", "203.0.113.0/24"]
    assert [str(n) for n in result.v6] == ["2001:db8:1::/48"]
    assert result.sequence == 7 and result.unsteered == ()


def test_a_host_directive_gets_its_platform_ranges_and_resolved_addresses_only() -> None:
    other = PlatformRanges("linkedin", ("linkedin.com", "*.linkedin.com"), ("192.0.2.0/24",))
    resolved = {"pbs.twimg.com": ["198.51.100.9", "2001:db8:9::9"], "example.org": ["192.0.2.99"]}
    result = steering_set(
        _set(media_throttle()), now=NOW, platforms=[TWITTER, other], resolved=resolved
    )
    # linkedin has no directive and example.org matches none: neither is steered
    assert [str(n) for n in result.v4] == ["198.51.100.9/32", "203.0.113.0/25"]
    assert [str(n) for n in result.v6] == ["2001:db8:1::/48", "2001:db8:9::9/128"]


def test_expired_directives_are_not_steered_and_hosts_without_address_are_named() -> None:
    gone = ip_block("192.0.2.0/24", expires=NOW)
    blind = Directive("b1", MeasureAction.BLOCK, hosts=(HostRule("unknown.example.net"),))
    result = steering_set(_set(gone, blind), now=NOW, platforms=[TWITTER])
    assert result.prefixes == [] and result.unsteered == ("b1 unknown.example.net",)
    assert "NOT STEERED (no known address): b1 unknown.example.net" in to_prefixes(result)


networks = st.one_of(
    st.builds(
        lambda a, p: ipaddress.ip_network((a, p), strict=False),
        st.integers(0, 2**32 - 1),
        st.integers(8, 32),
    ),
    st.builds(
        lambda a, p: ipaddress.ip_network((a, p), strict=False),
        st.integers(0, 2**128 - 1),
        st.integers(16, 128),
    ),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(networks, max_size=30), st.lists(st.integers(0, 2**32 - 1), max_size=20))
def test_aggregation_covers_exactly_the_union_with_nothing_left_to_merge(
    nets: list[ipaddress.IPv4Network | ipaddress.IPv6Network], probes: list[int]
) -> None:
    v4, v6 = aggregate(nets)
    out = [*v4, *v6]
    for probe in [*probes, *(int(n.network_address) for n in nets)]:
        for version in (4, 6):
            if version == 6 and probe >= 2**128:
                continue
            address = ipaddress.ip_address(probe) if version == 4 else ipaddress.IPv6Address(probe)
            inside = any(address in n for n in nets if n.version == version)
            assert inside == any(address in n for n in out if n.version == version)
    for family in (v4, v6):
        for a, b in itertools.pairwise(family):
            assert a.broadcast_address < b.network_address  # sorted, disjoint
            merged = list(ipaddress.collapse_addresses([a, b]))
            assert merged == [a, b]  # adjacent halves would have been merged


def _nft_check(text: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    if shutil.which("nft") is None:
        pytest.skip("nft is not installed")
    path = tmp_path / "steer.nft"
    path.write_text(text)
    return subprocess.run(
        ["nft", "-c", "-f", str(path)], capture_output=True, text=True, timeout=60, check=False
    )


def test_nft_accepts_the_set_file_with_both_families_and_many_prefixes(tmp_path: Path) -> None:
    many = [f"198.51.{i // 256}.{i % 256}" for i in range(0, 2600, 2)]  # 1,300 singles
    ds = _set(media_throttle(), ip_block(*many))
    text = to_nft(steering_set(ds, now=NOW, platforms=[TWITTER]))
    assert text.count("add element inet takedown_steering steer4") == 2  # in chunks
    checked = _nft_check(text, tmp_path)
    assert checked.returncode == 0, checked.stderr


def test_nft_accepts_an_empty_set_and_refuses_a_broken_file(tmp_path: Path) -> None:
    empty = to_nft(steering_set(_set(), now=NOW))
    assert _nft_check(empty, tmp_path).returncode == 0
    broken = empty + "add element inet takedown_steering steer4 { 203.0.113.0/33 }\n"
    assert _nft_check(broken, tmp_path).returncode != 0  # the check is not a rubber stamp


# --- the CLI ----------------------------------------------------------------------------------


def _run(*args: str, db: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [TAKEDOWN, "--db", db, *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def test_cli_ranges_then_export_in_both_formats(db_url: str, tmp_path: Path) -> None:
    added = _run(
        "platform", "add", "twitter", "--name", "Twitter", "--host", "*.twimg.com=media",
        "--range", "203.0.113.0/25", "--json", db=db_url, cwd=tmp_path,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout)["ranges"] == ["203.0.113.0/25"]
    updated = _run(
        "platform", "update", "twitter", "--range", "203.0.113.0/25", "--range",
        "2001:db8:1::/48", "--json", db=db_url, cwd=tmp_path,
    )  # fmt: skip
    assert json.loads(updated.stdout)["ranges"] == ["203.0.113.0/25", "2001:db8:1::/48"]
    far = datetime(2100, 1, 1, tzinfo=UTC)  # the CLI runs on the wall clock
    ds = _set(media_throttle(far), ip_block("203.0.113.128/25", expires=far))
    (tmp_path / "set.json").write_bytes(dumps(ds))
    (tmp_path / "resolved.txt").write_text("# where it resolved\npbs.twimg.com 198.51.100.9\n")
    common = ("feed", "export-steering", "--directives", "set.json", "--resolved", "resolved.txt")
    out = _run(*common, "--format", "nft", "-o", "steer.nft", "--json", db=db_url, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["v4"] == ["198.51.100.9/32", "203.0.113.0/24"] and doc["v6"] == ["2001:db8:1::/48"]
    assert _nft_check((tmp_path / "steer.nft").read_text(), tmp_path).returncode == 0
    plain = _run(*common, "--format", "prefixes", db=db_url, cwd=tmp_path)
    lines = [x for x in plain.stdout.splitlines() if not x.startswith("#")]
    assert lines == ["198.51.100.9/32", "203.0.113.0/24", "2001:db8:1::/48"]


def test_cli_bad_range_and_bad_resolved_line_are_named_and_change_nothing(
    db_url: str, tmp_path: Path
) -> None:
    bad = _run(
        "platform", "add", "x", "--name", "X", "--range", "203.0.113.1/24", db=db_url, cwd=tmp_path
    )
    assert bad.returncode == 1 and "--range" in bad.stderr and "203.0.113.1/24" in bad.stderr
    listed = _run("platform", "list", "--json", db=db_url, cwd=tmp_path)
    assert json.loads(listed.stdout) == []
    (tmp_path / "r.txt").write_text("ok.example 192.0.2.1\nbroken.example 300.1.1.1\n")
    (tmp_path / "set.json").write_bytes(dumps(_set()))
    out = _run(
        "feed", "export-steering", "--directives", "set.json", "--resolved", "r.txt",
        "-o", "s.nft", db=db_url, cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 1 and "r.txt:2" in out.stderr
    assert not (tmp_path / "s.nft").exists()
