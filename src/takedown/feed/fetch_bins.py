"""The client's sharded path: fetch only the bins whose signed version changed.

python-tuf's ngclient verifies everything: the snapshot (signed, not older than the
trusted one, each bin's version not going back), each changed bin's delegated metadata
(signed by the bins key, the version the snapshot names) and each bin file (length and
sha256 from that metadata). ``fetch_bins`` downloads beside the good copies; ``commit``
moves them in and records what is applied, so a refused update changes nothing.

``state_dir/bins/`` holds the verified bin files (``N.json``) and the manifest;
``state_dir/bins_record.json`` the manifest's sha256, each bin role's applied version and
each bin file's sha256 (checked again at restart).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuf.api.metadata import Metadata
from tuf.ngclient import FetcherInterface, Updater

from takedown.errors import InputError
from takedown.feed.binned_set import BinnedSet, ScannedBin, scan_bin
from takedown.feed.bins import (
    MANIFEST_NAME,
    Manifest,
    bin_target_names,
    loads_manifest,
    role_bins,
    role_bits,
)

RECORD_NAME = "bins_record.json"


@dataclass
class BinRecord:
    """What a client has applied: manifest hash, bin role versions, bin file hashes."""

    manifest_sha: str | None = None
    bits: int | None = None
    versions: dict[str, int] = field(default_factory=dict)
    shas: dict[int, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "manifest_sha": self.manifest_sha,
            "bits": self.bits,
            "versions": self.versions,
            "shas": {str(i): s for i, s in self.shas.items()},
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> BinRecord:
        return cls(
            raw["manifest_sha"],
            raw["bits"],
            dict(raw["versions"]),
            {int(i): s for i, s in raw["shas"].items()},
        )


Bin = ScannedBin | None


@dataclass
class Fetched:
    """A verified update not yet applied: the manifest and the changed bins' bytes."""

    bins_dir: Path
    manifest: Manifest
    manifest_sha: str
    manifest_path: Path
    versions: dict[str, int]
    record: BinRecord
    bins: dict[int, Bin]
    incoming: dict[int, Path]
    nbytes: int

    def stats(self) -> dict[str, int]:
        """Bin files and bytes this update downloaded (the manifest included in bytes)."""
        return {"bins": len(self.incoming), "bytes": self.nbytes}

    def apply(self, base: BinnedSet | None) -> BinnedSet:
        """The new set: ``base`` with the changed bins replaced."""
        start = base or BinnedSet(self.manifest.sequence, self.manifest.generated_at,
                                  self.manifest.bits)  # fmt: skip
        return start.updated(self.manifest, self.bins)

    def discard(self) -> None:
        """Forget the update (its bins were never written)."""
        self.bins.clear()
        self.incoming.clear()
        if self.manifest_path != self.bins_dir / MANIFEST_NAME:
            self.manifest_path.unlink(missing_ok=True)

    def commit(self, state_dir: Path) -> BinRecord:
        """Move the incoming bins in place and record them as applied."""
        shas = dict(self.record.shas)
        for i, b in self.bins.items():
            good = self.bins_dir / f"{i}.json"
            if b is None:
                good.unlink(missing_ok=True)
                shas.pop(i, None)
                continue
            if i in self.incoming:
                good.write_bytes(b[0])  # no rename needed: restore checks each file's sha256
            shas[i] = hashlib.sha256(b[0]).hexdigest()
        good_manifest = self.bins_dir / MANIFEST_NAME
        if self.manifest_path != good_manifest:
            os.replace(self.manifest_path, good_manifest)
        record = BinRecord(self.manifest_sha, self.manifest.bits, dict(self.versions), shas)
        tmp = state_dir / f".{RECORD_NAME}.tmp"
        tmp.write_bytes(json.dumps(record.to_json()).encode())
        os.replace(tmp, state_dir / RECORD_NAME)
        return record


def _bin_versions(metadata_dir: Path) -> dict[str, int]:
    from takedown.feed.sharded import bin_versions

    return bin_versions(Metadata.from_file(str(metadata_dir / "snapshot.json")).signed)


