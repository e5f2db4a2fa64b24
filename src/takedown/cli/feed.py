"""`takedown feed …`: the signed directive feed (a TUF repository directory) and its client.

Examples::

    takedown feed init feed/ --root-key /offline/root.pem  # online keys in feed.keys/ (0600)
    takedown feed publish feed/                          # compile from the database, guard, sign
    takedown feed publish feed/ --directives set.json    # or publish a given set
    takedown feed show feed/ --json
    takedown feed renew feed/                            # re-sign expiries (cron)
    takedown feed rotate feed/ timestamp --root-key /offline/root.pem
    takedown feed sign-root feed/ --root-key /offline/root.pem   # a new root before expiry
    takedown feed pull http://127.0.0.1:8000/feed/ out/ --root 1.root.json
"""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

import typer

from takedown.cli import common

app = typer.Typer(help="The signed directive feed (TUF repository) and its client.")


class Role(StrEnum):  # the TUF roles, as choices
    ROOT = "root"
    TARGETS = "targets"
    SNAPSHOT = "snapshot"
    TIMESTAMP = "timestamp"


KEYS_HELP = "The private keys' directory (default: DIR.keys beside DIR; never inside DIR)."


def _duration(value: str | None, option: str) -> timedelta | None:
    from takedown.errors import InputError
    from takedown.feed.repository import parse_duration

    if value is None:
        return None
    try:
        return parse_duration(value)
    except InputError as exc:
        raise common.fail(f"{option}: {exc.message}", 2) from None


def _show_info(data: dict[str, Any], title: str) -> None:
    common.print_table(
        ("role", "version", "expires"),
        (
            (role, data["versions"][role], data["expires"][role])
            for role in ("root", "targets", "snapshot", "timestamp")
        ),
        title=title,
    )
    if data["sequence"] is None:
        common.console.print("no directive set published yet")
    else:
        common.console.print(
            f"directive set: sequence {data['sequence']}, {data['directives']} directives, "
            f"{data['target_length']} bytes, sha256 {data['target_sha256']}"
        )


@app.command("init")
def init(
    directory: Path = typer.Argument(..., help="Repository directory to create."),
    timestamp_expiry: str = typer.Option("1d", "--timestamp-expiry", help="e.g. 1d, 12h."),
    snapshot_expiry: str = typer.Option("7d", "--snapshot-expiry"),
    targets_expiry: str = typer.Option("30d", "--targets-expiry"),
    root_expiry: str = typer.Option("365d", "--root-expiry"),
    keys: Path = typer.Option(None, "--keys", help=KEYS_HELP),
    root_key: Path = typer.Option(
        None, "--root-key", help="Write the root key here (offline media), not to the keys dir."
    ),
    bins: int = typer.Option(
        None,
        "--bins",
        min=1,
        max=16,
        help="Publish the set in 2**BITS hash bins (format 2): each publication re-signs "
        "and clients fetch only the bins that changed. 14 suits a million directives.",
    ),
    json_out: bool = typer.Option(False, "--json", help="Machine output."),
) -> None:
    """Create version-1 TUF metadata in DIR and the ed25519 keys (0600) outside it.

    DIR holds nothing secret: serve or mirror it as it is. The root key is needed only to
    sign a new root (sign-root, rotate): keep it offline.
    Example: takedown feed init feed/ --root-key /media/usb/root.pem
    """
    from takedown.feed.keyfiles import default_keys_dir
    from takedown.feed.repository import init_repository

    keys_dir = keys or default_keys_dir(directory)
    info = init_repository(
        directory,
        keys=keys_dir,
        root_key=root_key,
        timestamp_expiry=_duration(timestamp_expiry, "--timestamp-expiry"),
        snapshot_expiry=_duration(snapshot_expiry, "--snapshot-expiry"),
        targets_expiry=_duration(targets_expiry, "--targets-expiry"),
        root_expiry=_duration(root_expiry, "--root-expiry"),
        bins=bins,
    )
    if json_out:
        common.print_json(info.to_json())
        return
    _show_info(info.to_json(), f"feed repository {directory}")
    root_at = root_key or keys_dir / "root.pem"
    common.console.print(
        f"trust anchor for clients: {directory / 'metadata' / '1.root.json'}; "
        f"private keys in {keys_dir}"
        + ("" if root_key else f"; move {root_at} offline (publish does not need it)")
    )


