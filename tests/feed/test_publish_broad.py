"""Items the register admitted despite the breadth check (``--accept-broad``): compile and
publication leave them out with their reasons and go on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from takedown.feed.compile import compile_directives
from takedown.feed.directives import dumps, loads
from takedown.feed.publisher import check, publish
from takedown.feed.repository import init_repository
from takedown.model import TargetKind
from takedown.registry.breadth import BreadthLimits
from takedown.store.db import Database
from takedown.store.schema import Item

NOW = datetime(2021, 3, 10, 9, 0, tzinfo=UTC)

# (target, kind, host, decision): what a person might admit with a reason, or what
# reached the table by another way
BROAD = [
    ("*.com", TargetKind.WILDCARD, "com", "D-WILD"),
    ("co.uk", TargetKind.DOMAIN, "co.uk", "D-SUFFIX"),
    ("10.0.0.0/15", TargetKind.CIDR, None, "D-V4"),
    ("2001:db8::/31", TargetKind.CIDR, None, "D-V6"),
    ("exa\x01mple.com", TargetKind.DOMAIN, "exa\x01mple.com", "D-CONTROL"),
    ("*t.co*", TargetKind.DOMAIN, None, "D-MASK"),
]
# a URL is never a rule, but its host goes to the collateral guard's owners
URL_ON_SUFFIX = ("https://github.io/page", TargetKind.URL, "github.io", "D-URL")
GOOD = ("blocked.example", TargetKind.DOMAIN, "blocked.example", "D-GOOD")


def _insert(db: Database, rows: list[tuple[str, TargetKind, str | None, str]]) -> dict[str, int]:
    """Insert items directly, as an admitted broad item is stored; return their ids."""
    ids = {}
    with db.session() as s:
        for target, kind, host, decision in rows:
            item = Item(
                target=target,
                kind=kind.value,
                host=host,
                platform_id=None,
                category="extremism",
                basis="149-FZ",
                decision_ref=decision,
                listed_at=NOW,
                flags="",
                state="open",
                state_at=NOW,
            )
            s.add(item)
            s.flush()
            ids[target] = item.id
    return ids


def test_compile_leaves_admitted_broad_items_out_with_reasons(db: Database) -> None:
    ids = _insert(db, [*BROAD, URL_ON_SUFFIX, GOOD])
    with db.reading() as s:
        compiled = compile_directives(s, NOW, sequence=1)
    (d,) = compiled.directives.directives
    assert d.decisions == ("D-GOOD",) and [h.pattern for h in d.hosts] == ["blocked.example"]
    refused = {int(r.split(":", 1)[0].removeprefix("item ")): r for r in compiled.refused}
    assert set(refused) == {ids[t] for t, *_ in BROAD}
    assert "covers every name under the public suffix 'com'" in refused[ids["*.com"]]
    assert "'co.uk' is a public suffix" in refused[ids["co.uk"]]
    assert "broader than /16, the IPv4 limit of profile ru-2021" in refused[ids["10.0.0.0/15"]]
    assert "broader than /32, the IPv6 limit" in refused[ids["2001:db8::/31"]]
    assert "control character" in refused[ids["exa\x01mple.com"]]
    assert "malformed mask" in refused[ids["*t.co*"]]
    loads(dumps(compiled.directives))  # what every enforcement point accepts


def test_compile_takes_the_limits_it_is_given(db: Database) -> None:
    _insert(db, [("198.51.0.0/16", TargetKind.CIDR, None, "D-16")])
    with db.reading() as s:
        default = compile_directives(s, NOW, sequence=1)
        strict = compile_directives(s, NOW, sequence=1, limits=BreadthLimits(min_prefix_v4=24))
    assert [d.ip_ranges for d in default.directives.directives] == [("198.51.0.0/16",)]
    assert strict.directives.directives == () and "broader than /24" in strict.refused[0]


def test_publish_succeeds_and_reports_the_refused(db: Database, tmp_path: Path) -> None:
    ids = _insert(db, [*BROAD, URL_ON_SUFFIX, GOOD])
    _, report = check(db, NOW)
    assert not report.collateral and len(report.refused) == len(BROAD)
    repo = tmp_path / "feed"
    init_repository(repo)
    published = publish(db, repo, now=NOW, actor="analyst")
    assert published.directives == 1
    assert published.report.refused == report.refused
    assert any(line.startswith(f"refused: item {ids['*.com']}: ") for line in report.lines())


def _cli(db_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "takedown", "--db", db_url, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ),
    )


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_cli_rules_check_and_feed_publish_with_admitted_broad_items(
    db_url: str, tmp_path: Path
) -> None:
    db = Database(db_url)
    _insert(db, [*BROAD, URL_ON_SUFFIX, GOOD])
    db.close()
    r = _cli(db_url, "rules", "check", "--json")
    assert r.returncode == 0, r.stderr
    checked = json.loads(r.stdout)
    assert checked["directives"] == 1 and len(checked["refused"]) == len(BROAD)
    repo = tmp_path / "feed"
    init_repository(repo)
    r = _cli(db_url, "feed", "publish", str(repo), "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["sequence"] == 1
    assert any("'*.com' covers every name" in line for line in out["collateral"]["refused"])
    r = _cli(db_url, "feed", "publish", str(repo))
    assert r.returncode == 0, r.stderr
    assert "refused: item" in r.stderr and "IPv4 limit of profile ru-2021" in r.stderr
