"""Target normalisation: one canonical form per target, errors that name the place."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from takedown.errors import InputError
from takedown.model import Target, TargetKind
from takedown.registry.targets import (
    _normalise_component,
    _normalise_percent,
    _parse_fast,
    _parse_general,
    parse_target,
    parse_target_flags,
)

U, D, W, IP, NET = (
    TargetKind.URL,
    TargetKind.DOMAIN,
    TargetKind.WILDCARD,
    TargetKind.IP,
    TargetKind.CIDR,
)


@pytest.mark.parametrize(
    ("text", "kind", "value", "host"),
    [
        ("Example.COM.", D, "example.com", "example.com"),
        ("  twitter.com ", D, "twitter.com", "twitter.com"),
        ("пример.РФ", D, "xn--e1afmkfd.xn--p1ai", "xn--e1afmkfd.xn--p1ai"),
        ("XN--E1AFMKFD.xn--p1ai", D, "xn--e1afmkfd.xn--p1ai", "xn--e1afmkfd.xn--p1ai"),
        ("*.TwImg.com", W, "*.twimg.com", "twimg.com"),
        ("*.пример.рф.", W, "*.xn--e1afmkfd.xn--p1ai", "xn--e1afmkfd.xn--p1ai"),
        ("192.0.2.1", IP, "192.0.2.1", None),
        ("2001:0DB8:0000::0001", IP, "2001:db8::1", None),
        ("198.51.100.0/24", NET, "198.51.100.0/24", None),
        ("2001:DB8::/32", NET, "2001:db8::/32", None),
        ("192.0.2.7/32", IP, "192.0.2.7", None),
        ("2001:db8::7/128", IP, "2001:db8::7", None),
        ("HTTP://Twitter.COM:80", U, "http://twitter.com/", "twitter.com"),
        ("https://twitter.com:443/a#frag", U, "https://twitter.com/a", "twitter.com"),
        ("https://twitter.com:8443/a", U, "https://twitter.com:8443/a", "twitter.com"),
        ("http://twitter.com:443/", U, "http://twitter.com:443/", "twitter.com"),
        ("https://t.co/%7euser/%2f%3a", U, "https://t.co/~user/%2F%3A", "t.co"),
        ("https://t.co/a b|c", U, "https://t.co/a%20b%7Cc", "t.co"),
        ("https://t.co/x;y=1?q=a;b&c=d", U, "https://t.co/x;y=1?q=a;b&c=d", "t.co"),
        ("https://t.co/100%", U, "https://t.co/100%25", "t.co"),
        ("https://t.co/?", U, "https://t.co/", "t.co"),
        (
            "https://пример.рф/путь?к=в",
            U,
            "https://xn--e1afmkfd.xn--p1ai/%D0%BF%D1%83%D1%82%D1%8C?%D0%BA=%D0%B2",
            "xn--e1afmkfd.xn--p1ai",
        ),
        ("http://[2001:DB8::1]:80/x", U, "http://[2001:db8::1]/x", "2001:db8::1"),
        ("http://192.0.2.1:8080", U, "http://192.0.2.1:8080/", "192.0.2.1"),
    ],
)
def test_normalises(text: str, kind: TargetKind, value: str, host: str | None) -> None:
    assert parse_target(text) == Target(kind, value, host)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("*example.com", "*example.com"),
        ("*t.co*", "*t.co*"),
        ("a.*.Example.com", "a.*.example.com"),
        ("*.*.example.com", "*.*.example.com"),
        ("*пример.рф", "*xn--e1afmkfd.xn--p1ai"),
    ],
)
def test_malformed_masks_are_kept_as_literal_flagged_names(text: str, value: str) -> None:
    target, flags = parse_target_flags(text)
    assert target == Target(D, value, None)
    assert flags == ("malformed-mask",)


def test_wildcard_at_a_public_suffix_is_flagged() -> None:
    assert parse_target_flags("*.com.ru")[1] == ("public-suffix",)
    assert parse_target_flags("*.example.ru")[1] == ()


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("999.1.2.3", "invalid IP address"),
        ("1.2.3", "invalid IP address"),
        ("2001:db8::zz", "invalid IP"),
        ("fe80::1%eth0", "scope id"),
        ("10.1.2.3/8", "host bits set (the network is 10.0.0.0/8)"),
        ("10.0.0.0/33", "invalid CIDR"),
        ("10.0.0.0/", "invalid CIDR"),
        ("example.com/path", "invalid CIDR"),
        ("xn--zz.com", "IDNA"),
        ("-bad-.example", "hyphen"),
        ("a" * 64 + ".example", "invalid host"),
        ("exa mple.com", "invalid host"),
        ("http:///path", "without a host"),
        ("http://exa mple.com/", "invalid"),
        ("http://example.com:99999/", "invalid URL"),
        ("http://example.com/a\nb", "control character"),
        ("1http://x.com/", "scheme"),
        ("*", "not a host name"),
    ],
)
def test_errors_name_the_place(text: str, words: str) -> None:
    with pytest.raises(InputError) as info:
        parse_target(text, where="reg.csv:7")
    assert info.value.where == "reg.csv:7"
    assert words in info.value.message
    assert str(info.value).startswith("reg.csv:7: ")


# --- properties ---------------------------------------------------------------------

LABEL = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True).filter(
    lambda label: label[2:4] != "--"  # IDNA reserves "??--" (xn--), refused in IDN names
)
CYRILLIC = st.text(alphabet="абвгдеёжзийклмнопрстуфхцчшщыэюя", min_size=1, max_size=8)
HOSTS = st.builds(
    lambda labels, tld: ".".join([*labels, tld]),
    st.lists(LABEL | CYRILLIC, min_size=1, max_size=3),
    st.sampled_from(["com", "ru", "рф", "example", "org"]),
)
PATH_CHARS = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cc", "Cs", "Zl", "Zp")),
    max_size=20,
).map(lambda s: s.replace("#", ""))
V4 = st.ip_addresses(v=4)
V6 = st.ip_addresses(v=6)
NETS = st.one_of(
    st.tuples(V4, st.integers(0, 31)).map(lambda t: ipaddress.ip_network(f"{t[0]}/{t[1]}", False)),
    st.tuples(V6, st.integers(0, 127)).map(lambda t: ipaddress.ip_network(f"{t[0]}/{t[1]}", False)),
)
URLS = st.builds(
    lambda scheme, host, port, path, query: (
        f"{scheme}://{host}{port}/{path}" + (f"?{query}" if query else "")
    ),
    st.sampled_from(["http", "https", "HTTPS"]),
    HOSTS,
    st.sampled_from(["", ":80", ":443", ":8080"]),
    PATH_CHARS,
    PATH_CHARS,
)
TEXTS = st.one_of(
    HOSTS,
    HOSTS.map(lambda h: "*." + h),
    V4.map(str),
    V6.map(str),
    NETS.map(str),
    URLS,
)


@given(TEXTS)
def test_canonical_form_is_a_fixed_point(text: str) -> None:
    target = parse_target(text)
    assert parse_target(target.value) == target
    assert target.value.isascii()
    assert not any(c.isspace() for c in target.value)


@given(URLS)
def test_urls_keep_host_and_stay_parseable(text: str) -> None:
    target = parse_target(text)
    assert target.kind is U
    assert target.host is not None
    assert target.value.startswith(("http://", "https://"))
    assert "#" not in target.value
    assert " | " not in target.value  # so the rkn-csv URL separator can never be ambiguous
    rest = target.value.split("://", 1)[1]
    assert rest.split("/", 1)[0].split(":")[0] == target.host


@given(HOSTS, st.sampled_from(["", "."]))
def test_spelling_variants_of_a_domain_are_one_target(host: str, dot: str) -> None:
    assert parse_target(host.upper() + dot) == parse_target(host)


@given(st.text(max_size=40))
def test_never_raises_anything_but_input_error(text: str) -> None:
    try:
        target = parse_target(text)
    except InputError:
        return
    assert target.value == target.value.strip()


# --- fast paths against the general path ----------------------------------------------

OCTETS = st.one_of(
    st.integers(0, 255).map(str),
    st.integers(0, 999).map(str),
    st.integers(0, 99).map(lambda n: f"0{n}"),  # leading zeros: refused by ipaddress
)
QUADS = st.lists(OCTETS, min_size=3, max_size=5).map(".".join)
PREFIXES = st.one_of(st.integers(0, 40).map(str), st.integers(0, 32).map(lambda n: f"0{n}"))
PLAIN_HOSTS = st.builds(
    lambda labels, dot: ".".join(labels) + dot,
    st.lists(
        st.from_regex(r"(xn--|XN--)?[a-zA-Z0-9_-]{0,65}", fullmatch=True)
        | st.sampled_from(["1", "12"]),
        min_size=1,
        max_size=4,
    ),
    st.sampled_from(["", ".", ".."]),
)
CLEAN_OR_NOT = st.text(alphabet="aZ09-._~!$&'()*+,;=:@/?%|# \u044f\x7f", max_size=12)
FAST_URLS = st.builds(
    lambda scheme, host, port, path, query: f"{scheme}://{host}{port}{path}{query}",
    st.sampled_from(["http", "https", "ftp", "HTTP", "s+x.y-z", "1x"]),
    st.one_of(PLAIN_HOSTS, QUADS, HOSTS, st.sampled_from(["a b.com", "u@h.com", "[::1]", ""])),
    st.sampled_from(["", "", ":80", ":x"]),
    st.one_of(st.just(""), CLEAN_OR_NOT.map(lambda s: "/" + s)),
    st.one_of(st.just(""), CLEAN_OR_NOT.map(lambda s: "?" + s)),
)
V6_SPELLINGS = st.one_of(
    V6.map(str),
    V6.map(lambda a: a.exploded.upper()),
    st.tuples(V6, st.integers(0, 130)).map(lambda t: f"{t[0].exploded}/{t[1]}"),
    st.tuples(V6, st.integers(0, 128)).map(lambda t: f"{t[0]}/0{t[1]}"),
    st.text(alphabet="0af:F/1", max_size=30),
)
FAST_DOMAIN = st.one_of(
    QUADS,
    V6_SPELLINGS,
    st.builds(lambda q, p: f"{q}/{p}", QUADS, PREFIXES),
    NETS.map(str),
    PLAIN_HOSTS,
    FAST_URLS,
    st.text(alphabet="abc019.-_/:*", max_size=20),
)


def _general(text: str) -> tuple[Target, tuple[str, ...]] | None:
    try:
        return _parse_general(text)
    except InputError:
        return None


@settings(max_examples=1000)
@given(FAST_DOMAIN)
def test_fast_paths_agree_with_the_general_path(text: str) -> None:
    fast = _parse_fast(text)
    if fast is not None:
        assert fast == _general(text)


V4_NETS = st.tuples(V4, st.integers(0, 32)).map(
    lambda t: str(ipaddress.ip_network(f"{t[0]}/{t[1]}", strict=False))
)
ASCII_HOSTS = st.builds(
    lambda labels, dot: ".".join([*labels, "com"]) + dot,
    st.lists(LABEL, min_size=1, max_size=3),
    st.sampled_from(["", "."]),
)


V6_HEX = V6.map(str).filter(lambda a: "." not in a)  # newer Pythons write ::ffff:1.2.3.4
V6_NETS = st.tuples(V6, st.integers(0, 128)).map(
    lambda t: str(ipaddress.ip_network(f"{t[0]}/{t[1]}", strict=False))
)


@settings(max_examples=500)
@given(st.one_of(V4.map(str), V4_NETS, V6_HEX, V6.map(lambda a: a.exploded), V6_NETS, ASCII_HOSTS))
def test_fast_paths_take_the_common_shapes(text: str) -> None:
    # every dotted quad, IPv4 prefix, IPv6 address or prefix written in hex groups and
    # lower-case ASCII name takes the fast path
    assert _parse_fast(text) == _parse_general(text)


def test_fast_url_path_keeps_the_text() -> None:
    for text in ("https://news1.com/p/1?id=2", "http://192.0.2.1/a;b=c@d", "https://x.ru"):
        fast = _parse_fast(text)
        assert fast is not None
        assert fast == _parse_general(text)
    assert _parse_fast("https://news1.com/p|q") is None  # needs re-encoding: general path
    assert _parse_fast("https://news1.com:443/") is None


@settings(max_examples=1000)
@given(st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=30))
def test_component_without_percent_signs_agrees_with_the_loop(text: str) -> None:
    assert _normalise_component(text) == _normalise_percent(text)