@app.command("publish")
def publish_(
    directory: Path = typer.Argument(..., help="Repository directory."),
    directives: Path = typer.Option(
        None, "--directives", help="Publish this directive-set JSON file instead of compiling."
    ),
    accept_collateral: str = typer.Option(
        None, "--accept-collateral", help="Publish despite collateral; the reason is audited."
    ),
    against: list[Path] = typer.Option(
        None, "--against", help="More reference hosts for the collateral guard."
    ),
    resolved: Path = typer.Option(None, "--resolved", help="Resolved names: 'host ip…' lines."),
    public_url: str = typer.Option(
        "http://127.0.0.1:8470", "--public-url", help="Base of the directives' reference URLs."
    ),
    timestamp_expiry: str = typer.Option(
        None, "--timestamp-expiry", help="Override the repository's setting, e.g. 1d."
    ),
    keys: Path = typer.Option(None, "--keys", help=KEYS_HELP),
    json_out: bool = typer.Option(False, "--json", help="Machine output."),
) -> None:
    """Compile the measures and register items in force, check them for collateral, sign and
    publish them (new targets, snapshot and timestamp).

    Example: takedown feed publish feed/ --accept-collateral "court order 12-3 covers it"
    """
    from takedown.feed.repository import Repository

    expiry = _duration(timestamp_expiry, "--timestamp-expiry")
    if directives is not None:
        try:
            data = directives.read_bytes()
        except OSError as exc:
            raise common.fail(f"{directives}: {exc.strerror}") from None
        info = Repository(directory, keys).publish_bytes(data, timestamp_expiry=expiry)
        extra: dict[str, Any] = {}
    else:
        from takedown.feed.publisher import publish
        from takedown.match import read_resolved

        result = publish(
            common.database(),
            directory,
            now=common.now(),
            actor=common.actor(),
            against=against or (),
            resolved=read_resolved(resolved) if resolved else None,
            accept_collateral=accept_collateral,
            timestamp_expiry=expiry,
            public_url=public_url.rstrip("/"),
            keys=keys,
        )
        info = result.info
        extra = {"collateral": result.report.as_json(), "sha256": result.digest}
        if not json_out:
            for line in result.report.lines():
                common.err_console.print(line, highlight=False)
    if json_out:
        common.print_json({**info.to_json(), **extra})
        return
    common.console.print(
        f"published sequence {info.sequence} ({info.directives} directives) as targets "
        f"v{info.versions['targets']}, timestamp v{info.versions['timestamp']} "
        f"expiring {info.to_json()['expires']['timestamp']}"
    )


@app.command("renew")
def renew(
    directory: Path = typer.Argument(..., help="Repository directory."),
    timestamp_expiry: str = typer.Option(None, "--timestamp-expiry"),
    keys: Path = typer.Option(None, "--keys", help=KEYS_HELP),
    json_out: bool = typer.Option(False, "--json", help="Machine output."),
) -> None:
    """Re-sign targets, snapshot and timestamp with fresh expiries (same directive set).

    Example (cron, every hour): takedown feed renew feed/
    """
    from takedown.feed.repository import Repository

    info = Repository(directory, keys).renew(
        timestamp_expiry=_duration(timestamp_expiry, "--timestamp-expiry")
    )
    if json_out:
        common.print_json(info.to_json())
        return
    common.console.print(
        f"renewed: timestamp v{info.versions['timestamp']} expires "
        f"{info.to_json()['expires']['timestamp']}"
    )


@app.command("rotate")
def rotate(
    directory: Path = typer.Argument(..., help="Repository directory."),
    roles: list[Role] = typer.Argument(..., help="Roles whose keys to replace."),
    root_key: Path = typer.Option(None, "--root-key", help="The (offline) root key."),
    keys: Path = typer.Option(None, "--keys", help=KEYS_HELP),
    json_out: bool = typer.Option(False, "--json", help="Machine output."),
) -> None:
    """Replace role keys (new root version signed by the root key), then re-sign.

    Also the recovery from a fast-forward attack with a stolen timestamp/snapshot key.
    Example: takedown feed rotate feed/ timestamp snapshot --root-key /media/usb/root.pem
    """
    from takedown.feed.repository import Repository

    info = Repository(directory, keys).rotate_keys([r.value for r in roles], root_key=root_key)
    if json_out:
        common.print_json(info.to_json())
        return
    common.console.print(f"rotated {', '.join(roles)}: root v{info.versions['root']}")


@app.command("sign-root")
def sign_root(
    directory: Path = typer.Argument(..., help="Repository directory."),
    root_key: Path = typer.Option(
        None, "--root-key", help="The (offline) root key (default: the keys dir's root.pem)."
    ),
    root_expiry: str = typer.Option(None, "--root-expiry", help="e.g. 365d (default: setting)."),
    keys: Path = typer.Option(None, "--keys", help=KEYS_HELP),
    json_out: bool = typer.Option(False, "--json", help="Machine output."),
) -> None:
    """Sign the next root version (same keys, fresh expiry) with the offline root key.

    Example: takedown feed sign-root feed/ --root-key /media/usb/root.pem
    """
    from takedown.feed.repository import Repository

    info = Repository(directory, keys).sign_root(
        root_key=root_key, root_expiry=_duration(root_expiry, "--root-expiry")
    )
    if json_out:
        common.print_json(info.to_json())
        return
    common.console.print(
        f"root v{info.versions['root']} expires {info.to_json()['expires']['root']}"
    )


@app.command("show")
def show(
    directory: Path = typer.Argument(..., help="Repository directory."),
    json_out: bool = typer.Option(False, "--json", help="Machine output."),
) -> None:
    """Versions, expiries and the published directive set of a repository.

    Example: takedown feed show feed/ --json
    """
    from takedown.feed.repository import Repository

    data = Repository(directory).info().to_json()
    if json_out:
        common.print_json(data)
    else:
        _show_info(data, f"feed repository {directory}")


