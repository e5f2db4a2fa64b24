"""The feed as a TUF repository directory (python-tuf Metadata API), and its publisher.

Layout of ``DIR`` (served as-is under ``/feed/`` by ``takedown serve`` or any static server,
rsync'd to a mirror or a CDN: nothing secret lives in it)::

    DIR/feed.json                      expiry settings
    DIR/metadata/1.root.json ...       every root version (clients walk them)
    DIR/metadata/root.json             the newest root
    DIR/metadata/N.targets.json        consistent snapshot: versioned targets ...
    DIR/metadata/N.snapshot.json       ... and snapshot (the last few versions are kept)
    DIR/metadata/targets.json, snapshot.json   copies of the newest, for people
    DIR/metadata/timestamp.json        written last, atomically: it makes a version visible
    DIR/targets/<sha256>.directives.json   the directive set, hash-prefixed

The private keys live apart, in a keys directory (``KEYS``, by default ``DIR.keys`` beside
the repository; never inside it)::

    KEYS/{root,targets,snapshot,timestamp}.pem   ed25519 private keys, 0600, directory 0700

A repository whose keys sit in ``DIR/keys/`` (the layout before the split) is refused with
the command that moves them. Clients fetch only ``metadata/`` and ``targets/``
(``SERVED_DIRS``).

We use consistent snapshots (``root.consistent_snapshot = true``, the ngclient default):
a client that read timestamp N fetches ``N'.snapshot.json``, ``M.targets.json`` and
``<hash>.directives.json``, none of which a later publish overwrites, so it never sees a
half-written version even while ``publish`` runs.

Only ``feed init``, ``rotate_keys`` and ``sign_root`` need the root key; ``publish`` and
``renew`` use the targets, snapshot and timestamp keys only. Write the root key straight to
offline storage at ``init`` (``root_key=``), or move ``KEYS/root.pem`` there afterwards, and
pass it to the root-signing commands.

TUF metadata expiry runs on real time (``now`` defaults to ``datetime.now(UTC)``);
directive validity (``valid_from``/``expires`` inside the set) runs on the scenario clock
and is not checked here.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from securesystemslib.signer import CryptoSigner, Signer
from tuf.api.metadata import (
    TOP_LEVEL_ROLE_NAMES,
    Metadata,
    MetaFile,
    Root,
    Snapshot,
    TargetFile,
    Targets,
    Timestamp,
)
from tuf.api.serialization.json import JSONSerializer

from takedown.errors import AuthError, Conflict, InputError, NotFound
from takedown.feed.bins import MANIFEST_NAME
from takedown.feed.directives import TARGET_NAME, dumps, loads
from takedown.feed.keyfiles import (
    OLD_KEYS_NAME,
    default_keys_dir,
    keys_outside,
    load_signer,
    refuse_keys_inside,
    write_atomic,
    write_key,
)
from takedown.model import DirectiveSet
from takedown.store.audit import ChainHead

ONLINE_ROLES = ("targets", "snapshot", "timestamp")
# the only subdirectories a server may expose under /feed/ (never keys/ or feed.json)
SERVED_DIRS = ("metadata", "targets")
KEEP_VERSIONS = 4  # versioned snapshot/targets files (and their target files) kept on disk
CONFIG_NAME = "feed.json"
AUDIT_HEAD_FIELD = "audit_head"  # in the directive set's target ``custom``: the chain head

DEFAULT_EXPIRY = {
    "root": timedelta(days=365),
    "targets": timedelta(days=30),
    "snapshot": timedelta(days=7),
    "timestamp": timedelta(days=1),
}

_SERIALIZER = JSONSerializer(compact=True)


@dataclass(frozen=True)
class RepoInfo:
    """What a repository currently publishes."""

    path: Path
    versions: dict[str, int]
    expires: dict[str, datetime]
    sequence: int | None  # of the published directive set, None before the first publish
    directives: int | None
    target_sha256: str | None
    target_length: int | None
    consistent_snapshot: bool = True
    expiry_settings: dict[str, timedelta] = field(default_factory=dict)
    audit_head: ChainHead | None = None  # the audit chain head signed with the set

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (times as ISO strings, expiry settings in seconds)."""
        return {
            "path": str(self.path),
            "versions": dict(self.versions),
            "expires": {k: _iso(v) for k, v in self.expires.items()},
            "sequence": self.sequence,
            "directives": self.directives,
            "target": TARGET_NAME,
            "target_sha256": self.target_sha256,
            "target_length": self.target_length,
            "consistent_snapshot": self.consistent_snapshot,
            "expiry_settings": {k: int(v.total_seconds()) for k, v in self.expiry_settings.items()},
            "audit_head": self.audit_head.to_json() if self.audit_head else None,
        }


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _now(now: datetime | None) -> datetime:
    when = datetime.now(UTC) if now is None else now.astimezone(UTC)
    return when.replace(microsecond=0)  # TUF expiry has second precision


