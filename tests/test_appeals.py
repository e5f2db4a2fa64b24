"""Appeals: filing, reading, deciding and reversing, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from takedown import accounts, appeals
from takedown import config as config_mod
from takedown.errors import Conflict, Forbidden, InputError, NotFound
from takedown.store.db import Database
from takedown.store.schema import Appeal, Event, Item, Measure
from tests.appeals_support import CONTACT, START, World, make_world

NOW = START + timedelta(days=1)


@pytest.fixture
def world(db: Database) -> World:
    return make_world(db)


def events(db: Database, type_: str) -> list[Event]:
    with db.reading() as s:
        return list(s.scalars(select(Event).where(Event.type == type_).order_by(Event.seq)))


def file(w: World, **kw: object) -> tuple[appeals.AppealRecord, str]:
    args: dict[str, object] = {
        "measure_id": w.throttle,
        "appellant": "user",
        "grounds": "My school's site is slowed.",
        "contact": CONTACT,
        "now": NOW,
    }
    args.update(kw)
    return appeals.file_appeal(w.db, **args)  # type: ignore[arg-type]


# --- the checks ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kw", "where"),
    [
        ({"measure_id": None}, "measure_id"),
        ({"item_id": 3}, "measure_id"),  # both
        ({"measure_id": "x"}, "measure_id"),
        ({"measure_id": 0}, "measure_id"),
        ({"measure_id": 2**31}, "measure_id"),
        ({"appellant": "regulator"}, "appellant"),
        ({"grounds": "   "}, "grounds"),
        ({"grounds": "x" * 5001}, "grounds"),
        ({"grounds": "nul\x00byte"}, "grounds"),
        ({"contact": "y" * 501}, "contact"),
        ({"contact": "a\nb"}, "contact"),
        ({"grounds": 5}, "grounds"),
    ],
)
def test_check_filing_names_the_field(kw: dict, where: str) -> None:
    args = {"measure_id": 1, "appellant": "user", "grounds": "g", "contact": ""}
    args.update(kw)
    with pytest.raises(InputError) as err:
        appeals.check_filing(**args)
    assert err.value.where == where


def test_check_filing_normalises() -> None:
    f = appeals.check_filing(
        item_id="7", appellant="author", grounds=" a\r\nb\t ", contact=" me@x.example "
    )
    assert f == appeals.Filing(None, 7, "author", "a\nb", "me@x.example")
    assert len(appeals.check_filing(measure_id=1, appellant="other", grounds="é" * 5000).grounds)


def test_receipts_are_random_and_checked() -> None:
    a, b = appeals.new_receipt(), appeals.new_receipt()
    assert a != b and len(a) == 24
    assert appeals.receipt_digest(a) is not None
    for bad in ("", "x" * 65, "../etc", "a b", "ä"):
        assert appeals.receipt_digest(bad) is None


# --- filing -------------------------------------------------------------------------------


def test_filing_stores_only_the_receipts_hash_and_audits_without_contact(world: World) -> None:
    record, receipt = file(world)
    assert record.state == "open" and record.platform == "twitter" and record.filed_by is None
    assert record.due_at == NOW + timedelta(days=30)  # the default deadline
    with world.db.reading() as s:
        row = s.get(Appeal, record.id)
        assert row.receipt_hash == appeals.receipt_digest(receipt) and receipt not in str(
            row.__dict__
        )
    assert appeals.get_by_receipt(world.db, receipt) == record
    with pytest.raises(NotFound):
        appeals.get_by_receipt(world.db, appeals.new_receipt())
    with pytest.raises(NotFound):
        appeals.get_by_receipt(world.db, "not a receipt")
    [event] = events(world.db, "appeal.filed")
    assert event.actor == "public" and event.payload["appeal"] == record.id
    assert event.payload["contact_given"] is True
    assert CONTACT not in str(event.payload) and "mail.example" not in str(event.payload)
    assert record.as_json()["contact"] == CONTACT and "contact" not in record.public_json()
    assert "grounds" not in record.public_json()


def test_only_public_subjects_may_be_appealed(world: World) -> None:
    with pytest.raises(NotFound, match="no public measure"):
        file(world, measure_id=world.pending)  # awaiting approval: not public
    with pytest.raises(NotFound):
        file(world, measure_id=99999)
    with pytest.raises(NotFound, match="no listed item"):
        file(world, measure_id=None, item_id=99999)
    with pytest.raises(NotFound):  # not listed yet at that time
        file(world, measure_id=None, item_id=world.item, now=START - timedelta(days=1))
    record, _ = file(world, measure_id=None, item_id=world.item, appellant="author")
    assert record.subject == f"item {world.item}"


def test_ended_subjects_are_a_conflict(world: World) -> None:
    from takedown.policy import measures
    from takedown.registry.service import delist

    measures.lift(world.db, world.throttle, "RKN-LIFT", NOW, "carol")
    delist(world.db, world.item, "RKN-DEL", now=NOW, actor="carol")
    with pytest.raises(Conflict, match="lifted"):
        file(world)
    with pytest.raises(Conflict, match="delisted"):
        file(world, measure_id=None, item_id=world.item)


def test_a_platform_appeals_only_its_own(world: World) -> None:
    record, _ = file(world, appellant="platform", platform_id=world.twitter)
    assert record.filed_by == "twitter"
    [event] = events(world.db, "appeal.filed")
    assert event.actor == "platform:twitter"
    record, receipt = file(
        world, measure_id=None, item_id=world.item, appellant="platform", platform_id=world.twitter
    )
    # the other platform: as if none existed
    for kw in ({"measure_id": world.throttle}, {"measure_id": None, "item_id": world.item}):
        with pytest.raises(NotFound):
            file(world, appellant="platform", platform_id=world.vk, **kw)
    with pytest.raises(InputError, match="appellant 'platform'"):
        file(world, appellant="user", platform_id=world.twitter)
    assert appeals.get_by_receipt(world.db, receipt, platform_id=world.twitter) == record
    with pytest.raises(NotFound):
        appeals.get_by_receipt(world.db, receipt, platform_id=world.vk)


def test_the_deadline_comes_from_the_platforms_profile(db: Database, tmp_path: Path) -> None:
    extra = tmp_path / "profiles.toml"
    extra.write_text('[profiles.eu-tco]\nappeal_deadline = "14d"\n', encoding="utf-8")
    cfg = config_mod.load(extra)
    assert cfg.profile("eu-tco").appeal_deadline == timedelta(days=14)
    assert cfg.profile("ru-2021").appeal_deadline == timedelta(days=30)
    w = make_world(db, vk_profile="eu-tco")
    on_vk, _ = file(w, measure_id=w.block, config=cfg)
    assert on_vk.due_at == NOW + timedelta(days=14)
    on_twitter, _ = file(w, config=cfg)
    assert on_twitter.due_at == NOW + timedelta(days=30)


def test_a_bad_appeal_deadline_is_refused(tmp_path: Path) -> None:
    for value in ('"0d"', '"soon"'):
        extra = tmp_path / "p.toml"
        extra.write_text(f"[profiles.ru-2021]\nappeal_deadline = {value}\n", encoding="utf-8")
        with pytest.raises(InputError) as err:
            config_mod.load(extra)
        assert err.value.where.endswith("profiles.ru-2021.appeal_deadline")


# --- listing ------------------------------------------------------------------------------


def test_listing_by_state_overdue_and_pages(world: World) -> None:
    first, _ = file(world)
    second, _ = file(world, now=NOW + timedelta(days=10))
    third, _ = file(world, measure_id=world.block, now=NOW + timedelta(days=20))
    late = NOW + timedelta(days=35)  # past the first two deadlines, not the third
    assert [a.id for a in appeals.list_appeals(world.db, overdue_at=late)] == [first.id]
    later = NOW + timedelta(days=45)
    assert [a.id for a in appeals.list_appeals(world.db, overdue_at=later)] == [
        first.id,
        second.id,
    ]
    assert appeals.counts(world.db, later) == {
        "filed": 3,
        "open": 3,
        "upheld": 0,
        "reversed": 0,
        "overdue": 2,
    }
    appeals.decide(
        world.db, first.id, outcome="upheld", reasons="lawful", actor=world.carol, now=late
    )
    assert appeals.overdue_count(world.db, later) == 1
    assert [a.id for a in appeals.list_appeals(world.db, state="upheld")] == [first.id]
    page = appeals.list_appeals(world.db, limit=2)
    assert [a.id for a in page] == [first.id, second.id]
    rest = appeals.list_appeals(world.db, after=page[-1].id, limit=2)
    assert [a.id for a in rest] == [third.id] and rest[0].platform == "vk"
    assert appeals.counts_for_measure(world.db, world.throttle) == {
        "filed": 2,
        "open": 1,
        "upheld": 1,
        "reversed": 0,
    }
    assert appeals.get_appeal(world.db, third.id).overdue(later) is False
    with pytest.raises(InputError):
        appeals.list_appeals(world.db, state="closed")
    with pytest.raises(NotFound):
        appeals.get_appeal(world.db, 424242)


# --- deciding -----------------------------------------------------------------------------


def test_who_may_decide(world: World) -> None:
    record, _ = file(world)
    on_item, _ = file(world, measure_id=None, item_id=world.item)
    on_vk_item, _ = file(world, measure_id=None, item_id=world.vk_item)

    def decide(appeal_id: int, actor: accounts.Actor) -> appeals.AppealRecord:
        return appeals.decide(
            world.db, appeal_id, outcome="upheld", reasons="stands", actor=actor, now=NOW
        )

    with pytest.raises(Forbidden, match="local bootstrap"):
        decide(record.id, accounts.bootstrap("root"))
    with pytest.raises(Forbidden, match=r"dave \(auditor\) may not decide"):
        decide(record.id, world.dave)
    with pytest.raises(Forbidden, match="alice proposed measure"):
        decide(record.id, world.alice)
    with pytest.raises(Forbidden, match="alice listed item"):
        decide(on_item.id, world.alice)
    with pytest.raises(Forbidden, match="carol listed item"):
        decide(on_vk_item.id, world.carol)
    assert events(world.db, "appeal.decided") == []
    done = decide(record.id, world.bob)  # an approver, uninvolved
    assert (done.state, done.decided_by, done.reasons) == ("upheld", "bob", "stands")
    with pytest.raises(Conflict, match="already decided: upheld by bob"):
        decide(record.id, world.carol)
    assert decide(on_vk_item.id, world.alice).state == "upheld"
    with pytest.raises(InputError) as err:
        appeals.decide(
            world.db, on_item.id, outcome="maybe", reasons="x", actor=world.carol, now=NOW
        )
    assert err.value.where == "outcome"
    with pytest.raises(InputError) as err:
        appeals.decide(
            world.db, on_item.id, outcome="upheld", reasons=" ", actor=world.carol, now=NOW
        )
    assert err.value.where == "reasons"


def test_reversal_lifts_the_measure(world: World) -> None:
    record, _ = file(world)
    done = appeals.decide(
        world.db, record.id, outcome="reversed", reasons="collateral", actor=world.carol, now=NOW
    )
    assert done.state == "reversed"
    with world.db.reading() as s:
        m = s.get(Measure, world.throttle)
        assert m.state == "lifted" and m.lifted_at == NOW
        assert m.lift_decision == f"appeal {record.id} reversed: collateral"
    [lifted] = events(world.db, "measure.lifted")
    assert lifted.actor == "carol" and lifted.payload["measure_id"] == world.throttle
    [decided] = events(world.db, "appeal.decided")
    assert decided.payload["lifted"] == [world.throttle] and decided.seq == lifted.seq + 1
    assert CONTACT not in str(decided.payload)


def test_reversal_lifts_the_successor_of_a_changed_measure(world: World) -> None:
    record, _ = file(world)
    with world.db.session() as s:  # the ladder changed its scope: lifted, and a successor
        old = s.get(Measure, world.throttle)
        old.state, old.lifted_at = "lifted", NOW
        s.add(
            Measure(
                platform_id=old.platform_id,
                action=old.action,
                rate_kbps=old.rate_kbps,
                classes=[],
                scope={"mobile": 100.0},
                state="active",
                proposed_at=NOW,
                starts_at=NOW,
                reason="changed",
                created_by="ladder-bot",
                supersedes_id=old.id,
            )
        )
    later = NOW + timedelta(hours=1)
    done = appeals.decide(
        world.db, record.id, outcome="reversed", reasons="r", actor=world.carol, now=later
    )
    assert done.state == "reversed"
    with world.db.reading() as s:
        successor = s.scalar(select(Measure).where(Measure.supersedes_id == world.throttle))
        assert successor.state == "lifted" and successor.lifted_at == later
    [decided] = events(world.db, "appeal.decided")
    assert decided.payload["lifted"] == [successor.id]


def test_reversal_delists_the_item(world: World) -> None:
    record, _ = file(world, measure_id=None, item_id=world.item, appellant="author")
    appeals.decide(
        world.db, record.id, outcome="reversed", reasons="satire", actor=world.bob, now=NOW
    )
    with world.db.reading() as s:
        item = s.get(Item, world.item)
        assert item.delisted_at == NOW and item.state == "delisted"
        assert item.delist_decision == f"appeal {record.id} reversed: satire"
    [delist] = events(world.db, "registry.delist")
    assert delist.actor == "bob" and delist.payload["item"] == world.item


def test_reversal_of_what_ended_meanwhile_is_recorded(world: World) -> None:
    from takedown.registry.service import delist

    record, _ = file(world, measure_id=None, item_id=world.item)
    delist(world.db, world.item, "RKN-DEL", now=NOW, actor="carol")
    done = appeals.decide(
        world.db,
        record.id,
        outcome="reversed",
        reasons="r",
        actor=world.bob,
        now=NOW + timedelta(hours=1),
    )
    assert done.state == "reversed"
    [decided] = events(world.db, "appeal.decided")
    assert decided.payload["already_ended"] is True and decided.payload["delisted"] == []


def test_the_lister_is_recorded_by_add_and_import(world: World) -> None:
    with world.db.reading() as s:
        assert s.get(Item, world.item).listed_by == "alice"
        assert s.get(Item, world.vk_item).listed_by == "carol"


def test_an_import_records_who_listed_its_items(db: Database) -> None:
    from takedown.registry.formats import ReadDefaults
    from takedown.registry.service import import_file

    sample = Path(__file__).resolve().parents[1] / "examples" / "registers" / "rkn-sample.csv"
    result = import_file(
        db, sample, "rkn-csv", now=START, actor="alice", defaults=ReadDefaults(basis="149-FZ")
    )
    assert result.items_added > 0
    with db.reading() as s:
        assert set(s.scalars(select(Item.listed_by))) == {"alice"}
