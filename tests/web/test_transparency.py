"""The public lookup's pure core: the directive it says applies is the one the network picks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from takedown.enforce.decide import Action, compile_index, decide
from takedown.errors import PatternError
from takedown.match import parse_host_rule
from takedown.model import Directive, HostRule, MeasureAction
from takedown.transparency import host_hits, public_index, winning_ids

NOW = datetime(2021, 3, 10, 12, tzinfo=UTC)
BLOCK, THROTTLE = MeasureAction.BLOCK, MeasureAction.THROTTLE

DIRECTIVES = (
    Directive("slow-media", THROTTLE, (HostRule("*.twimg.com", "media"),), rate_kbps=128),
    Directive("slower-pbs", THROTTLE, (HostRule("pbs.twimg.com", "media"),), rate_kbps=64),
    Directive("tie-pbs", THROTTLE, (HostRule("*.twimg.com", "media"),), rate_kbps=64),
    Directive(
        "expired-block",
        BLOCK,
        (HostRule("pbs.twimg.com", "media"),),
        expires=NOW - timedelta(days=1),
    ),
    Directive("future-block", BLOCK, (HostRule("t.co", "links"),), valid_from=NOW + timedelta(1)),
    Directive("links", THROTTLE, (HostRule("t.co", "links"),), rate_kbps=256),
    Directive("casino", BLOCK, (HostRule("casino.example"),), ip_ranges=("198.51.100.0/24",)),
    Directive("casino-slow", THROTTLE, (HostRule("casino.example"),), rate_kbps=32),
)
HOSTS = [
    "pbs.twimg.com",
    "video.twimg.com",
    "t.co",
    "casino.example",
    "198.51.100.7",
    "microsoft.com",
]


@pytest.mark.parametrize("host", HOSTS)
def test_the_lookup_picks_what_decide_picks(host: str) -> None:
    compiled = public_index(DIRECTIVES)
    _query, hits = host_hits(compiled, host)
    found = [compiled.directives[i] for i in sorted(hits)]
    chosen = winning_ids(found, NOW)
    is_ip = host[0].isdigit()
    verdict = decide(
        compile_index(DIRECTIVES), [] if is_ip else [host], host if is_ip else None, None, NOW
    )
    assert chosen == set(verdict.directives)
    assert (verdict.action == Action.PASS) == (not chosen)


def test_a_rule_the_matcher_refuses_is_dropped_not_fatal() -> None:
    with pytest.raises(PatternError):
        parse_host_rule("*.com")
    bad = Directive(
        "bad", BLOCK, (HostRule("*.com"), HostRule("ok.example")), ip_ranges=("0.0.0.0/0",)
    )
    with pytest.raises(PatternError):
        compile_index([bad])
    compiled = public_index((bad,))
    assert compiled.directives == (bad,)  # published as is, every rule counted
    assert host_hits(compiled, "evil.com")[1] == {}
    assert list(host_hits(compiled, "ok.example")[1]) == [0]
    assert host_hits(compiled, "192.0.2.1")[1] == {}
