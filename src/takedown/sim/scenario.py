"""The 2021 case replayed end to end on one machine (``takedown demo``).

Real processes on loopback — ``takedown serve`` (platform API, delivery worker, feed),
``takedown sim platform`` (the platform, and a second one as the unrelated control host)
and ``takedown enforce`` (the enforcement point) — share a file clock that this driver
moves from 1 March to 1 June 2021. At each step the regulator's side runs as an operator
would: notices, verification, the ladder with approvals, feed publication; the platform
acts on its own clock; at each phase real transfers through the enforcement point are
measured per subscriber class and content class. Everything in the report comes from the
database the run leaves behind.
"""

from __future__ import annotations

import contextlib
import json
import random
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select

from takedown import ledger
from takedown.accounts import Actor, add_account, bootstrap
from takedown.clock import FileClock
from takedown.enforce.subscribers import Subscribers
from takedown.errors import TakedownError
from takedown.feed.publisher import publish
from takedown.feed.repository import init_repository
from takedown.fleet import store as fleet
from takedown.measure import compare, measure_transfer
from takedown.model import Directive, Figures, MeasureAction, describe_scope
from takedown.notices import outbox
from takedown.platforms import add_platform, issue_token, parse_host_spec
from takedown.policy import measures as measures_mod
from takedown.policy.spec import load as load_ladder
from takedown.registry.service import import_file
from takedown.sim import readout, reuploads
from takedown.sim import report as report_mod
from takedown.sim.measuring import expected_restriction
from takedown.sim.rundir import check_writable, clear_earlier_run, write_register
from takedown.sim.runinfo import DemoOptions, DemoResult, Progress
from takedown.sim.services import Services, http_ready, poll_until, port_is_free, tcp_ready
from takedown.store import migrate
from takedown.store.db import Database
from takedown.store.schema import Item, Measure, Measurement, Notice
from takedown.verify.probe import Route
from takedown.verify.runner import RunOptions, run_round
from takedown.verify.vantage import Vantage, add_vantage

START = datetime(2021, 3, 1, tzinfo=UTC)
END = datetime(2021, 6, 1, tzinfo=UTC)
NOTICE_DAY = datetime(2021, 3, 9, tzinfo=UTC)  # the final removal demand for the backlog
STATEMENT_DAY = datetime(2021, 5, 17, tzinfo=UTC)  # the figures announced that day
STEP = timedelta(hours=12)
OPERATOR, POINT_ID = "demo-isp", "demo-1"  # the enforcement point's operator and id
PLATFORM_HOSTS = ("twitter.com=text", "*.twimg.com=media", "t.co=links")
MEDIA_HOST, TEXT_HOST, CONTROL_HOST = "pbs.twimg.com", "twitter.com", "example.org"
MOBILE_RANGE, FIXED_RANGE = "127.0.1.0/24", "127.0.2.0/24"
MOBILE_SUBSCRIBERS = ("127.0.1.10",)
FIXED_SUBSCRIBERS = tuple(f"127.0.2.{n}" for n in range(10, 16))
NEW_ITEMS_EVERY = timedelta(days=3)  # after 17 May: new items, to be removed within 24 h
NEW_ITEMS_BATCH = 12


@dataclass(frozen=True)
class Phase:
    name: str
    at: datetime


PHASES = (
    Phase("before 10 March", datetime(2021, 3, 5, 12, tzinfo=UTC)),
    Phase("slowdown", datetime(2021, 4, 20, 12, tzinfo=UTC)),
    Phase("after 17 May", datetime(2021, 5, 20, 12, tzinfo=UTC)),
    Phase("end", END),
)


def shipped(name: str) -> Path:
    """A file shipped in the package's ``examples`` (ladders, behaviours, registers)."""
    return Path(str(resources.files("takedown").joinpath("examples", name)))


