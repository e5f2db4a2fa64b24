"""Publish what is in force: compile, guard against collateral, sign, record.

``rules check`` and ``feed publish`` share this path, so the set that was checked is the
set that is signed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from importlib import resources
from pathlib import Path

from sqlalchemy import select

from takedown.errors import Conflict, InputError, PatternError
from takedown.feed.compile import Compiled, compile_directives, compile_measure, next_sequence
from takedown.feed.directives import dumps
from takedown.feed.repository import RepoInfo, Repository
from takedown.match import HostHit, IPHit, Matcher, broad_ip_rules, host_collateral, ip_collateral
from takedown.match.collateral import hosts_from_citizenlab
from takedown.match.rules import host_pattern_problem
from takedown.model import DirectiveSet, TargetKind
from takedown.names import normalise_host
from takedown.store import audit
from takedown.store.db import Database
from takedown.store.schema import FeedPublication, Item

SHIPPED_REFERENCE = "reference_hosts.txt"


def shipped_reference_hosts() -> list[str]:
    """The reference hosts shipped with takedown (Citizen Lab test lists)."""
    text = resources.files("takedown.match").joinpath("data", SHIPPED_REFERENCE).read_text("utf-8")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def read_reference(path: Path) -> list[str]:
    """Hosts from a Citizen Lab CSV (``url,…`` header) or a plain one-host-per-line file."""
    try:
        with path.open(encoding="utf-8") as fh:
            first = fh.readline()
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}", where=str(path)) from None
    if first.startswith("url,") or ",url," in first:
        return hosts_from_citizenlab(path)
    hosts = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        try:
            hosts.append(normalise_host(text))
        except PatternError as exc:
            raise InputError(exc.message, where=f"{path}:{n}") from None
    return hosts


@dataclass
class GuardReport:
    hosts_checked: int
    host_hits: list[HostHit[str]] = field(default_factory=list)
    ip_hits: list[IPHit[str]] = field(default_factory=list)
    broad_ip: list[str] = field(default_factory=list)  # rules wider than /24 or /48, for review
    refused: list[str] = field(default_factory=list)  # targets that cannot become rules

    @property
    def collateral(self) -> bool:
        return bool(self.host_hits or self.ip_hits)

    def lines(self) -> list[str]:
        """One human-readable line per finding."""
        out = [
            f"directive {h.key}: rule {h.pattern} hits unrelated host {h.host}"
            for h in self.host_hits
        ]
        out += [
            f"directive {h.key}: IP rule {h.rule} covers {h.address} of unrelated host {h.host}"
            for h in self.ip_hits
        ]
        out += [f"review: broad IP rule {r}" for r in self.broad_ip]
        out += [f"refused: {r}" for r in self.refused]
        return out

    def as_json(self) -> dict[str, object]:
        return {
            "hosts_checked": self.hosts_checked,
            "collateral": self.collateral,
            "host_hits": [
                {"directive": h.key, "rule": h.pattern, "host": h.host} for h in self.host_hits
            ],
            "ip_hits": [
                {"directive": h.key, "rule": str(h.rule), "address": h.address, "host": h.host}
                for h in self.ip_hits
            ],
            "broad_ip": self.broad_ip,
            "refused": self.refused,
        }


def _owned(db_session, compiled: Compiled) -> Matcher[str]:  # type: ignore[no-untyped-def]
    """Hosts that belong to a listed platform or item: hitting them is intended."""
    patterns = dict(compiled.owners)
    query = select(Item.id, Item.host).where(Item.host.is_not(None), Item.delisted_at.is_(None))
    query = query.where(Item.kind.in_([TargetKind.URL.value, TargetKind.DOMAIN.value]))
    for item_id, host in db_session.execute(query):
        # a host no rule may name (a URL on a public suffix, an admitted broad domain) is
        # hit by nothing in the set, and would make the owners' matcher refuse to compile
        if host not in patterns and host_pattern_problem(host) is None:
            patterns[host] = f"item {item_id}"
    rules = []
    for pattern, owner in patterns.items():
        if "/" in pattern or ":" in pattern or pattern.replace(".", "").isdigit():
            continue  # addresses are not host patterns
        rules.append((pattern, owner))
    return Matcher.compile(rules, (), min_prefix_v4=0, min_prefix_v6=0) if rules else Matcher()


def guard(
    db_session,  # type: ignore[no-untyped-def]
    compiled: Compiled,
    reference_hosts: Sequence[str],
    resolved: Mapping[str, Sequence[str]] | None = None,
) -> GuardReport:
    """Every reference host or resolved address the compiled set would hit unintentionally."""
    host_rules = [(h.pattern, d.id) for d in compiled.directives.directives for h in d.hosts]
    ip_rules = [(r, d.id) for d in compiled.directives.directives for r in d.ip_ranges]
    rules: Matcher[str] = Matcher.compile(host_rules, ip_rules, min_prefix_v4=0, min_prefix_v6=0)
    owned = _owned(db_session, compiled)
    report = GuardReport(hosts_checked=len(reference_hosts), refused=list(compiled.refused))
    report.host_hits = host_collateral(rules, reference_hosts, owned)
    if resolved:
        report.ip_hits = ip_collateral(rules, resolved, owned)
    report.broad_ip = [f"{rule} (directive {key})" for rule, key in broad_ip_rules(rules)]
    return report


def check(
    db: Database,
    now: datetime,
    *,
    against: Iterable[Path] = (),
    resolved: Mapping[str, Sequence[str]] | None = None,
    shipped: bool = True,
) -> tuple[Compiled, GuardReport]:
    """Compile the directives in force at ``now`` and report their collateral."""
    hosts = shipped_reference_hosts() if shipped else []
    for path in against:
        hosts += read_reference(path)
    with db.reading() as session:
        compiled = compile_directives(session, now)
        return compiled, guard(session, compiled, hosts, resolved)


def measure_check(
    db: Database, measure_id: int, now: datetime, *, public_url: str = "http://127.0.0.1:8470"
) -> tuple[Compiled, GuardReport]:
    """The directive of one measure (proposed or not) and its collateral against the
    shipped reference hosts: the same guard a publication runs, for one measure."""
    with db.reading() as session:
        compiled = compile_measure(session, measure_id, now, public_url=public_url)
        return compiled, guard(session, compiled, shipped_reference_hosts())


@dataclass
class Published:
    info: RepoInfo
    sequence: int
    directives: int
    digest: str
    report: GuardReport
    directive_set: DirectiveSet


def publish(
    db: Database,
    repo_dir: Path,
    *,
    now: datetime,
    actor: str,
    against: Iterable[Path] = (),
    resolved: Mapping[str, Sequence[str]] | None = None,
    accept_collateral: str | None = None,
    timestamp_expiry: timedelta | None = None,
    public_url: str = "http://127.0.0.1:8470",
    keys: Path | None = None,
) -> Published:
    """Compile, guard, sign and record a new directive set.

    Collateral refuses the publication unless ``accept_collateral`` gives a reason, which
    goes into the audit log with the findings. The audit chain's head as of this
    publication is signed into it (the log's external anchor).
    """
    repo = Repository(repo_dir, keys)
    hosts = shipped_reference_hosts()
    for path in against:
        hosts += read_reference(path)
    with db.session() as session:
        sequence = max(next_sequence(session), (repo.info().sequence or 0) + 1)
        compiled = compile_directives(session, now, sequence=sequence, public_url=public_url)
        report = guard(session, compiled, hosts, resolved)
        if report.collateral and not accept_collateral:
            shown = "; ".join(report.lines()[:5])
            more = len(report.host_hits) + len(report.ip_hits) - 5
            raise Conflict(
                f"directive set has collateral: {shown}"
                + (f" (and {more} more)" if more > 0 else "")
                + "; fix the rules or pass --accept-collateral REASON"
            )
        data = dumps(compiled.directives)
        digest = hashlib.sha256(data).hexdigest()
        info = repo.publish_bytes(
            data, timestamp_expiry=timestamp_expiry, audit_head=audit.current_head(session)
        )
        session.add(
            FeedPublication(
                sequence=sequence,
                generated_at=now,
                published_at=now,
                digest=digest,
                directives=len(compiled.directives.directives),
                accepted_collateral=accept_collateral if report.collateral else None,
            )
        )
        audit.record(
            session,
            at=now,
            actor=actor,
            type="feed.publish",
            payload={
                "sequence": sequence,
                "sha256": digest,
                "directives": [d.id for d in compiled.directives.directives],
                "collateral": report.as_json() if report.collateral else None,
                "accepted_collateral": accept_collateral if report.collateral else None,
            },
        )
    return Published(
        info, sequence, len(compiled.directives.directives), digest, report, compiled.directives
    )
