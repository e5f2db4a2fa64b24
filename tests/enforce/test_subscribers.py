"""Subscriber classes from TOML, longest-prefix classification and keyed shares."""

from __future__ import annotations

import ipaddress
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from takedown.enforce.subscribers import Subscribers, share_point
from takedown.errors import InputError

GOOD = """\
key = "00112233445566778899aabbccddeeff"

[subscribers.mobile]
ranges = ["10.64.0.0/10", "2001:db8:64::/48"]

[subscribers.fixed]
ranges = ["10.0.0.0/8", "192.0.2.0/24", "2001:db8::/32"]

[subscribers.business]
ranges = ["10.64.5.0/24"]
"""


@pytest.fixture
def subs(tmp_path: Path) -> Subscribers:
    path = tmp_path / "subscribers.toml"
    path.write_text(GOOD)
    return Subscribers.load(path)


def v4(i: int) -> str:
    return str(ipaddress.IPv4Address(0x0A000000 + i))


@pytest.mark.parametrize(
    ("addr", "cls"),
    [
        ("10.64.0.1", "mobile"),
        ("10.127.255.255", "mobile"),
        ("10.128.0.0", "fixed"),
        ("10.63.255.255", "fixed"),
        ("10.64.5.9", "business"),  # nested carve-out: the longest prefix wins
        ("10.64.6.9", "mobile"),
        ("192.0.2.200", "fixed"),
        ("192.0.3.1", None),
        ("2001:db8:64:1::5", "mobile"),
        ("2001:db8:65::1", "fixed"),
        ("2001:db9::1", None),
        ("::ffff:10.64.0.1", "mobile"),
        ("::ffff:192.0.2.1", "fixed"),
        ("fe80::1%eth0", None),
        ("0.0.0.0", None),
    ],
)
def test_classify(subs: Subscribers, addr: str, cls: str | None) -> None:
    assert subs.classify(addr) == cls
    assert subs.classify(ipaddress.ip_address(addr.split("%")[0])) == cls


def test_classify_agrees_with_a_linear_scan(subs: Subscribers) -> None:
    rnd = random.Random(7)
    nets = [(n, c) for c, ns in subs.classes.items() for n in ns]
    for _ in range(3000):
        ip = ipaddress.IPv4Address(rnd.choice([0x0A000000, 0xC0000200]) + rnd.randrange(1 << 24))
        matches = [(n.prefixlen, c) for n, c in nets if ip in n]
        assert subs.classify(ip) == (max(matches)[1] if matches else None)


def test_bad_address_is_input_error(subs: Subscribers) -> None:
    with pytest.raises(InputError):
        subs.classify("not-an-ip")


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ('[subscribers.mobile]\nranges = ["10.0.0.0/33"]\n', "subscribers.mobile.ranges[0]"),
        ('[subscribers.mobile]\nranges = ["10.0.0.0/8", "10.0.0.1/8"]\n', "ranges[1]"),
        ('[subscribers.mobile]\nranges = ["x"]\n', "subscribers.mobile.ranges[0]"),
        ("[subscribers.mobile]\nranges = [5]\n", "subscribers.mobile.ranges[0]"),
        ('[subscribers.mobile]\nranges = "10.0.0.0/8"\n', "subscribers.mobile.ranges"),
        (
            '[subscribers.a]\nranges = ["10.0.0.0/8"]\n[subscribers.b]\nranges = ["10.0.0.0/8"]\n',
            "subscribers.b.ranges[0]",
        ),
        ('[subscribers.mobile]\nrange = ["10.0.0.0/8"]\n', "subscribers.mobile.range"),
        ('colour = "red"\n[subscribers.m]\nranges = []\n', "colour"),
        ('key = "zz"\n[subscribers.m]\nranges = []\n', "key"),
        ("ipv6_prefix = 200\n[subscribers.m]\nranges = []\n", "ipv6_prefix"),
        ('title = "no classes"\n', "title"),
        ("", "subscribers"),
        ("subscribers = 3\n", "subscribers"),
        ("[subscribers]\nmobile = 3\n", "subscribers.mobile"),
        ("[subscribers.mobile\n", ""),
    ],
)
def test_bad_files_name_file_and_field(tmp_path: Path, text: str, where: str) -> None:
    path = tmp_path / "subs.toml"
    path.write_text(text)
    with pytest.raises(InputError) as info:
        Subscribers.load(path)
    assert info.value.where is not None
    assert str(path) in info.value.where
    assert where in info.value.where


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot read"):
        Subscribers.load(tmp_path / "nope.toml")


