"""The pure decision: which directive a flow gets, from names, address, subscriber and now."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from takedown.enforce.decide import Action, compile_index, decide
from takedown.enforce.subscribers import Subscribers
from takedown.model import Directive, DirectiveSet, HostRule, MeasureAction

NOW = datetime(2021, 3, 10, 12, 0, tzinfo=UTC)
SUBS = Subscribers.from_mapping(
    {"mobile": {"ranges": ["10.64.0.0/10"]}, "fixed": {"ranges": ["192.168.0.0/16"]}}
)

MEDIA = Directive(
    id="media",
    action=MeasureAction.THROTTLE,
    hosts=(HostRule("*.twimg.com", "media"), HostRule("video.twitter.com", "media")),
    rate_kbps=128,
    scope={"mobile": 100.0, "fixed": 50.0},
    decisions=("RKN-1",),
    reference_url="https://register.example/d/media",
    valid_from=NOW - timedelta(days=1),
    expires=NOW + timedelta(days=60),
)
SLOWER = Directive(
    id="slower",
    action=MeasureAction.THROTTLE,
    hosts=(HostRule("pbs.twimg.com", "media"),),
    rate_kbps=64,
    scope={"mobile": 100.0},
)
BLOCK = Directive(
    id="block",
    action=MeasureAction.BLOCK,
    hosts=(HostRule("linkedin.com"),),
    ip_ranges=("198.51.100.0/24", "2001:db8:1::/48"),
    decisions=("Court-33",),
)
INDEX = compile_index(DirectiveSet(1, 7, NOW, (MEDIA, SLOWER, BLOCK)))
MOBILE, FIXED, OTHER = "10.64.1.2", "192.168.3.4", "172.16.0.9"


def test_no_rule_passes() -> None:
    d = decide(INDEX, ["example.org"], "203.0.113.5", MOBILE, NOW, SUBS)
    assert d.action == Action.PASS
    assert d.subscriber_class == "mobile"
    assert d.content_class == "none"


def test_label_boundaries_only() -> None:
    for name in ["twimg.com", "nottwimg.com", "twimg.com.evil.example", "xlinkedin.com"]:
        assert decide(INDEX, [name], None, MOBILE, NOW, SUBS).action == Action.PASS, name
    d = decide(INDEX, ["abs.twimg.com"], None, MOBILE, NOW, SUBS)
    assert (d.action, d.rate_kbps, d.content_class, d.directives) == (
        Action.THROTTLE,
        128,
        "media",
        ("media",),
    )
    assert d.decisions == ("RKN-1",)
    assert d.reference_urls == ("https://register.example/d/media",)


def test_names_are_normalised() -> None:
    d = decide(INDEX, ["ABS.TWIMG.COM."], None, MOBILE, NOW, SUBS)
    assert d.action == Action.THROTTLE
    # garbage names are ignored, not fatal
    d = decide(INDEX, ["", "bad name..", "\x00"], None, MOBILE, NOW, SUBS)
    assert d.action == Action.PASS


def test_lowest_rate_wins_and_block_beats_throttle() -> None:
    d = decide(INDEX, ["pbs.twimg.com"], None, MOBILE, NOW, SUBS)
    assert (d.action, d.rate_kbps, d.directives) == (Action.THROTTLE, 64, ("slower",))
    # any revealed name counts: the CONNECT name and the SNI may differ
    d = decide(INDEX, ["pbs.twimg.com", "linkedin.com"], None, MOBILE, NOW, SUBS)
    assert (d.action, d.directives, d.decisions) == (Action.BLOCK, ("block",), ("Court-33",))
    assert d.rate_kbps is None


def test_destination_address_rules() -> None:
    assert decide(INDEX, [], "198.51.100.77", OTHER, NOW, SUBS).action == Action.BLOCK
    assert decide(INDEX, [], "2001:db8:1::5", OTHER, NOW, SUBS).action == Action.BLOCK
    assert decide(INDEX, [], "198.51.101.1", OTHER, NOW, SUBS).action == Action.PASS
    assert decide(INDEX, ["example.org"], "198.51.100.1", OTHER, NOW, SUBS).action == Action.BLOCK


def test_scope_by_subscriber_class() -> None:
    # "other" subscribers are in no class and MEDIA names no "*": out of scope
    d = decide(INDEX, ["abs.twimg.com"], None, OTHER, NOW, SUBS)
    assert d.action == Action.PASS
    assert d.content_class == "media"
    assert "share" in d.reason
    # a fixed subscriber is in or out by a stable hash, the same every time
    first = decide(INDEX, ["abs.twimg.com"], None, FIXED, NOW, SUBS).action
    for _ in range(3):
        assert decide(INDEX, ["abs.twimg.com"], None, FIXED, NOW, SUBS).action == first


def test_half_of_fixed_subscribers() -> None:
    net = ipaddress.ip_network("192.168.0.0/16")
    throttled = sum(
        decide(INDEX, ["abs.twimg.com"], None, str(net[i]), NOW, SUBS).action == Action.THROTTLE
        for i in range(1, 10_001)
    )
    assert 4800 <= throttled <= 5200
    # mobile: all of them
    mob = ipaddress.ip_network("10.64.0.0/10")
    assert all(
        decide(INDEX, ["abs.twimg.com"], None, str(mob[i]), NOW, SUBS).action == Action.THROTTLE
        for i in range(1, 500)
    )


def test_validity_window() -> None:
    assert decide(INDEX, ["abs.twimg.com"], None, MOBILE, NOW - timedelta(days=2), SUBS).action == (
        Action.PASS
    )
    later = MEDIA.expires
    assert later is not None
    assert decide(INDEX, ["abs.twimg.com"], None, MOBILE, later, SUBS).action == Action.PASS
    assert (
        decide(INDEX, ["abs.twimg.com"], None, MOBILE, later - timedelta(seconds=1), SUBS).action
        == Action.THROTTLE
    )
    assert INDEX.in_force_ids(later) == frozenset({"slower", "block"})


def test_content_class_any_and_default_scope() -> None:
    d = Directive(id="all", action=MeasureAction.THROTTLE, hosts=(HostRule("t.co"),), rate_kbps=256)
    index = compile_index([d])
    got = decide(index, ["t.co"], None, None, NOW)
    assert (got.action, got.content_class, got.subscriber_class) == (
        Action.THROTTLE,
        "any",
        "other",
    )
    # a partial share without a subscriber address: nothing stable to hash, stays out
    half = Directive(
        id="half", action=MeasureAction.BLOCK, hosts=(HostRule("t.co"),), scope={"*": 50.0}
    )
    assert decide(compile_index([half]), ["t.co"], None, None, NOW).action == Action.PASS


@given(
    names=st.lists(st.text(max_size=40), max_size=4),
    ip=st.one_of(st.none(), st.ip_addresses().map(str), st.text(max_size=20)),
    sub=st.one_of(st.none(), st.ip_addresses().map(str), st.text(max_size=20)),
)
def test_never_raises(names: list[str], ip: str | None, sub: str | None) -> None:
    d = decide(INDEX, names, ip, sub, NOW, SUBS)
    assert d.action in set(Action)
