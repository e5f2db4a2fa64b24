"""Directives from the database: compile, collateral guard, publish (the 2021 mistakes)."""

from __future__ import annotations

import getpass
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from takedown.clock import SystemClock
from takedown.errors import Conflict
from takedown.feed.compile import compile_directives
from takedown.feed.directives import dumps, loads
from takedown.feed.publisher import check, publish, shipped_reference_hosts
from takedown.feed.repository import init_repository
from takedown.match import substring_rule_hits
from takedown.model import Decision, ItemRecord, MeasureAction
from takedown.platforms import HostSpec, add_platform
from takedown.policy import measures
from takedown.registry.service import add_item
from takedown.registry.targets import parse_target
from takedown.store.audit import verify_chain
from takedown.store.db import Database
from takedown.store.schema import Event, FeedPublication

NOW = datetime(2021, 3, 10, 9, 0, tzinfo=UTC)
TWITTER_HOSTS = [
    HostSpec("twitter.com", "text"),
    HostSpec("*.twimg.com", "media"),
    HostSpec("t.co", "links"),
]


@pytest.fixture
def twitter(db: Database) -> Database:
    add_platform(
        db,
        "twitter",
        name="Twitter",
        notice_url=None,
        hosts=TWITTER_HOSTS,
        now=NOW,
        actor="analyst",
    )
    return db


def _slowdown(db: Database, classes: tuple[str, ...] = ("media",)) -> int:
    return measures.add(
        db,
        "twitter",
        action="throttle",
        rate_kbps=128,
        classes=classes,
        scope={"mobile": 100, "fixed": 50},
        decision="RKN-2021-03-10",
        reason="3,168 items overdue",
        now=NOW,
        actor="analyst",
        expires=NOW + timedelta(days=66),
    )


def test_measure_compiles_to_its_class_hosts_deterministically(twitter: Database) -> None:
    mid = _slowdown(twitter)
    with twitter.reading() as s:
        first = compile_directives(s, NOW, sequence=7).directives
        second = compile_directives(s, NOW, sequence=7).directives
    assert dumps(first) == dumps(second)
    (d,) = first.directives
    assert d.measure_id == mid and d.action == MeasureAction.THROTTLE and d.rate_kbps == 128
    assert [(h.pattern, h.content_class) for h in d.hosts] == [("*.twimg.com", "media")]
    assert d.scope == {"fixed": 50.0, "mobile": 100.0}
    assert d.expires == NOW + timedelta(days=66)
    assert loads(dumps(first)).directives[0].hosts == d.hosts


def test_register_domains_without_platform_become_blocks(db: Database) -> None:
    for target, decision in [
        ("blocked.example", "D-1"),
        ("*.casino.example", "D-1"),
        ("198.51.100.0/24", "D-2"),
        ("https://x.example/page", "D-3"),
    ]:
        add_item(
            db,
            ItemRecord(parse_target(target), "gambling", "244-FZ", Decision(decision)),
            now=NOW,
            actor="a",
        )
    with db.reading() as s:
        ds = compile_directives(s, NOW, sequence=1).directives
    by_decision = {d.decisions: d for d in ds.directives}
    assert set(by_decision) == {("D-1",), ("D-2",)}  # a URL is not a whole-host duty
    d1 = by_decision[("D-1",)]
    assert d1.action == MeasureAction.BLOCK
    assert sorted(h.pattern for h in d1.hosts) == ["*.casino.example", "blocked.example"]
    assert by_decision[("D-2",)].ip_ranges == ("198.51.100.0/24",)


def test_2021_t_co_rule_hits_nothing_unrelated(twitter: Database) -> None:
    _slowdown(twitter, classes=("media", "links"))
    reference = shipped_reference_hosts()
    # The 2021 rule was a substring match: it slowed Microsoft and Reddit.
    wrong = substring_rule_hits("*t.co*", reference)
    assert "www.microsoft.com" in wrong and "www.reddit.com" in wrong
    _, report = check(twitter, NOW)
    assert report.hosts_checked == len(reference) > 2000
    assert report.host_hits == [] and not report.collateral


def test_broad_ip_rule_is_caught_and_blocks_publication(db: Database, tmp_path: Path) -> None:
    # as broad as the profile admits (/16), and still a CDN range shared with others
    add_item(
        db,
        ItemRecord(parse_target("104.16.0.0/16"), "extremism", "149-FZ", Decision("D-CLOUD")),
        now=NOW,
        actor="a",
    )
    resolved = {"www.reddit.com": ["104.16.2.3"], "blocked.example": ["198.51.100.1"]}
    _, report = check(db, NOW, resolved=resolved)
    assert [(h.host, h.address) for h in report.ip_hits] == [("www.reddit.com", "104.16.2.3")]
    assert any("104.16.0.0/16" in b for b in report.broad_ip)
    repo = tmp_path / "feed"
    init_repository(repo)
    with pytest.raises(Conflict, match="collateral"):
        publish(db, repo, now=NOW, actor="analyst", resolved=resolved)
    with db.reading() as s:
        assert s.scalars(select(FeedPublication)).all() == []
    published = publish(
        db,
        repo,
        now=NOW,
        actor="analyst",
        resolved=resolved,
        accept_collateral="court order covers the whole range",
    )
    assert published.sequence == 1 and published.directives == 1
    with db.reading() as s:
        event = s.scalars(select(Event).where(Event.type == "feed.publish")).one()
        assert event.payload["accepted_collateral"] == "court order covers the whole range"
        assert event.payload["collateral"]["ip_hits"][0]["host"] == "www.reddit.com"
        assert verify_chain(s).ok