def test_from_mapping_forms() -> None:
    a = Subscribers.from_mapping({"subscribers": {"fixed": {"ranges": ["10.0.0.0/8"]}}})
    b = Subscribers.from_mapping({"fixed": {"ranges": ["10.0.0.0/8"]}}, key=b"k")
    assert a.classify("10.1.2.3") == b.classify("10.1.2.3") == "fixed"
    assert b.key == b"k"
    with pytest.raises(InputError) as info:
        Subscribers.from_mapping({"fixed": {"ranges": ["10.0.0.0/88"]}})
    assert info.value.where == "subscribers.fixed.ranges[0]"


def test_mapped_ipv6_range_in_config_is_ipv4() -> None:
    s = Subscribers.from_mapping({"m": {"ranges": ["::ffff:10.0.0.0/104"]}})
    assert s.classify("10.9.9.9") == "m"


# --- shares ----------------------------------------------------------------------------


def test_half_of_ten_thousand_v4_subscribers(subs: Subscribers) -> None:
    n = sum(subs.in_share(v4(i), 50) for i in range(10_000))
    assert 4800 <= n <= 5200


def test_half_of_ten_thousand_v6_subscribers(subs: Subscribers) -> None:
    base = int(ipaddress.IPv6Address("2001:db8::"))
    n = sum(
        subs.in_share(ipaddress.IPv6Address(base + (i << 64) + 1), 50, salt="d-1")
        for i in range(10_000)
    )
    assert 4800 <= n <= 5200


@pytest.mark.parametrize("share", [1, 10, 33.3, 90])
def test_other_shares_hold(subs: Subscribers, share: float) -> None:
    n = sum(subs.in_share(v4(i), share) for i in range(10_000))
    assert abs(n / 100 - share) <= 2


def test_zero_and_hundred(subs: Subscribers) -> None:
    addrs = [v4(i) for i in range(2000)]
    assert not any(subs.in_share(a, 0) for a in addrs)
    assert all(subs.in_share(a, 100) for a in addrs)
    assert not any(subs.in_share(a, -5) for a in addrs)
    assert all(subs.in_share(a, 150) for a in addrs)


def test_stable_across_instances_and_calls(tmp_path: Path, subs: Subscribers) -> None:
    path = tmp_path / "again.toml"
    path.write_text(GOOD)
    again = Subscribers.load(path)
    first = [subs.in_share(v4(i), 50, "d-7") for i in range(3000)]
    assert first == [subs.in_share(v4(i), 50, "d-7") for i in range(3000)]
    assert first == [again.in_share(v4(i), 50, "d-7") for i in range(3000)]


def test_key_and_salt_change_the_selection(subs: Subscribers) -> None:
    other = Subscribers(subs.classes, key=b"another key")
    a = [subs.in_share(v4(i), 50) for i in range(4000)]
    b = [other.in_share(v4(i), 50) for i in range(4000)]
    c = [subs.in_share(v4(i), 50, salt="directive-2") for i in range(4000)]
    for x in (b, c):
        same = sum(p == q for p, q in zip(a, x, strict=True))
        assert 1800 <= same <= 2200  # independent selections agree about half the time


def test_mapped_v6_is_the_v4_subscriber(subs: Subscribers) -> None:
    for i in range(500):
        assert share_point(v4(i), subs.key) == share_point(f"::ffff:{v4(i)}", subs.key)


def test_an_ipv6_subscriber_is_its_64(subs: Subscribers) -> None:
    base = ipaddress.IPv6Address("2001:db8:64:7::")
    points = {share_point(ipaddress.IPv6Address(int(base) + i * 7919), subs.key) for i in range(50)}
    assert len(points) == 1


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**32 - 1), st.floats(0, 100), st.floats(0, 100))
def test_raising_a_share_only_adds_subscribers(addr: int, a: float, b: float) -> None:
    s = Subscribers({}, key=b"k")
    low, high = sorted((a, b))
    ip = ipaddress.IPv4Address(addr)
    if s.in_share(ip, low):
        assert s.in_share(ip, high)
