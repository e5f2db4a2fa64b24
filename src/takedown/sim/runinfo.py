"""What a demo run is given (options), reports as it goes (progress) and leaves (result)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from takedown.model import Figures


@dataclass
class DemoOptions:
    out: Path
    items: int = 6200
    days_per_second: float = 0.0  # 0: as fast as the work allows
    keep_running: bool = False
    base_port: int = 8470
    behaviour: Path | None = None  # default: the shipped 2021 demo behaviour
    ladder: Path | None = None  # default: the shipped 2021 ladder
    measure_seconds: float = 2.0
    host: str = "127.0.0.1"


@dataclass
class Progress:
    """What the driver reports to the screen after each step."""

    now: datetime
    remaining: int
    removed_share: float | None
    measures: list[str]
    last_rates: dict[str, float]
    step: int
    steps: int


@dataclass
class DemoResult:
    out: Path
    report: Path
    figures_17_may: Figures
    statement: str
    urls: dict[str, str] = field(default_factory=dict)
    logins: dict[str, str] = field(default_factory=dict)  # demo staff account -> password
    points: list[dict[str, Any]] = field(default_factory=list)  # each point's status
