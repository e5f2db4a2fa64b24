"""The fleet's state from its points' reports: lag, silences, fail-open, throughput.

Pure: ``fleet_status`` reads plain rows (each point's last two reports, the sequences
published, the registered operators) and ``now``; ``fleet.store`` reads them from the
database. Times are the regulator's clock: a point's report age is ``now - received_at``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from takedown.fleet.reports import format_time

SILENT_AFTER = timedelta(minutes=10)
DEFAULT_MAX_LAG = 3


@dataclass(frozen=True)
class ReportRow:
    """A stored report as status reads it."""

    operator: str
    point_id: str
    sent_at: datetime
    received_at: datetime
    sequence: int | None
    fail_open: bool
    fail_open_reason: str | None
    directives: Sequence[dict[str, Any]]  # [{id, measure_id, flows, bytes}]


@dataclass(frozen=True)
class PointStatus:
    operator: str
    point_id: str
    sequence: int | None
    lag: int  # publications newer than the sequence applied
    last_report_at: datetime
    last_report_age_seconds: float
    fail_open: bool
    fail_open_reason: str | None
    silent: bool
    lagging: bool
    throughput_bps: dict[str, float] = field(default_factory=dict)  # measure → bit/s

    def as_json(self) -> dict[str, Any]:
        return {
            "operator": self.operator,
            "point_id": self.point_id,
            "sequence": self.sequence,
            "lag": self.lag,
            "last_report_at": format_time(self.last_report_at),
            "last_report_age_seconds": round(self.last_report_age_seconds, 3),
            "fail_open": self.fail_open,
            "fail_open_reason": self.fail_open_reason or None,
            "silent": self.silent,
            "lagging": self.lagging,
            "throughput_bps": {k: round(v, 1) for k, v in sorted(self.throughput_bps.items())},
        }


@dataclass(frozen=True)
class OperatorStatus:
    name: str
    points: tuple[PointStatus, ...]
    latest_sequence: int | None
    flags: tuple[str, ...]  # lagging, silent, fail-open, never-reported

    @property
    def flagged(self) -> bool:
        return bool(self.flags)

    @property
    def throughput_bps(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for p in self.points:
            for measure, bps in p.throughput_bps.items():
                out[measure] = out.get(measure, 0.0) + bps
        return out

    def as_json(self) -> dict[str, Any]:
        seqs = [p.sequence for p in self.points if p.sequence is not None]
        return {
            "operator": self.name,
            "flagged": self.flagged,
            "flags": list(self.flags),
            "latest_sequence": self.latest_sequence,
            "points": len(self.points),
            "sequence_min": min(seqs) if seqs else None,
            "lag_max": max((p.lag for p in self.points), default=None),
            "fail_open_points": [p.point_id for p in self.points if p.fail_open],
            "silent_points": [p.point_id for p in self.points if p.silent],
            "throughput_bps": {k: round(v, 1) for k, v in sorted(self.throughput_bps.items())},
            "point_status": [p.as_json() for p in self.points],
        }


def lag_behind(published: Sequence[int], applied: int | None) -> int:
    """How many publications are newer than ``applied`` (all of them if none is)."""
    if applied is None:
        return len(published)
    return sum(1 for s in published if s > applied)


def _measure_key(row: dict[str, Any]) -> str:
    mid = row.get("measure_id")
    return f"measure {mid}" if mid is not None else f"directive {row.get('id')}"


def throughput(latest: ReportRow, previous: ReportRow | None) -> dict[str, float]:
    """Bit/s under each measure between two reports of a point (by the point's clock);
    empty without a previous report or after a restart (counters went back)."""
    if previous is None:
        return {}
    seconds = (latest.sent_at - previous.sent_at).total_seconds()
    if seconds <= 0:
        return {}
    before: dict[str, int] = {}
    for row in previous.directives:
        key = _measure_key(row)
        before[key] = before.get(key, 0) + int(row.get("bytes", 0))
    now_bytes: dict[str, int] = {}
    for row in latest.directives:
        key = _measure_key(row)
        now_bytes[key] = now_bytes.get(key, 0) + int(row.get("bytes", 0))
    if any(now_bytes.get(k, 0) < v for k, v in before.items()):
        return {}  # the point restarted: its counters began again
    return {k: (v - before.get(k, 0)) * 8 / seconds for k, v in now_bytes.items()}


def fleet_status(
    operators: Iterable[str],
    reports: Iterable[tuple[ReportRow, ReportRow | None]],
    published: Sequence[int],
    now: datetime,
    *,
    max_lag: int = DEFAULT_MAX_LAG,
    silent_after: timedelta = SILENT_AFTER,
) -> list[OperatorStatus]:
    """Per operator (name order) its points (id order) and its flags: a point more than
    ``max_lag`` publications behind, silent for ``silent_after``, or failing open; an
    operator whose points never reported."""
    published = sorted(published)
    latest = published[-1] if published else None
    by_operator: dict[str, list[PointStatus]] = {name: [] for name in operators}
    for last, previous in reports:
        age = (now - last.received_at).total_seconds()
        lag = lag_behind(published, last.sequence)
        by_operator.setdefault(last.operator, []).append(
            PointStatus(
                last.operator,
                last.point_id,
                last.sequence,
                lag,
                last.received_at,
                age,
                last.fail_open,
                last.fail_open_reason,
                silent=age >= silent_after.total_seconds(),
                lagging=lag > max_lag,
                throughput_bps=throughput(last, previous),
            )
        )
    out = []
    for name in sorted(by_operator):
        points = tuple(sorted(by_operator[name], key=lambda p: p.point_id))
        flags = []
        if not points:
            flags.append("never-reported")
        if any(p.lagging for p in points):
            flags.append("lagging")
        if any(p.silent for p in points):
            flags.append("silent")
        if any(p.fail_open for p in points):
            flags.append("fail-open")
        out.append(OperatorStatus(name, points, latest, tuple(flags)))
    return out
