"""Bad input and faults end as `unreachable` or `error` with a reason: never a crash or a hang."""

from __future__ import annotations

import ssl

import pytest
import trustme
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from takedown.clock import SimClock
from takedown.model import Verdict
from takedown.store.db import Database
from takedown.store.schema import Check, Item
from takedown.verify import runner
from takedown.verify.probe import Prober, ProbeSettings, parse_connect_to
from takedown.verify.verdict import Markers, Outcome, classify

from .fixtures import T0, add_items
from .servers import (
    ItemApp,
    RawServer,
    UvicornThread,
    endless_body,
    garbage,
    silent,
    slow_drip,
)

QUICK = ProbeSettings(
    concurrency=8,
    connect_timeout=2,
    read_timeout=2,
    total_timeout=1.0,
    retries=1,
    retry_backoff=0.01,
)


async def probe(url: str, **kw: object) -> object:
    async with Prober(settings=kw.pop("settings", QUICK), only_loopback=True, **kw) as p:
        return await p.probe(url)


async def test_redirect_loop_is_an_error() -> None:
    with UvicornThread(ItemApp()) as srv:
        res = await probe(f"http://127.0.0.1:{srv.port}/loop")
    assert res.verdict is Verdict.ERROR and res.status == 302
    assert res.reason == "too many redirects (more than 5)"


async def test_huge_body_reads_a_bounded_prefix() -> None:
    with RawServer(endless_body) as srv:
        res = await probe(f"http://127.0.0.1:{srv.port}/big")
        sent = srv.bytes_sent
    assert res.verdict is Verdict.AVAILABLE and res.truncated
    assert res.body_bytes == QUICK.max_body and len(res.digest) == 64
    assert sent < 64 * 1024 * 1024  # the prober hung up long before the 1 GiB end


async def test_slow_drip_hits_the_total_deadline() -> None:
    with RawServer(slow_drip) as srv:
        res = await probe(f"http://127.0.0.1:{srv.port}/drip")
    assert res.verdict is Verdict.UNREACHABLE and res.reason == "total timeout after 1s"
    assert res.attempts == 1  # a deadline is not retried


async def test_silent_server_times_out() -> None:
    with RawServer(silent) as srv:
        res = await probe(f"http://127.0.0.1:{srv.port}/")
    assert res.verdict is Verdict.UNREACHABLE and "timeout" in res.reason


async def test_untrusted_tls_certificate() -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    with (
        cert.private_key_and_cert_chain_pem.tempfile() as pem,
        UvicornThread(ItemApp(), ssl_certfile=pem, ssl_keyfile=pem) as srv,
    ):
        url = f"https://127.0.0.1:{srv.port}/s/1"
        res = await probe(url)  # the system trust store does not know this CA
        ctx = ssl.create_default_context()
        ca.configure_trust(ctx)
        ok = await probe(url, verify=ctx)
    assert res.verdict is Verdict.UNREACHABLE and res.reason.startswith("tls: ")
    assert "certificate" in res.reason and res.attempts == 1
    assert ok.verdict is Verdict.AVAILABLE and ok.status == 200


async def test_tls_through_connect_to_uses_the_logical_name_for_sni() -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("twitter.example")
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    with (
        cert.private_key_and_cert_chain_pem.tempfile() as pem,
        UvicornThread(ItemApp({5: "withheld"}), ssl_certfile=pem, ssl_keyfile=pem) as srv,
    ):
        routes = parse_connect_to([f"twitter.example=https://127.0.0.1:{srv.port}"])
        res = await probe("https://twitter.example/s/5", verify=ctx, connect_to=routes)
    assert res.verdict is Verdict.RESTRICTED and res.status == 451


async def test_dns_failure() -> None:
    res = await probe("http://no-such-host.invalid/post/1")
    assert res.verdict is Verdict.UNREACHABLE and res.reason.startswith("dns: ")


async def test_connection_refused_is_retried_then_unreachable() -> None:
    from .servers import free_port

    res = await probe(f"http://127.0.0.1:{free_port()}/x")
    assert res.verdict is Verdict.UNREACHABLE and res.attempts == 2
    assert res.reason.startswith("connect")


