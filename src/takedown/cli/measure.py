"""`takedown measure`: achieved rate of a real transfer, optionally against a control."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import typer

from takedown.cli import common
from takedown.measure import TransferResult, compare, measure_transfer, parse_resolve


def measure(
    url: str = typer.Argument(..., help="http(s) URL to download (and upload to)."),
    proxy: str = typer.Option(
        None, "--proxy", help="http://HOST:PORT (CONNECT) or socks5://HOST:PORT."
    ),
    source: str = typer.Option(None, "--source", help="Local address to bind."),
    resolve: list[str] = typer.Option(
        [], "--resolve", help="HOST:IP, connect to IP for HOST (repeatable)."
    ),
    seconds: float = typer.Option(5.0, "--seconds", help="Stop each direction after N s."),
    control: str = typer.Option(None, "--control", help="URL of an unrelated host."),
    threshold: float = typer.Option(
        0.5, "--threshold", help="Throttled when target/control is below this."
    ),
    upload: bool = typer.Option(False, "--upload", help="Also measure an upload (POST)."),
    cacert: str = typer.Option(None, "--cacert", help="CA bundle to verify TLS with."),
    insecure: bool = typer.Option(False, "--insecure", help="Do not verify TLS."),
    timeout: float = typer.Option(10.0, "--timeout", help="Connect and read timeout (s)."),
    as_json: bool = typer.Option(False, "--json", help="Machine output."),
) -> None:
    """Measure download (and upload) kbit/s of URL; with --control, a verdict.

    A target that cannot be reached or answers an error is one line on stderr naming its
    host, and exit code 1 (with --json, after the document).

    Example: takedown measure https://pbs.twimg.com/media/x.jpg
    --proxy http://127.0.0.1:8080 --control https://example.org/big --json
    """
    verify: bool | str = False if insecure else (cacert or True)
    options: dict[str, Any] = {
        "proxy": proxy,
        "source": source,
        "resolve": parse_resolve(resolve),
        "seconds": seconds,
        "upload": upload,
        "verify": verify,
        "timeout": timeout,
    }
    target = measure_transfer(url, **options)
    ctrl = measure_transfer(control, **options) if control else None
    verdict = compare(target, ctrl, threshold) if ctrl else None
    if as_json:
        common.print_json(
            {
                "url": url,
                "target": target.to_dict(),
                "control_url": control,
                "control": ctrl.to_dict() if ctrl else None,
                "comparison": verdict.to_dict() if verdict else None,
            }
        )
    else:
        common.print_table(
            ("transfer", "direction", "bytes", "seconds", "kbit/s", "status", "error"),
            (
                (name, *_cells(row))
                for name, result in (("target", target), ("control", ctrl))
                if result is not None
                for row in (result, result.upload)
                if row is not None
            ),
        )
        if verdict:
            ratio = "n/a" if verdict.verdict == "inconclusive" else f"{verdict.ratio:.3f}"
            common.console.print(
                f"verdict: {verdict.verdict} (target/control {ratio},"
                f" threshold {verdict.threshold})"
            )
    if target.error:
        raise common.fail(f"{urlsplit(url).netloc or url}: {target.error}")


def _cells(r: TransferResult) -> list[str]:
    status = "" if r.status is None else str(r.status)
    return [r.direction, str(r.bytes), f"{r.seconds:.3f}", f"{r.kbps:.1f}", status, r.error or ""]
