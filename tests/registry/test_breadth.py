"""The breadth check: what the register refuses as too broad or unpublishable, per profile."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from takedown import config as config_mod
from takedown.errors import InputError, TakedownError
from takedown.feed.directives import dumps, loads
from takedown.match import Matcher
from takedown.model import Directive, DirectiveSet, HostRule, MeasureAction, Target, TargetKind
from takedown.registry.breadth import (
    MAX_TARGET_BYTES,
    BreadthLimits,
    is_rule,
    limits_for,
    target_problem,
    text_problem,
)
from takedown.registry.targets import FLAG_PUBLIC_SUFFIX, parse_target, parse_target_flags

DEFAULT = limits_for()
T0 = datetime(2021, 3, 10, tzinfo=UTC)


def problem(text: str, limits: BreadthLimits = DEFAULT) -> str | None:
    return target_problem(parse_target(text), limits)


def test_default_limits_come_from_the_default_profile() -> None:
    assert BreadthLimits(16, 32, 8192, "ru-2021") == DEFAULT
    assert limits_for("eu-tco").profile == "eu-tco"
    with pytest.raises(InputError, match="unknown profile 'xx'"):
        limits_for("xx")


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("com", "'com' is a public suffix"),
        ("co.uk", "'co.uk' is a public suffix"),
        ("com.ru", "'com.ru' is a public suffix"),
        ("github.io", "'github.io' is a public suffix"),  # the list's private section too
        ("*.com", "'*.com' covers every name under the public suffix 'com'"),
        ("*.co.uk", "'*.co.uk' covers every name under the public suffix 'co.uk'"),
        ("*.uk", "'*.uk' covers every name under the public suffix 'uk'"),
        ("xn--p1ai", "is a public suffix"),  # .рф
    ],
)
def test_public_suffixes_are_refused(text: str, words: str) -> None:
    found = problem(text)
    assert found is not None and words in found


def test_parse_flags_the_wildcard_the_check_refuses() -> None:
    target, flags = parse_target_flags("*.com")
    assert flags == (FLAG_PUBLIC_SUFFIX,) and target_problem(target, DEFAULT) is not None


@pytest.mark.parametrize(
    "text",
    ["example.com", "twitter.com", "*.twimg.com", "t.co", "*.t.co", "x.co.uk", "a.github.io"],
)
def test_registrable_names_and_wildcards_under_them_pass(text: str) -> None:
    assert problem(text) is None


@pytest.mark.parametrize(
    ("text", "refused"),
    [
        ("10.0.0.0/15", True),
        ("10.0.0.0/16", False),
        ("198.51.100.0/24", False),
        ("198.51.100.7", False),
        ("2001:db8::/31", True),
        ("2001:db8::/32", False),
        ("2001:db8::1", False),
        ("::/0", True),
        ("0.0.0.0/0", True),
        # the matcher reads an IPv4-mapped prefix as the IPv4 prefix it maps (::ffff:0:0/96
        # is all of IPv4): the IPv4 limit applies, not the IPv6 one
        ("::ffff:0.0.0.0/96", True),
        ("::ffff:10.0.0.0/111", True),
        ("::ffff:10.0.0.0/112", False),
    ],
)
def test_ip_prefixes_against_the_default_limits(text: str, refused: bool) -> None:
    assert (problem(text) is not None) == refused


def test_ip_reason_names_the_limit_and_the_profile() -> None:
    assert problem("10.0.0.0/15") == (
        "IP prefix '10.0.0.0/15' covers 131,072 addresses: broader than /16, "
        "the IPv4 limit of profile ru-2021"
    )
    assert problem("2001:db8::/31") == (
        "IP prefix '2001:db8::/31' covers 2^97 addresses: broader than /32, "
        "the IPv6 limit of profile ru-2021"
    )


def test_a_profile_sets_its_own_limits(tmp_path: Path) -> None:
    path = tmp_path / "takedown.toml"
    path.write_text("[profiles.eu-tco]\nmin_prefix_v4 = 20\nmin_prefix_v6 = 48\n")
    cfg = config_mod.load(path)
    strict = limits_for("eu-tco", config=cfg)
    assert (strict.min_prefix_v4, strict.min_prefix_v6) == (20, 48)
    assert problem("10.0.0.0/19", strict) is not None
    assert problem("10.0.0.0/20", strict) is None
    assert problem("2001:db8::/47", strict) is not None
    assert problem("2001:db8::/48", strict) is None
    assert "limit of profile eu-tco" in (problem("10.0.0.0/16", strict) or "")
    assert limits_for("ru-2021", config=cfg) == DEFAULT  # the others keep the defaults


def test_a_profile_cannot_admit_what_the_points_refuse() -> None:
    """A profile may allow any prefix; the feed's own limit (/8, /32) still applies, so
    what the check admits always compiles."""
    lax = BreadthLimits(min_prefix_v4=0, min_prefix_v6=0, profile="lax")
    assert problem("10.0.0.0/12", lax) is None
    found = problem("10.0.0.0/7", lax)
    assert found is not None and "broader than /8" in found


def test_the_default_profile_can_be_overridden_too(tmp_path: Path) -> None:
    path = tmp_path / "takedown.toml"
    path.write_text("[profiles.ru-2021]\nmin_prefix_v4 = 24\n")
    limits = limits_for(config=config_mod.load(path))
    assert limits.min_prefix_v4 == 24 and problem("198.51.0.0/16", limits) is not None


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ("min_prefix_v4 = 33", "min_prefix_v4"),
        ("min_prefix_v4 = -1", "min_prefix_v4"),
        ('min_prefix_v4 = "16"', "min_prefix_v4"),
        ("min_prefix_v4 = true", "min_prefix_v4"),
        ("min_prefix_v4 = 16.0", "min_prefix_v4"),
        ("min_prefix_v6 = 129", "min_prefix_v6"),
        ("min_prefix_v6 = 1.5", "min_prefix_v6"),
    ],
)
def test_a_bad_limit_is_an_input_error_naming_the_key(tmp_path: Path, line: str, key: str) -> None:
    path = tmp_path / "takedown.toml"
    path.write_text(f"[profiles.eu-tco]\n{line}\n")
    with pytest.raises(InputError) as info:
        config_mod.load(path)
    assert info.value.where == f"{path}: profiles.eu-tco.{key}"
    assert "whole number" in info.value.message


def test_limits_at_the_ends_of_their_range_are_accepted(tmp_path: Path) -> None:
    path = tmp_path / "takedown.toml"
    path.write_text("[profiles.x]\nmin_prefix_v4 = 0\nmin_prefix_v6 = 128\n")
    p = config_mod.load(path).profile("x")
    assert (p.min_prefix_v4, p.min_prefix_v6) == (0, 128)


# --- length and control characters ------------------------------------------------------


def test_a_target_over_8_kib_is_refused_counting_utf8_bytes() -> None:
    base = "https://example.com/"
    fits = Target(TargetKind.URL, base + "a" * (MAX_TARGET_BYTES - len(base)), "example.com")
    over = Target(TargetKind.URL, fits.value + "a", "example.com")
    assert target_problem(fits, DEFAULT) is None
    found = target_problem(over, DEFAULT)
    assert found is not None and "8193 bytes long; the limit is 8192" in found
    assert len(found) < 200  # the reason shows the start of the text, not all of it
    # 4096 two-byte characters are 8 KiB exactly; one more is over
    assert text_problem("я" * 4096, DEFAULT) is None
    assert text_problem("я" * 4097, DEFAULT) is not None


@pytest.mark.parametrize(
    "raw",
    [
        "\x00",
        "exa\tmple.com",
        "example.com\x00",
        "\x1fexample.com",  # parsing strips this one silently
        "example.com\n",  # and this
        "example.com\x85",  # and this (C1 NEL)
        "https://example.com/a\x85b",  # parsing percent-encodes this one
        "https://example.com/a\x7fb",
    ],
)
def test_control_characters_in_the_raw_text_are_refused(raw: str) -> None:
    found = text_problem(raw, DEFAULT)
    assert found is not None and "control character" in found


def test_the_raw_check_finds_what_parsing_would_hide() -> None:
    raw = "\x1fexample.com"
    assert parse_target(raw) == parse_target("example.com")  # why the raw check exists
    assert "U+001F at position 0" in (text_problem(raw, DEFAULT) or "")


def test_control_characters_in_a_stored_target_are_refused() -> None:
    for target in [
        Target(TargetKind.DOMAIN, "exa\x01mple.com", "exa\x01mple.com"),
        Target(TargetKind.URL, "https://example.com/\x1b[31m", "example.com"),
    ]:
        assert "control character" in (target_problem(target, DEFAULT) or "")


@pytest.mark.parametrize("text", ["example.com", "https://пример.рф/путь?q=1", "10.0.0.0/8"])
def test_clean_text_passes_the_raw_check(text: str) -> None:
    assert text_problem(text, DEFAULT) is None


# --- URLs and malformed masks are never whole-host rules ---------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "https://www.youtube.com/watch?v=dQw4w9WgXcQ",
        "https://twitter.com/user/status/1",
        "https://user.github.io/page",
        "https://github.io/",  # even a URL on a public suffix names one page
        "http://104.16.2.3/x",
    ],
)
def test_a_url_is_not_refused_for_being_on_a_big_host(text: str) -> None:
    target = parse_target(text)
    assert not is_rule(target) and target_problem(target, DEFAULT) is None


def test_a_malformed_mask_is_a_name_not_a_rule() -> None:
    target = parse_target("*t.co*")  # the 2021 substring rule, kept as its literal text
    assert not is_rule(target) and target_problem(target, DEFAULT) is None
    assert all(is_rule(parse_target(t)) for t in ["t.co", "*.t.co", "1.2.3.4", "10.0.0.0/8"])


# --- what the check admits, every enforcement point compiles ------------------------------


def _compiles(target: Target) -> None:
    hosts = (
        (HostRule(target.value),) if target.kind in (TargetKind.DOMAIN, TargetKind.WILDCARD) else ()
    )
    ips = () if hosts else (target.value,)
    directive = Directive(
        "r1", MeasureAction.BLOCK, hosts, ips, scope={"*": 100.0}, expires=T0, decisions=("D",)
    )
    ds = loads(dumps(DirectiveSet(1, 1, T0, (directive,))))
    Matcher.compile([(h.pattern, 1) for h in hosts], [(r, 1) for r in ips])
    assert ds.directives[0].hosts == hosts and ds.directives[0].ip_ranges == ips


_label = st.sampled_from(["a", "t", "co", "com", "uk", "xn--p1ai", "github", "io", "1", "x-y"])
_name = st.lists(_label, min_size=1, max_size=4).map(".".join)
_v6_base = st.sampled_from(["2001:db8::", "::", "::ffff:0.0.0.0", "fe80::"])
_texts = st.one_of(
    _name,
    _name.map("*.{}".format),
    st.tuples(st.integers(0, 255), st.integers(0, 32)).map(lambda t: f"{t[0]}.0.0.0/{t[1]}"),
    st.tuples(
        st.sampled_from(["2001:db8::", "::", "::ffff:0.0.0.0", "fe80::"]), st.integers(0, 128)
    ).map(lambda t: f"{t[0]}/{t[1]}"),
)


@given(_texts, st.integers(0, 32), st.integers(0, 128))
@settings(max_examples=400, deadline=None)
def test_whatever_the_check_admits_compiles(text: str, v4: int, v6: int) -> None:
    try:
        target = parse_target(text)
    except TakedownError:
        return  # the parser refuses it: nothing reaches the register
    limits = BreadthLimits(min_prefix_v4=v4, min_prefix_v6=v6)
    if is_rule(target) and target_problem(target, limits) is None:
        _compiles(target)
