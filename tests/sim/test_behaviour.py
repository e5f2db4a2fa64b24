"""Behaviour files and the simulator's sans-IO state: determinism and the 2021 curve."""

from __future__ import annotations

import json
import random
from datetime import timedelta
from pathlib import Path

import pytest

from takedown.clock import parse_time
from takedown.errors import Conflict, InputError
from takedown.sim import behaviour
from takedown.sim.state import SimState

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "behaviours"


def notice(nid: int, items: list[int]) -> tuple[str, bytes, dict]:
    doc = {
        "notice_id": nid,
        "items": [{"id": i, "target": f"https://twitter.com/u/status/{i}"} for i in items],
    }
    return str(nid), json.dumps(doc).encode(), doc


def feed(state: SimState, notices: list[tuple[str, bytes, dict]], at: str) -> None:
    for key, body, doc in notices:
        state.receive(key, body, doc, parse_time(at))


@pytest.mark.parametrize("name", ["ignore", "comply-24h", "twitter-2021", "withhold"])
def test_examples_load(name: str) -> None:
    b = behaviour.load(EXAMPLES / f"{name}.toml")
    assert b.name == name


def test_twitter_2021_curve() -> None:
    b = behaviour.load(EXAMPLES / "twitter-2021.toml")
    state = SimState(b)
    backlog = [notice(n, list(range(n * 100 + 1, n * 100 + 101))) for n in range(62)]
    feed(state, backlog, "2021-03-01")
    assert state.tick(parse_time("2021-03-10")) == []  # ignored until the slowdown
    assert state.tick(parse_time("2021-03-15")) == []
    day = parse_time("2021-03-15")
    while day < parse_time("2021-05-17"):
        day += timedelta(days=1)
        state.tick(day)
    counts = state.counts()
    assert counts["items"] == 6200 and counts["removed"] == 6200 - 563
    # from 17 May a new item is removed within 24 h of its notice
    key, body, doc = notice(999, [10_001])
    state.receive(key, body, doc, parse_time("2021-05-20T08:00:00Z"))
    state.tick(parse_time("2021-05-20T08:30:00Z"))
    assert state.items[10_001].fate is None
    assert 10_001 in {a.item_id for a in state.tick(parse_time("2021-05-21T07:00:00Z"))}


def test_same_notices_same_ticks_same_actions_whatever_the_order() -> None:
    b = behaviour.load(EXAMPLES / "twitter-2021.toml")
    notices = [notice(n, list(range(n * 10 + 1, n * 10 + 11))) for n in range(40)]
    shuffled = notices[:]
    random.Random(7).shuffle(shuffled)
    a, c = SimState(b), SimState(b)
    feed(a, notices, "2021-03-01")
    feed(c, shuffled, "2021-03-01")
    t = parse_time("2021-03-15")
    for _ in range(30):
        t += timedelta(days=2)
        assert a.tick(t) == c.tick(t)
    assert a.counts() == c.counts()


def test_withhold_and_reject_fates() -> None:
    b = behaviour.load(EXAMPLES / "withhold.toml")
    state = SimState(b)
    feed(state, [notice(1, list(range(1, 201)))], "2021-01-01")
    actions = state.tick(parse_time("2021-01-02"))
    assert len(actions) == 200
    kinds = {a.response for a in actions}
    assert kinds == {"restricted", "rejected"}
    rejected = [a for a in actions if a.response == "rejected"]
    assert 0 < len(rejected) < 30 and all(a.reason and a.policy for a in rejected)
    assert state.status("twitter.com", "/u/status/1", abroad=False) in {451, 200}
    withheld = next(a.item_id for a in actions if a.response == "restricted")
    assert state.status("twitter.com", f"/u/status/{withheld}", abroad=False) == 451
    assert state.status("twitter.com", f"/u/status/{withheld}", abroad=True) == 200
    assert b.is_abroad("127.0.0.3") and not b.is_abroad("127.0.0.1")


def test_duplicate_and_conflicting_keys() -> None:
    state = SimState(behaviour.Behaviour())
    key, body, doc = notice(5, [1, 2])
    assert state.receive(key, body, doc, parse_time("2021-01-01")) == "accepted"
    assert state.receive(key, body, doc, parse_time("2021-01-01")) == "duplicate"
    _, other, odoc = notice(5, [1, 2, 3])
    with pytest.raises(Conflict):
        state.receive(key, other, odoc, parse_time("2021-01-01"))
    assert state.stats.accepted == 1 and state.stats.duplicates == 1 and len(state.items) == 2


@pytest.mark.parametrize(
    ("data", "where"),
    [
        ({"bogus": 1}, "behaviour"),
        ({"withhold_share": 1.5}, "withhold_share"),
        (
            {"progress": [{"at": "2021-01-02", "share": 0.5}, {"at": "2021-01-01", "share": 0.6}]},
            "progress[1]",
        ),
        ({"progress": [{"at": "not a date", "share": 0.5}]}, "progress[0].at"),
        ({"prompt": {"from": "2021-01-01", "min_delay": "5h", "max_delay": "1h"}}, "prompt"),
        ({"hosts": {"*.com": "media"}}, ""),
        ({"abroad": ["not-a-net"]}, "abroad[0]"),
    ],
)
def test_bad_behaviour_data(data: dict, where: str) -> None:
    with pytest.raises(InputError) as info:
        behaviour.parse(data)
    assert where in str(info.value)
