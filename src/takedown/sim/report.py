"""The scenario report: PNG charts and one self-contained HTML page (opens offline).

Pure rendering over plain data gathered by the scenario runner; nothing here reads the
database or decides anything, so every figure on the page comes from the ledger, the
measures table and the measurements.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display; must precede pyplot
import matplotlib.dates as mdates
import matplotlib.pyplot as plt


@dataclass(frozen=True)
class DayFigures:
    day: date
    flagged: int
    removed: int  # removed or withheld, verified
    remaining: int
    overdue: int
    removed_share: float | None


@dataclass(frozen=True)
class MeasureRow:
    id: int
    action: str
    rate_kbps: int | None
    classes: list[str]
    scope: dict[str, float]
    state: str
    start: datetime | None
    end: datetime | None  # lifted or expired at, None if still in force
    rule: str | None
    figures: dict[str, object]
    approvals: list[str]
    reason: str


@dataclass(frozen=True)
class RateRow:
    phase: str
    subscriber: str  # e.g. "mobile", "fixed (in share)"
    content: str  # media / text / control
    host: str
    kbps: float
    target_kbps: float | None
    verdict: str


@dataclass
class ReportData:
    title: str
    platform: str
    days: list[DayFigures]
    measures: list[MeasureRow]
    rates: list[RateRow]
    statement: str
    statement_day: date | None
    notes: list[str] = field(default_factory=list)


_BAND = {"throttle": "#f0ad4e", "block": "#d9534f"}


def chart_compliance(data: ReportData, path: Path) -> None:
    """Items left and removed share over time, measures in force as bands."""
    fig, ax = plt.subplots(figsize=(10, 4.8), dpi=110)
    days = [d.day for d in data.days]
    ax.plot(days, [d.remaining for d in data.days], color="#222", lw=2, label="items left")
    ax.plot(days, [d.overdue for d in data.days], color="#888", lw=1, ls="--", label="overdue")
    ax.set_ylabel("items")
    ax.set_ylim(bottom=0)
    share = ax.twinx()
    share.plot(
        days,
        [(d.removed_share or 0) * 100 for d in data.days],
        color="#2a7ab0",
        lw=2,
        label="removed or withheld, %",
    )
    share.set_ylim(0, 100)
    share.set_ylabel("removed share, %")
    end = days[-1] if days else None
    for row_no, m in enumerate(sorted(data.measures, key=lambda m: m.id)):
        if m.start is None or end is None:
            continue
        stop = m.end.date() if m.end else end
        scope = ", ".join(f"{k} {v:g}%" for k, v in sorted(m.scope.items()))
        label = f"#{m.id} {m.action} {','.join(m.classes) or 'all'} ({scope})"
        lo = 0.02 + 0.06 * (row_no % 6)
        ax.axvspan(
            m.start.date(),
            stop,
            ymin=lo,
            ymax=lo + 0.05,
            color=_BAND.get(m.action, "#999"),
            alpha=0.85,
            label=label,
        )
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%d %b"))
    lines = ax.get_legend_handles_labels()
    lines2 = share.get_legend_handles_labels()
    ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], loc="upper right", fontsize=7)
    ax.set_title(f"{data.platform}: items left and measures in force")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def chart_rates(data: ReportData, path: Path) -> None:
    """Measured rate per subscriber and content class per phase, against the target."""
    phases = list(dict.fromkeys(r.phase for r in data.rates))
    series = list(dict.fromkeys((r.subscriber, r.content) for r in data.rates))
    fig, ax = plt.subplots(figsize=(10, 4.8), dpi=110)
    width = 0.8 / max(1, len(series))
    for i, (sub, content) in enumerate(series):
        xs, ys = [], []
        for p, phase in enumerate(phases):
            for r in data.rates:
                if (r.phase, r.subscriber, r.content) == (phase, sub, content):
                    xs.append(p + i * width)
                    ys.append(max(r.kbps, 1.0))
        ax.bar(xs, ys, width=width, label=f"{sub} / {content}")
    targets = sorted({r.target_kbps for r in data.rates if r.target_kbps})
    for t in targets:
        ax.axhline(t, color="#d9534f", ls="--", lw=1)
        ax.text(
            len(phases) - 0.2,
            t * 1.1,
            f"target {t:g} kbit/s",
            color="#d9534f",
            fontsize=8,
            ha="right",
        )
    ax.set_yscale("log")
    ax.set_ylabel("achieved rate, kbit/s (log)")
    ax.set_xticks([p + 0.4 - width / 2 for p in range(len(phases))], phases)
    ax.legend(fontsize=7, ncols=2)
    ax.set_title("Measured transfers through the enforcement point")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _fmt_time(when: datetime | None) -> str:
    return when.strftime("%Y-%m-%d %H:%M") if when else "—"


def render(data: ReportData, out_dir: Path) -> Path:
    """Write compliance.png, rates.png and report.html into ``out_dir``; return the page."""
    out_dir.mkdir(parents=True, exist_ok=True)
    compliance, rates = out_dir / "compliance.png", out_dir / "rates.png"
    chart_compliance(data, compliance)
    chart_rates(data, rates)
    e = html.escape
    measure_rows = "\n".join(
        "<tr>"
        f"<td>{m.id}</td><td>{e(m.action)}{f' {m.rate_kbps} kbit/s' if m.rate_kbps else ''}</td>"
        f"<td>{e(', '.join(m.classes) or 'all')}</td>"
        f"<td>{e(', '.join(f'{k} {v:g}%' for k, v in sorted(m.scope.items())))}</td>"
        f"<td>{_fmt_time(m.start)}</td><td>{_fmt_time(m.end)}</td><td>{e(m.state)}</td>"
        f"<td>{e(m.rule or 'by decision')}</td>"
        f"<td><code>{e(', '.join(f'{k}={v}' for k, v in sorted(m.figures.items())))}</code></td>"
        f"<td>{e(', '.join(m.approvals) or '—')}</td><td>{e(m.reason)}</td>"
        "</tr>"
        for m in data.measures
    )
    rate_rows = "\n".join(
        f"<tr><td>{e(r.phase)}</td><td>{e(r.subscriber)}</td><td>{e(r.content)}</td>"
        f"<td>{e(r.host)}</td><td>{r.kbps:,.1f}</td>"
        f"<td>{'' if r.target_kbps is None else f'{r.target_kbps:g}'}</td>"
        f"<td>{e(r.verdict)}</td></tr>"
        for r in data.rates
    )
    notes = "".join(f"<li>{e(n)}</li>" for n in data.notes)
    day = data.statement_day.strftime("%d %B %Y") if data.statement_day else ""
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{e(data.title)}</title>
<style>
body {{ font: 15px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222 }}
table {{ border-collapse: collapse; font-size: 13px; margin: 1em 0 }}
td, th {{ border: 1px solid #ccc; padding: 3px 6px; vertical-align: top }}
th {{ background: #f4f4f4 }} img {{ max-width: 100% }}
blockquote {{ border-left: 4px solid #2a7ab0; margin: 1em 0; padding: .3em 1em;
  background: #f5f9fc }}
</style></head><body>
<h1>{e(data.title)}</h1>
<h2>Statement for {e(day)}</h2>
<blockquote>{e(data.statement)}</blockquote>
<h2>Compliance and measures</h2>
{_img(compliance, "items left and removed share over time with measures as bands")}
<h2>Measured rates</h2>
{_img(rates, "measured rate per subscriber class and content class per phase")}
<table><tr><th>phase</th><th>subscriber</th><th>content</th><th>host</th><th>kbit/s</th>
<th>target</th><th>verdict</th></tr>
{rate_rows}</table>
<h2>Measures</h2>
<table><tr><th>id</th><th>action</th><th>classes</th><th>scope</th><th>from</th><th>until</th>
<th>state</th><th>rule</th><th>figures that fired it</th><th>approvals</th><th>reason</th></tr>
{measure_rows}</table>
<ul>{notes}</ul>
</body></html>
"""
    target = out_dir / "report.html"
    target.write_text(page, encoding="utf-8")
    return target
