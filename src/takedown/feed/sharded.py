"""Publishing a sharded set: TUF hashed-bin delegation, one signed target per bin.

A repository becomes sharded once (``enable_bins``, or ``feed init --bins BITS``): the
top-level targets role delegates to ``2**(BITS-4)`` bin roles (python-tuf
``SuccinctRoles``, the PEP 458 pattern) signed by an online ``bins`` key
(``KEYS/bins.pem``). Each role lists the files of its 16 bins (``bins.bin_target_names``);
the top-level targets role lists the set's manifest (``set.json``). A publication writes
only the bins whose bytes changed and re-signs only their roles, then targets, snapshot
(which holds every role's version: a client refuses a role rolled back or mixed from
another version) and timestamp.

Publisher-side bookkeeping lives in ``DIR/bins.json`` (not served): per bin its sha256 and
length, per role its version and expiry, so a publication compares hashes instead of
re-reading thousands of files; in a process that published before, only the bins whose
directives differ from the last publication's are encoded again (``_ENCODED``). Role
metadata expires after ``BIN_EXPIRY`` and is re-signed by any publication in the second
half of that period; freshness comes from the timestamp as for format 1. The bins key
cannot be rotated yet (``rotate_keys`` covers the top-level roles only).
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from securesystemslib.signer import CryptoSigner, Signer
from tuf.api.metadata import (
    Delegations,
    Metadata,
    MetaFile,
    Snapshot,
    SuccinctRoles,
    TargetFile,
    Targets,
)

from takedown.errors import AuthError, Conflict, InputError
from takedown.feed.bins import (
    BIN_ROLE_PREFIX,
    DEFAULT_BITS,
    MANIFEST_NAME,
    bin_role,
    bin_target_names,
    dumps_bin,
    dumps_manifest,
    loads_bin,
    loads_manifest,
    role_bins,
    role_bits,
    role_of,
    split,
)
from takedown.feed.keyfiles import load_signer, write_atomic, write_key
from takedown.feed.repository import (
    _SERIALIZER,
    AUDIT_HEAD_FIELD,
    KEEP_VERSIONS,
    ONLINE_ROLES,
    RepoInfo,
    Repository,
    _now,
)
from takedown.model import Directive, DirectiveSet
from takedown.store.audit import ChainHead

BINS_KEY = "bins"
BITS_FIELD = "x-takedown-bin-bits"  # in the succinct roles: bins = 2**this, roles fewer
STATE_NAME = "bins.json"
BIN_EXPIRY = timedelta(days=365)

# per (repository, bits), the last publication in this process: bin -> (its directives,
# the sha256 of its bytes). A publication re-encodes only the bins whose directives are not
# the ones listed here, or whose hash is no longer the published one (another process
# published since): a 100-directive change among a million encodes ~100 bins, not 16,384.
_ENCODED: dict[tuple[str, int], dict[int, tuple[list[Directive], str]]] = {}


def bin_bits(repo: Repository) -> int | None:
    """The bin width of a sharded repository, None for a format-1 one."""
    delegations = repo.load("targets").signed.delegations
    if delegations is None or delegations.succinct_roles is None:
        return None
    return int(delegations.succinct_roles.unrecognized_fields[BITS_FIELD])


def enable_bins(repo: Repository, bits: int = DEFAULT_BITS, *, now: datetime | None = None) -> int:
    """Make ``repo`` sharded: a ``bins`` key and the hashed-bin delegation. Returns bits.

    Needs only the online keys. Refuses a repository that is already sharded with another
    width (re-binning would change every bin: start a new repository).
    """
    if not 1 <= bits <= 16:
        raise InputError("bins must be 1..16 bits", where="bits")
    current = bin_bits(repo)
    if current is not None:
        if current != bits:
            raise Conflict(f"repository is already sharded with {current} bits", where="bits")
        return current
    key_path = repo.keys_dir / f"{BINS_KEY}.pem"
    if key_path.exists():
        signer = load_signer(key_path)
    else:
        signer = CryptoSigner.generate_ed25519()
        write_key(key_path, signer)
    md: Metadata[Targets] = repo.load("targets")
    keyid = signer.public_key.keyid
    md.signed.delegations = Delegations(
        keys={keyid: signer.public_key},
        succinct_roles=SuccinctRoles(
            [keyid], 1, role_bits(bits), BIN_ROLE_PREFIX, unrecognized_fields={BITS_FIELD: bits}
        ),
    )
    md.signed.targets = {}
    _sign_top(repo, md, None, {}, now=now)
    return bits


def _bins_signer(repo: Repository, targets: Targets) -> Signer:
    path = repo.keys_dir / f"{BINS_KEY}.pem"
    signer = load_signer(path)
    roles = targets.delegations.succinct_roles if targets.delegations else None
    if roles is None or signer.public_key.keyid not in roles.keyids:
        raise AuthError("key is not the current bins key of this repository", where=str(path))
    return signer


def _read_state(repo: Repository) -> dict[str, Any]:
    path = repo.path / STATE_NAME
    if not path.is_file():
        return {"bins": {}}
    return json.loads(path.read_text(encoding="utf-8"))


def publish_sharded(
    repo: Repository,
    ds: DirectiveSet,
    *,
    timestamp_expiry: timedelta | None = None,
    now: datetime | None = None,
    audit_head: ChainHead | None = None,
) -> tuple[RepoInfo, list[int]]:
    """Publish ``ds`` into a sharded repository; return the info and the bins re-signed.

    Each changed bin is checked with ``loads_bin`` before it is signed. ``sequence`` must
    not go back, nor repeat with other content (Conflict).
    """
    bits = bin_bits(repo)
    if bits is None:
        raise Conflict("not a sharded repository (feed init --bins BITS)", where=str(repo.path))
    when = _now(now)
    targets_md: Metadata[Targets] = repo.load("targets")
    current = targets_md.signed.targets.get(MANIFEST_NAME)
    if current is not None:
        published = current.custom.get("sequence") if isinstance(current.custom, dict) else None
        if published is not None and ds.sequence < published:
            raise Conflict(
                f"sequence {ds.sequence} is older than the published {published}", where="sequence"
            )
    state = _read_state(repo)
    known: dict[str, list[Any]] = state["bins"]  # bin -> [sha256, length]
    roles: dict[str, list[Any]] = state.setdefault("roles", {})  # role -> [version, expires]
    names = bin_target_names(bits)
    signer = _bins_signer(repo, targets_md.signed)
    memo_key = (str(repo.path.resolve()), bits)
    memo = _ENCODED.get(memo_key, {})
    encoded: dict[int, tuple[list[Directive], str]] = {}
    new_bins: dict[int, bytes] = {}  # the changed bins' bytes
    changed: list[int] = []
    for i, group in split(ds.directives, bits).items():
        entry = known.get(str(i))
        seen = memo.get(i)
        # the same directives (by identity, else by value) as the bin published last:
        # its bytes are the published ones, no need to encode it again
        if seen is not None and entry is not None and seen[1] == entry[0] and seen[0] == group:
            encoded[i] = seen
            continue
        data = dumps_bin(i, bits, group)
        digest = hashlib.sha256(data).hexdigest()
        encoded[i] = (group, digest)
        if entry is None or entry[0] != digest:
            loads_bin(data, i, bits)  # never sign a bin the points would refuse
            changed.append(i)
            new_bins[i] = data
    changed += [int(k) for k in known if int(k) not in encoded]  # emptied
    renew_before = when + BIN_EXPIRY / 2
    touched = {role_of(i, bits) for i in changed}
    touched |= {int(r) for r, e in roles.items() if datetime.fromisoformat(e[1]) < renew_before}
    snapshot_md: Metadata[Snapshot] = repo.load("snapshot")
    repo.targets_dir.mkdir(exist_ok=True)
    for i in changed:
        data = new_bins.get(i)
        if data is None:
            known.pop(str(i), None)
            continue
        digest = hashlib.sha256(data).hexdigest()
        path = repo.targets_dir / f"{digest}.{names[i]}"
        if not path.is_file():
            write_atomic(path, data)
        known[str(i)] = [digest, len(data)]
    for r in sorted(touched):
        version = roles.get(str(r), [0])[0] + 1
        role_md = Targets(version=version, expires=when + BIN_EXPIRY)
        for i in role_bins(r, bits):
            entry = known.get(str(i))
            if entry is not None:
                role_md.targets[names[i]] = TargetFile(entry[1], {"sha256": entry[0]}, names[i])
        md = Metadata(role_md)
        md.sign(signer)
        role = bin_role(role_bins(r, bits)[0], bits)
        write_atomic(repo.metadata_dir / f"{version}.{role}.json", md.to_bytes(_SERIALIZER))
        snapshot_md.signed.meta[f"{role}.json"] = MetaFile(version=version)
        roles[str(r)] = [version, (when + BIN_EXPIRY).isoformat()]
        _prune_role(repo, role, version)
    manifest = dumps_manifest(ds.sequence, ds.generated_at, bits, len(ds.directives))
    custom: dict[str, Any] = {
        "sequence": ds.sequence,
        "directives": len(ds.directives),
        "generated_at": ds.generated_at.isoformat(),
    }
    if audit_head is not None:
        custom[AUDIT_HEAD_FIELD] = audit_head.to_json()
    loads_manifest(manifest)
    info = _sign_top(
        repo,
        targets_md,
        manifest,
        custom,
        snapshot_md=snapshot_md,
        timestamp_expiry=timestamp_expiry,
        now=now,
    )
    state["bins"] = known
    state["roles"] = roles
    write_atomic(repo.path / STATE_NAME, json.dumps(state, sort_keys=True).encode())
    _ENCODED.clear()  # one repository's last publication: the publisher holds that set anyway
    _ENCODED[memo_key] = encoded
    return info, changed


def _prune_role(repo: Repository, role: str, version: int) -> None:
    """Drop the role metadata (and the bin files no kept version lists) that fell out of
    the last KEEP_VERSIONS versions."""
    old = version - KEEP_VERSIONS
    if old < 1:
        return
    path = repo.metadata_dir / f"{old}.{role}.json"
    if not path.is_file():
        return
    kept: set[str] = set()
    for v in range(old + 1, version + 1):
        p = repo.metadata_dir / f"{v}.{role}.json"
        if p.is_file():
            targets = Metadata.from_file(str(p)).signed.targets.values()
            kept.update(t.hashes["sha256"] for t in targets)
    for tf in Metadata.from_file(str(path)).signed.targets.values():
        digest = tf.hashes["sha256"]
        if digest not in kept:
            (repo.targets_dir / f"{digest}.{tf.path}").unlink(missing_ok=True)
    path.unlink(missing_ok=True)


def _sign_top(
    repo: Repository,
    targets_md: Metadata[Targets],
    manifest: bytes | None,
    custom: dict[str, Any],
    *,
    snapshot_md: Metadata[Snapshot] | None = None,
    timestamp_expiry: timedelta | None = None,
    now: datetime | None = None,
) -> RepoInfo:
    """Sign targets (with the manifest), snapshot and timestamp; timestamp last."""
    when = _now(now)
    expiry = repo.expiry_settings()
    if timestamp_expiry is not None:
        expiry["timestamp"] = timestamp_expiry
    signers = {role: repo.signer(role) for role in ONLINE_ROLES}
    targets = targets_md.signed
    if manifest is not None:
        tf = TargetFile.from_data(MANIFEST_NAME, manifest, ["sha256"])
        tf.unrecognized_fields["custom"] = custom
        path = repo.targets_dir / f"{tf.hashes['sha256']}.{MANIFEST_NAME}"
        if not path.is_file():
            write_atomic(path, manifest)
        targets.targets = {MANIFEST_NAME: tf}
    targets.version += 1
    targets.expires = when + expiry["targets"]
    targets_md.sign(signers["targets"], append=False)
    targets_bytes = repo._write_role(targets_md, versioned=True)

    repo.release(targets.version, targets_bytes, signers, expiry, when, snapshot_md)
    _prune_manifests(repo)
    return repo.info()


def _prune_manifests(repo: Repository) -> None:
    repo._prune()
    keep: set[str] = set()
    for p in repo.metadata_dir.glob("*.targets.json"):
        md = Metadata[Targets].from_file(str(p))
        keep.update(t.hashes["sha256"] for t in md.signed.targets.values())
    for p in repo.targets_dir.glob(f"*.{MANIFEST_NAME}"):
        if p.name.split(".", 1)[0] not in keep:
            p.unlink(missing_ok=True)


def bin_versions(snapshot: Snapshot) -> dict[str, int]:
    """Bin role name → version, from a snapshot."""
    prefix = BIN_ROLE_PREFIX + "-"
    return {
        name[: -len(".json")]: meta.version
        for name, meta in snapshot.meta.items()
        if name.startswith(prefix)
    }


def repository_bits(path: str | Path) -> int | None:
    """The bin width of the repository at ``path`` (None: format 1)."""
    return bin_bits(Repository(path))
