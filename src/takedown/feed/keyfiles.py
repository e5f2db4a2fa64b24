"""A feed repository's files on disk: atomic writes, and its private keys, which live
apart from the published directory (never inside it)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from securesystemslib.signer import CryptoSigner, SSlibKey

from takedown.errors import InputError, NotFound

OLD_KEYS_NAME = "keys"  # where keys lived inside the repository before the split


def default_keys_dir(repo: str | Path) -> Path:
    """Where a repository's keys live unless told otherwise: ``DIR.keys`` beside ``DIR``."""
    path = Path(repo).absolute()
    return path.with_name(path.name + ".keys")


def keys_outside(keys: Path, repo: Path, where: str) -> Path:
    """``keys``, refused when it is (or would be) inside the published ``repo``."""
    if keys.resolve().is_relative_to(repo.resolve()):
        raise InputError(
            f"the keys directory {keys} is inside the repository {repo}, which is published "
            "as it is: keep the keys outside it",
            where=where,
        )
    return keys


def refuse_keys_inside(repo: Path) -> None:
    """InputError (with the command that fixes it) if private keys sit inside ``repo``."""
    old = repo / OLD_KEYS_NAME
    if old.exists():
        raise InputError(
            f"private signing keys inside the published repository ({old}): anything that "
            f"serves or copies {repo} publishes them. Move them out: "
            f"mv {old} {default_keys_dir(repo)} (or elsewhere, then pass --keys)",
            where=str(old),
        )


def write_atomic(path: Path, data: bytes, *, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` through a temporary file and rename: all or nothing."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_key(path: Path, signer: CryptoSigner) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(signer.private_bytes)


def load_signer(path: Path) -> CryptoSigner:
    try:
        pem = path.read_bytes()
    except FileNotFoundError:
        raise NotFound("private key not found", where=str(path)) from None
    key = load_pem_private_key(pem, password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise InputError("not an ed25519 private key", where=str(path))
    return CryptoSigner(key, SSlibKey.from_crypto(key.public_key()))