async def test_not_http_at_all() -> None:
    with RawServer(garbage) as srv:
        res = await probe(f"http://127.0.0.1:{srv.port}/x")
    assert res.verdict is Verdict.ERROR and res.reason.startswith("protocol")


@pytest.mark.parametrize(
    "url",
    [
        "http://exa mple.com/x",
        "ftp://127.0.0.1/x",
        "http:///nohost",
        "not a url",
        "",
        "http://[::1",
    ],
)
async def test_malformed_urls_are_errors(url: str) -> None:
    res = await probe(url)
    assert res.verdict is Verdict.ERROR and res.reason.startswith("bad url")


async def test_only_loopback_refuses_other_destinations() -> None:
    res = await probe("http://192.0.2.1/x")  # TEST-NET: refused before any packet is sent
    assert res.verdict is Verdict.ERROR and "not a loopback destination" in res.reason


@given(st.text(max_size=60))
@settings(max_examples=60, deadline=None)
async def test_any_text_as_url_gives_a_verdict(text: str) -> None:
    s = ProbeSettings(
        concurrency=2, connect_timeout=0.5, read_timeout=0.5, total_timeout=1, retries=0
    )
    res = await probe("http://" + text, settings=s)
    assert res.verdict in set(Verdict)
    res = await probe(text, settings=s)
    assert res.verdict in set(Verdict)


@given(st.integers(100, 599), st.binary(max_size=300))
def test_classify_is_total(status: int, body: bytes) -> None:
    c = classify(Outcome(status=status, body=body), Markers())
    if status in (404, 410):
        assert c.verdict is Verdict.REMOVED
    elif status == 451:
        assert c.verdict is Verdict.RESTRICTED
    elif not 200 <= status < 300:
        assert c.verdict is Verdict.ERROR and c.reason == f"HTTP {status}"


def test_classify_markers() -> None:
    assert classify(Outcome(200, b"<p>Withheld in your country</p>")).verdict is Verdict.RESTRICTED
    assert classify(Outcome(200, b"This Tweet was deleted")).verdict is Verdict.REMOVED
    assert classify(Outcome(200, b"hello")).verdict is Verdict.AVAILABLE
    m = Markers().with_extra(removed=("Account suspended",))
    assert classify(Outcome(200, b"account SUSPENDED"), m).verdict is Verdict.REMOVED
    assert classify(Outcome(error_kind="network", reason="x")).verdict is Verdict.UNREACHABLE


def test_a_round_of_faulty_items_finishes(db: Database) -> None:
    """Every fault in one round: the round ends, each item has one check with a reason."""
    t0 = T0
    with (
        UvicornThread(ItemApp()) as web,
        RawServer(slow_drip) as drip,
        RawServer(endless_body) as big,
    ):
        add_items(db, 1, f"http://127.0.0.1:{web.port}")
        targets = [
            f"http://127.0.0.1:{web.port}/loop",
            f"http://127.0.0.1:{drip.port}/drip",
            f"http://127.0.0.1:{big.port}/big",
            "http://no-such-host.invalid/x",
            "http://exa mple.com/x",
        ]
        with db.session() as s:
            pid = s.scalar(select(Item.platform_id))
            for k, t in enumerate(targets):
                s.add(
                    Item(
                        target=t,
                        kind="url",
                        platform_id=pid,
                        category="drugs",
                        basis="b",
                        decision_ref=f"F{k}",
                        listed_at=t0,
                        state="open",
                        flags="",
                    )
                )
        summary = runner.run_round(
            db, runner.RunOptions(settings=QUICK, only_loopback=True), clock=SimClock(t0)
        )
    assert summary.finished and summary.checked == 6
    with db.reading() as s:
        got = {c.item_id: c for c in s.scalars(select(Check)).all()}
        by_target = {s.get(Item, i).target: c for i, c in got.items()}
    assert by_target[targets[0]].verdict == "error" and by_target[targets[0]].status == 302
    assert by_target[targets[1]].verdict == "unreachable"
    assert by_target[targets[2]].verdict == "available"
    assert by_target[targets[3]].error.startswith("dns")
    assert by_target[targets[4]].error.startswith("bad url")