_DURATION_RE = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> timedelta:
    """``90s``, ``30m``, ``12h``, ``1d``, ``2w`` → timedelta (InputError otherwise)."""
    m = _DURATION_RE.match(text)
    if not m or int(m.group(1)) == 0:
        raise InputError(f"invalid duration {text!r}: use e.g. 90s, 30m, 12h, 1d, 2w")
    return timedelta(seconds=int(m.group(1)) * _UNITS[m.group(2)])


# --- the repository ---------------------------------------------------------------------


class Repository:
    """A feed repository directory: read its state, publish, renew, rotate keys."""

    def __init__(self, path: str | Path, keys: str | Path | None = None) -> None:
        self.path = Path(path)
        self.metadata_dir = self.path / "metadata"
        self.targets_dir = self.path / "targets"
        if not (self.metadata_dir / "root.json").is_file():
            raise NotFound("not a feed repository (no metadata/root.json)", where=str(self.path))
        refuse_keys_inside(self.path)
        self.keys_dir = keys_outside(
            Path(keys) if keys is not None else default_keys_dir(self.path), self.path, "keys"
        )

    # reading

    def load(self, role: str) -> Metadata[Any]:
        """The newest metadata of a top-level role."""
        return Metadata.from_file(str(self.metadata_dir / f"{role}.json"))

    def expiry_settings(self) -> dict[str, timedelta]:
        settings = dict(DEFAULT_EXPIRY)
        cfg = self.path / CONFIG_NAME
        if cfg.is_file():
            raw = json.loads(cfg.read_text(encoding="utf-8"))
            for role, seconds in raw.get("expiry_seconds", {}).items():
                settings[role] = timedelta(seconds=int(seconds))
        return settings

    def info(self) -> RepoInfo:
        """Current versions, expiries and the published directive set's sequence."""
        mds = {role: self.load(role) for role in ("root", *ONLINE_ROLES)}
        targets: Targets = mds["targets"].signed
        # format 1: the whole set; format 2 (feed.sharded): the set's manifest
        tf = targets.targets.get(TARGET_NAME) or targets.targets.get(MANIFEST_NAME)
        custom = tf.custom if tf is not None and isinstance(tf.custom, dict) else {}
        return RepoInfo(
            path=self.path,
            versions={r: md.signed.version for r, md in mds.items()},
            expires={r: md.signed.expires for r, md in mds.items()},
            sequence=custom.get("sequence"),
            directives=custom.get("directives"),
            target_sha256=tf.hashes.get("sha256") if tf else None,
            target_length=tf.length if tf else None,
            consistent_snapshot=bool(mds["root"].signed.consistent_snapshot),
            expiry_settings=self.expiry_settings(),
            audit_head=ChainHead.from_json(custom.get(AUDIT_HEAD_FIELD)),
        )

    def signer(self, role: str, key_path: Path | None = None) -> Signer:
        """The signer of ``role`` from ``keys/ROLE.pem`` (or ``key_path``), checked against root."""
        path = key_path or self.keys_dir / f"{role}.pem"
        signer = load_signer(path)
        root: Root = self.load("root").signed
        if signer.public_key.keyid not in root.roles[role].keyids:
            raise AuthError(f"key is not a current {role} key of this repository", where=str(path))
        return signer

    # writing

    def _write_role(self, md: Metadata[Any], *, versioned: bool) -> bytes:
        data = md.to_bytes(_SERIALIZER)
        role = md.signed.type
        if versioned:
            write_atomic(self.metadata_dir / f"{md.signed.version}.{role}.json", data)
        write_atomic(self.metadata_dir / f"{role}.json", data)
        return data

    def publish_bytes(
        self,
        data: bytes,
        *,
        timestamp_expiry: timedelta | None = None,
        now: datetime | None = None,
        validate: bool = True,
        audit_head: ChainHead | None = None,
    ) -> RepoInfo:
        """Sign and publish ``data`` as the directive set; see ``publish``.

        ``audit_head`` is signed into the targets metadata beside the set: the external
        anchor of the audit log (``takedown audit verify --against``).
        ``validate=False`` skips ``loads`` (only for tests that play a faulty publisher).
        """
        from takedown.feed.sharded import bin_bits, publish_sharded

        if bin_bits(self) is not None:  # a sharded repository: the set goes out in bins
            info, _changed = publish_sharded(
                self, loads(data), timestamp_expiry=timestamp_expiry, now=now,
                audit_head=audit_head,
            )  # fmt: skip
            return info
        meta: dict[str, Any] = {}
        if validate:
            ds = loads(data)
            meta = {"sequence": ds.sequence, "directives": len(ds.directives)}
            self._check_sequence(ds.sequence, data)
        if audit_head is not None:
            meta[AUDIT_HEAD_FIELD] = audit_head.to_json()
        return self._sign_online(data, meta, timestamp_expiry=timestamp_expiry, now=now)

    def publish_set(
        self,
        ds: DirectiveSet,
        *,
        timestamp_expiry: timedelta | None = None,
        now: datetime | None = None,
        audit_head: ChainHead | None = None,
    ) -> RepoInfo:
        """Publish ``ds`` in the repository's format: whole (format 1) or in bins (2)."""
        from takedown.feed.sharded import bin_bits, publish_sharded

        if bin_bits(self) is not None:
            info, _changed = publish_sharded(
                self, ds, timestamp_expiry=timestamp_expiry, now=now, audit_head=audit_head
            )
            return info
        return self.publish_bytes(
            dumps(ds), timestamp_expiry=timestamp_expiry, now=now, audit_head=audit_head
        )

    def _check_sequence(self, sequence: int, data: bytes) -> None:
        current = self.info()
        if current.sequence is None:
            return
        if sequence < current.sequence:
            raise Conflict(
                f"sequence {sequence} is older than the published {current.sequence}",
                where="sequence",
            )
        if sequence == current.sequence and hashlib.sha256(data).hexdigest() != (
            current.target_sha256
        ):
            raise Conflict(
                f"sequence {sequence} is already published with different content",
                where="sequence",
            )

    def renew(
        self, *, timestamp_expiry: timedelta | None = None, now: datetime | None = None
    ) -> RepoInfo:
        """Re-sign targets, snapshot and timestamp with fresh expiries; same directive set."""
        return self._sign_online(
            self._current_target(),
            self._current_custom(),
            timestamp_expiry=timestamp_expiry,
            now=now,
        )

    def _sign_online(
        self,
        data: bytes | None,
        custom: dict[str, Any],
        *,
        timestamp_expiry: timedelta | None,
        now: datetime | None,
    ) -> RepoInfo:
        when = _now(now)
        expiry = self.expiry_settings()
        if timestamp_expiry is not None:
            expiry["timestamp"] = timestamp_expiry
        signers = {role: self.signer(role) for role in ONLINE_ROLES}

        targets_md: Metadata[Targets] = self.load("targets")
        targets = targets_md.signed
        if data is not None:
            tf = TargetFile.from_data(TARGET_NAME, data, ["sha256"])
            if custom:
                tf.unrecognized_fields["custom"] = custom
            self.targets_dir.mkdir(exist_ok=True)
            target_path = self.targets_dir / f"{tf.hashes['sha256']}.{TARGET_NAME}"
            if not target_path.is_file():
                write_atomic(target_path, data)
            targets.targets = {TARGET_NAME: tf}
        targets.version += 1
        targets.expires = when + expiry["targets"]
        targets_md.sign(signers["targets"], append=False)
        targets_bytes = self._write_role(targets_md, versioned=True)

        self.release(targets.version, targets_bytes, signers, expiry, when)
        self._prune()
        return self.info()

    def release(
        self,
        targets_version: int,
        targets_bytes: bytes,
        signers: dict[str, Signer],
        expiry: dict[str, timedelta],
        when: datetime,
        snapshot_md: Metadata[Snapshot] | None = None,
    ) -> None:
        """Sign and write a snapshot naming these targets, then the timestamp naming it:
        written last, the timestamp makes the version live."""
        snapshot_md = snapshot_md or self.load("snapshot")
        snapshot = snapshot_md.signed
        snapshot.meta["targets.json"] = MetaFile.from_data(
            targets_version, targets_bytes, ["sha256"]
        )
        snapshot.version += 1
        snapshot.expires = when + expiry["snapshot"]
        snapshot_md.sign(signers["snapshot"], append=False)
        snapshot_bytes = self._write_role(snapshot_md, versioned=True)

        timestamp_md: Metadata[Timestamp] = self.load("timestamp")
        timestamp = timestamp_md.signed
        timestamp.snapshot_meta = MetaFile.from_data(snapshot.version, snapshot_bytes, ["sha256"])
        timestamp.version += 1
        timestamp.expires = when + expiry["timestamp"]
        timestamp_md.sign(signers["timestamp"], append=False)
        self._write_role(timestamp_md, versioned=False)

    def _prune(self) -> None:
        """Drop versioned snapshot/targets files and target files older than KEEP_VERSIONS."""
        keep_hashes: set[str] = set()
        for role in ("snapshot", "targets"):
            files = sorted(
                (int(p.name.split(".", 1)[0]), p)
                for p in self.metadata_dir.glob(f"*.{role}.json")
                if p.name.split(".", 1)[0].isdigit()
            )
            for _, p in files[:-KEEP_VERSIONS]:
                p.unlink(missing_ok=True)
            if role == "targets":
                for _, p in files[-KEEP_VERSIONS:]:
                    md = Metadata[Targets].from_file(str(p))
                    keep_hashes.update(t.hashes["sha256"] for t in md.signed.targets.values())
        if self.targets_dir.is_dir():
            for p in self.targets_dir.glob(f"*.{TARGET_NAME}"):
                if p.name.split(".", 1)[0] not in keep_hashes:
                    p.unlink(missing_ok=True)

    def rotate_keys(
        self,
        roles: Iterable[str],
        *,
        root_key: Path | None = None,
        now: datetime | None = None,
    ) -> RepoInfo:
        """Replace the keys of ``roles`` with new ones, publish a new root signed by the root
        key, then re-sign the online roles. This is also how a client recovers from a
        fast-forward attack with a compromised timestamp or snapshot key (TUF spec 5.3.11):
        metadata under a rotated key is no longer checked against the old versions.
        Rotating ``root`` signs the new root with both the old and the new root key.
        """
        roles = list(dict.fromkeys(roles))
        for role in roles:
            if role not in TOP_LEVEL_ROLE_NAMES:
                raise InputError(f"unknown role {role!r}", where="roles")
        when = _now(now)
        old_root_signer = self.signer("root", root_key)
        root_md: Metadata[Root] = self.load("root")
        root = root_md.signed
        new_signers: dict[str, CryptoSigner] = {}
        for role in roles:
            for keyid in list(root.roles[role].keyids):
                root.revoke_key(keyid, role)
            signer = CryptoSigner.generate_ed25519()
            root.add_key(signer.public_key, role)
            new_signers[role] = signer
        root.version += 1
        root.expires = when + self.expiry_settings()["root"]
        root_md.signatures.clear()
        root_md.sign(old_root_signer, append=True)
        if "root" in new_signers:
            root_md.sign(new_signers["root"], append=True)
        # keys first (old ones kept as .old until the new root is out), then the root
        for role, signer in new_signers.items():
            path = root_key if role == "root" and root_key else self.keys_dir / f"{role}.pem"
            if path.exists():
                os.replace(path, path.with_suffix(".pem.old"))
            write_key(path, signer)
        self._write_role(root_md, versioned=True)
        return self._sign_online(
            self._current_target(), self._current_custom(), timestamp_expiry=None, now=now
        )

    def sign_root(
        self,
        *,
        root_key: Path | None = None,
        root_expiry: timedelta | None = None,
        now: datetime | None = None,
    ) -> RepoInfo:
        """Publish the next root version, same keys, with a fresh expiry, signed by the
        (offline) root key: the only routine use of that key besides ``rotate_keys``."""
        when = _now(now)
        signer = self.signer("root", root_key)
        root_md: Metadata[Root] = self.load("root")
        root_md.signed.version += 1
        root_md.signed.expires = when + (root_expiry or self.expiry_settings()["root"])
        root_md.sign(signer, append=False)
        self._write_role(root_md, versioned=True)
        return self.info()

    def _current_target(self) -> bytes | None:
        tf = self.load("targets").signed.targets.get(TARGET_NAME)
        if tf is None:
            return None
        return (self.targets_dir / f"{tf.hashes['sha256']}.{TARGET_NAME}").read_bytes()

    def _current_custom(self) -> dict[str, Any]:
        tf = self.load("targets").signed.targets.get(TARGET_NAME)
        return dict(tf.custom) if tf is not None and isinstance(tf.custom, dict) else {}