@app.command("pull")
def pull(
    url: str = typer.Argument(..., help="Feed base URL (http://host/feed/) or directory."),
    directory: Path = typer.Argument(..., help="Where to write directives.json."),
    root: Path = typer.Option(
        None, "--root", help="Trusted root.json (needed at first use of a URL)."
    ),
    json_out: bool = typer.Option(False, "--json", help="Machine output."),
) -> None:
    """Fetch and verify the feed (TUF), validate the set, write DIR/directives.json.

    From a sharded feed (feed init --bins) only the bins that changed since the last pull
    are downloaded; DIR/directives.json is still the whole set (format 1).

    Trusted metadata is kept in DIR/.tuf/, so rollbacks are refused on later pulls.
    Example: takedown feed pull http://127.0.0.1:8470/feed/ out/ --root 1.root.json
    """
    from takedown.clock import SystemClock
    from takedown.feed.binned_set import BinnedSet
    from takedown.feed.client import FeedClient
    from takedown.feed.directives import TARGET_NAME, dumps, format_time
    from takedown.feed.keyfiles import write_atomic

    directory.mkdir(parents=True, exist_ok=True)
    client = FeedClient(url, directory / ".tuf", root=root, clock=SystemClock())
    new = client.refresh()
    ds = client.last_good
    if isinstance(ds, BinnedSet):  # a sharded feed: only changed bins came; write it whole
        if new is not None or not (directory / TARGET_NAME).is_file():
            write_atomic(directory / TARGET_NAME, dumps(ds.to_directive_set()))
    elif ds is not None:
        write_atomic(directory / TARGET_NAME, client.target_path.read_bytes())
    count = len(ds) if isinstance(ds, BinnedSet) else len(ds.directives) if ds else None
    data = {
        "source": url,
        "changed": new is not None,
        "sequence": ds.sequence if ds else None,
        "directives": count,
        "format": ds.schema_version if ds else None,
        "bins_fetched": client.last_fetch.get("bins") if new is not None else 0,
        "targets_version": client.version,
        "timestamp_expires": format_time(client.expires) if client.expires else None,
        "file": str(directory / TARGET_NAME) if ds else None,
    }
    if json_out:
        common.print_json(data)
    elif ds is None:
        common.console.print("verified; no directive set published yet")
    else:
        state = "updated" if new is not None else "unchanged"
        common.console.print(
            f"{state}: sequence {ds.sequence}, {count} directives, targets "
            f"v{client.version}, feed expires {data['timestamp_expires']} → {data['file']}"
        )


class SteeringFormat(StrEnum):
    NFT = "nft"
    PREFIXES = "prefixes"


@app.command("export-steering")
def export_steering(
    fmt: SteeringFormat = typer.Option(
        SteeringFormat.NFT, "--format", help="nft: an `nft -f` set file; prefixes: one a line."
    ),
    directives: Path = typer.Option(
        None, "--directives", help="A directive-set JSON file (default: compiled from the db)."
    ),
    resolved: Path = typer.Option(
        None, "--resolved", help="Where hosts resolve: 'host ip…' lines (repeat as needed)."
    ),
    out: Path = typer.Option(None, "-o", "--out", help="Write here (default: stdout)."),
    json_out: bool = typer.Option(False, "--json", help="Machine output: the set as JSON."),
) -> None:
    """The address prefixes to divert to enforcement points, aggregated: IP directives, and
    the addresses of host directives' hosts (platforms' declared ranges, --resolved).

    Example: takedown feed export-steering --format nft --resolved resolved.txt -o steer.nft
    """
    from takedown.feed import steering
    from takedown.feed.compile import directives_in_force
    from takedown.feed.directives import loads
    from takedown.feed.keyfiles import write_atomic
    from takedown.match import read_resolved

    db = common.database()
    now = common.now()
    if directives is not None:
        try:
            ds = loads(directives.read_bytes())
        except OSError as exc:
            raise common.fail(f"{directives}: {exc.strerror}") from None
    else:
        ds = directives_in_force(db, now, public_url="").directives
    try:
        hints = read_resolved(resolved) if resolved else None
    except OSError as exc:
        raise common.fail(f"{resolved}: {exc.strerror}") from None
    result = steering.steering_set(
        ds, now=now, platforms=steering.platform_ranges(db), resolved=hints
    )
    text = steering.to_nft(result) if fmt == SteeringFormat.NFT else steering.to_prefixes(result)
    if out is not None:
        write_atomic(out, text.encode())
    elif not json_out:
        print(text, end="")
    for rule in result.unsteered:
        common.err_console.print(
            f"warning: not steered, no known address: {rule} (declare the platform's "
            "--range or give --resolved)",
            highlight=False,
        )
    if json_out:
        common.print_json({**result.as_json(), "file": str(out) if out else None})
    elif out is not None:
        common.err_console.print(
            f"{len(result.v4)} IPv4 and {len(result.v6)} IPv6 prefixes → {out}", highlight=False
        )
