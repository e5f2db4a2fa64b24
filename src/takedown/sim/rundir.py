"""The demo's run directory: checked, cleared of an earlier run, and its register file."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

from takedown.errors import InputError

# 2021 category mix of the items still online on 10 March (2,569 / 450 / 149 of 3,168).
CATEGORY_MIX = (("suicide", 2569), ("csam", 450), ("drugs", 149))


def check_writable(out: Path) -> None:
    """Create ``out`` if need be and prove a file can be written there."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise InputError(f"cannot write to {out}: {exc.strerror}", where="--out") from None


def clear_earlier_run(out: Path) -> None:
    """Remove what an earlier run left (only the files this driver writes)."""
    for name in (
        "takedown.db",
        "takedown.db-wal",
        "takedown.db-shm",
        "timeline.jsonl",
        "report.html",
        "compliance.png",
        "rates.png",
        "register.jsonl",
        "clock.txt",
        "subscribers.toml",
        "control.toml",
    ):
        (out / name).unlink(missing_ok=True)
    for name in ("feed", "feed.keys", "enforce-state", "logs"):
        shutil.rmtree(out / name, ignore_errors=True)


def write_register(path: Path, n: int, rng: random.Random, text_host: str, media_host: str) -> None:
    """``n`` URL items on the platform in the 2021 category mix, as JSON Lines."""
    total = sum(w for _, w in CATEGORY_MIX)
    cats = [c for c, w in CATEGORY_MIX for _ in range(round(n * w / total))]
    cats += [CATEGORY_MIX[0][0]] * (n - len(cats))
    cats = cats[:n]
    rng.shuffle(cats)
    with path.open("w", encoding="utf-8") as fh:
        for k, cat in enumerate(cats):
            host = text_host if k % 3 else media_host
            url = (
                f"https://{host}/user{k % 997}/status/{1_360_000_000_000_000_000 + k}"
                if host == text_host
                else f"https://{host}/media/E{k:08d}.jpg"
            )
            fh.write(
                json.dumps(
                    {
                        "target": url,
                        "category": cat,
                        "basis": "149-FZ art. 15.1, 15.3",
                        "decision": f"RKN-{2017 + k % 4}-{k // 50:04d}",
                        "authority": "Roskomnadzor",
                        "decision_date": f"{2017 + k % 4}-0{1 + k % 9}-1{k % 10}",
                        "platform": "twitter",
                    }
                )
                + "\n"
            )
