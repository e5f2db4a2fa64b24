"""Test support for appeals: a small world of platforms, staff accounts, items listed by
an account and measures proposed by one, on any database."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from takedown import accounts
from takedown.accounts import Actor
from takedown.model import Decision, ItemRecord
from takedown.policy import measures
from takedown.registry.service import add_item
from takedown.registry.targets import parse_target
from takedown.store.db import Database
from tests.notices.support import make_platform

START = datetime(2021, 3, 10, tzinfo=UTC)
CONTACT = "appellant-secret@mail.example"


@dataclass
class World:
    db: Database
    twitter: int  # platform ids
    vk: int
    twitter_token: str
    vk_token: str
    alice: Actor  # analyst: listed the twitter item, proposed the throttle
    bob: Actor  # approver: approved the block
    carol: Actor  # analyst, uninvolved
    dave: Actor  # auditor: may read, never decide
    item: int  # twitter's item, listed by alice
    vk_item: int  # vk's item, listed by carol
    throttle: int  # on twitter, by alice, active at once
    block: int  # on vk, proposed by alice, approved by bob
    pending: int  # on twitter, a block awaiting approval (not public)


def staff(db: Database, name: str, *roles: str) -> Actor:
    info = accounts.add_account(
        db, name, roles=roles, password=None, now=START, actor=accounts.bootstrap("root")
    )
    token = accounts.issue_token(db, info.name, now=START, actor=accounts.bootstrap("root"))
    return accounts.staff_for(db, token)  # the actor as a token authenticates it


def _item(db: Database, platform: str, url: str, by: Actor) -> int:
    record = ItemRecord(
        parse_target(url),
        "drugs",
        "149-FZ art. 15.1",
        Decision(f"RKN-{platform}-1", "Roskomnadzor", "2021-03-01"),
        platform,
    )
    item_id, _ = add_item(db, record, now=START, actor=by.label)
    return item_id


def make_world(db: Database, *, vk_profile: str = "ru-2021") -> World:
    twitter, _s, twitter_token = make_platform(db, "twitter", now=START)
    vk, _s2, vk_token = make_platform(db, "vk", now=START, profile=vk_profile)
    alice = staff(db, "alice", "analyst")
    bob = staff(db, "bob", "approver")
    carol = staff(db, "carol", "analyst")
    dave = staff(db, "dave", "auditor")
    item = _item(db, "twitter", "https://twitter.com/someone/status/1", alice)
    vk_item = _item(db, "vk", "https://vk.com/wall-1_2", carol)
    throttle = measures.add(
        db,
        "twitter",
        action="throttle",
        rate_kbps=128,
        decision="RKN-T-1",
        reason="overdue items",
        now=START,
        actor=alice.label,
    )
    block = measures.add(
        db, "vk", action="block", decision="RKN-V-1", reason="no", now=START, actor=alice.label
    )
    measures.approve(db, block, bob, START + timedelta(hours=1))
    pending = measures.add(
        db, "twitter", action="block", decision="RKN-T-2", reason="x", now=START, actor=alice.label
    )
    return World(
        db,
        twitter,
        vk,
        twitter_token,
        vk_token,
        alice,
        bob,
        carol,
        dave,
        item,
        vk_item,
        throttle,
        block,
        pending,
    )
