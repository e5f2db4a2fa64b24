"""The point's index of a sharded set: same verdicts as the whole-set index, updated in
place bin by bin, and a set in an unknown format refused, logged and counted."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_server_support import running_proxy

from takedown.clock import SystemClock
from takedown.enforce.bin_index import BinnedIndex
from takedown.enforce.decide import compile_index, decide
from takedown.enforce.feed_guard import FeedGuard
from takedown.enforce.process import _feed_step
from takedown.enforce.server import Mode
from takedown.feed.binned_set import BinnedSet
from takedown.feed.bins import bin_key, bin_of, dumps_manifest
from takedown.feed.client import FeedClient
from takedown.feed.repository import Repository, init_repository, publish
from takedown.feed.sharded import _sign_top
from takedown.model import Directive, DirectiveSet, HostRule, MeasureAction

T0 = datetime(2021, 3, 10, tzinfo=UTC)
BITS = 5  # few bins: many rules of different bins share names and prefixes


def _directive(i: int, rate: int | None = None) -> Directive:
    hosts = [HostRule(f"h{i % 40}.site{i % 7}.example", "media")]
    if i % 3 == 0:
        hosts.append(HostRule(f"*.site{i % 7}.example"))
    if i % 11 == 0:
        hosts.append(HostRule(f"*.h{i % 40}.site{i % 7}.example", "text"))
    ips = [f"10.{i % 5}.{i % 9}.0/24"] if i % 2 else []
    if i % 4 == 1:
        ips.append(f"2001:db8:{i % 6:x}::/48")
    throttle = rate is not None or i % 2 == 0
    return Directive(
        id=f"d{i:03d}",
        action=MeasureAction.THROTTLE if throttle else MeasureAction.BLOCK,
        hosts=tuple(hosts),
        ip_ranges=tuple(ips),
        rate_kbps=(rate or 64 + i) if throttle else None,
        scope={"*": 100.0},
        valid_from=T0 + timedelta(days=i % 3),
        expires=T0 + timedelta(days=10 + i % 4),
        decisions=(f"D{i}",),
    )


SET = DirectiveSet(1, 1, T0, tuple(_directive(i) for i in range(120)))
NAMES = [f"{p}h{i}.site{j}.example" for i in range(0, 45, 3) for j in range(8) for p in ("", "a.")]
IPS = [f"10.{a}.{b}.7" for a in range(6) for b in range(10)] + [
    f"2001:db8:{k:x}::1" for k in range(8)
] + ["::ffff:10.1.1.1", "192.0.2.1"]  # fmt: skip


def _verdict(index, name: str | None, ip: str | None, now: datetime):  # type: ignore[no-untyped-def]
    v = decide(index, [name] if name else [], ip, None, now)
    return v.action, v.rate_kbps, frozenset(v.directives), frozenset(v.decisions)


def test_the_binned_index_decides_as_the_whole_set_index():
    whole, binned = compile_index(SET), BinnedIndex(BinnedSet.from_set(SET, BITS))
    for now in (T0, T0 + timedelta(days=1, hours=1), T0 + timedelta(days=12)):
        assert binned.in_force(now).count == whole.in_force(now).count
        for name in NAMES:
            assert _verdict(binned, name, None, now) == _verdict(whole, name, None, now), name
        for ip in IPS:
            assert _verdict(binned, None, ip, now) == _verdict(whole, None, ip, now), ip


@settings(max_examples=30, deadline=None)
@given(st.sets(st.integers(0, 119), max_size=25), st.sets(st.integers(120, 160), max_size=5))
def test_an_update_in_place_equals_a_fresh_index(changed: set[int], added: set[int]):
    now = T0 + timedelta(days=2)
    new = [_directive(i, rate=7 if i in changed else None) for i in range(120)]
    new = [d for d in new if d.id != "d005" or not changed] + [_directive(i) for i in added]
    new_set = DirectiveSet(1, 2, T0, tuple(new))
    index = BinnedIndex(BinnedSet.from_set(SET, BITS))
    old_raw = index._set.raw
    target = BinnedSet.from_set(new_set, BITS)
    # share unchanged bins' bytes as the client does
    target.raw = {i: old_raw[i] if old_raw.get(i) == b else b for i, b in target.raw.items()}
    touched = index.update(target)
    old_ids = {d.id: d for d in SET.directives}
    new_ids = {d.id: d for d in new_set.directives}
    differ = [old_ids.get(k) or new_ids[k] for k in old_ids.keys() | new_ids.keys()
              if old_ids.get(k) != new_ids.get(k)]  # fmt: skip
    assert set(touched) == {bin_of(bin_key(d), BITS) for d in differ}
    fresh = compile_index(new_set)
    for name in NAMES[::3]:
        assert _verdict(index, name, None, now) == _verdict(fresh, name, None, now), name
    for ip in IPS[::2]:
        assert _verdict(index, None, ip, now) == _verdict(fresh, None, ip, now), ip


async def test_the_point_applies_a_sharded_update_in_place(tmp_path: Path) -> None:
    init_repository(tmp_path / "repo", bins=BITS)
    publish(tmp_path / "repo", SET)
    client = FeedClient(tmp_path / "repo", tmp_path / "state", clock=SystemClock())
    async with running_proxy(Mode.CONNECT) as server:
        server.swap(client.refresh())
        index = server.index
        assert isinstance(index, BinnedIndex) and index.sequence == 1
        name = "h1.site1.example"
        rates = {d.id: d.rate_kbps for d, _c, _r in index.host_hits(name)}
        assert rates["d001"] is None  # a block
        changed = DirectiveSet(1, 2, T0, (*SET.directives[:1], _directive(1, rate=9),
                                          *SET.directives[2:]))  # fmt: skip
        publish(tmp_path / "repo", changed)
        update = client.refresh()
        assert update is not None and len(update.changed) == 1
        server.swap(update)
        assert server.index is index and index.sequence == 2  # the same index, updated
        rates = {d.id: d.rate_kbps for d, _c, _r in index.host_hits(name)}
        assert rates["d001"] == 9


async def test_a_point_seeing_an_unknown_format_keeps_its_set_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    repo = tmp_path / "repo"
    init_repository(repo, bins=BITS)
    publish(repo, SET)
    client = FeedClient(repo, tmp_path / "state", clock=SystemClock())
    guard = FeedGuard()
    loop = asyncio.get_running_loop()
    async with running_proxy(Mode.CONNECT) as server:
        await _feed_step(server, client, guard, loop, first=True, now=datetime.now(UTC))
        assert server.index.sequence == 1
        r = Repository(repo)
        future = dumps_manifest(2, T0, BITS, 120).replace(b'"format":2', b'"format":3')
        _sign_top(r, r.load("targets"), future, {"sequence": 2})
        with caplog.at_level(logging.ERROR, logger="takedown.enforce"):
            for _ in range(2):
                await _feed_step(server, client, guard, loop, first=False, now=datetime.now(UTC))
        assert server.index.sequence == 1 and not server.fail_open
        rejected = server.metrics.value(
            "takedown_enforce_feed_rejected_total", {"reason": "UnknownFormat"}
        )
        assert rejected == 2
        errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
        assert len(errors) == 1 and "unknown directive-set format 3" in errors[0]
