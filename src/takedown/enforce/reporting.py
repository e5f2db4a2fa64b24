"""The enforcement point reports back: every interval (on the point's clock) a signed
report of the set in force, its age, fail-open, and each directive's flow and byte
counters, POSTed to the regulator (``--report URL --token T [--point-id ID]``).

``build_report`` is the sans-IO core: it reads the point's Prometheus registry (so with
``--workers N`` it reads the sum of every worker's counters, each labelled with its
directive's measure) and the index only for its publication time. ``report_loop`` does
the I/O; a failed POST is logged once per cause and retried at the next interval, and
never touches the datapath.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import socket
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx
from prometheus_client import CollectorRegistry

from takedown.clock import Clock
from takedown.enforce.decide import Index
from takedown.errors import UsageError
from takedown.fleet import reports as rep

log = logging.getLogger("takedown.enforce")


@dataclass(frozen=True)
class ReportConfig:
    url: str
    token: str
    point_id: str
    interval: float = 60.0  # seconds of the point's clock

    @property
    def operator(self) -> str:
        return operator_of(self.token)


def operator_of(token: str) -> str:
    """The operator a report token belongs to (``tdo_NAME.SECRET``); UsageError otherwise."""
    match = re.fullmatch(r"tdo_([a-z0-9][a-z0-9-]{0,63})\.[A-Za-z0-9_-]{20,}", token)
    if match is None:
        raise UsageError("not an operator report token (tdo_NAME.…)", where="--token")
    return match.group(1)


def default_point_id() -> str:
    """This host's name, as a point id."""
    name = re.sub(r"[^A-Za-z0-9._:-]", "-", socket.gethostname())[:100].lstrip("._:-")
    return name or "point"


def _by_directive(registry: CollectorRegistry, metric: str) -> dict[tuple[str, str], int]:
    """(directive id, measure label) -> the counter's value, summed over its samples."""
    out: dict[tuple[str, str], int] = {}
    for family in registry.collect():
        for sample in family.samples:
            if sample.name == metric and "directive" in sample.labels:
                key = (sample.labels["directive"], sample.labels.get("measure", ""))
                out[key] = out.get(key, 0) + int(sample.value)
    return out


def _value(registry: CollectorRegistry, name: str) -> float | None:
    return registry.get_sample_value(name)


def build_report(
    cfg: ReportConfig,
    registry: CollectorRegistry,
    index: Index,
    *,
    now: datetime,
    fail_open_reason: str = "",
) -> rep.Report:
    """The report of this point at ``now`` from its metrics (the counters run since the
    point started and carry each directive's measure, so a lifted measure's directive is
    in them still; the directive set is never scanned: it may hold a million)."""
    flows = _by_directive(registry, "takedown_enforce_directive_flows_total")
    nbytes = _by_directive(registry, "takedown_enforce_directive_bytes_total")
    counters = tuple(
        rep.DirectiveCounters(
            did, flows.get((did, m), 0), nbytes.get((did, m), 0), int(m) if m else None
        )
        for did, m in sorted(set(flows) | set(nbytes))
    )
    sequence = _value(registry, "takedown_enforce_feed_sequence")
    age = _value(registry, "takedown_enforce_feed_age_seconds")
    fail_open = bool(_value(registry, "takedown_enforce_fail_open") or 0)
    return rep.Report(
        operator=cfg.operator,
        point_id=cfg.point_id,
        sent_at=now,
        sequence=int(sequence) if sequence and index.generated_at is not None else None,
        set_age_seconds=None if age is None or math.isnan(age) else round(age, 3),
        fail_open=fail_open,
        fail_open_reason=fail_open_reason if fail_open else "",
        directives=counters,
    )


def signed_request(cfg: ReportConfig, report: rep.Report) -> tuple[bytes, dict[str, str]]:
    """The body and headers of the POST."""
    body = report.body()
    t = int(report.sent_at.timestamp())
    return body, {
        "Authorization": f"Bearer {cfg.token}",
        "Content-Type": "application/json",
        rep.SIGNATURE_HEADER: rep.sign(cfg.token, body, t),
    }


def next_sent_at(now: datetime, last: datetime | None) -> datetime:
    """``now``, or a microsecond after ``last`` if the clock has not moved past it (a
    simulated clock stands still): a point's reports are strictly ordered in time."""
    if last is not None and now <= last:
        return last + timedelta(microseconds=1)
    return now


async def report_loop(
    cfg: ReportConfig,
    registry: CollectorRegistry,
    state: object,
    clock: Clock,
    *,
    poll: float = 1.0,
) -> None:
    """Report every ``cfg.interval`` seconds of ``clock``, the first at once, and at once
    when the sequence in force or the fail-open state changes; a failed report is tried
    again at the next poll. ``state`` is the EnforcementServer (index, fail-open reason)."""
    reported_at: datetime | None = None  # the clock when the last report was stored
    reported: tuple[int | None, bool] | None = None  # its (sequence, fail_open)
    sent_at: datetime | None = None
    logged: set[str] = set()
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per report
    async with httpx.AsyncClient(timeout=10.0) as client:
        while True:
            now = clock.now()
            try:
                report = build_report(
                    cfg,
                    registry,
                    state.index,  # type: ignore[attr-defined]
                    now=next_sent_at(now, sent_at),
                    fail_open_reason=getattr(state, "fail_open_reason", ""),
                )
                due = reported_at is None or now - reported_at >= timedelta(seconds=cfg.interval)
                if due or (report.sequence, report.fail_open) != reported:
                    sent_at = report.sent_at
                    body, headers = signed_request(cfg, report)
                    answer = await client.post(cfg.url, content=body, headers=headers)
                    if answer.status_code >= 300:
                        raise RuntimeError(f"HTTP {answer.status_code}: {answer.text[:200]}")
                    reported_at, reported = now, (report.sequence, report.fail_open)
                    logged.clear()
                    log.debug("enforce: report sent (sequence %s)", report.sequence)
            except Exception as exc:  # reporting never ends the point
                cause = f"{type(exc).__name__}: {exc}"
                if cause not in logged:
                    logged.add(cause)
                    log.warning("enforce: report to %s failed: %s", cfg.url, cause)
            await asyncio.sleep(min(poll, cfg.interval))
