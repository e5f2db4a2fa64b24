"""Feed client: TUF ngclient over HTTP(S) or a local directory, then strict ``loads``.

Trust: the client needs a trusted root.json. Give it (``root=`` bytes or a path: the
repository's ``metadata/1.root.json``, handed over out of band). Once used, the trusted
metadata lives in ``state_dir/metadata/`` and later runs start from it, so rollbacks are
refused across restarts. Only for a local-directory source, and only when neither
``root=`` nor a cached root exists, the client copies ``DIR/metadata/1.root.json`` at
first use: trust on first use, acceptable only where the directory itself is trusted.

``state_dir`` layout: ``metadata/`` (ngclient's trusted metadata), ``targets/`` (the
verified directive file), ``last_good.json`` (sha256 and versions of the last set that
passed ``loads``; it is reloaded at start so ``last_good`` survives a restart).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from urllib.parse import unquote, urlparse

from tuf.api import exceptions as tuf_errors
from tuf.api.metadata import Metadata
from tuf.ngclient import FetcherInterface, Updater, UpdaterConfig

from takedown.clock import Clock
from takedown.errors import InputError, TakedownError
from takedown.feed.binned_set import BinnedSet
from takedown.feed.bins import MANIFEST_NAME, UnknownFormat
from takedown.feed.directives import TARGET_NAME, loads
from takedown.feed.fetch_bins import BinRecord, fetch_bins, restore_bins
from takedown.feed.http_fetch import KeepAliveFetcher
from takedown.model import DirectiveSet

MAX_TARGETS_METADATA = 5_000_000
CHUNK = 1 << 20


class FeedError(TakedownError):
    """The feed was refused; ``reason`` names why (the TUF exception class name, or
    ``InvalidDirectives``, ``SequenceRollback``, ``NoTrustedRoot``)."""

    http_status = 502

    def __init__(self, reason: str, message: str, *, where: str | None = None) -> None:
        super().__init__(f"{reason}: {message}", where=where)
        self.reason = reason


class DirFetcher(FetcherInterface):
    """Reads ``file://`` URLs, so a local feed directory goes through the same TUF checks.

    A missing file is reported as HTTP 404, which is what ngclient expects when probing for
    a newer root version.
    """

    def _fetch(self, url: str) -> Iterator[bytes]:
        parsed = urlparse(url)
        if parsed.scheme != "file":
            raise tuf_errors.DownloadError(f"DirFetcher reads file:// URLs only, not {url!r}")
        path = unquote(parsed.path)
        try:
            f = open(path, "rb")  # noqa: SIM115 - closed by the generator
        except (FileNotFoundError, NotADirectoryError):
            raise tuf_errors.DownloadHTTPError(f"{path} not found", 404) from None

        def chunks() -> Iterator[bytes]:
            with f:
                while block := f.read(CHUNK):
                    yield block

        return chunks()


class _Guarded(FetcherInterface):
    """Wraps a fetcher so that errors while streaming the body (a connection cut mid-file:
    urllib3's ProtocolError/IncompleteRead) also surface as TUF ``DownloadError``."""

    def __init__(self, inner: FetcherInterface) -> None:
        self.inner = inner

    def _fetch(self, url: str) -> Iterator[bytes]:
        chunks = self.inner.fetch(url)

        def guarded() -> Iterator[bytes]:
            try:
                yield from chunks
            except tuf_errors.DownloadError:
                raise
            except Exception as exc:
                raise tuf_errors.DownloadError(f"download of {url} broke off: {exc}") from exc

        return guarded()

    def download_bytes(self, url: str, max_length: int) -> bytes:
        """The body of ``url`` in memory, refused past ``max_length`` (as the base class,
        without its temporary file: a sharded feed downloads thousands of small files)."""
        received = 0
        parts: list[bytes] = []
        for chunk in self.fetch(url):
            received += len(chunk)
            if received > max_length:
                raise tuf_errors.DownloadLengthMismatchError(
                    f"Downloaded {received} bytes exceeding the maximum allowed length of "
                    f"{max_length}"
                )
            parts.append(chunk)
        return b"".join(parts)


def _is_url(source: str) -> bool:
    return source.startswith(("http://", "https://"))


class FeedClient:
    """Fetch, verify and load the directive set of one feed.

    ``source``: the repository base, ``http(s)://host/feed/`` or a local directory.
    Attributes after ``refresh``: ``last_good`` (the last set that verified and loaded,
    kept through refusals), ``version`` (targets metadata version of ``last_good``'s
    metadata state), ``expires`` (timestamp metadata expiry, real time: past it the feed is
    stale), ``fetched_at`` (``clock`` time of the last successful refresh), ``refusals``
    (reason → count, for metrics), ``last_error``. ``clock`` is the caller's real-time
    clock (TUF expiries run on real time, not on a scenario's simulated one).
    """

    def __init__(
        self,
        source: str | Path,
        state_dir: str | Path,
        *,
        root: bytes | Path | None = None,
        fetcher: FetcherInterface | None = None,
        clock: Clock,
    ) -> None:
        self.source = str(source)
        self.clock = clock
        self.state_dir = Path(state_dir)
        self._metadata_dir = self.state_dir / "metadata"
        self._targets_dir = self.state_dir / "targets"
        self._metadata_dir.mkdir(parents=True, exist_ok=True)
        self._targets_dir.mkdir(parents=True, exist_ok=True)
        if _is_url(self.source):
            base = self.source if self.source.endswith("/") else self.source + "/"
            self._metadata_url = base + "metadata/"
            self._targets_url = base + "targets/"
            self._fetcher = _Guarded(fetcher or KeepAliveFetcher())
            local_root = None
        else:
            base_dir = Path(self.source).resolve()
            self._metadata_url = (base_dir / "metadata").as_uri() + "/"
            self._targets_url = (base_dir / "targets").as_uri() + "/"
            self._fetcher = _Guarded(fetcher or DirFetcher())
            local_root = base_dir / "metadata" / "1.root.json"

        self.refusals: dict[str, int] = {}
        self.updates = 0
        self.last_error: str | None = None
        self.last_good: DirectiveSet | BinnedSet | None = None
        self.version: int | None = None
        self.expires: datetime | None = None
        self.fetched_at: datetime | None = None
        self._last_sha: str | None = None
        self._bins_dir = self.state_dir / "bins"
        self._bins_record = BinRecord()
        self.last_fetch: dict[str, int] = {}  # bins and bytes the last update downloaded

        if isinstance(root, Path):
            root = root.read_bytes()
        if root is None and not (self._metadata_dir / "root.json").exists():
            if local_root is None:
                raise FeedError(
                    "NoTrustedRoot",
                    "no trusted root: pass the repository's 1.root.json (--root)",
                    where=self.source,
                )
            if not local_root.is_file():
                raise FeedError("NoTrustedRoot", "no metadata/1.root.json", where=str(local_root))
            root = local_root.read_bytes()  # trust on first use, local directories only
        self._bootstrap = root
        try:
            self._updater()  # verifies the bootstrap root now, not at the first refresh
        except (tuf_errors.RepositoryError, ValueError) as exc:
            raise FeedError(type(exc).__name__, f"bad trusted root: {exc}") from None
        self._restore()

    @property
    def target_path(self) -> Path:
        """The verified directive file of ``last_good`` (in ``state_dir``)."""
        return self._targets_dir / TARGET_NAME

    def _updater(self) -> Updater:
        config = UpdaterConfig(targets_max_length=MAX_TARGETS_METADATA)
        return Updater(
            str(self._metadata_dir),
            self._metadata_url,
            str(self._targets_dir),
            self._targets_url,
            fetcher=self._fetcher,
            config=config,
            bootstrap=self._bootstrap,
        )

    def _restore(self) -> None:
        """Reload the last good set verified by an earlier run (its record and file)."""
        restored = restore_bins(self.state_dir, self._bins_dir)
        if restored is not None:
            self.last_good, self._bins_record = restored
            return
        record_path = self.state_dir / "last_good.json"
        target = self._targets_dir / TARGET_NAME
        if not record_path.is_file() or not target.is_file():
            return
        record = json.loads(record_path.read_text(encoding="utf-8"))
        data = target.read_bytes()
        if hashlib.sha256(data).hexdigest() != record.get("sha256"):
            return  # the file changed since it was verified: do not trust it
        try:
            self.last_good = loads(data)
        except InputError:
            return
        self._last_sha = record["sha256"]
        self.version = record.get("version")

    def _refuse(self, reason: str, message: str) -> FeedError:
        self.refusals[reason] = self.refusals.get(reason, 0) + 1
        self.last_error = f"{reason}: {message}"
        return FeedError(reason, message, where=self.source)

    def refresh(self) -> DirectiveSet | BinnedSet | None:
        """Run the TUF update; return the new directive set, or None if unchanged.

        A sharded feed (format 2) gives a ``BinnedSet`` whose ``changed`` names the bins
        this update replaced; only those bins were downloaded. Raises FeedError (and counts
        it in ``refusals``) when anything fails to verify or validate, or when the set is
        in a format this code does not know (``UnknownFormat``); ``last_good`` is left as
        it was.
        """
        incoming = self._targets_dir / f".incoming.{TARGET_NAME}"
        try:
            updater = self._updater()
            updater.refresh()
            timestamp = Metadata.from_file(str(self._metadata_dir / "timestamp.json")).signed
            targets = Metadata.from_file(str(self._metadata_dir / "targets.json")).signed
            if MANIFEST_NAME in targets.targets:
                return self._refresh_bins(updater, timestamp.expires, targets.version)
            info = updater.get_targetinfo(TARGET_NAME)
            if info is None:
                self._mark(timestamp.expires, targets.version)
                return None
            sha = info.hashes["sha256"]
            if isinstance(self.last_good, DirectiveSet) and sha == self._last_sha:
                self._mark(timestamp.expires, targets.version)
                return None
            # download beside the good copy: it replaces it only once it has loaded
            good = self._targets_dir / TARGET_NAME
            path = updater.find_cached_target(info, str(good)) or updater.download_target(
                info, str(incoming)
            )
            data = Path(path).read_bytes()
        except (tuf_errors.RepositoryError, tuf_errors.DownloadError) as exc:
            raise self._refuse(type(exc).__name__, _describe(exc)) from exc
        except OSError as exc:
            raise self._refuse("OSError", str(exc)) from exc
        # the bytes verified against signed metadata; now the content must pass too
        try:
            ds = loads(data)
        except InputError as exc:
            incoming.unlink(missing_ok=True)
            raise self._refuse("InvalidDirectives", str(exc)) from exc
        if self.last_good is not None and ds.sequence < self.last_good.sequence:
            incoming.unlink(missing_ok=True)
            raise self._refuse(
                "SequenceRollback",
                f"sequence {ds.sequence} is older than the loaded {self.last_good.sequence}",
            )
        if Path(path) == incoming:
            os.replace(incoming, good)
        self._remember(sha, targets.version)
        self.last_good = ds
        self._last_sha = sha
        self.updates += 1
        self._mark(timestamp.expires, targets.version)
        return ds

    def _refresh_bins(self, updater: Updater, expires: datetime, version: int) -> BinnedSet | None:
        """The sharded path: the manifest, then only the bins whose version changed."""
        try:
            record = self._bins_record if isinstance(self.last_good, BinnedSet) else BinRecord()
            fetched = fetch_bins(updater, self._fetcher, self._targets_url, self._metadata_dir,
                                 self._bins_dir, record)  # fmt: skip
        except (tuf_errors.RepositoryError, tuf_errors.DownloadError) as exc:
            raise self._refuse(type(exc).__name__, _describe(exc)) from exc
        except OSError as exc:
            raise self._refuse("OSError", str(exc)) from exc
        except UnknownFormat as exc:
            raise self._refuse("UnknownFormat", str(exc)) from exc
        except InputError as exc:
            raise self._refuse("InvalidDirectives", str(exc)) from exc
        if fetched is None:
            self._mark(expires, version)
            return None
        last = self.last_good
        if last is not None and fetched.manifest.sequence < last.sequence:
            fetched.discard()
            raise self._refuse(
                "SequenceRollback",
                f"sequence {fetched.manifest.sequence} is older than the loaded {last.sequence}",
            )
        base = last if isinstance(last, BinnedSet) and last.bits == fetched.manifest.bits else None
        new = fetched.apply(base)
        self.last_fetch = fetched.stats()
        self.last_good = new
        self._bins_record = fetched.commit(self.state_dir)
        self._last_sha = None
        self.updates += 1
        self._mark(expires, version)
        return new

    def _mark(self, expires: datetime, version: int) -> None:
        self.expires = expires
        self.version = version
        self.fetched_at = self.clock.now()
        self.last_error = None

    def _remember(self, sha: str, version: int) -> None:
        record = json.dumps({"sha256": sha, "version": version}).encode()
        tmp = self.state_dir / ".last_good.json.tmp"
        tmp.write_bytes(record)
        os.replace(tmp, self.state_dir / "last_good.json")

    def stale(self, now: datetime) -> bool:
        """True if no timestamp was ever verified or the verified one has expired at ``now``
        (real time)."""
        return self.expires is None or now >= self.expires


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    cause = exc.__cause__ or exc.__context__
    if cause is not None and str(cause):
        text += f" ({type(cause).__name__}: {cause})"
    return text
