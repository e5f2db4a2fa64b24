"""Attacks on the feed, each refused with the TUF reason named, counted, last good kept.

Every test runs twice: against a real HTTP server on loopback and against a local
directory (the same TUF checks through a file fetcher). The mirror is what the client
reads; the tests play the attacker by writing into it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from securesystemslib.signer import CryptoSigner, SSlibKey
from tuf.api.metadata import Metadata, Root, Timestamp
from tuf.api.serialization.json import JSONSerializer

from takedown.clock import SystemClock
from takedown.feed import FeedClient, FeedError, dumps
from takedown.feed.directives import TARGET_NAME
from takedown.feed.repository import Repository, default_keys_dir, publish


def _client(feed, state: Path) -> FeedClient:
    return FeedClient(feed.source, state, root=feed.root_bytes(), clock=SystemClock())


def _good(feed, make_set, tmp_path: Path, sequence: int = 1) -> FeedClient:
    """Publish a set, sync the mirror, and have a client load it."""
    publish(feed.repo, make_set(sequence))
    feed.sync()
    client = _client(feed, tmp_path / "state")
    ds = client.refresh()
    assert ds is not None and ds.sequence == sequence
    return client


def _refused(client: FeedClient, reason: str, last_sequence: int | None) -> FeedError:
    before = dict(client.refusals)
    with pytest.raises(FeedError) as info:
        client.refresh()
    assert info.value.reason == reason, str(info.value)
    assert client.refusals.get(reason, 0) == before.get(reason, 0) + 1
    if last_sequence is None:
        assert client.last_good is None
    else:
        assert client.last_good is not None and client.last_good.sequence == last_sequence
    return info.value


def _stolen_signer(feed, role: str) -> CryptoSigner:
    key = load_pem_private_key((default_keys_dir(feed.repo) / f"{role}.pem").read_bytes(), None)
    return CryptoSigner(key, SSlibKey.from_crypto(key.public_key()))


def _write_md(path: Path, md: Metadata) -> None:
    path.write_bytes(md.to_bytes(JSONSerializer(compact=True)))


def test_honest_updates_flow(feed, make_set, tmp_path):
    client = _good(feed, make_set, tmp_path, 1)
    assert client.refresh() is None  # unchanged
    publish(feed.repo, make_set(2))
    feed.sync()
    ds = client.refresh()
    assert ds is not None and ds.sequence == 2
    assert client.version == Repository(feed.repo).info().versions["targets"]
    assert client.expires is not None and not client.stale(SystemClock().now())
    assert client.refusals == {}


def test_tampered_directive_file_is_refused(feed, make_set, tmp_path):
    client = _good(feed, make_set, tmp_path, 1)
    publish(feed.repo, make_set(2))
    feed.sync()
    info = Repository(feed.repo).info()
    target = feed.mirror / "targets" / f"{info.target_sha256}.{TARGET_NAME}"
    data = target.read_bytes()
    target.write_bytes(data.replace(b'"rate_kbps":128', b'"rate_kbps":999'))  # same length
    assert target.read_bytes() != data
    err = _refused(client, "LengthOrHashMismatchError", 1)
    assert "hash" in str(err).lower()
    # an honest mirror again: the client recovers
    feed.sync()
    assert client.refresh().sequence == 2


def test_timestamp_signed_by_wrong_key_is_refused(feed, make_set, tmp_path):
    client = _good(feed, make_set, tmp_path, 1)
    ts = Metadata[Timestamp].from_file(str(feed.mirror / "metadata" / "timestamp.json"))
    ts.signed.version += 1
    ts.sign(CryptoSigner.generate_ed25519(), append=False)  # the attacker's own key
    _write_md(feed.mirror / "metadata" / "timestamp.json", ts)
    _refused(client, "UnsignedMetadataError", 1)


def test_new_root_signed_by_wrong_key_is_refused(feed, make_set, tmp_path):
    client = _good(feed, make_set, tmp_path, 1)
    root = Metadata[Root].from_file(str(feed.mirror / "metadata" / "root.json"))
    evil = CryptoSigner.generate_ed25519()
    for role in ("root", "timestamp", "snapshot", "targets"):
        for keyid in list(root.signed.roles[role].keyids):
            root.signed.revoke_key(keyid, role)
        root.signed.add_key(evil.public_key, role)
    root.signed.version = 2
    root.sign(evil, append=False)
    _write_md(feed.mirror / "metadata" / "2.root.json", root)
    _refused(client, "UnsignedMetadataError", 1)


def test_rollback_is_refused_across_restart(feed, make_set, tmp_path):
    client = _good(feed, make_set, tmp_path, 1)
    old = {
        p.name: p.read_bytes() for p in (feed.mirror / "metadata").glob("*.json")
    }  # the attacker keeps a copy of version 1
    publish(feed.repo, make_set(2))
    feed.sync()
    assert client.refresh().sequence == 2
    del client  # restart: a new client on the same state directory
    for name, data in old.items():
        (feed.mirror / "metadata" / name).write_bytes(data)
    restarted = _client(feed, tmp_path / "state")
    assert restarted.last_good is not None and restarted.last_good.sequence == 2
    err = _refused(restarted, "BadVersionNumberError", 2)
    assert "timestamp" in str(err)


def test_expired_timestamp_is_refused(feed, make_set, tmp_path):
    client = _good(feed, make_set, tmp_path, 1)
    # a freeze: what is served carries a timestamp that has already expired
    publish(
        feed.repo,
        make_set(2),
        timestamp_expiry=timedelta(hours=1),
        now=datetime.now(UTC) - timedelta(hours=2),
    )
    feed.sync()
    err = _refused(client, "ExpiredMetadataError", 1)
    assert "timestamp" in str(err)
    # a fresh client with no history does not load it either
    fresh = _client(feed, tmp_path / "fresh")
    _refused(fresh, "ExpiredMetadataError", None)


def test_fast_forward_with_unknown_key_is_refused(feed, make_set, tmp_path):
    client = _good(feed, make_set, tmp_path, 1)
    ts = Metadata[Timestamp].from_file(str(feed.mirror / "metadata" / "timestamp.json"))
    ts.signed.version = 99999
    ts.sign(CryptoSigner.generate_ed25519(), append=False)
    _write_md(feed.mirror / "metadata" / "timestamp.json", ts)
    _refused(client, "UnsignedMetadataError", 1)
    feed.sync()  # the honest feed is still accepted: nothing was fast-forwarded
    publish(feed.repo, make_set(2))
    feed.sync()
    assert client.refresh().sequence == 2


def test_fast_forward_with_stolen_timestamp_key_recovers_after_rotation(feed, make_set, tmp_path):
    client = _good(feed, make_set, tmp_path, 1)
    # the attacker, holding the timestamp key, fast-forwards the version
    ts = Metadata[Timestamp].from_file(str(feed.mirror / "metadata" / "timestamp.json"))
    ts.signed.version = 99999
    ts.sign(_stolen_signer(feed, "timestamp"), append=False)
    forwarded = ts.to_bytes(JSONSerializer(compact=True))
    (feed.mirror / "metadata" / "timestamp.json").write_bytes(forwarded)
    assert client.refresh() is None  # validly signed: TUF cannot tell; nothing new though
    # the real repository moves on; its lower timestamp version looks like a rollback
    publish(feed.repo, make_set(2))
    feed.sync()
    err = _refused(client, "BadVersionNumberError", 1)
    assert "99999" in str(err)
    # recovery (TUF spec 5.3.11): rotate the timestamp key with a new root version
    Repository(feed.repo).rotate_keys(["timestamp"])
    feed.sync()
    ds = client.refresh()
    assert ds is not None and ds.sequence == 2
    # and the forwarded timestamp, signed by the revoked key, is refused from now on
    (feed.mirror / "metadata" / "timestamp.json").write_bytes(forwarded)
    _refused(client, "UnsignedMetadataError", 2)


def test_fast_forward_with_stolen_snapshot_key_recovers_after_rotation(feed, make_set, tmp_path):
    client = _good(feed, make_set, tmp_path, 1)
    md = feed.mirror / "metadata"
    snap = Metadata.from_file(str(md / "snapshot.json"))
    snap.signed.version = 99999
    snap.sign(_stolen_signer(feed, "snapshot"), append=False)
    snap_bytes = snap.to_bytes(JSONSerializer(compact=True))
    (md / "99999.snapshot.json").write_bytes(snap_bytes)
    ts = Metadata[Timestamp].from_file(str(md / "timestamp.json"))
    ts.signed.version += 1
    ts.signed.snapshot_meta.version = 99999
    ts.signed.snapshot_meta.hashes = None
    ts.signed.snapshot_meta.length = None
    ts.sign(_stolen_signer(feed, "timestamp"), append=False)
    _write_md(md / "timestamp.json", ts)
    assert client.refresh() is None
    publish(feed.repo, make_set(2))
    Repository(feed.repo).renew()  # the honest timestamp version now passes the forged one
    feed.sync()
    err = _refused(client, "BadVersionNumberError", 1)
    assert "snapshot version must be >= 99999" in str(err)
    # recovery needs both the snapshot and the timestamp key rotated (as python-tuf does)
    Repository(feed.repo).rotate_keys(["snapshot", "timestamp"])
    feed.sync()
    assert client.refresh().sequence == 2


def test_truncated_directive_download_is_refused(feed, make_set, tmp_path):
    client = _good(feed, make_set, tmp_path, 1)
    publish(feed.repo, make_set(2, n=50))
    feed.sync()
    info = Repository(feed.repo).info()
    feed.truncate(f"targets/{info.target_sha256}.{TARGET_NAME}")
    reason = "DownloadError" if feed.server is not None else "LengthOrHashMismatchError"
    err = _refused(client, reason, 1)
    if feed.server is not None:
        assert "IncompleteRead" in str(err) or "ProtocolError" in str(err)


def test_truncated_timestamp_is_refused(feed, make_set, tmp_path):
    client = _good(feed, make_set, tmp_path, 1)
    publish(feed.repo, make_set(2))
    feed.sync()
    feed.truncate("metadata/timestamp.json")
    reason = "DownloadError" if feed.server is not None else "DeserializationError"
    _refused(client, reason, 1)


def test_invalid_set_signed_by_legitimate_key_is_never_loaded(feed, make_set, tmp_path):
    client = _good(feed, make_set, tmp_path, 1)
    bad = dumps(make_set(2)).replace(b'"fixed":50.0', b'"fixed":150.0')
    Repository(feed.repo).publish_bytes(bad, validate=False)  # a faulty publisher
    feed.sync()
    err = _refused(client, "InvalidDirectives", 1)
    assert "scope.fixed" in str(err)
    restarted = _client(feed, tmp_path / "state")
    assert restarted.last_good is not None and restarted.last_good.sequence == 1
    _refused(restarted, "InvalidDirectives", 1)


def test_sequence_going_back_is_refused(feed, make_set, tmp_path):
    client = _good(feed, make_set, tmp_path, 5)
    Repository(feed.repo).publish_bytes(dumps(make_set(4)), validate=False)
    feed.sync()
    _refused(client, "SequenceRollback", 5)


def test_root_of_another_repository_is_not_trusted(feed, make_set, tmp_path):
    from takedown.feed import init_repository

    publish(feed.repo, make_set(1))
    feed.sync()
    other = init_repository(tmp_path / "other")
    client = FeedClient(
        feed.source,
        tmp_path / "state",
        root=(other.path / "metadata" / "root.json"),
        clock=SystemClock(),
    )
    _refused(client, "UnsignedMetadataError", None)
