"""Collateral analysis, with the 2021 ``*t.co*`` mistake and a broad IP rule as cases."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from takedown.errors import InputError
from takedown.match import Matcher
from takedown.match.collateral import (
    HostHit,
    broad_ip_rules,
    host_collateral,
    hosts_from_citizenlab,
    ip_collateral,
    parse_citizenlab_hosts,
    parse_resolved,
    read_resolved,
    substring_rule_hits,
)

REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = (REPO / ".." / "shared" / "data").resolve()
CITIZENLAB = SHARED_DATA / "citizenlab"

TWITTER_HOSTS = ["twitter.com", "*.twitter.com", "*.twimg.com", "t.co"]


def _reference_hosts() -> list[str]:
    if not (CITIZENLAB / "global.csv").is_file():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"reference data not found at {CITIZENLAB} under CI")
        pytest.skip(f"reference data not found at {CITIZENLAB}")
    hosts: list[str] = []
    for name in ("global.csv", "ru.csv"):
        hosts += hosts_from_citizenlab(CITIZENLAB / name)
    return hosts


@pytest.fixture(scope="module")
def owned() -> Matcher[str]:
    """What the Twitter platform legitimately owns: its host patterns."""
    return Matcher.compile([(p, "twitter") for p in TWITTER_HOSTS])


def test_2021_substring_rule_hits_unrelated_sites_ours_does_not(owned: Matcher[str]) -> None:
    hosts = _reference_hosts()
    # the reference lists hold the victims of 2021 ...
    assert {"www.microsoft.com", "www.reddit.com", "t.co"} <= set(hosts)
    # ... which a substring rule for t.co would have slowed
    substring = substring_rule_hits("*t.co*", hosts)
    assert {"www.microsoft.com", "www.reddit.com", "teams.microsoft.com"} <= set(substring)
    assert len(substring) > 50
    # takedown's rule for t.co hits t.co and nothing else in the lists
    rules = Matcher.compile([("t.co", "directive-1")])
    assert [h for h in hosts if rules.match_host(h)] == ["t.co"]
    assert host_collateral(rules, hosts, owned) == []
    # nor does the whole 2021 Twitter directive
    twitter = Matcher.compile([(p, "directive-1") for p in ["twitter.com", "*.twimg.com", "t.co"]])
    assert host_collateral(twitter, hosts, owned) == []
    matched = {h for h in hosts if twitter.match_host(h)}
    assert matched == {"t.co", "twitter.com", "pbs.twimg.com", "video.twimg.com", "abs.twimg.com"}


def test_rule_reaching_beyond_the_platform_is_reported(owned: Matcher[str]) -> None:
    hosts = _reference_hosts()
    rules = Matcher.compile([("t.co", "d1"), ("*.microsoft.com", "d2"), ("www.reddit.com", "d3")])
    hits = host_collateral(rules, hosts, owned)
    assert HostHit("d2", "*.microsoft.com", "teams.microsoft.com") in hits
    assert HostHit("d3", "www.reddit.com", "www.reddit.com") in hits
    assert {h.key for h in hits} == {"d2", "d3"}
    # hosts owned by a listed item are not collateral
    assert host_collateral(rules, hosts, lambda h: h == "t.co" or h.endswith(".microsoft.com")) == [
        HostHit("d3", "www.reddit.com", "www.reddit.com")
    ]


def test_host_collateral_without_data() -> None:
    rules = Matcher.compile([("*.twimg.com", 1), ("pbs.twimg.com", 2)])
    hosts = ["PBS.twimg.com.", "pbs.twimg.com", "twimg.com", "evil.example", "not a host"]
    assert host_collateral(rules, hosts) == [
        HostHit(2, "pbs.twimg.com", "pbs.twimg.com"),
        HostHit(1, "*.twimg.com", "pbs.twimg.com"),
    ]
    assert host_collateral(rules, hosts, owned=Matcher.compile([("*.twimg.com", "tw")])) == []


RESOLVED = """\
# host  addresses (as resolved from a vantage point)
twitter.com      104.244.42.1 104.244.42.129
t.co             104.244.42.5
www.reddit.com   151.101.1.140 2a04:4e42::396
www.microsoft.com 104.86.110.170   # a CDN edge
shop.example.ru  104.111.0.9
"""


def test_broad_ip_rule_is_caught(tmp_path: Path, owned: Matcher[str]) -> None:
    path = tmp_path / "resolved.txt"
    path.write_text(RESOLVED, encoding="utf-8")
    resolved = read_resolved(path)
    narrow = Matcher.compile(ip_rules=[("104.244.42.0/24", "d1")])
    assert ip_collateral(narrow, resolved, owned) == []
    assert broad_ip_rules(narrow) == []
    # the 2018 mistake: a /10 taken for one service covers unrelated hosts
    broad = Matcher.compile(ip_rules=[("104.244.42.0/24", "d1"), ("104.64.0.0/10", "d2")])
    hits = ip_collateral(broad, resolved, owned)
    assert {(h.key, str(h.rule), h.address, h.host) for h in hits} == {
        ("d2", "104.64.0.0/10", "104.86.110.170", "www.microsoft.com"),
        ("d2", "104.64.0.0/10", "104.111.0.9", "shop.example.ru"),
    }
    assert all(h.prefixlen == 10 for h in hits)
    assert [(str(r), k) for r, k in broad_ip_rules(broad)] == [("104.64.0.0/10", "d2")]
    # without ownership information even the platform's own hosts count
    assert {h.host for h in ip_collateral(narrow, resolved)} == {"twitter.com", "t.co"}


def test_ipv6_collateral() -> None:
    resolved = parse_resolved("www.reddit.com 2a04:4e42::396\nmine.example 2001:db8::1\n")
    rules = Matcher.compile(ip_rules=[("2a04:4e42::/32", "wide"), ("2001:db8::/64", "own")])
    hits = ip_collateral(rules, resolved, lambda h: h == "mine.example")
    assert [(h.key, h.host, h.address) for h in hits] == [
        ("wide", "www.reddit.com", "2a04:4e42::396")
    ]


def test_resolved_format() -> None:
    text = (
        "A.Example.  192.0.2.1 ::FFFF:192.0.2.2  # mapped\n\n# only a comment\n"
        "a.example 192.0.2.1 2001:DB8::1\n"
    )
    assert parse_resolved(text) == {"a.example": ["192.0.2.1", "192.0.2.2", "2001:db8::1"]}


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("a.example 192.0.2.1\nb.example\n", 2),
        ("a.example 192.0.2.1\n\n# c\nb.example 192.0.2.300\n", 4),
        ("bad..name 192.0.2.1\n", 1),
        ("a.example 10.0.0.0/8\n", 1),
    ],
)
def test_resolved_errors_name_file_and_line(text: str, line: int) -> None:
    with pytest.raises(InputError) as info:
        parse_resolved(text, source="resolved.txt")
    assert info.value.where == f"resolved.txt:{line}"


@given(st.text(max_size=60))
def test_resolved_parser_never_crashes(text: str) -> None:
    try:
        out = parse_resolved(text)
    except InputError as exc:
        assert exc.where is not None and exc.where.startswith("<resolved>:")
    else:
        assert all(out.values())


def test_citizenlab_hosts() -> None:
    text = (
        "url,category_code,category_description,date_added,source,notes\n"
        "https://WWW.Example.com:8443/a?b=c,NEWS,News,2014-04-15,x,\n"
        "http://www.example.com/other,NEWS,News,2014-04-15,x,\n"
        'http://[2001:DB8::1]/,NEWS,News,2014-04-15,x,"a, b"\n'
        "https://пример.рф/,NEWS,News,2014-04-15,x,\n"
    )
    assert parse_citizenlab_hosts(text) == [
        "www.example.com",
        "2001:db8::1",
        "xn--e1afmkfd.xn--p1ai",
    ]


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("link,x\nhttp://a.example/,y\n", "f.csv:1"),
        ("url,x\nhttp://a.example/,y\nhttp:///nohost,z\n", "f.csv:3"),
        ("url,x\nhttp://a..example/,y\n", "f.csv:2"),
    ],
)
def test_citizenlab_errors_name_file_and_line(text: str, where: str) -> None:
    with pytest.raises(InputError) as info:
        parse_citizenlab_hosts(text, source="f.csv")
    assert info.value.where == where


def test_substring_helper_is_substring() -> None:
    assert substring_rule_hits("*t.co*", ["reddit.com", "T.CO", "x.com", "microsoft.com"]) == [
        "reddit.com",
        "t.co",
        "microsoft.com",
    ]
