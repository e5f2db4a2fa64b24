"""The one wording of an action, for people."""

from __future__ import annotations

import pytest

from takedown.model import Directive, MeasureAction, describe_action


@pytest.mark.parametrize(
    ("action", "rate", "text"),
    [
        ("throttle", 128, "throttle 128 kbit/s"),
        (MeasureAction.THROTTLE, 1000, "throttle 1000 kbit/s"),
        ("block", None, "block"),
        ("block", 128, "block"),  # a block has no rate, whatever the row says
        ("throttle", None, "throttle"),
    ],
)
def test_describe_action(action: str, rate: int | None, text: str) -> None:
    assert describe_action(action, rate) == text


def test_describe_refuses_an_unknown_action() -> None:
    with pytest.raises(ValueError):
        describe_action("slow", 1)


def test_directive_describes_itself() -> None:
    assert (
        Directive("m1", MeasureAction.THROTTLE, rate_kbps=128).describe() == "throttle 128 kbit/s"
    )
