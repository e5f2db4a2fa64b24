"""The records that cross stages: one wording of an action, states as of a moment."""

from __future__ import annotations

import dataclasses
import inspect
import pickle
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import pytest

from takedown.model import (
    Decision,
    Directive,
    MeasureAction,
    MeasureRecord,
    MeasureState,
    NoticeRecord,
    describe_action,
    describe_scope,
    record,
)


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


def test_describe_scope_orders_classes_and_trims_zeros() -> None:
    assert describe_scope({"mobile": 100.0, "fixed": 50.0}) == "fixed 50%, mobile 100%"
    assert describe_scope({}) == ""


def test_measure_record_as_of_a_moment() -> None:
    t0 = datetime(2021, 3, 10, tzinfo=UTC)
    m = MeasureRecord(
        id=1,
        platform="twitter",
        action=MeasureAction.THROTTLE,
        state=MeasureState.LIFTED,
        proposed_at=t0,
        reason="r",
        created_by="a",
        rate_kbps=128,
        starts_at=t0,
        lifted_at=t0 + timedelta(days=10),
    )
    assert m.describe() == "throttle 128 kbit/s"
    assert m.state_at(t0 - timedelta(seconds=1)) is None
    assert m.state_at(t0) == MeasureState.ACTIVE
    assert m.state_at(t0 + timedelta(days=10)) == MeasureState.LIFTED
    doc = m.as_json()
    assert (doc["action"], doc["state"], doc["platform"]) == ("throttle", "lifted", "twitter")
    assert type(doc["action"]) is str and type(doc["state"]) is str


def test_notice_record_is_overdue_only_with_open_items() -> None:
    t0 = datetime(2021, 3, 10, tzinfo=UTC)
    n = NoticeRecord(
        1, "twitter", "initial", t0, t0 + timedelta(days=1), "delivered", 1, t0, None, 3, 1
    )
    assert not n.overdue(t0) and n.overdue(t0 + timedelta(days=1))
    assert n.as_json(t0)["deadline_at"] == "2021-03-11T00:00:00+00:00"
    assert not replace(n, open_items=0).overdue(t0 + timedelta(days=2))


@record
class _Three:
    a: int
    b: str = "b"
    c: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class _ThreeByDataclass:
    a: int
    b: str = "b"
    c: tuple[int, ...] = ()


def test_a_record_is_built_as_its_dataclass_would_be() -> None:
    """@record's fast constructor takes the same arguments, defaults and all, and the
    instance is the same frozen, hashable, comparable, picklable value."""
    for args, kwargs in [((1,), {}), ((1, "x"), {}), ((), {"a": 1, "c": (2,)}), ((1,), {"b": "y"})]:
        fast, plain = _Three(*args, **kwargs), _ThreeByDataclass(*args, **kwargs)
        assert (fast.a, fast.b, fast.c) == (plain.a, plain.b, plain.c)
        assert fast == _Three(*args, **kwargs) and hash(fast) == hash(_Three(*args, **kwargs))
        assert pickle.loads(pickle.dumps(fast)) == fast
        assert repr(fast).removeprefix("test_model.") == repr(plain).replace("ByDataclass", "")
    assert dataclasses.replace(_Three(1), b="z") == _Three(1, "z")
    with pytest.raises(dataclasses.FrozenInstanceError):
        _Three(1).a = 2  # type: ignore[misc]
    for bad_args, bad_kwargs in [((), {}), ((1, "x", (), 4), {}), ((1,), {"d": 1})]:
        with pytest.raises(TypeError):
            _Three(*bad_args, **bad_kwargs)
    assert inspect.signature(_Three) == inspect.signature(_ThreeByDataclass)
    decision = Decision("27-31-2021/Ид1-21", "Роскомнадзор")
    assert (decision.reference, decision.authority, decision.date) == (
        "27-31-2021/Ид1-21",
        "Роскомнадзор",
        None,
    )


def test_a_record_refuses_fields_it_cannot_build() -> None:
    with pytest.raises(TypeError, match="plain fields only"):

        @record
        class _WithFactory:
            a: list[int] = dataclasses.field(default_factory=list)
