"""The sharded feed (format 2): only changed bins travel, each verified by TUF on its own.

Every test runs against a real HTTP server on loopback and a local directory. The mirror is
what the client reads; the tests play the attacker by writing into it.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from hypothesis import given, settings
from hypothesis import strategies as st
from securesystemslib.signer import CryptoSigner, SSlibKey
from tuf.api.metadata import Metadata, MetaFile, Snapshot, Timestamp
from tuf.api.serialization.json import JSONSerializer

from takedown.clock import SystemClock
from takedown.errors import InputError
from takedown.feed import FeedClient, FeedError, dumps, loads
from takedown.feed.binned_set import BinnedSet
from takedown.feed.bins import (
    UnknownFormat,
    bin_key,
    bin_of,
    bin_role,
    bin_target_names,
    dumps_bin,
    dumps_manifest,
    loads_bin,
    loads_manifest,
    split,
)
from takedown.feed.repository import Repository, default_keys_dir, publish
from takedown.feed.sharded import _sign_top, publish_sharded
from takedown.model import Directive, DirectiveSet, HostRule, MeasureAction

T0 = datetime(2021, 3, 10, tzinfo=UTC)
TAKEDOWN = str(Path(sys.executable).parent / "takedown")
BITS = 8
N = 300


def directive(i: int, *, rate: int | None = None) -> Directive:
    throttle = rate is not None or i % 3 == 0
    return Directive(
        id=f"d-{i:05d}",
        action=MeasureAction.THROTTLE if throttle else MeasureAction.BLOCK,
        hosts=(HostRule(f"{'*.' if i % 5 == 0 else ''}h{i}.example.org", "media"),),
        ip_ranges=(f"198.51.{i // 256}.{i % 256}",) if i % 2 else (),
        rate_kbps=(rate or 128) if throttle else None,
        scope={"*": 100.0} if i % 4 else {"mobile": 100.0, "fixed": 50.0},
        valid_from=T0,
        expires=T0 + timedelta(days=30 + i % 3),
        measure_id=1 + i % 4,
        decisions=(f"D-{i}",),
    )


def big_set(sequence: int, changed: dict[int, int] | None = None) -> DirectiveSet:
    """N directives; ``changed`` maps directive number → a new throttle rate."""
    changed = changed or {}
    out = [directive(i, rate=changed.get(i)) for i in range(N)]
    return DirectiveSet(1, sequence, T0 + timedelta(hours=sequence), tuple(out))


def bins_of(numbers: list[int]) -> set[int]:
    return {bin_of(bin_key(directive(i)), BITS) for i in numbers}


def _client(feed, state: Path) -> FeedClient:
    return FeedClient(feed.source, state, root=feed.root_bytes(), clock=SystemClock())


def _loaded(feed, tmp_path: Path, sequence: int = 1) -> FeedClient:
    publish(feed.repo, big_set(sequence))
    feed.sync()
    client = _client(feed, tmp_path / "state")
    got = client.refresh()
    assert isinstance(got, BinnedSet) and got.sequence == sequence
    return client


def _bin_requests(feed) -> list[str]:
    assert feed.server is not None
    return [p for p in feed.server.requests if p.startswith("/feed/targets/")]


def _ids(s: BinnedSet | DirectiveSet) -> dict[str, Directive]:
    return {d.id: d for d in s.directives}


def _refused(client: FeedClient, reason: str, sequence: int) -> FeedError:
    with pytest.raises(FeedError) as info:
        client.refresh()
    assert info.value.reason == reason, str(info.value)
    assert client.last_good is not None and client.last_good.sequence == sequence
    return info.value


def _signer(feed, role: str) -> CryptoSigner:
    key = load_pem_private_key((default_keys_dir(feed.repo) / f"{role}.pem").read_bytes(), None)
    return CryptoSigner(key, SSlibKey.from_crypto(key.public_key()))


def _write_md(path: Path, md: Metadata) -> None:
    path.write_bytes(md.to_bytes(JSONSerializer(compact=True)))


# --- what travels -----------------------------------------------------------------------


def test_a_first_pull_loads_every_bin_and_the_same_set(bins_feed, tmp_path):
    client = _loaded(bins_feed, tmp_path)
    ds = big_set(1)
    assert _ids(client.last_good) == _ids(ds)
    assert client.last_fetch["bins"] == len(split(ds.directives, BITS))
    assert client.refresh() is None  # unchanged: nothing more
    if bins_feed.server is not None:
        assert len(_bin_requests(bins_feed)) == len(split(ds.directives, BITS)) + 1  # + manifest


def test_a_handful_of_changes_travels_as_a_handful_of_bins(bins_feed, tmp_path):
    client = _loaded(bins_feed, tmp_path)
    full_bytes = sum(len(b) for b in client.last_good.raw.values())
    if bins_feed.server is not None:
        bins_feed.server.requests.clear()
    changed = {7: 64, 120: 32, 255: 16}
    _info, resigned = publish_sharded(Repository(bins_feed.repo), big_set(2, changed))
    assert set(resigned) == bins_of(list(changed))
    bins_feed.sync()
    got = client.refresh()
    assert got is not None and got.sequence == 2
    assert client.last_fetch["bins"] == len(bins_of(list(changed)))
    assert client.last_fetch["bytes"] < full_bytes / 10
    assert _ids(got) == _ids(big_set(2, changed))
    assert got.changed == frozenset(bins_of(list(changed)))
    if bins_feed.server is not None:
        # over the wire: the manifest and one file per changed bin, nothing else
        assert len(_bin_requests(bins_feed)) == len(bins_of(list(changed))) + 1
        names = bin_target_names(BITS)
        for b in bins_of(list(changed)):
            assert any(p.endswith("." + names[b]) for p in _bin_requests(bins_feed))


def test_a_point_that_missed_publications_catches_up(bins_feed, tmp_path):
    client = _loaded(bins_feed, tmp_path)
    publish(bins_feed.repo, big_set(2, {1: 64}))
    publish(bins_feed.repo, big_set(3, {1: 64, 2: 32}))
    publish(bins_feed.repo, big_set(4, {2: 32, 3: 16}))  # 1 back to its first rate
    publish(bins_feed.repo, big_set(5, {2: 32, 3: 16, 4: 8}))
    publish(bins_feed.repo, big_set(6, {2: 32, 3: 16, 4: 8, 5: 4}))  # > KEEP_VERSIONS
    bins_feed.sync()
    got = client.refresh()
    assert got is not None and got.sequence == 6
    assert _ids(got) == _ids(big_set(6, {2: 32, 3: 16, 4: 8, 5: 4}))
    # bin of directive 1 went there and back: its content matches what the client holds
    assert client.last_fetch["bins"] == len(bins_of([2, 3, 4, 5]))


def test_a_restarted_client_resumes_from_its_verified_bins(bins_feed, tmp_path):
    client = _loaded(bins_feed, tmp_path)
    del client
    again = _client(bins_feed, tmp_path / "state")
    assert isinstance(again.last_good, BinnedSet) and again.last_good.sequence == 1
    assert again.refresh() is None
    publish(bins_feed.repo, big_set(2, {9: 64}))
    bins_feed.sync()
    assert again.refresh().sequence == 2
    assert again.last_fetch["bins"] == 1


def test_an_emptied_bin_is_dropped(bins_feed, tmp_path):
    client = _loaded(bins_feed, tmp_path)
    ds = big_set(2)
    gone = ds.directives[10]
    rest = tuple(
        d for d in ds.directives if bin_of(bin_key(d), BITS) != bin_of(bin_key(gone), BITS)
    )
    publish(bins_feed.repo, replace(ds, directives=rest))
    bins_feed.sync()
    got = client.refresh()
    assert _ids(got) == {d.id: d for d in rest}
    assert bin_of(bin_key(gone), BITS) not in got.raw


# --- attacks, per bin --------------------------------------------------------------------


def test_a_tampered_bin_is_refused_and_the_last_good_set_kept(bins_feed, tmp_path):
    client = _loaded(bins_feed, tmp_path)
    publish(bins_feed.repo, big_set(2, {7: 64}))
    bins_feed.sync()
    b = bin_of(bin_key(directive(7)), BITS)
    name = bin_target_names(BITS)[b]
    (target,) = [p for p in (bins_feed.mirror / "targets").glob(f"*.{name}")
                 if b"rate_kbps\":64" in p.read_bytes()]  # fmt: skip
    target.write_bytes(target.read_bytes().replace(b'"rate_kbps":64', b'"rate_kbps":99'))
    _refused(client, "LengthOrHashMismatchError", 1)
    assert client.last_good.sequence == 1
    bins_feed.sync()  # an honest mirror again
    assert client.refresh().sequence == 2


def test_an_old_bin_served_for_the_new_one_is_refused(bins_feed, tmp_path):
    """Mix and match: the mirror answers for version 2 of a bin with version 1."""
    client = _loaded(bins_feed, tmp_path)
    b = bin_of(bin_key(directive(7)), BITS)
    role = bin_role(b, BITS)
    old = (bins_feed.repo / "metadata" / f"1.{role}.json").read_bytes()
    publish(bins_feed.repo, big_set(2, {7: 64}))
    bins_feed.sync()
    (bins_feed.mirror / "metadata" / f"2.{role}.json").write_bytes(old)
    _refused(client, "BadVersionNumberError", 1)


def test_a_bin_rolled_back_by_a_stolen_snapshot_key_is_refused(bins_feed, tmp_path):
    """Even signed by the snapshot key, a snapshot naming an older bin is refused."""
    client = _loaded(bins_feed, tmp_path)
    publish(bins_feed.repo, big_set(2, {7: 64}))
    bins_feed.sync()
    assert client.refresh().sequence == 2
    role = bin_role(bin_of(bin_key(directive(7)), BITS), BITS)
    md = bins_feed.mirror / "metadata"
    snap = Metadata[Snapshot].from_file(str(md / "snapshot.json"))
    snap.signed.meta[f"{role}.json"] = MetaFile(version=1)  # the bin's first version
    snap.signed.version += 1
    snap.sign(_signer(bins_feed, "snapshot"), append=False)
    data = snap.to_bytes(JSONSerializer(compact=True))
    (md / f"{snap.signed.version}.snapshot.json").write_bytes(data)
    ts = Metadata[Timestamp].from_file(str(md / "timestamp.json"))
    ts.signed.snapshot_meta = MetaFile.from_data(snap.signed.version, data, ["sha256"])
    ts.signed.version += 1
    ts.sign(_signer(bins_feed, "timestamp"), append=False)
    _write_md(md / "timestamp.json", ts)
    err = _refused(client, "BadVersionNumberError", 2)
    assert role in str(err)


def test_a_bin_signed_by_another_key_is_refused(bins_feed, tmp_path):
    client = _loaded(bins_feed, tmp_path)
    publish(bins_feed.repo, big_set(2, {7: 64}))
    bins_feed.sync()
    role = bin_role(bin_of(bin_key(directive(7)), BITS), BITS)
    path = bins_feed.mirror / "metadata" / f"2.{role}.json"
    md = Metadata.from_file(str(path))
    md.sign(CryptoSigner.generate_ed25519(), append=False)
    _write_md(path, md)
    _refused(client, "UnsignedMetadataError", 1)


def test_a_frozen_feed_is_refused(bins_feed, tmp_path):
    repo = Repository(bins_feed.repo)
    publish_sharded(repo, big_set(1), now=datetime.now(UTC) - timedelta(days=3))
    bins_feed.sync()
    client = _client(bins_feed, tmp_path / "state")
    with pytest.raises(FeedError) as info:
        client.refresh()
    assert info.value.reason == "ExpiredMetadataError"
    assert client.last_good is None


def test_an_unknown_format_keeps_the_last_good_set(bins_feed, tmp_path):
    client = _loaded(bins_feed, tmp_path)
    repo = Repository(bins_feed.repo)
    future = dumps_manifest(2, T0, BITS, N).replace(b'"format":2', b'"format":3')
    _sign_top(repo, repo.load("targets"), future, {"sequence": 2})
    bins_feed.sync()
    err = _refused(client, "UnknownFormat", 1)
    assert "format 3" in str(err) and "keeping the last good set" in str(err)
    assert client.refusals == {"UnknownFormat": 1}


def test_publish_refuses_a_sequence_going_back(bins_feed):
    publish(bins_feed.repo, big_set(3))
    from takedown.errors import Conflict

    with pytest.raises(Conflict, match="older"):
        publish(bins_feed.repo, big_set(2))


def test_feed_pull_from_a_sharded_feed_fetches_changed_bins_only(bins_feed, tmp_path):
    (tmp_path / "set.json").write_bytes(dumps(big_set(1)))
    repo = str(bins_feed.repo)
    assert _run("feed", "publish", repo, "--directives", "set.json", cwd=tmp_path).returncode == 0
    bins_feed.sync()
    root = tmp_path / "1.root.json"
    root.write_bytes(bins_feed.root_bytes())
    args = ("feed", "pull", bins_feed.source, "out", "--root", str(root), "--json")
    first = json.loads(_run(*args, cwd=tmp_path).stdout)
    assert first["format"] == 2 and first["directives"] == N and first["bins_fetched"] > 10
    whole = big_set(1)
    changed = replace(whole, sequence=2, directives=(
        replace(whole.directives[0], rate_kbps=64), *whole.directives[1:]))  # fmt: skip
    (tmp_path / "set.json").write_bytes(dumps(changed))
    assert _run("feed", "publish", repo, "--directives", "set.json", cwd=tmp_path).returncode == 0
    bins_feed.sync()
    second = json.loads(_run(*args, cwd=tmp_path).stdout)
    assert second["changed"] and second["sequence"] == 2 and second["bins_fetched"] == 1
    assert loads((tmp_path / "out" / "directives.json").read_bytes()) == changed


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [TAKEDOWN, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


# --- the format --------------------------------------------------------------------------


def test_bins_round_trip_and_are_canonical():
    ds = big_set(1)
    for i, group in split(ds.directives, BITS).items():
        data = dumps_bin(i, BITS, group)
        assert dumps_bin(i, BITS, reversed(group)) == data
        assert {d.id: d for d in loads_bin(data, i, BITS)} == {d.id: d for d in group}
    m = loads_manifest(dumps_manifest(4, T0, BITS, N))
    assert (m.sequence, m.generated_at, m.bits, m.directives) == (4, T0, BITS, N)


def test_a_bin_checks_what_format_1_checks():
    d = directive(1)
    i = bin_of(bin_key(d), BITS)
    data = dumps_bin(i, BITS, [d])
    for bad, where in (
        (data.replace(b'"h1.example.org"', b'"com"'), "[2][0][0]"),
        (data.replace(b'"198.51.0.1"', b'"10.0.0.0/7"'), "[3][0]"),
        (data.replace(b'"block"', b'"sever"'), "profiles[0].action"),
        (data.replace(b'"format":2', b'"format":9'), "format"),
    ):
        with pytest.raises(InputError) as info:
            loads_bin(bad, i, BITS)
        assert where in (info.value.where or ""), info.value.where
    with pytest.raises(InputError, match="not 3"):
        loads_bin(data, 3 if i != 3 else 4, BITS)
    with pytest.raises(UnknownFormat):
        loads_bin(data.replace(b'"format":2', b'"format":3'), i, BITS)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_loads_bin_never_raises_anything_but_input_error(data):
    with contextlib.suppress(InputError):
        loads_bin(data, 0, BITS)


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_loads_bin_survives_any_mutation_of_a_valid_bin(data):
    mutated, i = _mutated_bin(data)
    with contextlib.suppress(InputError):
        loads_bin(mutated, i, BITS)


def _mutated_bin(data: st.DataObject) -> tuple[bytes, int]:
    """A valid two-directive bin with one byte changed, and its number."""
    d = directive(3)
    i = bin_of(bin_key(d), BITS)
    good = bytearray(dumps_bin(i, BITS, [d, directive(3 + 256 * 7)]))
    at = data.draw(st.integers(0, len(good) - 1))
    good[at] = data.draw(st.integers(0, 255))
    return bytes(good), i


def test_the_audit_head_is_signed_beside_the_manifest(bins_feed):
    from takedown.feed.anchors import _head_of
    from takedown.store.audit import ChainHead

    head = ChainHead(42, "ab" * 32)
    info = Repository(bins_feed.repo).publish_set(big_set(1), audit_head=head)
    assert info.audit_head == head and info.sequence == 1 and info.directives == N
    assert _head_of(Repository(bins_feed.repo).load("targets")) == head


def test_renewal_keeps_the_bins_and_fetches_nothing(bins_feed, tmp_path):
    client = _loaded(bins_feed, tmp_path)
    before = Repository(bins_feed.repo).info()
    after = Repository(bins_feed.repo).renew()
    assert after.versions["timestamp"] == before.versions["timestamp"] + 1
    assert after.sequence == 1
    bins_feed.sync()
    assert client.refresh() is None
    assert client.expires is not None and client.expires >= before.expires["timestamp"]


# --- publishing only what changed; scanning instead of decoding at a cold load ------------


def test_a_publication_encodes_only_the_bins_whose_directives_changed(bins_feed, tmp_path):
    from takedown.feed import sharded

    client = _loaded(bins_feed, tmp_path)
    repo = Repository(bins_feed.repo)
    encoded: list[int] = []
    real = sharded.dumps_bin

    def counting(i, bits, group):  # the real encoder, counted
        encoded.append(i)
        return real(i, bits, group)

    sharded.dumps_bin = counting
    try:
        changed = {7: 64, 120: 32}
        _info, resigned = publish_sharded(repo, big_set(2, changed))
        assert sorted(encoded) == sorted(resigned) == sorted(bins_of(list(changed)))
        # back to the first set: the same bins again, re-encoded from their directives
        encoded.clear()
        _info, resigned = publish_sharded(repo, big_set(3))
        assert sorted(encoded) == sorted(resigned) == sorted(bins_of(list(changed)))
        # another process published since (its hashes in bins.json): re-encode, not trust
        state = json.loads((bins_feed.repo / "bins.json").read_text())
        b = next(iter(bins_of([7])))
        state["bins"][str(b)][0] = "0" * 64
        (bins_feed.repo / "bins.json").write_text(json.dumps(state))
        encoded.clear()
        _info, resigned = publish_sharded(repo, big_set(4))
        assert encoded == [b] and resigned == [b]
    finally:
        sharded.dumps_bin = real
    bins_feed.sync()
    got = client.refresh()
    assert got is not None and got.sequence == 4
    assert _ids(got) == _ids(big_set(4))


def test_a_cold_load_scans_bins_and_the_index_finds_every_rule(tmp_path):
    from takedown.enforce.bin_index import BinnedIndex
    from takedown.feed.binned_set import scan_bin
    from takedown.feed.bins import Manifest

    ds = big_set(1)
    bins = {
        i: scan_bin(dumps_bin(i, BITS, g), i, BITS) for i, g in split(ds.directives, BITS).items()
    }
    scanned = BinnedSet(1, T0, BITS).updated(Manifest(1, T0, BITS, N), bins)
    assert len(scanned) == N and scanned.windows == BinnedSet.from_set(ds, BITS).windows
    index = BinnedIndex(scanned)
    assert scanned.rules == {}  # the index took what the scan collected
    for d in ds.directives:
        pattern = d.hosts[0].pattern
        name = "www." + pattern[2:] if pattern.startswith("*.") else pattern
        assert d in [hit[0] for hit in index.host_hits(name)]
        for text in d.ip_ranges:
            assert d in [hit[0] for hit in index.ip_hits(text)]


def test_a_signed_bin_failing_a_field_check_is_refused_at_its_first_use():
    from takedown.enforce.bin_index import BinnedIndex
    from takedown.feed.binned_set import scan_bin
    from takedown.feed.bins import Manifest

    good, bad = directive(1), directive(2)
    i, j = bin_of(bin_key(good), BITS), bin_of(bin_key(bad), BITS)
    assert i != j
    bad_data = dumps_bin(j, BITS, [bad]).replace(b'"h2.example.org"', b'"com"')
    bins = {i: scan_bin(dumps_bin(i, BITS, [good]), i, BITS), j: scan_bin(bad_data, j, BITS)}
    index = BinnedIndex(BinnedSet(1, T0, BITS).updated(Manifest(1, T0, BITS, 2), bins))
    assert [h[0] for h in index.host_hits("h1.example.org")] == [good]
    assert index.refused_bins == {}  # the bad bin was scanned, not yet decoded
    assert index.host_hits("com") == []  # the bad bin is decoded at last, and refused
    assert list(index.refused_bins) == [j] and "[2][0][0]" in index.refused_bins[j]


@pytest.mark.parametrize(
    ("old", "new", "where"),
    [
        (b'"format":2', b'"format":3', "format"),
        (b'"d-00001",0', b"1,0", "directives[0][0]"),
        (b'"d-00001",0', b'"d-00001",5', "directives[0][1]"),
        (b'[["h1.example.org","media"]]', b'[["h1.example.org"]]', "directives[0][2][0]"),
        (b'["198.51.0.1"]', b"[7]", "directives[0][3]"),
        (b'"block"', b'"sever"', "profiles[0].action"),
        (b'"measure_id"', b'"measure_no"', "profiles[0]"),
        (b'"rate_kbps":null', b'"rate_kbps":false', "profiles[0].rate_kbps"),
        (b'"measure_id":2', b'"measure_id":2.0', "profiles[0].measure_id"),
    ],
)
def test_a_scan_refuses_a_malformed_bin_naming_the_field(old, new, where):
    from takedown.feed.binned_set import scan_bin

    d = directive(1)
    i = bin_of(bin_key(d), BITS)
    data = dumps_bin(i, BITS, [d])
    assert old in data
    scan_bin(data, i, BITS)  # the good profile is remembered: its look-alike still refused
    with pytest.raises(InputError) as info:
        scan_bin(data.replace(old, new), i, BITS)
    assert where in (info.value.where or ""), info.value.where


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_scan_bin_never_raises_anything_but_input_error(data):
    from takedown.feed.binned_set import scan_bin

    mutated, i = _mutated_bin(data)
    with contextlib.suppress(InputError):
        scan_bin(mutated, i, BITS)