# --- module API -------------------------------------------------------------------------


def init_repository(
    path: str | Path,
    *,
    keys: str | Path | None = None,
    root_key: str | Path | None = None,
    timestamp_expiry: timedelta = DEFAULT_EXPIRY["timestamp"],
    snapshot_expiry: timedelta = DEFAULT_EXPIRY["snapshot"],
    targets_expiry: timedelta = DEFAULT_EXPIRY["targets"],
    root_expiry: timedelta = DEFAULT_EXPIRY["root"],
    now: datetime | None = None,
    bins: int | None = None,
) -> RepoInfo:
    """Create a new feed repository in ``path`` (version-1 metadata) and its private keys
    (0600) in ``keys`` (default ``default_keys_dir(path)``), never inside ``path``.

    ``root_key``: write the root key to this file instead (e.g. removable media), so it
    never sits with the online keys. Refuses (Conflict) if ``path`` already holds a
    repository or the keys directory already holds keys. ``bins``: publish in 2**bins
    hash bins (format 2, ``feed.sharded``) instead of one whole file.
    """
    base = Path(path)
    keys_dir = keys_outside(
        Path(keys) if keys is not None else default_keys_dir(base), base, "keys"
    )
    root_path = keys_outside(Path(root_key), base, "root_key") if root_key is not None else None
    if (base / "metadata" / "root.json").exists() or (base / OLD_KEYS_NAME).exists():
        raise Conflict("a feed repository already exists here", where=str(base))
    _refuse_existing_keys([keys_dir / f"{r}.pem" for r in ("root", *ONLINE_ROLES)], root_path)
    when = _now(now)
    expiry = {
        "root": root_expiry,
        "targets": targets_expiry,
        "snapshot": snapshot_expiry,
        "timestamp": timestamp_expiry,
    }
    for role, value in expiry.items():
        if value <= timedelta(0):
            raise InputError("expiry must be positive", where=f"{role}_expiry")
    base.mkdir(parents=True, exist_ok=True)
    keys_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(keys_dir, 0o700)
    (base / "metadata").mkdir(exist_ok=True)
    (base / "targets").mkdir(exist_ok=True)
    write_atomic(
        base / CONFIG_NAME,
        json.dumps(
            {"expiry_seconds": {k: int(v.total_seconds()) for k, v in expiry.items()}},
            sort_keys=True,
            indent=1,
        ).encode(),
    )

    signers = {role: CryptoSigner.generate_ed25519() for role in ("root", *ONLINE_ROLES)}
    for role, signer in signers.items():
        pem = root_path if role == "root" and root_path is not None else keys_dir / f"{role}.pem"
        write_key(pem, signer)

    root = Root(expires=when + expiry["root"], consistent_snapshot=True)
    for role, signer in signers.items():
        root.add_key(signer.public_key, role)
    targets = Targets(expires=when + expiry["targets"])
    mds: dict[str, Metadata[Any]] = {"root": Metadata(root), "targets": Metadata(targets)}
    targets_bytes = _sign_bytes(mds["targets"], signers["targets"])
    snapshot = Snapshot(expires=when + expiry["snapshot"])
    snapshot.meta["targets.json"] = MetaFile.from_data(1, targets_bytes, ["sha256"])
    mds["snapshot"] = Metadata(snapshot)
    snapshot_bytes = _sign_bytes(mds["snapshot"], signers["snapshot"])
    timestamp = Timestamp(expires=when + expiry["timestamp"])
    timestamp.snapshot_meta = MetaFile.from_data(1, snapshot_bytes, ["sha256"])
    mds["timestamp"] = Metadata(timestamp)
    mds["root"].sign(signers["root"])
    mds["timestamp"].sign(signers["timestamp"])

    repo_md = base / "metadata"
    for role in ("root", "targets", "snapshot"):
        data = mds[role].to_bytes(_SERIALIZER)
        write_atomic(repo_md / f"1.{role}.json", data)
        write_atomic(repo_md / f"{role}.json", data)
    write_atomic(repo_md / "timestamp.json", mds["timestamp"].to_bytes(_SERIALIZER))
    repo = Repository(base, keys_dir)
    if bins is not None:
        from takedown.feed.sharded import enable_bins

        enable_bins(repo, bins, now=now)
    return repo.info()


