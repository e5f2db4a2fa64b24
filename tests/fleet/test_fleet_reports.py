"""Operators' points report back: signed reports stored through the real API on a real
uvicorn server (SQLite and PostgreSQL), refusals that store nothing, and the fleet's
status (lag, silences, fail-open, throughput) on the simulated clock."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from notices.support import ServerThread
from sqlalchemy import func, select

from takedown.clock import SimClock
from takedown.errors import InputError
from takedown.fleet import reports as rep
from takedown.fleet import store
from takedown.fleet.status import ReportRow, fleet_status, lag_behind, throughput
from takedown.store.db import Database
from takedown.store.schema import FeedPublication, PointReport
from takedown.web.app import AppSettings, build
from tests import staff

T0 = datetime(2021, 3, 12, 10, 0, tzinfo=UTC)


def report(
    operator: str,
    point: str,
    at: datetime,
    *,
    sequence: int | None = 3,
    fail_open: bool = False,
    nbytes: int = 0,
) -> rep.Report:
    counters = (rep.DirectiveCounters("m3", flows=nbytes // 1000, bytes=nbytes, measure_id=3),)
    return rep.Report(
        operator, point, at, sequence, 12.5, fail_open, "feed stale" if fail_open else "", counters
    )


def post(
    client: httpx.Client, token: str, r: rep.Report, *, sign_with: str | None = None
) -> httpx.Response:
    body = r.body()
    signature = rep.sign(sign_with or token, body, int(r.sent_at.timestamp()))
    return client.post(
        "/api/operators/reports",
        content=body,
        headers={"Authorization": f"Bearer {token}", rep.SIGNATURE_HEADER: signature},
    )


# --- the signature and the body (sans-IO) -------------------------------------------------------


def test_a_signature_verifies_with_the_stored_public_key_only() -> None:
    token, other = "tdo_a." + "x" * 43, "tdo_a." + "y" * 43
    body = report("a", "p1", T0).body()
    t = int(T0.timestamp())
    rep.verify(rep.public_key_hex(token), rep.sign(token, body, t), body, T0)
    with pytest.raises(Exception, match="bad report signature"):
        rep.verify(rep.public_key_hex(token), rep.sign(other, body, t), body, T0)
    with pytest.raises(Exception, match="bad report signature"):
        rep.verify(rep.public_key_hex(token), rep.sign(token, body, t), body + b" ", T0)
    with pytest.raises(Exception, match="more than 300 s off"):
        hour_later = T0 + timedelta(hours=1)
        rep.verify(rep.public_key_hex(token), rep.sign(token, body, t), body, hour_later)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400) | st.text(max_size=400).map(str.encode))
def test_parse_report_refuses_garbage_with_one_named_error(data: bytes) -> None:
    try:
        rep.parse_report(data)
    except InputError as exc:
        assert exc.where
    else:
        pass  # a valid report by chance


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["sequence", "fail_open", "set_age_seconds", "directives", "sent_at"]),
        st.none() | st.booleans() | st.integers() | st.floats() | st.text() | st.lists(st.none()),
    )
)
def test_a_bad_field_is_named(overrides: dict[str, object]) -> None:
    doc = {**report("a", "p1", T0).as_json(), **overrides}
    try:
        parsed = rep.parse_report(json.dumps(doc).encode())
    except InputError as exc:
        assert exc.where and exc.where.split("[")[0].split(".")[0] in doc
    else:
        assert parsed.operator == "a"


# --- status (pure, simulated time) ---------------------------------------------------------------


def row(point: str, at: datetime, seq: int | None, nbytes: int = 0, op: str = "a") -> ReportRow:
    return ReportRow(op, point, at, at, seq, False, None, [{"id": "m3", "measure_id": 3,
                                                            "bytes": nbytes}])  # fmt: skip


def test_lag_counts_publications_newer_than_the_one_applied() -> None:
    assert lag_behind([1, 2, 3, 5, 8], 3) == 2
    assert lag_behind([1, 2], None) == 2 and lag_behind([], None) == 0


def test_throughput_under_a_measure_and_a_restart_shows_none() -> None:
    a, b = row("p", T0, 3, 1_000_000), row("p", T0 + timedelta(seconds=60), 3, 1_960_000)
    assert throughput(b, a) == {"measure 3": pytest.approx(128_000.0)}
    assert throughput(a, b) == {}  # counters went back: the point restarted
    assert throughput(b, None) == {}


def test_silent_lagging_and_never_reported_are_flagged_on_the_clock() -> None:
    published = list(range(1, 11))  # sequences 1..10
    reports = [
        (row("fresh", T0, 10), None),
        (row("behind", T0, 6), None),  # 4 behind
        (row("quiet", T0 - timedelta(minutes=10), 10), None),
        (row("ok", T0, 8, op="b"), None),  # 2 behind: within 3
    ]
    out = {o.name: o for o in fleet_status(["a", "b", "c"], reports, published, T0, max_lag=3)}
    assert out["a"].flags == ("lagging", "silent")
    points = {p.point_id: p for p in out["a"].points}
    assert points["behind"].lagging and points["behind"].lag == 4
    assert points["quiet"].silent and not points["fresh"].silent
    assert out["b"].flags == () and not out["b"].flagged
    assert out["c"].flags == ("never-reported",)
    # a minute earlier, "quiet" had been silent for 9 minutes only
    early = fleet_status(["a"], reports[2:3], published, T0 - timedelta(minutes=1))
    assert early[0].flags == ()


# --- the API and the store (real server, real database) -------------------------------------------


@dataclass
class Fleet:
    url: str
    db: Database
    clock: SimClock
    tokens: dict[str, str]
    staff: str


@pytest.fixture
def fleet(db: Database) -> Iterator[Fleet]:
    clock = SimClock(T0)
    tokens = {}
    for name in ("rostelecom", "megafon"):
        _, tokens[name] = store.add_operator(db, name, now=T0, actor=staff.BOOTSTRAP)
    staff_token = staff.token(db, "erin", "auditor", now=T0)
    app = build(AppSettings(db=db, clock=clock))
    with ServerThread(app) as server:
        yield Fleet(server.url, db, clock, tokens, staff_token)


def stored(db: Database) -> int:
    with db.reading() as session:
        return int(session.scalar(select(func.count()).select_from(PointReport)) or 0)


def publish_sequences(db: Database, *sequences: int) -> None:
    with db.session() as session:
        for s in sequences:
            session.add(
                FeedPublication(sequence=s, generated_at=T0, published_at=T0, digest="0" * 64,
                                directives=1)
            )  # fmt: skip


def test_reports_from_several_points_are_stored_and_summed_per_operator(fleet: Fleet) -> None:
    publish_sequences(fleet.db, 1, 2, 3)
    rt = fleet.tokens["rostelecom"]
    with httpx.Client(base_url=fleet.url, timeout=30) as c:
        for point in ("msk-1", "msk-2", "spb-1"):
            answer = post(c, rt, report("rostelecom", point, T0, nbytes=1_000_000))
            assert answer.status_code == 201, answer.text
            assert answer.json()["point_id"] == point
        fleet.clock.advance(timedelta(seconds=60))
        later = T0 + timedelta(seconds=60)
        for point in ("msk-1", "msk-2", "spb-1"):
            answer = post(c, rt, report("rostelecom", point, later, nbytes=1_960_000))
            assert answer.status_code == 201
        mt = fleet.tokens["megafon"]
        assert post(c, mt, report("megafon", "nn-1", later, sequence=1)).status_code == 201
        status = c.get("/api/operators/status", headers={"Authorization": f"Bearer {fleet.staff}"})
        assert status.status_code == 200, status.text
    assert stored(fleet.db) == 7
    by_name = {o["operator"]: o for o in status.json()}
    rt_status = by_name["rostelecom"]
    assert rt_status["points"] == 3 and rt_status["flags"] == [] and rt_status["lag_max"] == 0
    # three points, 128 kbit/s each under measure 3
    assert rt_status["throughput_bps"] == {"measure 3": pytest.approx(3 * 128_000.0)}
    assert by_name["megafon"]["lag_max"] == 2 and by_name["megafon"]["flags"] == []
    listed = {o.name: o for o in store.list_operators(fleet.db)}
    assert listed["rostelecom"].points == 3 and listed["megafon"].points == 1


def test_a_silent_point_and_a_lagging_operator_are_flagged(fleet: Fleet) -> None:
    publish_sequences(fleet.db, *range(1, 9))
    with httpx.Client(base_url=fleet.url, timeout=30) as c:
        for name, point, seq in (("rostelecom", "a", 8), ("megafon", "b", 4)):
            answer = post(c, fleet.tokens[name], report(name, point, T0, sequence=seq))
            assert answer.status_code == 201
    ten = fleet.clock.advance(timedelta(minutes=10))
    result = {o.name: o for o in store.status(fleet.db, ten, max_lag=3)}
    assert result["rostelecom"].flags == ("silent",)
    assert result["megafon"].flags == ("lagging", "silent")
    assert result["megafon"].points[0].lag == 4
    just_before = {o.name: o for o in store.status(fleet.db, ten - timedelta(seconds=1), max_lag=4)}
    assert just_before["rostelecom"].flags == () and just_before["megafon"].flags == ()


def test_forged_signatures_other_operators_tokens_and_repeats_store_nothing(fleet: Fleet) -> None:
    rt, mt = fleet.tokens["rostelecom"], fleet.tokens["megafon"]
    mine = report("rostelecom", "msk-1", T0)
    with httpx.Client(base_url=fleet.url, timeout=30) as c:
        cases = [
            (post(c, rt, mine, sign_with=mt), 401, rep.SIGNATURE_HEADER),  # forged
            (post(c, mt, mine), 403, "operator"),  # megafon's token, rostelecom's report
            (post(c, "tdo_rostelecom." + "z" * 43, mine), 401, "Authorization"),
            (c.post("/api/operators/reports", content=mine.body(),
                    headers={"Authorization": f"Bearer {rt}"}), 401, rep.SIGNATURE_HEADER),
            (post(c, rt, report("rostelecom", "msk-1", T0 - timedelta(hours=1))), 401,
             rep.SIGNATURE_HEADER),  # t too far from the server's clock
            (post(c, fleet.staff, mine), 401, "Authorization"),  # a staff token is not one
        ]  # fmt: skip
        bad_body = mine.body().replace(b'"fail_open":false', b'"fail_open":"no"')
        signature = rep.sign(rt, bad_body, int(T0.timestamp()))
        cases.append(
            (c.post("/api/operators/reports", content=bad_body,
                    headers={"Authorization": f"Bearer {rt}", rep.SIGNATURE_HEADER: signature}),
             422, "fail_open")
        )  # fmt: skip
        for answer, status, where in cases:
            assert (answer.status_code, answer.json()["where"]) == (status, where), answer.text
        assert stored(fleet.db) == 0
        assert post(c, rt, mine).status_code == 201
        again = post(c, rt, mine)  # a replay of the same report
        assert (again.status_code, again.json()["where"]) == (409, "sent_at")
        staff_status = c.get("/api/operators/status", headers={"Authorization": f"Bearer {rt}"})
        assert staff_status.status_code == 401  # an operator token does not open staff routes
    assert stored(fleet.db) == 1


def test_a_new_token_revokes_the_old_one(fleet: Fleet) -> None:
    old = fleet.tokens["rostelecom"]
    new = store.issue_token(fleet.db, "rostelecom", now=T0, actor=staff.BOOTSTRAP)
    with httpx.Client(base_url=fleet.url, timeout=30) as c:
        assert post(c, old, report("rostelecom", "p", T0)).status_code == 401
        assert post(c, new, report("rostelecom", "p", T0)).status_code == 201