class Demo:
    """One run of the scenario; use as a context manager so children always stop."""

    def __init__(self, opts: DemoOptions, on_progress: Callable[[Progress], None] | None = None):
        self.opts = opts
        self.out = opts.out.resolve()
        self.on_progress = on_progress or (lambda p: None)
        p = opts.base_port
        self.ports = {"api": p, "sim": p + 1, "control": p + 2, "enforce": p + 3, "metrics": p + 4}
        self.urls = {
            "api": f"http://{opts.host}:{self.ports['api']}",
            "feed": f"http://{opts.host}:{self.ports['api']}/feed/",
            "platform": f"http://{opts.host}:{self.ports['sim']}",
            "control": f"http://{opts.host}:{self.ports['control']}",
            "enforce": f"http://{opts.host}:{self.ports['enforce']}",
            "metrics": f"http://{opts.host}:{self.ports['metrics']}/metrics",
            "console": f"http://{opts.host}:{self.ports['api']}/console/",
        }
        self.logins: dict[str, str] = {}  # demo staff account -> password
        self.services: Services | None = None
        self.db: Database | None = None
        self.clock: FileClock | None = None
        self.rng = random.Random(2021)
        self.days: list[report_mod.DayFigures] = []
        self.published_sequence = 0
        self.in_force: tuple[Directive, ...] = ()
        self.last_rates: dict[str, float] = {}
        self.figures_17_may: Figures | None = None
        self.next_new_items = STATEMENT_DAY + timedelta(days=1)
        self.http = httpx.Client(timeout=120.0)  # one client: no TLS context per request

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> Demo:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()
        if self.services is not None:
            self.services.stop()
        if self.db is not None:
            self.db.close()

    # ------------------------------------------------------------------ set-up
    def prepare(self) -> None:
        """Check the directory and ports, then create the database, platform and register."""
        check_writable(self.out)
        for name, port in self.ports.items():
            if not port_is_free(self.opts.host, port):
                raise TakedownError(
                    f"port {port} on {self.opts.host} ({name}) is already in use; "
                    "stop what uses it or pass --base-port"
                )
        clear_earlier_run(self.out)
        (self.out / "logs").mkdir()
        self.clock = FileClock(self.out / "clock.txt")
        self.clock.write(START)
        self.db = Database(str(self.out / "takedown.db"))
        migrate.upgrade(self.db)
        hosts = [parse_host_spec(h) for h in PLATFORM_HOSTS]
        _, secret = add_platform(
            self.db,
            "twitter",
            name="Twitter",
            notice_url=f"{self.urls['platform']}/notices",
            hosts=hosts,
            profile="ru-2021",
            now=START,
            actor="analyst",
        )
        token = issue_token(self.db, "twitter", now=START, actor="analyst")
        self.secret, self.token = secret, token
        # the operator whose enforcement point reports back to the regulator
        _, self.operator_token = fleet.add_operator(
            self.db, OPERATOR, now=START, actor=bootstrap("demo")
        )
        self.analyst, self.approver = (
            self._staff("ivanova", "analyst"),
            self._staff("petrov", "approver"),
        )
        self.vantage = add_vantage(
            self.db,
            Vantage(name="moscow-1", country="RU", in_country=True),
            now=START,
            actor="analyst",
        )
        register = self.out / "register.jsonl"
        write_register(register, self.opts.items, self.rng, TEXT_HOST, MEDIA_HOST)
        result = import_file(
            self.db, register, "jsonl", now=START - timedelta(days=1), actor="analyst"
        )
        if not result.committed:
            raise TakedownError("demo register did not import: " + "; ".join(result.errors))
        init_repository(self.out / "feed")
        (self.out / "subscribers.toml").write_text(
            f'[subscribers.mobile]\nranges = ["{MOBILE_RANGE}"]\n\n'
            f'[subscribers.fixed]\nranges = ["{FIXED_RANGE}"]\n',
            encoding="utf-8",
        )
        (self.out / "control.toml").write_text(
            'name = "control"\nack = false\nrespond = false\n\n[hosts]\n'
            f'"{CONTROL_HOST}" = "text"\n',
            encoding="utf-8",
        )
        self.subscribers = Subscribers.load(self.out / "subscribers.toml")
        self.ladder = load_ladder(self.opts.ladder or shipped("ladders/ru-2021.toml"))

    def start_services(self) -> None:
        """Start serve, the platform, the control host and the enforcement point."""
        assert self.clock is not None
        env = {
            "TAKEDOWN_CLOCK": f"file:{self.clock.path}",
            "TAKEDOWN_DB": str(self.out / "takedown.db"),
        }
        self.services = Services(self.out / "logs", env=env)
        h, feed_dir = self.opts.host, self.out / "feed"
        serve = ["--feed-dir", str(feed_dir), "--poll", "0.05"]
        self._start("serve", "api", ["serve"], serve, "/openapi.json")
        behaviour = self.opts.behaviour or shipped("behaviours/twitter-2021-demo.toml")
        api = ["--api", self.urls["api"], "--token", self.token, "--secret", self.secret]
        self._start_platform("platform", "sim", behaviour, api)
        self._start_platform("control", "control", self.out / "control.toml", [])
        self.publish(START)  # an empty set, so the enforcement point starts from a signed feed
        self.services.start(
            "enforce",
            [
                "enforce",
                "--feed",
                self.urls["feed"],
                "--root",
                str(feed_dir / "metadata" / "1.root.json"),
                "--state",
                str(self.out / "enforce-state"),
                "--listen",
                f"{h}:{self.ports['enforce']}",
                "--mode",
                "connect",
                "--subscribers",
                str(self.out / "subscribers.toml"),
                "--metrics",
                f"{h}:{self.ports['metrics']}",
                "--refresh",
                "0.2",
                "--operator-url",
                f"{self.urls['api']}/public/lookup",
                "--report",
                f"{self.urls['api']}/api/operators/reports",
                "--token",
                self.operator_token,
                "--point-id",
                POINT_ID,
            ],
            ready=tcp_ready(h, self.ports["enforce"]),
        )
        self.wait_for_feed(self.published_sequence)

    def _start_platform(self, name: str, port: str, behaviour: Path, extra: list[str]) -> None:
        """A simulated platform (``takedown sim platform``) that ticks only when told."""
        args = ["--behavior", str(behaviour), *extra, "--tick-every", "0"]
        self._start(name, port, ["sim", "platform"], args, "/_sim/stats")

    def _start(self, name: str, port: str, command: list[str], args: list[str], ready: str) -> None:
        """Start a ``takedown`` command on this run's host and port; up when path ``ready``
        answers there."""
        assert self.services is not None
        host, number = self.opts.host, self.ports[port]
        where = ["--host", host, "--port", str(number)]
        up = http_ready(f"http://{host}:{number}{ready}")
        self.services.start(name, [*command, *where, *args], ready=up)

    # ------------------------------------------------------------------ steps
    def publish(self, now: datetime) -> None:
        """Compile, guard and sign the directives in force; remember what was published."""
        assert self.db is not None
        result = publish(
            self.db, self.out / "feed", now=now, actor="feed-operator", public_url=self.urls["api"]
        )
        self.published_sequence = result.sequence
        self.in_force = result.directive_set.directives

    def wait_for_feed(self, sequence: int, timeout: float = 30.0) -> None:
        """Until the enforcement point reports it has loaded ``sequence``."""

        def loaded() -> bool:
            with contextlib.suppress(httpx.HTTPError):
                text = self.http.get(self.urls["metrics"], timeout=2.0).text
                return any(
                    line.startswith("takedown_enforce_feed_sequence")
                    and float(line.rsplit(" ", 1)[1]) >= sequence
                    for line in text.splitlines()
                )
            return False

        failure = f"the enforcement point did not load feed sequence {sequence}"
        poll_until(loaded, timeout, self._check_alive, failure)

    def wait_reported(self, sequence: int, timeout: float = 30.0) -> None:
        """Until the point reports that it applies ``sequence`` (the clock stands still)."""
        db = self.db
        assert db is not None
        failure = f"the enforcement point did not report sequence {sequence}"
        reported = lambda: bool(  # noqa: E731
            (r := fleet.recent_reports(db, limit=1)) and (r[0]["sequence"] or 0) >= sequence
        )
        poll_until(reported, timeout, self._check_alive, failure)

    def wait_delivered(self, timeout: float = 60.0) -> None:
        """Until no notice waits for delivery."""
        db = self.db
        assert db is not None
        pending = select(func.count()).select_from(Notice).where(Notice.delivery_state == "pending")
        failure = "notices were not delivered in time (see logs/serve.log)"

        def delivered() -> bool:
            with db.reading() as s:
                return not s.scalar(pending)

        poll_until(delivered, timeout, None, failure)

    def _check_alive(self) -> None:
        assert self.services is not None
        self.services.check_alive()

    def tick_platform(self) -> dict[str, Any]:
        r = self.http.post(f"{self.urls['platform']}/_sim/tick")
        r.raise_for_status()
        return r.json()

    def verify(self, now: datetime, *, claimed_only: bool) -> None:
        assert self.db is not None and self.clock is not None
        if claimed_only:
            with self.db.reading() as s:
                if not s.scalar(select(func.count()).where(Item.state == "claimed")):
                    return
        routes = {
            host: Route("http", self.opts.host, self.ports["sim"])
            for host in (TEXT_HOST, MEDIA_HOST)
        }
        opts = RunOptions(
            vantage=self.vantage,
            platform="twitter",
            only_open=True,
            states=("claimed",) if claimed_only else (),
            connect_to=routes,
            actor="verifier",
        )
        run_round(self.db, opts, clock=self.clock)

    def check_reuploads(self, now: datetime) -> None:
        """On 17 May the removed photos' media becomes evidence (hashes shared with the
        platform); then, and at the end, the URLs of re-posts are checked."""
        assert self.db is not None
        if now == STATEMENT_DAY:
            reuploads.record_evidence(self.db, MEDIA_HOST, now=now, actor="ivanova")
        route = Route("http", self.opts.host, self.ports["sim"])
        reuploads.check(self.db, self.urls["platform"], route, now=now, actor="verifier")

    def add_new_items(self, now: datetime) -> None:
        """After 17 May new items keep being flagged; they are due within 24 h of notice."""
        assert self.db is not None
        path = self.out / "logs" / f"new-{now:%Y%m%d%H}.jsonl"
        with path.open("w", encoding="utf-8") as fh:
            for k in range(NEW_ITEMS_BATCH):
                n = int(now.timestamp()) * 100 + k
                fh.write(
                    json.dumps(
                        {
                            "target": f"https://{TEXT_HOST}/user{k}/status/{n}",
                            "category": "suicide",
                            "basis": "149-FZ art. 15.1",
                            "decision": f"RKN-{now:%Y%m%d}-{k}",
                            "authority": "Roskomnadzor",
                            "decision_date": f"{now:%Y-%m-%d}",
                            "platform": "twitter",
                        }
                    )
                    + "\n"
                )
        import_file(self.db, path, "jsonl", now=now, actor="analyst")

    def _staff(self, name: str, role: str) -> Actor:
        """A demo staff account with a fresh password (printed with --keep-running)."""
        assert self.db is not None
        password = secrets.token_urlsafe(12)
        info = add_account(
            self.db, name, roles=[role], password=password, now=START, actor=bootstrap("demo")
        )
        self.logins[info.name] = password
        return Actor(info.name, frozenset(info.roles), info.id)

    def ladder_step(self, now: datetime) -> bool:
        """The analyst applies the ladder; the approver, a second account, approves what
        needs approval."""
        assert self.db is not None
        _, changed = measures_mod.run(self.db, self.ladder, now, self.analyst.label, apply=True)
        with self.db.reading() as s:
            waiting = s.scalars(select(Measure.id).where(Measure.state == "proposed")).all()
        for mid in waiting:
            measures_mod.approve(self.db, mid, self.approver, now)
        return bool(changed or waiting)

    def figures(self, now: datetime, *, full: bool = False) -> Figures:
        """The platform's figures now: from the projection, or (``full``) from the facts."""
        assert self.db is not None
        with self.db.reading() as s:
            if full:
                return ledger.figures_at(ledger.load_facts(s, "twitter", now), "twitter", now)
            return ledger.status_fast(s, "twitter", now)[0]

    # ------------------------------------------------------------------ measurement
    def measure_phase(self, phase: Phase) -> None:
        """Real transfers through the enforcement point per subscriber and content class."""
        assert self.db is not None
        proxy = f"http://{self.opts.host}:{self.ports['enforce']}"
        targets = (
            ("media", MEDIA_HOST, self.ports["sim"]),
            ("text", TEXT_HOST, self.ports["sim"]),
            ("control", CONTROL_HOST, self.ports["control"]),
        )
        rows = []
        for cls, sources in (("mobile", MOBILE_SUBSCRIBERS), ("fixed", FIXED_SUBSCRIBERS)):
            for source in sources:
                results = {}
                for content, host, port in targets:
                    url = f"http://{host}:{port}/_sim/stream/{64 << 20}"
                    result = measure_transfer(
                        url,
                        proxy=proxy,
                        source=source,
                        resolve={host: self.opts.host},
                        seconds=self.opts.measure_seconds,
                        timeout=30.0,
                    )
                    action, rate = expected_restriction(
                        self.in_force, self.clock.now(), self.subscribers, cls, source, content
                    )
                    if result.error and action != MeasureAction.BLOCK:
                        raise TakedownError(f"measurement {source} → {host}: {result.error}")
                    results[content] = (host, result, action, rate)
                    self.last_rates[f"{cls}/{content}"] = result.kbps
                control = results["control"][1]
                for content, (host, result, _action, rate) in results.items():
                    if result.error:
                        verdict = "blocked"
                    elif content == "control":
                        verdict = "control"
                    else:
                        verdict = compare(result, control, threshold=0.1).verdict
                    rows.append(
                        Measurement(
                            at=phase.at,
                            phase=phase.name,
                            subscriber_class=cls,
                            source=source,
                            content_class=content,
                            host=host,
                            kbps=0.0 if result.error else result.kbps,
                            target_kbps=rate,
                            verdict=verdict,
                        )
                    )
        with self.db.session() as s:
            s.add_all(rows)

    # ------------------------------------------------------------------ the run
    def steps(self) -> Iterator[datetime]:
        t = START
        while t <= END:
            yield t
            t += STEP

    def run(self) -> DemoResult:
        """Prepare, start the services, drive the clock, measure, write the report."""
        self.prepare()
        self.start_services()
        assert self.db is not None and self.clock is not None and self.services is not None
        all_steps = list(self.steps())
        pending_phases = list(PHASES)
        wall_start = time.monotonic()
        for n, now in enumerate(all_steps):
            self.clock.write(now)
            if now >= self.next_new_items:
                self.add_new_items(now)
                self.next_new_items += NEW_ITEMS_EVERY
            if now >= NOTICE_DAY:
                outbox.send(self.db, now=now, actor="analyst", platform="twitter")
                self.wait_delivered()
            self.tick_platform()
            self.verify(now, claimed_only=True)
            if now in (STATEMENT_DAY, END):
                self.verify(now, claimed_only=False)  # every open item, not only new claims
                self.check_reuploads(now)
            if now.hour == 0:  # the regulator reviews its ladder once a day
                changed = self.ladder_step(now)
                if changed or now.weekday() == 0:
                    self.publish(now)
                    self.wait_for_feed(self.published_sequence)
            if pending_phases and now >= pending_phases[0].at:
                self.measure_phase(pending_phases.pop(0))
            fig = self.figures(now, full=now == STATEMENT_DAY)
            if now == STATEMENT_DAY:
                self.figures_17_may = fig
            if now.hour == 12 or now == END:
                self.days.append(
                    report_mod.DayFigures(
                        now.date(),
                        fig.flagged,
                        fig.removed + fig.restricted,
                        fig.remaining,
                        fig.overdue,
                        fig.removed_share,
                    )
                )
            self.services.check_alive()
            self.on_progress(
                Progress(
                    now,
                    fig.remaining,
                    fig.removed_share,
                    self._in_force_labels(now),
                    dict(self.last_rates),
                    n + 1,
                    len(all_steps),
                )
            )
            if self.opts.days_per_second > 0:
                due = wall_start + (n + 1) * (STEP / timedelta(days=1)) / self.opts.days_per_second
                time.sleep(max(0.0, due - time.monotonic()))
        return self.finish()

    def _in_force_labels(self, now: datetime) -> list[str]:
        return [
            f"{d.describe()} ({describe_scope(d.scope)})"
            for d in self.in_force
            if d.measure_id is not None and d.in_force(now)
        ]

    # ------------------------------------------------------------------ outputs
    def finish(self) -> DemoResult:
        from takedown.ledger import statement

        assert self.db is not None
        fig = self.figures_17_may or self.figures(STATEMENT_DAY, full=True)
        text = statement(fig)
        self.wait_reported(self.published_sequence)
        points = readout.point_statuses(self.db, END)
        with self.db.reading() as s:
            readout.write_timeline(s, self.out / "timeline.jsonl")
            data = report_mod.ReportData(
                title="takedown: the 2021 case replayed",
                platform="twitter",
                days=self.days,
                measures=readout.measure_rows(s, "twitter"),
                history=readout.history_rows(s),
                reuploads=reuploads.rows(self.db),
                rates=readout.rate_rows(s),
                statement=text,
                statement_day=STATEMENT_DAY.date(),
                points=[report_mod.PointLine.of(p) for p in points],
                notes=[
                    f"{self.opts.items:,} items flagged in the 2021 category mix; notices on "
                    f"{NOTICE_DAY:%d %B}; simulated clock {START:%d %B} – {END:%d %B %Y}.",
                    "Rates are real transfers through the enforcement point from loopback "
                    f"subscriber addresses (mobile {MOBILE_RANGE}, fixed {FIXED_RANGE}).",
                    "Every figure comes from the database in this directory (takedown.db).",
                ],
            )
        page = report_mod.render(data, self.out)
        return DemoResult(self.out, page, fig, text, dict(self.urls), dict(self.logins), points)


__all__ = [
    "Demo",
    "DemoOptions",
    "DemoResult",
    "Progress",
    "shipped",
]
