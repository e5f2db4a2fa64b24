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
from typing import Any, BinaryIO

import matplotlib

matplotlib.use("Agg")  # no display; must precede pyplot
import matplotlib.dates as mdates
import matplotlib.pyplot as plt

from takedown.model import describe_action, describe_scope


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

    def describe(self) -> str:
        """``block`` or ``throttle 128 kbit/s``."""
        return describe_action(self.action, self.rate_kbps)


@dataclass(frozen=True)
class RateRow:
    phase: str
    subscriber: str  # the group charted: "mobile", "fixed · in share", …
    source: str  # the subscriber address the transfer came from
    content: str  # media / text / control
    host: str
    kbps: float
    target_kbps: float | None
    verdict: str


@dataclass(frozen=True)
class HistoryRow:
    at: datetime
    measure: int | None
    what: str  # started, renewed, changed, lifted, approved, expired, …
    rule: str | None
    detail: str


@dataclass(frozen=True)
class PointLine:
    """An enforcement point as it last reported: the sequence it applies, its lag."""

    operator: str
    point_id: str
    sequence: int | None
    lag: int
    last_report_at: str
    fail_open: bool

    @classmethod
    def of(cls, status: dict[str, Any]) -> PointLine:
        """From ``PointStatus.as_json()`` (takedown.fleet.status)."""
        return cls(
            status["operator"],
            status["point_id"],
            status["sequence"],
            status["lag"],
            status["last_report_at"],
            status["fail_open"],
        )

    def text(self) -> str:
        """One line: ``enforcement point demo-isp/demo-1: sequence 14 applied, lag 0``."""
        seq = "no set" if self.sequence is None else f"sequence {self.sequence}"
        state = ", FAILING OPEN" if self.fail_open else ""
        return (
            f"enforcement point {self.operator}/{self.point_id}: {seq} applied, "
            f"lag {self.lag} publication{'' if self.lag == 1 else 's'}{state} "
            f"(last report {self.last_report_at})"
        )


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
    history: list[HistoryRow] = field(default_factory=list)
    points: list[PointLine] = field(default_factory=list)  # enforcement points reporting
    # listed media found again under other URLs (media.store.list_reuploads rows)
    reuploads: list[dict[str, Any]] = field(default_factory=list)


_BAND = {"throttle": "#f0ad4e", "block": "#d9534f"}


def chart_compliance(data: ReportData, path: Path | BinaryIO, *, fmt: str | None = None) -> None:
    """Items left and removed share over time; below it, the measures in force as bands.

    ``path``: a file (its suffix names the format) or a binary stream with ``fmt`` (``svg``,
    ``png``): the console draws the same chart live, as SVG."""
    fig, (ax, strip) = plt.subplots(
        2,
        1,
        figsize=(10, 5.6),
        dpi=110,
        sharex=True,
        gridspec_kw={"height_ratios": [4, 1.3], "hspace": 0.08},
    )
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
    share.set_ylim(0, 105)
    share.set_ylabel("removed or withheld, %")
    lines, labels = ax.get_legend_handles_labels()
    lines2, labels2 = share.get_legend_handles_labels()
    ax.legend(lines + lines2, labels + labels2, loc="center left", fontsize=8)
    ax.set_title(f"{data.platform}: items left, removed share and measures in force")
    end = days[-1] if days else None
    shown = [m for m in sorted(data.measures, key=lambda m: m.id) if m.start and end]
    for row, m in enumerate(shown):
        stop = m.end.date() if m.end else end
        start = m.start.date()
        strip.barh(
            row,
            mdates.date2num(stop) - mdates.date2num(start),
            left=start,
            height=0.7,
            color=_BAND.get(m.action, "#999"),
        )
        strip.text(
            start,
            row,
            f" #{m.id} {m.describe()} {','.join(m.classes) or 'all'}: {describe_scope(m.scope)}",
            va="center",
            fontsize=7.5,
        )
    strip.set_yticks([])
    strip.set_ylim(-0.6, max(1, len(shown)) - 0.4)
    strip.invert_yaxis()
    strip.set_ylabel("measures", fontsize=8)
    strip.xaxis.set_major_formatter(mdates.DateFormatter("%d %b"))
    fig.savefig(path, format=fmt, bbox_inches="tight")
    plt.close(fig)


_CONTENT_COLOURS = {"media": "#e8871e", "text": "#2a7ab0", "control": "#8c8c8c"}