def test_an_item_the_points_would_refuse_is_left_out_with_its_reason(
    db: Database, tmp_path: Path
) -> None:
    """The freeze: a 10.0.0.0/7 item was published and every enforcement point refused the
    set. The compiler now applies the check loads applies, so the set is publishable and
    every point compiles it; the item is reported, not silently dropped."""
    from takedown.enforce.decide import compile_index

    for target, decision in [("10.0.0.0/7", "D-WIDE"), ("blocked.example", "D-1")]:
        add_item(
            db,
            ItemRecord(parse_target(target), "extremism", "149-FZ", Decision(decision)),
            now=NOW,
            actor="a",
            accept_broad="admitted on purpose: the register may hold what the feed refuses",
        )
    compiled, _ = check(db, NOW)
    assert [d.decisions for d in compiled.directives.directives] == [("D-1",)]
    assert any("10.0.0.0/7" in r and "broader than /16" in r for r in compiled.refused)
    repo = tmp_path / "feed"
    init_repository(repo)
    published = publish(db, repo, now=NOW, actor="analyst")
    assert published.directives == 1
    compile_index(loads(dumps(published.directive_set)))  # what every point does


def test_publish_sequences_and_client_loads(twitter: Database, tmp_path: Path) -> None:
    from takedown.feed.client import FeedClient

    repo = tmp_path / "feed"
    init_repository(repo)
    _slowdown(twitter)
    first = publish(twitter, repo, now=NOW, actor="a")
    second = publish(twitter, repo, now=NOW + timedelta(hours=1), actor="a")
    assert (first.sequence, second.sequence) == (1, 2)
    client = FeedClient(str(repo), tmp_path / "state", clock=SystemClock())
    ds = client.refresh()
    assert ds is not None and ds.sequence == 2 and ds.directives[0].rate_kbps == 128


def _cli(db_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "takedown", "--db", db_url, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ),
    )


def test_cli_rules_check_and_publish_refuse_collateral(db_url: str, tmp_path: Path) -> None:
    db = Database(db_url)
    add_item(
        db,
        ItemRecord(parse_target("104.16.0.0/16"), "extremism", "149-FZ", Decision("D-CLOUD")),
        now=NOW,
        actor="a",
    )
    db.close()
    resolved = tmp_path / "resolved.txt"
    resolved.write_text("www.reddit.com 104.16.2.3\n")
    r = _cli(db_url, "rules", "check", "--resolved", str(resolved), "--json")
    assert r.returncode == 1
    assert json.loads(r.stdout)["ip_hits"][0]["host"] == "www.reddit.com"
    repo = tmp_path / "feed"
    init_repository(repo)
    r = _cli(db_url, "feed", "publish", str(repo), "--resolved", str(resolved))
    assert r.returncode == 1 and "collateral" in r.stderr and "www.reddit.com" in r.stderr
    r = _cli(
        db_url,
        "feed",
        "publish",
        str(repo),
        "--resolved",
        str(resolved),
        "--accept-collateral",
        "the order names the whole range",
        "--json",
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["sequence"] == 1
    r = _cli(db_url, "audit", "list", "--type", "feed.publish", "--json")
    (event,) = json.loads(r.stdout)
    assert event["actor"] == f"local:{getpass.getuser()}"  # the bootstrap
    assert event["payload"]["accepted_collateral"] == "the order names the whole range"


def test_block_of_every_class_covers_every_platform_host(twitter: Database) -> None:
    measures.add(
        twitter,
        "twitter",
        action="block",
        classes=("*",),
        scope={"mobile": 100, "fixed": 100},
        decision="RKN-BLOCK",
        reason="never complied",
        now=NOW,
        actor="analyst",
    )
    with twitter.session() as s:
        from takedown.store.schema import Measure

        m = s.scalars(select(Measure)).one()
        m.state, m.starts_at = "active", NOW
    with twitter.reading() as s:
        (d,) = compile_directives(s, NOW, sequence=1).directives.directives
    assert d.action == MeasureAction.BLOCK
    assert sorted(h.pattern for h in d.hosts) == ["*.twimg.com", "t.co", "twitter.com"]
