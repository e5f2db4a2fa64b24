"""`takedown serve`: run the web app (uvicorn); the app itself is ``takedown.web.app.build``."""

from __future__ import annotations

import typer

from takedown.cli import common


def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(8470, "--port", **common.PORT_RANGE, help="Port to listen on."),
    no_worker: bool = typer.Option(False, "--no-worker", help="Do not deliver notices."),
    poll: float = typer.Option(0.5, "--poll", help="Seconds between idle outbox polls."),
    lease: float = typer.Option(120.0, "--lease", help="Claim lease in clock seconds."),
    timeout: float = typer.Option(10.0, "--timeout", help="Webhook timeout, seconds."),
    feed_dir: str = typer.Option(None, "--feed-dir", help="Serve this directory at /feed/."),
    public_url: str = typer.Option(
        None, "--public-url", help="Base URL of the public pages (default: the request's)."
    ),
    appeal_url: str = typer.Option(None, "--appeal-url", help="Where the public may appeal."),
    profile: str = typer.Option(
        None,
        "--profile",
        help="The deployment's jurisdiction profile: its language is the public pages' default.",
    ),
    language: str = typer.Option(
        None,
        "--language",
        help="The public pages' default language (en, ru; wins over --profile's; default en).",
    ),
    public_concurrency: int = typer.Option(
        8, "--public-concurrency", min=1, help="Public requests in flight at most (then 503)."
    ),
    public_rate: float = typer.Option(
        5.0,
        "--public-rate",
        min=0.0,
        help="Public requests per second per client, then 429 (0: no limit).",
    ),
    public_burst: int = typer.Option(
        20, "--public-burst", min=1, help="Public requests a client may make at once."
    ),
) -> None:
    """Run the HTTP app (platform, regulator and public APIs, /metrics) with the notice
    delivery worker (uvicorn).

    A port in use is one line and exit code 1. Example: takedown serve --port 8470
    --feed-dir feed/
    """
    from datetime import timedelta

    import uvicorn

    from takedown.clock import clock_from_env
    from takedown.web.app import AppSettings, DeliverySettings, build
    from takedown.web.guard import PublicLimits

    sock = common.listen_socket(host, port)
    if feed_dir is not None:  # never serve a directory that holds signing keys
        from pathlib import Path

        from takedown.feed.keyfiles import refuse_keys_inside

        refuse_keys_inside(Path(feed_dir))
    delivery = None
    if not no_worker:
        delivery = DeliverySettings(poll=poll, lease=timedelta(seconds=lease), timeout=timeout)
    settings = AppSettings(
        db=common.database(),
        clock=clock_from_env(),
        public_url=public_url,
        appeal_url=appeal_url,
        profile=profile,
        language=language,
        feed_dir=feed_dir,
        delivery=delivery,
        public_limits=PublicLimits(
            concurrency=public_concurrency, rate=public_rate, burst=public_burst
        ),
    )
    config = uvicorn.Config(
        build(settings),
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=GRACEFUL_SECONDS,
    )
    uvicorn.Server(config).run(sockets=[sock])
    _exit_if_threads_linger(LINGER_SECONDS)


# On SIGTERM: requests in flight get GRACEFUL_SECONDS to finish, then worker threads still
# blocked (in a query waiting on a lock, say) get LINGER_SECONDS before the process exits
# without them: well inside 5 s. Their transactions were never committed, so the database
# rolls them back: nothing is half-written.
GRACEFUL_SECONDS = 3
LINGER_SECONDS = 1.0


def _exit_if_threads_linger(seconds: float) -> None:
    import os
    import sys
    import threading
    import time

    end = time.monotonic() + seconds
    for thread in threading.enumerate():
        if thread is not threading.main_thread() and not thread.daemon:
            thread.join(max(0.0, end - time.monotonic()))
    if any(
        t.is_alive() and not t.daemon and t is not threading.main_thread()
        for t in threading.enumerate()
    ):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