def fetch_bins(
    updater: Updater,
    fetcher: FetcherInterface,
    targets_url: str,
    metadata_dir: Path,
    bins_dir: Path,
    record: BinRecord,
) -> Fetched | None:
    """Verify and download the manifest and the changed bins; None if nothing changed.

    Raises TUF's errors, InputError (a bin or manifest that fails its checks) and
    UnknownFormat. Nothing is written into place here (``Fetched.commit`` does). Bin files
    are fetched into memory and checked against their signed length and sha256 as
    ``Updater.download_target`` does (without its temporary files: one write per bin).
    """
    info = updater.get_targetinfo(MANIFEST_NAME)
    if info is None:
        raise InputError("the targets metadata lists no manifest", where=MANIFEST_NAME)
    versions = _bin_versions(metadata_dir)
    manifest_sha = info.hashes["sha256"]
    if manifest_sha == record.manifest_sha and versions == record.versions:
        return None
    bins_dir.mkdir(parents=True, exist_ok=True)
    good_manifest = bins_dir / MANIFEST_NAME
    manifest_path = Path(
        updater.find_cached_target(info, str(good_manifest))
        or updater.download_target(info, str(bins_dir / f".incoming.{MANIFEST_NAME}"))
    )
    data = manifest_path.read_bytes()
    nbytes = 0 if manifest_path == good_manifest else len(data)
    manifest = loads_manifest(data)
    if record.bits != manifest.bits:
        record = BinRecord()  # another bin width: every bin is new
    names = bin_target_names(manifest.bits)
    bins: dict[int, Bin] = {}
    incoming: dict[int, Path] = {}
    fetched = Fetched(bins_dir, manifest, manifest_sha, manifest_path, versions, record, bins,
                      incoming, nbytes)  # fmt: skip
    try:
        for role, version in sorted(versions.items()):
            if record.versions.get(role) == version:
                continue
            r = int(role.rsplit("-", 1)[1], 16)
            if r >= 1 << role_bits(manifest.bits):
                raise InputError(f"bin role {role} beyond {manifest.bits} bits", where=role)
            for i in role_bins(r, manifest.bits):
                tf = updater.get_targetinfo(names[i])
                if tf is None:
                    if i in record.shas:
                        bins[i] = None  # the bin was emptied
                    continue
                digest = tf.hashes["sha256"]
                if record.shas.get(i) == digest:
                    continue  # unchanged (another bin of its role changed)
                body = fetcher.download_bytes(f"{targets_url}{digest}.{tf.path}", tf.length)
                tf.verify_length_and_hashes(body)
                incoming[i] = bins_dir / f"{i}.json"
                fetched.nbytes += len(body)
                bins[i] = scan_bin(body, i, manifest.bits)
    except BaseException:
        fetched.discard()
        raise
    return fetched


def restore_bins(state_dir: Path, bins_dir: Path) -> tuple[BinnedSet, BinRecord] | None:
    """The sharded set a former run applied, each file checked against its recorded hash;
    None if there is none or anything does not match."""
    path = state_dir / RECORD_NAME
    if not path.is_file():
        return None
    try:
        record = BinRecord.from_json(json.loads(path.read_text(encoding="utf-8")))
        manifest_data = (bins_dir / MANIFEST_NAME).read_bytes()
        if hashlib.sha256(manifest_data).hexdigest() != record.manifest_sha:
            return None
        manifest = loads_manifest(manifest_data)
        bins: dict[int, Bin] = {}
        for i, sha in record.shas.items():
            data = (bins_dir / f"{i}.json").read_bytes()
            if hashlib.sha256(data).hexdigest() != sha:
                return None
            bins[i] = scan_bin(data, i, manifest.bits)
    except (OSError, ValueError, KeyError, InputError):
        return None
    empty = BinnedSet(manifest.sequence, manifest.generated_at, manifest.bits)
    return empty.updated(manifest, bins), record
