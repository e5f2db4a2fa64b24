"""The compiled matcher: DESIGN.md matching semantics, and agreement with the reference."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from takedown import names
from takedown.errors import PatternError
from takedown.match import IPRule, Matcher, ReferenceMatcher, parse_host_rule, parse_ip_rule
from takedown.match.host_patterns import odd_char as _odd_char
from takedown.match.matcher import normalised_query
from takedown.match.reference import reference_network

TWITTER = [("twitter.com", "tw"), ("*.twimg.com", "img"), ("t.co", "tco")]


@pytest.fixture(scope="module")
def twitter() -> Matcher[str]:
    return Matcher.compile(TWITTER)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("t.co", ["tco"]),
        ("pbs.twimg.com", ["img"]),
        ("a.b.twimg.com", ["img"]),
        ("twitter.com", ["tw"]),
        ("twimg.com", []),  # the wildcard names subdomains only
        ("twimg.com.evil.example", []),
        ("nottwimg.com", []),
        ("pbs.nottwimg.com", []),
        ("microsoft.com", []),
        ("reddit.com", []),
        ("www.reddit.com", []),
        ("t.co.evil.example", []),
        ("xt.co", []),
        ("www.twitter.com", []),  # exact rule: no subdomains
        ("mobile.twitter.com.", []),
    ],
)
def test_label_boundaries(twitter: Matcher[str], name: str, expected: list[str]) -> None:
    assert list(twitter.match_host(name)) == expected


@pytest.mark.parametrize("name", ["T.CO", "t.co.", "T.Co.", " t.co "])
def test_case_and_trailing_dot_insensitive(twitter: Matcher[str], name: str) -> None:
    assert list(twitter.match_host(name)) == ["tco"]


def test_rule_case_and_trailing_dot_normalised() -> None:
    m = Matcher.compile([("PBS.TwImg.COM.", 1), ("*.Example.ORG.", 2)])
    assert list(m.match_host("pbs.twimg.com")) == [1]
    assert list(m.match_host("a.example.org")) == [2]
    assert list(m.host_rules()) == [("pbs.twimg.com", 1), ("*.example.org", 2)]


def test_idna_rules_and_queries_meet() -> None:
    m = Matcher.compile([("*.пример.рф", "u"), ("xn--d1acpjx3f.xn--p1ai", "p")])
    assert list(m.match_host("www.xn--e1afmkfd.xn--p1ai")) == ["u"]
    assert list(m.match_host("WWW.ПРИМЕР.РФ.")) == ["u"]
    assert list(m.match_host("пример.рф")) == []
    assert list(m.match_host("яндекс.рф")) == ["p"]


@pytest.mark.parametrize(
    "name", ["", ".", "a..b.twimg.com", "-a.twimg.com", "a b.twimg.com", "x" * 64 + ".twimg.com"]
)
def test_invalid_query_matches_nothing(twitter: Matcher[str], name: str) -> None:
    m = Matcher.compile([*TWITTER, ("*.b.twimg.com", "b")])
    assert list(m.match_host(name)) == []
    assert list(twitter.match_host(name)) == []


def test_non_string_query_matches_nothing(twitter: Matcher[str]) -> None:
    assert list(twitter.match_host(b"t.co")) == []  # type: ignore[arg-type]
    assert list(twitter.match_ip(12345)) == []  # type: ignore[arg-type]


def test_every_rule_in_stable_order() -> None:
    m = Matcher.compile(
        [("*.twimg.com", "w1"), ("pbs.twimg.com", "e1"), ("*.pbs.twimg.com", "w2"),
         ("*.twimg.com", "w3"), ("PBS.twimg.com", "e2")]
    )  # fmt: skip
    assert list(m.match_host("a.pbs.twimg.com")) == ["w2", "w1", "w3"]
    assert list(m.match_host("pbs.twimg.com")) == ["e1", "e2", "w1", "w3"]
    assert m.explain_host("a.pbs.twimg.com") == [
        ("*.pbs.twimg.com", "w2"),
        ("*.twimg.com", "w1"),
        ("*.twimg.com", "w3"),
    ]
    # results are shared immutable tuples: a caller cannot change what the next one gets
    assert m.match_host("pbs.twimg.com") == ("e1", "e2", "w1", "w3")
    assert m.match_hosts(["pbs.twimg.com", "x.y", "t.co"]) == [("e1", "e2", "w1", "w3"), (), ()]
    assert m.match_hosts(["A.pbs.twimg.com", "pbs.twimg.com."]) == [
        ("w2", "w1", "w3"),
        ("e1", "e2", "w1", "w3"),
    ]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("www.xn--e1afmkfd.xn--p1ai", ["w"]),
        ("7.xn--e1afmkfd.xn--p1ai", ["w"]),
        # with an IDNA label, every label must be valid IDNA: '_' and '--' at 3-4 are not
        ("_s.xn--e1afmkfd.xn--p1ai", []),
        ("a_b.xn--e1afmkfd.xn--p1ai", []),
        ("ab--c.xn--e1afmkfd.xn--p1ai", []),
        ("_s.example.org", ["x"]),
        ("ab--c.example.org", ["x"]),
        ("xn--zz.example.org", []),
        ("a." * 124 + "example.org", []),  # 259 characters: too long
        ("a." * 121 + "example.org", ["x"]),  # 253 characters
    ],
)
def test_wildcard_hit_below_idna_base(name: str, expected: list[str]) -> None:
    m = Matcher.compile([("*.пример.рф", "w"), ("*.example.org", "x")])
    slow = ReferenceMatcher.compile([("*.пример.рф", "w"), ("*.example.org", "x")])
    assert slow.match_host(name) == expected
    assert list(m.match_host(name)) == expected
    assert [list(r) for r in m.match_hosts([name])] == [expected]


@pytest.mark.parametrize(
    "pattern",
    ["com", "co", "com.ru", "*.com.ru", "*.co.uk", "co.uk", "*.com", "*.github.io", "рф"],
)
def test_public_suffix_or_broader_refused(pattern: str) -> None:
    with pytest.raises(PatternError, match="public suffix") as info:
        Matcher.compile([("t.co", 1), (pattern, 2)])
    assert info.value.where is not None and "host rule 2" in info.value.where


@pytest.mark.parametrize("pattern", ["*example.com", "a.*.example.com", "*", "*.", "**.x.com"])
def test_malformed_masks_refused(pattern: str) -> None:
    with pytest.raises(PatternError) as info:
        Matcher.compile([(pattern, 1)])
    assert pattern in str(info.value)


def test_ip_literal_is_not_a_host_pattern() -> None:
    with pytest.raises(PatternError, match="address"):
        Matcher.compile([("192.0.2.1", 1)])


# -- IP rules -----------------------------------------------------------------------------


def test_ip_exact_and_prefixes() -> None:
    m = Matcher.compile(
        ip_rules=[("192.0.2.0/24", "net"), ("192.0.2.7", "one"), ("2001:db8::/32", "doc"),
                  ("2001:db8:0:1::/64", "sub"), ("198.51.100.0/255.255.255.0", "mask")]
    )  # fmt: skip
    assert list(m.match_ip("192.0.2.7")) == ["one", "net"]
    assert list(m.match_ip(ipaddress.ip_address("192.0.2.8"))) == ["net"]
    assert list(m.match_ip("192.0.3.1")) == []
    assert list(m.match_ip("2001:db8:0:1::5")) == ["sub", "doc"]
    assert list(m.match_ip(ipaddress.IPv6Address("2001:db8:ffff::"))) == ["doc"]
    assert list(m.match_ip("2001:db9::")) == []
    assert list(m.match_ip("198.51.100.200")) == ["mask"]
    assert m.match_ips(["192.0.2.7", "nonsense", "", "::1"]) == [("one", "net"), (), (), ()]


def test_mapped_addresses_match_v4_rules() -> None:
    m = Matcher.compile(ip_rules=[("192.0.2.0/24", "v4"), ("::ffff:198.51.100.0/120", "m")])
    assert list(m.match_ip("::ffff:192.0.2.1")) == ["v4"]
    assert list(m.match_ip("::FFFF:c000:201")) == ["v4"]
    assert list(m.match_ip(ipaddress.IPv6Address("::ffff:192.0.2.1"))) == ["v4"]
    assert list(m.match_ip("198.51.100.3")) == ["m"]
    assert [str(r) for r, _ in m.ip_rules()] == ["192.0.2.0/24", "198.51.100.0/24"]
    # an IPv4-compatible (not mapped) address is an IPv6 address
    assert list(m.match_ip("::192.0.2.1")) == []


@pytest.mark.parametrize("text", ["192.0.2.1/24", "2001:db8::1/32", "::ffff:192.0.2.1/120"])
def test_host_bits_set_refused_naming_rule(text: str) -> None:
    with pytest.raises(PatternError, match="host bits") as info:
        Matcher.compile(ip_rules=[("192.0.2.0/24", 1), (text, 2)])
    assert info.value.where == f"IP rule 2 ({text!r})"


@pytest.mark.parametrize("text", ["0.0.0.0/0", "10.0.0.0/7", "::/0", "2000::/3", "2001::/31"])
def test_too_broad_refused_by_default(text: str) -> None:
    with pytest.raises(PatternError, match="broader"):
        Matcher.compile(ip_rules=[(text, 1)])
    assert Matcher.compile(ip_rules=[(text, 1)], min_prefix_v4=0, min_prefix_v6=0).match_ip(
        "10.1.1.1" if "." in text else "2001::1"
    ) == (1,)


@pytest.mark.parametrize(
    "text", ["", "1.2.3", "300.1.1.1", "1.2.3.0/33", "01.2.3.4", "x/8", "::/129"]
)
def test_malformed_ip_rule_refused(text: str) -> None:
    with pytest.raises(PatternError):
        parse_ip_rule(text)


def test_prefix_length_exposed() -> None:
    rule = parse_ip_rule("100.64.0.0/10")
    assert rule == IPRule(4, int(ipaddress.IPv4Address("100.64.0.0")), 10)
    assert rule.num_addresses == 1 << 22
    assert str(rule) == "100.64.0.0/10"
    m = Matcher.compile(ip_rules=[("100.64.0.0/10", "cgn"), ("2001:db8::/48", "d")])
    assert [(r.prefixlen, k) for r, k in m.ip_rules()] == [(10, "cgn"), (48, "d")]
    assert m.explain_ip("100.100.1.1") == [(rule, "cgn")]
    assert len(m) == 2


# -- agreement with the reference (property tests) ----------------------------------------

LABELS = ["a", "b", "t", "co", "com", "uk", "ru", "twimg", "pbs", "x-y", "_s", "7",
          "xn--e1afmkfd", "пример", "Tw", "CO", "github", "io", "xn--p1ai", "рф"]  # fmt: skip

label = st.sampled_from(LABELS)
name_text = st.builds(
    lambda ls, dot, upper: (".".join(ls).upper() if upper else ".".join(ls)) + dot,
    st.lists(label, min_size=1, max_size=5),
    st.sampled_from(["", "", "", "."]),
    st.booleans(),
)
odd_name = st.sampled_from(["", ".", "a..b", "-a.com", "a b.co", " t.co", "t.co\n", "a.b..",
                            "x" * 64 + ".com", "a\x00.com", "[::1]", "1.2.3.4"])  # fmt: skip
query_name = st.one_of(name_text, odd_name, st.text(max_size=12))
pattern_text = st.builds(lambda w, n: w + n, st.sampled_from(["", "*.", "*"]), name_text)


def _accepts(pattern: str) -> bool:
    try:
        names.split_pattern(pattern)
    except PatternError:
        return False
    return True


ascii_junk = st.text(alphabet="ab-_. X!\t0", min_size=1, max_size=6)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(pattern_text, max_size=25),
    st.lists(query_name, min_size=1, max_size=25),
    st.lists(st.one_of(query_name, ascii_junk), max_size=4),
)
def test_host_matching_agrees_with_reference(
    patterns: list[str], queries: list[str], prefixes: list[str]
) -> None:
    rules = [(p, i) for i, p in enumerate(patterns) if _accepts(p)]
    fast = Matcher.compile(rules)
    slow = ReferenceMatcher.compile(rules)
    # names under the rules' bases, valid or not, make sure matches (nearly) happen
    queries = queries + [q + "." + p.removeprefix("*.") for q in prefixes for p, _ in rules[:4]]
    expected = slow.match_hosts(queries)
    assert [list(r) for r in fast.match_hosts(queries)] == expected
    assert [list(fast.match_host(q)) for q in queries] == expected
    for q in queries:
        assert [k for _, k in fast.explain_host(q)] == slow.match_host(q)


@given(st.one_of(pattern_text, st.text(max_size=20)))
def test_host_rule_parse_agrees_with_names(pattern: str) -> None:
    try:
        expected: tuple[str, bool] | str = names.split_pattern(pattern)
    except PatternError:
        expected = "refused"
    try:
        got: tuple[str, bool] | str = parse_host_rule(pattern)
    except PatternError:
        got = "refused"
    assert got == expected


def test_host_rule_parse_agrees_on_the_whole_psl() -> None:
    rules = names._psl()._publicsuffix
    for entry in sorted(rules):
        if entry.startswith("!"):
            entry = entry[1:]
        entry = entry.removeprefix("*.")
        for pattern in (entry, "*." + entry, "x." + entry, "*.x." + entry, "y.x." + entry):
            try:
                expected: tuple[str, bool] | str = names.split_pattern(pattern)
            except PatternError:
                expected = "refused"
            try:
                got: tuple[str, bool] | str = parse_host_rule(pattern)
            except PatternError:
                got = "refused"
            assert got == expected, pattern


@given(st.one_of(name_text, st.text(max_size=20)))
def test_fast_query_normal_form_agrees_with_names(name: str) -> None:
    try:
        expected: str | None = names.normalise_host(name)
    except PatternError:
        expected = None
    assert normalised_query(name) == expected


@given(st.one_of(name_text, st.text(alphabet="abx-n_.07", max_size=30)))
def test_plain_ascii_name_normalises_to_itself_or_not_at_all(name: str) -> None:
    # what Matcher.match_host relies on to answer a name with no hit without normalising it
    assume(_odd_char(name) is None and not name.endswith("."))
    try:
        normal = names.normalise_host(name)
    except PatternError:
        return
    assert normal == name


V4_BASES = ["10.0.0.0", "10.1.0.0", "10.1.2.0", "192.0.2.0", "192.0.2.128"]
V6_BASES = ["2001:db8::", "2001:db8:1::", "2001:db8:1:2::", "fe80::"]
RAW_RULES = ["10.1.2.3", "192.0.2.1/24", "10.0.0.0/255.0.0.0", "2001:db8::/129",
             "::ffff:10.1.2.0/120", " 10.1.0.0/16", "fe80::%eth0/64", "10.1.2.0/024"]  # fmt: skip
ODD_ADDRESSES = ["", "10.1.2", "01.1.2.3", "fe80::1%eth0", "::10.1.2.3", "10.1.2.3\x00"]


@st.composite
def ip_rule_text(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["v4", "v6", "mapped", "raw"]))
    if kind == "raw":
        return draw(st.sampled_from(RAW_RULES))
    if kind == "v6":
        base = int(ipaddress.IPv6Address(draw(st.sampled_from(V6_BASES))))
        plen = draw(st.integers(32, 128))
        low = draw(st.integers(0, 255))
        net = ipaddress.IPv6Network(((base | low) >> (128 - plen) << (128 - plen), plen))
        return draw(st.sampled_from([str(net), net.exploded]))
    base = int(ipaddress.IPv4Address(draw(st.sampled_from(V4_BASES))))
    plen = draw(st.integers(8, 32))
    low = draw(st.integers(0, 255))
    net = ipaddress.IPv4Network(((base | low) >> (32 - plen) << (32 - plen), plen))
    if kind == "mapped":
        return f"::ffff:{net.network_address}/{plen + 96}"
    return str(net) if plen < 32 or draw(st.booleans()) else str(net.network_address)


@st.composite
def ip_query(draw: st.DrawFn) -> object:
    kind = draw(st.sampled_from(["v4", "v6", "mapped", "obj", "odd"]))
    if kind == "odd":
        return draw(st.one_of(st.sampled_from(ODD_ADDRESSES), st.text(max_size=8)))
    if kind == "v6":
        base = int(ipaddress.IPv6Address(draw(st.sampled_from(V6_BASES))))
        return str(ipaddress.IPv6Address(base | draw(st.integers(0, 2**16))))
    addr = ipaddress.IPv4Address(
        int(ipaddress.IPv4Address(draw(st.sampled_from(V4_BASES)))) | draw(st.integers(0, 511))
    )
    if kind == "mapped":
        return f"::ffff:{addr}"
    if kind == "obj":
        return draw(st.sampled_from([addr, ipaddress.IPv6Address(f"::ffff:{addr}")]))
    return str(addr)


@settings(max_examples=400)
@given(st.lists(ip_rule_text(), max_size=20), st.lists(ip_query(), min_size=1, max_size=20))
def test_ip_matching_agrees_with_reference(texts: list[str], queries: list[object]) -> None:
    rules = []
    for i, text in enumerate(texts):
        try:
            reference_network(text)
        except PatternError:
            with pytest.raises(PatternError):
                parse_ip_rule(text)
            continue
        rules.append((text, i))
    fast = Matcher.compile(ip_rules=rules)
    slow = ReferenceMatcher.compile(ip_rules=rules)
    expected = slow.match_ips(queries)
    assert [list(r) for r in fast.match_ips(queries)] == expected  # type: ignore[arg-type]
    assert [list(fast.match_ip(q)) for q in queries] == expected  # type: ignore[arg-type]
    for q in queries:
        assert [k for _, k in fast.explain_ip(q)] == slow.match_ip(q)  # type: ignore[arg-type]


@given(st.one_of(ip_rule_text(), st.text(alphabet="0123456789abcdef:./ ", max_size=24)))
def test_ip_rule_parse_agrees_with_ipaddress(text: str) -> None:
    try:
        net = reference_network(text)
    except PatternError:
        with pytest.raises(PatternError):
            parse_ip_rule(text, min_prefix_v4=0, min_prefix_v6=0)
        return
    rule = parse_ip_rule(text, min_prefix_v4=0, min_prefix_v6=0)
    assert (rule.version, rule.value, rule.prefixlen) == (
        net.version,
        int(net.network_address),
        net.prefixlen,
    )


@given(st.ip_addresses())
def test_any_address_in_its_own_slash_max(
    addr: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> None:
    assume(not (addr.version == 6 and addr.ipv4_mapped is not None))
    m = Matcher.compile(ip_rules=[(str(addr), "me")])
    assert list(m.match_ip(str(addr))) == ["me"]
    assert list(m.match_ip(addr)) == ["me"]
    top = 2**addr.max_prefixlen - 1
    assert m.match_ip(str(addr + 1 if int(addr) < top else addr - 1)) == ()
