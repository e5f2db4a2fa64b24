"""The OpenAPI document as a contract: schemathesis (every check) against the app as
``takedown serve`` builds it, on a real uvicorn server on loopback over a seeded database,
once with a platform's token, once with a staff token and once for the public JSON; and
the document itself (valid OpenAPI, security, errors, examples, operationIds)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from notices.support import ServerThread

from takedown.clock import SimClock
from takedown.notices import outbox
from takedown.store.db import Database
from takedown.store.migrate import upgrade
from takedown.web.app import AppSettings, build
from takedown.web.guard import PublicLimits
from tests import staff
from tests.appeals_support import START, make_world

HERE = Path(__file__).resolve().parent
NOW = START + timedelta(days=2)
MAX_EXAMPLES = 25
SEED = 20210310


@dataclass
class Served:
    url: str
    platform_token: str
    staff_token: str
    workdir: Path


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A seeded SQLite database (two platforms with tokens, staff with tokens, items,
    measures, notices) behind the whole app on 127.0.0.1. The public limits are lifted:
    the fuzzer would meet 429s long before it met anything else (they are documented)."""
    work = tmp_path_factory.mktemp("openapi")
    db = Database(f"sqlite:///{work / 'takedown.db'}")
    upgrade(db)
    world = make_world(db)
    outbox.send(db, now=START + timedelta(hours=2), actor="test")
    staff_token = staff.token(db, "erin", "approver", now=START)
    limits = PublicLimits(concurrency=64, rate=0, filings_per_hour=0)
    app = build(AppSettings(db=db, clock=SimClock(NOW), public_limits=limits))
    with ServerThread(app) as server:
        yield Served(server.url, world.twitter_token, staff_token, work)
    db.close()


def schemathesis(served: Served, name: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``st run`` (every check, bounded and deterministic) against the served schema."""
    report = served.workdir / f"{name}.ndjson"
    cmd = [
        sys.executable,
        "-c",
        "from schemathesis.cli import schemathesis; schemathesis()",
        "run",
        f"{served.url}/openapi.json",
        "--checks",
        "all",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--seed",
        str(SEED),
        "--generation-deterministic",
        "--workers",
        "2",
        "--no-color",
        "--request-timeout",
        "20",
        "--report",
        "ndjson",
        "--report-ndjson-path",
        str(report),
        *args,
        *os.environ.get("ST_EXTRA", "").split(),
    ]
    env = {
        **os.environ,
        "NO_COLOR": "1",
        "SCHEMATHESIS_HOOKS": "openapi_hooks",
        "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
    }
    return subprocess.run(
        cmd, capture_output=True, text=True, timeout=900, check=False, env=env, cwd=served.workdir
    )


def _assert_clean(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, result.stdout[-20000:] + result.stderr[-5000:]


@pytest.mark.slow
def test_platform_api_contract(served: Served) -> None:
    result = schemathesis(
        served,
        "platform",
        "--include-tag",
        "platform",
        "--header",
        f"Authorization: Bearer {served.platform_token}",
    )
    _assert_clean(result)


@pytest.mark.slow
def test_regulator_api_contract(served: Served) -> None:
    result = schemathesis(
        served,
        "staff",
        "--include-tag",
        "regulator",
        "--header",
        f"Authorization: Bearer {served.staff_token}",
    )
    _assert_clean(result)


@pytest.mark.slow
def test_public_json_contract(served: Served) -> None:
    result = schemathesis(served, "public", "--include-tag", "public")
    _assert_clean(result)
