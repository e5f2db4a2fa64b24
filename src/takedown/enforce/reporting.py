"""The enforcement point reports back: every interval (on the point's clock) a signed
report of the set in force, its age, fail-open, and each directive's flow and byte
counters, POSTed to the regulator (``--report URL --token T [--point-id ID]``).

``build_report`` is the sans-IO core: it reads the point's Prometheus registry (so with
``--workers N`` it reads the sum of every worker's counters) and the index for measure
ids. ``report_loop`` does the I/O; a failed POST is logged once per cause and retried at
the next interval, and never touches the datapath.
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


def _by_directive(registry: CollectorRegistry, metric: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for family in registry.collect():
        for sample in family.samples:
            if sample.name == metric and "directive" in sample.labels:
                did = sample.labels["directive"]
                out[did] = out.get(did, 0) + int(sample.value)
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
    """The report of this point at ``now`` from its metrics and its index."""
    flows = _by_directive(registry, "takedown_enforce_directive_flows_total")
    nbytes = _by_directive(registry, "takedown_enforce_directive_bytes_total")
    measures = {d.id: d.measure_id for d in index.directives}
    counters = tuple(
        rep.DirectiveCounters(did, flows.get(did, 0), nbytes.get(did, 0), measures.get(did))
        for did in sorted(set(flows) | set(nbytes))
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


async def report_loop(
    cfg: ReportConfig,
    registry: CollectorRegistry,
    state: object,
    clock: Clock,
    *,
    poll: float = 1.0,
) -> None:
    """Send a report every ``cfg.interval`` seconds of ``clock``, the first at once.
    ``state`` is the EnforcementServer (its index and fail-open reason)."""
    last: datetime | None = None
    logged: set[str] = set()
    async with httpx.AsyncClient(timeout=10.0) as client:
        while True:
            now = clock.now().replace(microsecond=0)
            if last is None or now - last >= timedelta(seconds=cfg.interval):
                last = now
                try:
                    report = build_report(
                        cfg,
                        registry,
                        state.index,  # type: ignore[attr-defined]
                        now=now,
                        fail_open_reason=getattr(state, "fail_open_reason", ""),
                    )
                    body, headers = signed_request(cfg, report)
                    answer = await client.post(cfg.url, content=body, headers=headers)
                    if answer.status_code >= 300:
                        raise RuntimeError(f"HTTP {answer.status_code}: {answer.text[:200]}")
                    logged.clear()
                    log.debug("enforce: report sent (sequence %s)", report.sequence)
                except Exception as exc:  # reporting never ends the point
                    cause = f"{type(exc).__name__}: {exc}"
                    if cause not in logged:
                        logged.add(cause)
                        log.warning("enforce: report to %s failed: %s", cfg.url, cause)
            await asyncio.sleep(min(poll, cfg.interval))