def _refuse_existing_keys(pems: list[Path], root_path: Path | None) -> None:
    for pem in [*pems, *([root_path] if root_path is not None else [])]:
        if pem.exists():
            raise Conflict("a private key already exists here", where=str(pem))


def _sign_bytes(md: Metadata[Any], signer: Signer) -> bytes:
    md.sign(signer)
    return md.to_bytes(_SERIALIZER)


def publish(
    path: str | Path,
    ds: DirectiveSet,
    *,
    keys: str | Path | None = None,
    timestamp_expiry: timedelta | None = None,
    now: datetime | None = None,
) -> RepoInfo:
    """Publish ``ds``: new targets (directives.json: length + sha256), snapshot, timestamp.

    The set is serialised with ``dumps`` and validated with ``loads`` first: an invalid set
    is never signed. ``sequence`` must not go back (Conflict). ``timestamp_expiry``
    defaults to the repository's setting (``feed init --timestamp-expiry``, default 1 day);
    ``now`` (default: real time) is the base of all metadata expiries.
    Needs only the online keys (targets, snapshot, timestamp; and bins when sharded).
    A sharded repository (``feed init --bins``) re-signs only the bins that changed.
    """
    return Repository(path, keys).publish_set(ds, timestamp_expiry=timestamp_expiry, now=now)
