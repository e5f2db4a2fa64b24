"""Signing keys live apart from the published repository (attack: keys copied with it)."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from takedown.clock import SystemClock
from takedown.errors import InputError, NotFound
from takedown.feed import FeedClient
from takedown.feed.repository import Repository, default_keys_dir, init_repository, publish

TAKEDOWN = str(Path(sys.executable).parent / "takedown")


def _files_under(path: Path) -> list[Path]:
    return [p for p in path.rglob("*") if p.is_file()]


def test_nothing_secret_in_the_published_directory(tmp_path: Path, make_set) -> None:
    """What `rsync DIR mirror:` or `python -m http.server` would publish holds no key."""
    repo = tmp_path / "feed"
    init_repository(repo)
    publish(repo, make_set(1))
    assert _files_under(repo)
    for path in _files_under(repo):
        assert b"PRIVATE KEY" not in path.read_bytes(), path
    keys = default_keys_dir(repo)
    assert keys == tmp_path / "feed.keys"
    assert stat.S_IMODE(keys.stat().st_mode) == 0o700
    assert sorted(p.name for p in keys.iterdir()) == [
        "root.pem",
        "snapshot.pem",
        "targets.pem",
        "timestamp.pem",
    ]


@pytest.mark.parametrize("inside", ["feed/keys", "feed", "feed/metadata/k"])
def test_keys_inside_the_repository_are_refused(tmp_path: Path, inside: str) -> None:
    with pytest.raises(InputError) as info:
        init_repository(tmp_path / "feed", keys=tmp_path / inside)
    assert info.value.where == "keys" and "inside the repository" in str(info.value)
    assert not (tmp_path / "feed" / "metadata").exists()  # nothing written


def test_a_symlink_into_the_repository_is_refused(tmp_path: Path) -> None:
    (tmp_path / "feed").mkdir()
    os.symlink(tmp_path / "feed", tmp_path / "looks-outside")
    with pytest.raises(InputError):
        init_repository(tmp_path / "feed", keys=tmp_path / "looks-outside" / "k")


def test_offline_root_key_and_sign_root(tmp_path: Path, make_set) -> None:
    repo, keys, offline = tmp_path / "feed", tmp_path / "online-keys", tmp_path / "usb" / "root.pem"
    offline.parent.mkdir()
    init_repository(repo, keys=keys, root_key=offline)
    assert offline.is_file() and not (keys / "root.pem").exists()
    publish(repo, make_set(1), keys=keys)  # no root key needed
    client = FeedClient(
        str(repo), tmp_path / "client", root=repo / "metadata" / "1.root.json", clock=SystemClock()
    )
    assert client.refresh() is not None
    with pytest.raises(NotFound):  # root signing needs the offline key
        Repository(repo, keys).sign_root()
    info = Repository(repo, keys).sign_root(root_key=offline)
    assert info.versions["root"] == 2
    publish(repo, make_set(2), keys=keys)
    new = client.refresh()  # the client walks to root v2 and keeps following
    assert new is not None and new.sequence == 2


def test_old_layout_is_detected_with_the_move_command(tmp_path: Path, make_set) -> None:
    repo = tmp_path / "feed"
    init_repository(repo)
    os.replace(default_keys_dir(repo), repo / "keys")  # the layout before the split
    with pytest.raises(InputError) as info:
        publish(repo, make_set(1))
    assert f"mv {repo / 'keys'} {default_keys_dir(repo)}" in str(info.value)
    result = subprocess.run(
        [TAKEDOWN, "feed", "publish", str(repo), "--directives", "/dev/null"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "mv " in result.stderr and "inside the published repository" in result.stderr
    shutil.move(repo / "keys", default_keys_dir(repo))  # as the message says
    assert publish(repo, make_set(1)).sequence == 1


def test_cli_init_keys_option_and_sign_root(tmp_path: Path) -> None:
    repo, keys = tmp_path / "feed", tmp_path / "secret" / "k"

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([TAKEDOWN, *args], capture_output=True, text=True, timeout=60)

    inside = run("feed", "init", str(repo), "--keys", str(repo / "keys"))
    assert inside.returncode == 1 and "inside the repository" in inside.stderr
    ok = run("feed", "init", str(repo), "--keys", str(keys))
    assert ok.returncode == 0, ok.stderr
    assert (keys / "timestamp.pem").is_file() and not (repo / "keys").exists()
    signed = run("feed", "sign-root", str(repo), "--keys", str(keys), "--json")
    assert signed.returncode == 0, signed.stderr
    assert '"root": 2' in signed.stdout


def test_serve_refuses_a_feed_directory_holding_keys(tmp_path: Path) -> None:
    repo = tmp_path / "feed"
    init_repository(repo)
    os.replace(default_keys_dir(repo), repo / "keys")
    env = {**os.environ, "TAKEDOWN_DB": str(tmp_path / "t.db")}
    subprocess.run([TAKEDOWN, "init"], env=env, check=True, capture_output=True, timeout=60)
    result = subprocess.run(
        [TAKEDOWN, "serve", "--port", "1", "--feed-dir", str(repo)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert result.returncode == 1
    assert "inside the published repository" in result.stderr and "mv " in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1  # one clear line
