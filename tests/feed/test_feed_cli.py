"""`takedown feed …` end to end, as an operator runs it (subprocess, real HTTP for pull)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from takedown.feed import dumps, loads

TAKEDOWN = str(Path(sys.executable).parent / "takedown")
# the CLI is a thin shell: run it against the HTTP mirror only
pytestmark = pytest.mark.parametrize("feed", ["http"], indirect=True)


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [TAKEDOWN, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def test_init_publish_show_pull_over_http(feed, make_set, tmp_path):
    # the fixture's repository already exists; a second init is refused with one line
    again = _run("feed", "init", str(feed.repo), cwd=tmp_path)
    assert again.returncode == 1 and "already exists" in again.stderr
    (tmp_path / "set.json").write_bytes(dumps(make_set(3, n=4)))
    repo = str(feed.repo)
    out = _run("feed", "publish", repo, "--directives", "set.json", "--json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    published = json.loads(out.stdout)
    assert published["sequence"] == 3 and published["directives"] == 4
    shown = json.loads(_run("feed", "show", str(feed.repo), "--json", cwd=tmp_path).stdout)
    assert shown["versions"]["timestamp"] == 2 and shown["target_sha256"]
    feed.sync()
    root = tmp_path / "1.root.json"
    root.write_bytes(feed.root_bytes())
    args = ("feed", "pull", feed.source, "out", "--root", str(root), "--json")
    pulled = _run(*args, cwd=tmp_path)
    assert pulled.returncode == 0, pulled.stderr
    result = json.loads(pulled.stdout)
    assert result["changed"] and result["sequence"] == 3 and result["targets_version"] == 2
    assert loads((tmp_path / "out" / "directives.json").read_bytes()).sequence == 3
    assert json.loads(_run(*args, cwd=tmp_path).stdout)["changed"] is False


def test_publish_invalid_file_names_the_field(feed, make_set, tmp_path):
    bad = dumps(make_set(1)).replace(b'"mobile":100.0', b'"mobile":101.0')
    (tmp_path / "bad.json").write_bytes(bad)
    out = _run("feed", "publish", str(feed.repo), "--directives", "bad.json", cwd=tmp_path)
    assert out.returncode == 1
    assert "directives[1].scope.mobile" in out.stderr
    shown = json.loads(_run("feed", "show", str(feed.repo), "--json", cwd=tmp_path).stdout)
    assert shown["sequence"] is None  # nothing was published


def test_pull_refusal_is_one_line_exit_1(feed, make_set, tmp_path):
    out = _run("feed", "pull", "http://127.0.0.1:9/feed/", "o", cwd=tmp_path)
    assert out.returncode == 1 and "NoTrustedRoot" in out.stderr
    bad = _run("feed", "init", str(tmp_path / "x"), "--timestamp-expiry", "soon", cwd=tmp_path)
    assert bad.returncode == 2
