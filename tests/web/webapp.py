"""Test support for the regulator API, public pages and /metrics: the app as served."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from takedown.clock import Clock
from takedown.store.db import Database
from takedown.web.app import AppSettings, build

APPEAL = "Write to the regulator's appeals office within 30 days."
APPEAL_URL = "https://appeals.regulator.example/form"


def full_app(db: Database, clock: Clock, *, public_url: str | None = None) -> Any:
    """What ``takedown serve`` runs (``web.app.build``), without the delivery worker."""
    return build(
        AppSettings(
            db=db, clock=clock, public_url=public_url, appeal_text=APPEAL, appeal_url=APPEAL_URL
        )
    )


def takedown(
    db_url: str, *args: str, clock_file: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the CLI as a user would (a real process)."""
    env = dict(os.environ)
    if clock_file is not None:
        env["TAKEDOWN_CLOCK"] = f"file:{clock_file}"
    return subprocess.run(
        [sys.executable, "-c", "from takedown.cli import main; main()", "--db", db_url, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
