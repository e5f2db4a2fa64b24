"""The feed repository on disk: init, publish, renew, key rotation, pruning."""

from __future__ import annotations

import json
import os
import stat
from datetime import UTC, datetime, timedelta

import pytest
from tuf.api.metadata import Metadata

from takedown.clock import SystemClock
from takedown.errors import AuthError, Conflict, InputError, NotFound
from takedown.feed import FeedClient, dumps, init_repository, publish
from takedown.feed.directives import TARGET_NAME
from takedown.feed.repository import KEEP_VERSIONS, Repository, parse_duration


def test_init_writes_keys_0600_and_version_1(tmp_path):
    info = init_repository(tmp_path / "r", timestamp_expiry=timedelta(hours=6))
    keys = tmp_path / "r.keys"  # beside the repository, never inside it
    assert not (tmp_path / "r" / "keys").exists()
    assert stat.S_IMODE(keys.stat().st_mode) == 0o700
    for role in ("root", "targets", "snapshot", "timestamp"):
        assert stat.S_IMODE((keys / f"{role}.pem").stat().st_mode) == 0o600
    md = tmp_path / "r" / "metadata"
    for name in ("1.root.json", "root.json", "timestamp.json", "1.snapshot.json", "1.targets.json"):
        assert (md / name).is_file(), name
    assert info.versions == {"root": 1, "targets": 1, "snapshot": 1, "timestamp": 1}
    assert info.sequence is None and info.consistent_snapshot
    left = info.expires["timestamp"] - datetime.now(UTC)
    assert timedelta(hours=5) < left <= timedelta(hours=6)
    root = Metadata.from_file(str(md / "root.json")).signed
    keyids = [root.roles[r].keyids[0] for r in ("root", "targets", "snapshot", "timestamp")]
    assert len(set(keyids)) == 4  # one key per role
    assert all(root.keys[k].keytype == "ed25519" for k in keyids)


def test_init_refuses_existing_repository(tmp_path):
    init_repository(tmp_path / "r")
    with pytest.raises(Conflict):
        init_repository(tmp_path / "r")


def test_publish_without_root_key(tmp_path, make_set):
    init_repository(tmp_path / "r")
    offline = tmp_path / "offline-root.pem"
    os.replace(tmp_path / "r.keys" / "root.pem", offline)
    info = publish(tmp_path / "r", make_set(1, n=3))
    assert info.versions == {"root": 1, "targets": 2, "snapshot": 2, "timestamp": 2}
    assert info.sequence == 1 and info.directives == 3
    target = tmp_path / "r" / "targets" / f"{info.target_sha256}.{TARGET_NAME}"
    assert target.read_bytes() == dumps(make_set(1, n=3))
    assert info.target_length == len(target.read_bytes())
    # a key rotation needs the root key: missing by default, accepted when given
    with pytest.raises(NotFound):
        Repository(tmp_path / "r").rotate_keys(["timestamp"])
    rotated = Repository(tmp_path / "r").rotate_keys(["timestamp"], root_key=offline)
    assert rotated.versions["root"] == 2 and rotated.sequence == 1


def test_publish_uses_configured_timestamp_expiry(tmp_path, make_set):
    init_repository(tmp_path / "r", timestamp_expiry=timedelta(hours=2))
    info = publish(tmp_path / "r", make_set(1))
    left = info.expires["timestamp"] - datetime.now(UTC)
    assert timedelta(hours=1) < left <= timedelta(hours=2)
    info = publish(tmp_path / "r", make_set(2), timestamp_expiry=timedelta(minutes=10))
    assert info.expires["timestamp"] - datetime.now(UTC) <= timedelta(minutes=10)


def test_publish_refuses_sequence_going_back(tmp_path, make_set):
    init_repository(tmp_path / "r")
    publish(tmp_path / "r", make_set(3))
    with pytest.raises(Conflict):
        publish(tmp_path / "r", make_set(2))
    with pytest.raises(Conflict):
        publish(tmp_path / "r", make_set(3, n=5))  # same sequence, other content
    assert publish(tmp_path / "r", make_set(3)).sequence == 3  # same bytes: a re-sign


def test_publish_refuses_invalid_set(tmp_path, make_set):
    init_repository(tmp_path / "r")
    bad = dumps(make_set(1)).replace(b'"rate_kbps":128', b'"rate_kbps":0')
    with pytest.raises(InputError) as info:
        Repository(tmp_path / "r").publish_bytes(bad)
    assert info.value.where == "directives[1].rate_kbps"  # sorted by id
    assert Repository(tmp_path / "r").info().versions["targets"] == 1  # nothing written


def test_publish_refuses_a_key_not_in_root(tmp_path, make_set):
    init_repository(tmp_path / "r")
    init_repository(tmp_path / "other")
    os.replace(tmp_path / "other.keys" / "targets.pem", tmp_path / "r.keys" / "targets.pem")
    with pytest.raises(AuthError):
        publish(tmp_path / "r", make_set(1))


def test_old_versions_pruned_live_ones_kept(tmp_path, make_set):
    init_repository(tmp_path / "r")
    for seq in range(1, 9):
        info = publish(tmp_path / "r", make_set(seq))
    md = tmp_path / "r" / "metadata"
    assert len(list(md.glob("*.snapshot.json"))) == KEEP_VERSIONS
    assert len(list(md.glob("*.targets.json"))) == KEEP_VERSIONS
    assert len(list((tmp_path / "r" / "targets").iterdir())) == KEEP_VERSIONS
    assert (md / f"{info.versions['snapshot']}.snapshot.json").is_file()
    assert (md / "1.root.json").is_file()


def test_renew_keeps_the_set(tmp_path, make_set):
    init_repository(tmp_path / "r")
    before = publish(tmp_path / "r", make_set(4))
    after = Repository(tmp_path / "r").renew()
    assert after.versions["timestamp"] == before.versions["timestamp"] + 1
    assert after.target_sha256 == before.target_sha256 and after.sequence == 4
    client = FeedClient(
        tmp_path / "r", tmp_path / "state", clock=SystemClock()
    )  # local dir: TOFU root
    assert client.refresh().sequence == 4
    Repository(tmp_path / "r").renew()
    assert client.refresh() is None  # a renewal is not a new set


def test_client_needs_a_root_for_urls(tmp_path):
    from takedown.feed import FeedError

    with pytest.raises(FeedError) as info:
        FeedClient("http://127.0.0.1:9/feed/", tmp_path / "state", clock=SystemClock())
    assert info.value.reason == "NoTrustedRoot"


def test_not_a_repository(tmp_path):
    with pytest.raises(NotFound):
        Repository(tmp_path)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("30m", 1800), ("12h", 43200), ("1d", 86400), ("2w", 1209600)],
)
def test_parse_duration(text, seconds):
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "1", "0d", "1y", "-1d", "1.5h"])
def test_parse_duration_refuses(text):
    with pytest.raises(InputError):
        parse_duration(text)


def test_feed_json_holds_expiry_settings(tmp_path):
    init_repository(tmp_path / "r", snapshot_expiry=timedelta(days=2))
    raw = json.loads((tmp_path / "r" / "feed.json").read_text())
    assert raw["expiry_seconds"]["snapshot"] == 2 * 86400
