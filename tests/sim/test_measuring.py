"""The demo's expected restriction for a flow: the enforcement point's ranking, no sockets."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from takedown.enforce.subscribers import Subscribers
from takedown.model import Directive, HostRule, MeasureAction
from takedown.sim.measuring import expected_restriction

NOW = datetime(2021, 4, 20, tzinfo=UTC)
SUBS = Subscribers({}, key=b"k")
MEDIA = (HostRule("*.twimg.com", "media"),)


def throttle(id: str, rate: int, **kw: object) -> Directive:
    return Directive(id, MeasureAction.THROTTLE, hosts=MEDIA, rate_kbps=rate, **kw)  # type: ignore[arg-type]


def test_nothing_applies() -> None:
    assert expected_restriction((), NOW, SUBS, "mobile", "127.0.1.10", "media") == (None, None)
    only_text = Directive("t", MeasureAction.BLOCK, hosts=(HostRule("twitter.com", "text"),))
    assert expected_restriction([only_text], NOW, SUBS, "mobile", "127.0.1.10", "media") == (
        None,
        None,
    )


def test_the_lower_rate_wins_and_a_block_beats_any_throttle() -> None:
    slow, slower = throttle("m1", 1000), throttle("m2", 128)
    got = expected_restriction([slow, slower], NOW, SUBS, "mobile", "127.0.1.10", "media")
    assert got == ("throttle", 128.0)
    block = Directive("m3", MeasureAction.BLOCK, hosts=(HostRule("*.twimg.com", "any"),))
    got = expected_restriction([slow, block, slower], NOW, SUBS, "fixed", "127.0.2.10", "media")
    assert got == ("block", None)


def test_out_of_force_or_out_of_share_does_not_apply() -> None:
    later = throttle("m1", 128, valid_from=NOW + timedelta(days=1))
    nobody_fixed = throttle("m2", 64, scope={"mobile": 100.0, "fixed": 0.0})
    directives = [later, nobody_fixed]
    assert expected_restriction(directives, NOW, SUBS, "fixed", "127.0.2.10", "media") == (
        None,
        None,
    )
    assert expected_restriction(directives, NOW, SUBS, "mobile", "127.0.1.10", "media") == (
        "throttle",
        64.0,
    )