def chart_rates(data: ReportData, path: Path) -> None:
    """Median measured rate per phase and content class, one panel per subscriber group."""
    phases = list(dict.fromkeys(r.phase for r in data.rates))
    groups = list(dict.fromkeys(r.subscriber for r in data.rates))
    contents = list(dict.fromkeys(r.content for r in data.rates))
    fig, axes = plt.subplots(
        1, max(1, len(groups)), figsize=(11, 4.4), dpi=110, sharey=True, squeeze=False
    )
    width = 0.8 / max(1, len(contents))
    targets = sorted({r.target_kbps for r in data.rates if r.target_kbps})
    for ax, group in zip(axes[0], groups, strict=False):
        for i, content in enumerate(contents):
            xs, ys = [], []
            for p, phase in enumerate(phases):
                values = sorted(
                    r.kbps
                    for r in data.rates
                    if (r.phase, r.subscriber, r.content) == (phase, group, content)
                )
                if values:
                    xs.append(p + (i - (len(contents) - 1) / 2) * width)
                    ys.append(max(values[len(values) // 2], 1.0))
            ax.bar(xs, ys, width=width, color=_CONTENT_COLOURS.get(content), label=content)
        for t in targets:
            ax.axhline(t, color="#d9534f", ls="--", lw=1)
        ax.set_yscale("log")
        ax.set_ylim(10, max([r.kbps for r in data.rates] + [1000.0]) * 4)
        ax.set_title(group, fontsize=10)
        ax.set_xticks(range(len(phases)), phases, rotation=20, fontsize=8)
    axes[0][0].set_ylabel("achieved rate, kbit/s (log scale)")
    if targets:
        axes[0][0].text(
            -0.4, targets[0] * 1.25, f"target {targets[0]:g} kbit/s", color="#d9534f", fontsize=8
        )
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(
        handles,
        labels,
        loc="lower center",
        ncols=len(contents),
        fontsize=9,
        bbox_to_anchor=(0.5, -0.06),
    )
    fig.suptitle("Measured transfers through the enforcement point (median per group)")
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _fmt_value(name: str, value: object) -> str:
    """Shares as percentages, other figures as they are."""
    if isinstance(value, float) and "share" in name:
        return f"{100 * value:.1f}%"
    return "–" if value is None else str(value)


def _fmt_figures(figures: dict[str, object]) -> str:
    return ", ".join(f"{k}={_fmt_value(k, v)}" for k, v in sorted(figures.items()))


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
        f"<td>{m.id}</td><td>{e(m.describe())}</td>"
        f"<td>{e(', '.join(m.classes) or 'all')}</td>"
        f"<td>{e(describe_scope(m.scope))}</td>"
        f"<td>{_fmt_time(m.start)}</td><td>{_fmt_time(m.end)}</td><td>{e(m.state)}</td>"
        f"<td>{e(m.rule or 'by decision')}</td>"
        f"<td><code>{e(_fmt_figures(m.figures))}</code></td>"
        f"<td>{e(', '.join(m.approvals) or '—')}</td><td>{e(m.reason)}</td>"
        "</tr>"
        for m in data.measures
    )
    rate_rows = "\n".join(
        f"<tr><td>{e(r.phase)}</td><td>{e(r.subscriber)}</td><td>{e(r.source)}</td>"
        f"<td>{e(r.content)}</td>"
        f"<td>{e(r.host)}</td><td>{r.kbps:,.1f}</td>"
        f"<td>{'' if r.target_kbps is None else f'{r.target_kbps:g}'}</td>"
        f"<td>{e(r.verdict)}</td></tr>"
        for r in data.rates
    )
    history_rows = "\n".join(
        f"<tr><td>{_fmt_time(h.at)}</td><td>{'' if h.measure is None else h.measure}</td>"
        f"<td>{e(h.what)}</td><td>{e(h.rule or '')}</td><td>{e(h.detail)}</td></tr>"
        for h in data.history
    )
    reupload_rows = "\n".join(
        f"<tr><td>{e(r['url'] or '')}</td><td>{r['item_id']}</td><td>{e(r['item_target'])}</td>"
        f"<td>{e(r['category'])}</td><td>{'' if r['distance'] is None else r['distance']}</td>"
        f"<td>{_fmt_time(r['found_at'])}</td><td>{e(r['found_by'])}</td>"
        f"<td>{_fmt_time(r['removed_at']) if r['removed_at'] else 'still up'}</td></tr>"
        for r in data.reuploads
    )
    removed = sum(r["removed_at"] is not None for r in data.reuploads)
    notes = "".join(f"<li>{e(n)}</li>" for n in data.notes)
    point_rows = "\n".join(
        f"<tr><td>{e(p.operator)}</td><td>{e(p.point_id)}</td>"
        f"<td>{'' if p.sequence is None else p.sequence}</td><td>{p.lag}</td>"
        f"<td>{'yes' if p.fail_open else 'no'}</td><td>{e(p.last_report_at)}</td></tr>"
        for p in data.points
    )
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
<details><summary>every transfer ({len(data.rates)})</summary>
<table><tr><th>phase</th><th>subscriber</th><th>address</th><th>content</th><th>host</th>
<th>kbit/s</th><th>target</th><th>verdict</th></tr>
{rate_rows}</table></details>
<h2>Measures</h2>
<table><tr><th>id</th><th>action</th><th>classes</th><th>scope</th><th>from</th><th>until</th>
<th>state</th><th>rule</th><th>figures that fired it</th><th>approvals</th><th>reason</th></tr>
{measure_rows}</table>
<h2>Enforcement points</h2>
<p>As each point last reported (signed) to the regulator: the feed sequence it applies and
how many publications it is behind.</p>
<table><tr><th>operator</th><th>point</th><th>sequence applied</th><th>lag</th>
<th>fail open</th><th>last report</th></tr>
{point_rows}</table>
<h2>Re-uploads</h2>
<p>Listed photos found again under other URLs (PDQ hash within 31 bits of the evidence):
{len(data.reuploads)} found, {removed} removed.</p>
<table><tr><th>URL</th><th>item</th><th>listed as</th><th>category</th><th>distance</th>
<th>found</th><th>by</th><th>removed</th></tr>
{reupload_rows}</table>
<h2>Measure history</h2>
<table><tr><th>when</th><th>measure</th><th>what</th><th>rule</th><th>detail</th></tr>
{history_rows}</table>
<ul>{notes}</ul>
</body></html>
"""
    target = out_dir / "report.html"
    target.write_text(page, encoding="utf-8")
    return target
