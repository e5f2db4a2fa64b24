"""`takedown notices`: send, list, show; and `takedown serve`."""

from __future__ import annotations

import typer
from rich.table import Table

from takedown.cli import common


def register(app: typer.Typer) -> None:
    """Add this module's commands to the main app."""
    group = typer.Typer(help="Notices to platforms: outbox, delivery, deadlines.")
    app.add_typer(group, name="notices")

    @group.command("send")
    def send(
        platform: str = typer.Option(None, "--platform", help="Only this platform."),
        max_items: int = typer.Option(1000, "--max-items", min=1, help="Items per notice."),
        as_json: bool = typer.Option(False, "--json", help="Machine output."),
    ) -> None:
        """Put due notices (initial and repeat) into the outbox; the worker delivers them."""
        from takedown.notices import outbox

        results = outbox.send(
            common.database(),
            now=common.now(),
            actor=common.actor(),
            platform=platform,
            max_items=max_items,
        )
        if as_json:
            common.print_json([r.as_json() for r in results])
            return
        for r in results:
            common.console.print(
                f"{r.platform}: {len(r.notices)} notice(s); "
                f"{r.initial_items} item(s) initial, {r.repeat_items} repeat"
            )

    @group.command("list")
    def list_(
        platform: str = typer.Option(None, "--platform"),
        overdue: bool = typer.Option(False, "--overdue", help="Past deadline, items still open."),
        limit: int = typer.Option(None, "--limit", min=1),
        as_json: bool = typer.Option(False, "--json", help="Machine output."),
    ) -> None:
        """List notices with delivery state and open items."""
        from takedown.notices import outbox

        now = common.now()
        rows = outbox.list_notices(
            common.database(), now=now, platform=platform, overdue=overdue, limit=limit
        )
        if as_json:
            common.print_json([r.as_json(now) for r in rows])
            return
        table = Table(
            "id", "platform", "kind", "issued", "deadline", "delivery", "ack", "open/items"
        )
        for r in rows:
            deadline = f"{r.deadline_at:%Y-%m-%d %H:%M}" + (" OVERDUE" if r.overdue(now) else "")
            table.add_row(
                str(r.id),
                r.platform,
                r.kind,
                f"{r.issued_at:%Y-%m-%d %H:%M}",
                deadline,
                f"{r.delivery_state} ({r.attempts})",
                "yes" if r.acknowledged_at else "-",
                f"{r.open_items}/{r.items}",
            )
        common.console.print(table)

    @group.command("show")
    def show(
        notice_id: int = typer.Argument(...),
        as_json: bool = typer.Option(False, "--json", help="Machine output."),
    ) -> None:
        """Show a notice, its items and its delivery log."""
        from takedown.notices import outbox

        doc = outbox.show_notice(common.database(), notice_id)
        if as_json:
            common.print_json(doc)
            return
        c = common.console
        c.print(
            f"notice {doc['id'] if 'id' in doc else doc['notice_id']} to {doc['platform']} "
            f"({doc['kind']}), issued {doc['issued_at']}, deadline {doc['deadline_at']}"
        )
        c.print(
            f"delivery: {doc['delivery_state']} after {doc['attempts']} attempt(s); "
            f"acknowledged: {doc['acknowledged_at'] or '-'}"
        )
        for a in doc["delivery_log"]:  # type: ignore[union-attr]
            c.print(f"  {a['at']}  status={a['status']}  {a['error'] or ''}", highlight=False)
        table = Table("item", "category", "state", "target")
        for i in doc["items"]:  # type: ignore[union-attr]
            table.add_row(str(i["id"]), i["category"], str(i["state"]), i["target"])
        c.print(table)

    @app.command("serve")
    def serve(
        host: str = typer.Option("127.0.0.1", "--host"),
        port: int = typer.Option(8470, "--port"),
        no_worker: bool = typer.Option(False, "--no-worker", help="Do not deliver notices."),
        poll: float = typer.Option(0.5, "--poll", help="Seconds between idle outbox polls."),
        lease: float = typer.Option(120.0, "--lease", help="Claim lease in clock seconds."),
        timeout: float = typer.Option(10.0, "--timeout", help="Webhook timeout, seconds."),
        feed_dir: str = typer.Option(None, "--feed-dir", help="Serve this directory at /feed/."),
        public_url: str = typer.Option(
            None, "--public-url", help="Base URL of the public pages (default: the request's)."
        ),
        appeal_url: str = typer.Option(None, "--appeal-url", help="Where the public may appeal."),
    ) -> None:
        """Run the HTTP app (platform, regulator and public APIs, /metrics) with the notice
        delivery worker (uvicorn)."""
        from datetime import timedelta

        import uvicorn

        from takedown.clock import clock_from_env
        from takedown.notices.delivery import DeliveryWorker
        from takedown.web.app import create_app

        db = common.database()
        clock = clock_from_env()
        worker = None
        if not no_worker:
            worker = DeliveryWorker(
                db, clock, poll_interval=poll, lease=timedelta(seconds=lease), timeout=timeout
            )
        from takedown.web import public, regulator_api
        from takedown.web.metrics import Metrics

        metrics = Metrics(db, clock)
        routers = [
            regulator_api.make_router(public_url=public_url),
            public.make_router(public.PublicSettings(public_url=public_url, appeal_url=appeal_url)),
        ]
        app_ = create_app(
            db, clock=clock, worker=worker, feed_dir=feed_dir, routers=routers, metrics=metrics.app
        )
        uvicorn.run(
            metrics.middleware(app_), host=host, port=port, log_level="warning", access_log=False
        )
