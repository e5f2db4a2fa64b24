"""`takedown` commands: enforce."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import typer

from takedown.errors import InputError, UsageError

if TYPE_CHECKING:
    from takedown.enforce.process import EnforceOptions


def _host_port(text: str, option: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise UsageError(f"expected HOST:PORT, not {text!r}", where=option)
    return host, int(port)


def _options(
    *,
    feed: str | None,
    listen: str,
    mode: str,
    subscribers: Path | None,
    metrics: str | None,
    workers: int,
    state: Path,
    root: Path | None,
    refresh: float,
    sniff_timeout: float,
    resolve: list[str],
    operator_url: str | None,
    throttle_scope: str,
    no_splice: bool,
    report: str | None = None,
    token: str | None = None,
    point_id: str | None = None,
    report_interval: float = 60.0,
) -> EnforceOptions:
    """The command line as EnforceOptions; UsageError on a bad value."""
    from takedown.enforce.process import EnforceOptions
    from takedown.enforce.server import Mode, ServerConfig, ThrottleScope
    from takedown.names import parse_resolve

    try:
        resolved = parse_resolve(resolve)
    except InputError as exc:  # a bad option value is a usage error here (exit 2)
        raise UsageError(exc.message, where=exc.where) from None
    try:
        mode_value = Mode(mode)
    except ValueError:
        raise UsageError(f"unknown mode {mode!r}", where="--mode") from None
    try:
        scope_value = ThrottleScope(throttle_scope)
    except ValueError:
        raise UsageError(
            f"unknown throttle scope {throttle_scope!r} (expected flow or subscriber)",
            where="--throttle-scope",
        ) from None
    report_cfg = None
    if report is not None:
        from takedown.enforce.reporting import ReportConfig, default_point_id, operator_of
        from takedown.fleet.reports import POINT_ID

        if not report.startswith(("http://", "https://")):
            raise UsageError(f"expected an http(s) URL, not {report!r}", where="--report")
        if not token:
            raise UsageError("--report needs the operator's --token", where="--token")
        operator_of(token)
        pid = point_id or default_point_id()
        if not POINT_ID.match(pid):
            raise UsageError(f"bad point id {pid!r}: letters, digits, '._:-'", where="--point-id")
        if not report_interval >= 1:
            raise UsageError("at least 1 second", where="--report-interval")
        report_cfg = ReportConfig(report, token, pid, report_interval)
    elif token or point_id:
        raise UsageError("--token and --point-id go with --report URL", where="--report")
    return EnforceOptions(
        report=report_cfg,
        listen=_host_port(listen, "--listen"),
        feed=feed,
        state_dir=str(state),
        root=str(root) if root else None,
        refresh=refresh,
        subscribers=str(subscribers) if subscribers else None,
        metrics=_host_port(metrics, "--metrics") if metrics else None,
        workers=workers,
        config=ServerConfig(
            mode=mode_value,
            sniff_timeout=sniff_timeout,
            resolve=resolved,
            operator_url=operator_url,
            use_splice=not no_splice,
            throttle_scope=scope_value,
        ),
    )


def enforce(
    feed: str = typer.Option(
        None,
        "--feed",
        help="Directive feed: TUF repository URL or directory, or a plain "
        "directives.json file / directory (trusted local path, unsigned).",
    ),
    listen: str = typer.Option("127.0.0.1:3128", "--listen", help="HOST:PORT to accept on."),
    mode: Literal["connect", "socks5", "transparent"] = typer.Option(
        "connect", "--mode", help="How clients reach it: proxy protocol or redirected."
    ),
    subscribers: Path = typer.Option(None, "--subscribers", help="Subscriber classes (TOML)."),
    metrics: str = typer.Option(None, "--metrics", help="HOST:PORT for Prometheus /metrics."),
    workers: int = typer.Option(1, "--workers", min=1, help="Processes sharing the port."),
    state: Path = typer.Option(
        Path(".takedown-enforce"), "--state", help="Feed client state (trusted metadata)."
    ),
    root: Path = typer.Option(None, "--root", help="Trusted 1.root.json of the feed."),
    refresh: float = typer.Option(2.0, "--refresh", help="Seconds between feed polls."),
    sniff_timeout: float = typer.Option(
        2.0, "--sniff-timeout", help="Seconds to wait for a client's first bytes."
    ),
    resolve: list[str] = typer.Option(
        [], "--resolve", help="HOST:IP for upstream connections ('*:IP' maps every name)."
    ),
    operator_url: str = typer.Option(
        None, "--operator-url", help='Link rel="blocked-by" target of 451 answers.'
    ),
    throttle_scope: Literal["flow", "subscriber"] = typer.Option(
        "flow",
        "--throttle-scope",
        help="flow: each throttled flow gets the directive's rate in each direction; "
        "subscriber: a subscriber address's throttled flows under the same directive "
        "share one bucket per direction, so together they get the directive's rate.",
    ),
    no_splice: bool = typer.Option(False, "--no-splice", help="Relay without os.splice."),
    report: str = typer.Option(
        None,
        "--report",
        help="Report back to this URL (the regulator's /api/operators/reports), signed.",
    ),
    token: str = typer.Option(
        None,
        "--token",
        envvar="TAKEDOWN_OPERATOR_TOKEN",
        help="The operator's report token (`takedown operator add`); with --report.",
    ),
    point_id: str = typer.Option(
        None, "--point-id", help="This point's id in reports (default: the host name)."
    ),
    report_interval: float = typer.Option(
        60.0, "--report-interval", help="Seconds (of the point's clock) between reports."
    ),
    log_level: Literal["debug", "info", "warning", "error"] = typer.Option(
        "info", "--log-level", help="What to log on stderr."
    ),
) -> None:
    """Apply the directive feed to live flows: pass, throttle or block.

    Example: takedown enforce --feed https://feed.example/ --root 1.root.json
    --listen 0.0.0.0:3128 --mode socks5 --subscribers subs.toml --metrics 127.0.0.1:9108
    --report https://register.example/api/operators/reports --token $T --point-id msk-1
    """
    from takedown.enforce.process import run

    opts = _options(
        feed=feed,
        listen=listen,
        mode=mode,
        subscribers=subscribers,
        metrics=metrics,
        workers=workers,
        state=state,
        root=root,
        refresh=refresh,
        sniff_timeout=sniff_timeout,
        resolve=resolve,
        operator_url=operator_url,
        throttle_scope=throttle_scope,
        no_splice=no_splice,
        report=report,
        token=token,
        point_id=point_id,
        report_interval=report_interval,
    )
    logging.basicConfig(
        level=getattr(logging, log_level.upper(), logging.INFO),
        format="%(asctime)s %(process)d %(levelname)s %(message)s",
    )
    code = run(opts)
    if code:
        raise typer.Exit(code)
