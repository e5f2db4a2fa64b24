"""A lean keep-alive HTTP/1.1 fetcher for the feed's many small files.

A sharded feed's cold load is ~17,000 GETs of a few kilobytes; through urllib3 and
``http.client`` (an email-package header parser per response) the requests cost more CPU
than verifying what they bring. This fetcher keeps one connection per origin, writes the
request line by hand and reads ``Content-Length`` bodies in chunks. Anything it does not
handle (a proxy in the environment, a redirect, chunked or unsized bodies) goes to
python-tuf's ``Urllib3Fetcher``. It only moves bytes: every byte is still checked by
python-tuf (signed lengths and hashes) before anything uses it.
"""

from __future__ import annotations

import os
import socket
import ssl
from collections.abc import Iterator
from urllib.parse import urlsplit

from tuf.api import exceptions as tuf_errors
from tuf.ngclient import FetcherInterface, Urllib3Fetcher

TIMEOUT = 30.0
CHUNK = 1 << 16
_MAX_HEAD = 64 * 1024
_PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")


class _Fallback(Exception):
    """This response is not for the lean path: ask urllib3."""


class KeepAliveFetcher(FetcherInterface):
    """GET over one kept-alive connection per (scheme, host, port)."""

    def __init__(self) -> None:
        self._conns: dict[tuple[str, str, int], tuple[socket.socket, bytearray]] = {}
        self._fallback = Urllib3Fetcher()
        self._proxied = any(os.environ.get(v) for v in _PROXY_VARS)
        self._tls = ssl.create_default_context()

    def _fetch(self, url: str) -> Iterator[bytes]:
        parts = urlsplit(url)
        if self._proxied or parts.scheme not in ("http", "https") or not parts.hostname:
            return self._fallback.fetch(url)
        key = (parts.scheme, parts.hostname, parts.port or (443 if parts.scheme == "https" else 80))
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        for attempt in (0, 1):  # a kept-alive connection the server closed: retry once, fresh
            fresh = key not in self._conns
            try:
                sock, buf = self._conn(key)
                host = parts.netloc.rsplit("@", 1)[-1]
                sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode("latin-1"))
                status, length, close = self._head(sock, buf)
                break
            except _Fallback:
                self._drop(key)
                return self._fallback.fetch(url)
            except OSError as exc:
                self._drop(key)
                if attempt or fresh:
                    raise tuf_errors.DownloadError(f"GET {url}: {exc}") from exc
        if status != 200:
            self._skip(key, sock, buf, length, close)
            raise tuf_errors.DownloadHTTPError(f"GET {url}: HTTP {status}", status)
        return self._body(key, sock, buf, length, close)

    def _conn(self, key: tuple[str, str, int]) -> tuple[socket.socket, bytearray]:
        found = self._conns.get(key)
        if found is not None:
            return found
        scheme, host, port = key
        sock = socket.create_connection((host, port), timeout=TIMEOUT)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if scheme == "https":
            sock = self._tls.wrap_socket(sock, server_hostname=host)
        found = self._conns[key] = (sock, bytearray())
        return found

    def _drop(self, key: tuple[str, str, int]) -> None:
        found = self._conns.pop(key, None)
        if found is not None:
            found[0].close()

    def _head(self, sock: socket.socket, buf: bytearray) -> tuple[int, int, bool]:
        while (end := buf.find(b"\r\n\r\n")) < 0:
            if len(buf) > _MAX_HEAD:
                raise _Fallback
            data = sock.recv(CHUNK)
            if not data:
                raise ConnectionResetError("connection closed before the response")
            buf += data
        head = bytes(buf[:end]).decode("latin-1").split("\r\n")
        del buf[: end + 4]
        version, _, rest = head[0].partition(" ")
        if not version.startswith("HTTP/1.") or not rest[:3].isdigit():
            raise _Fallback
        status = int(rest[:3])
        headers = {}
        for line in head[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if "transfer-encoding" in headers or 300 <= status < 400:
            raise _Fallback
        text = headers.get("content-length", "")
        if not text.isdigit():
            raise _Fallback
        close = headers.get("connection", "").lower() == "close" or version == "HTTP/1.0"
        return status, int(text), close

    def _skip(self, key, sock, buf, length, close) -> None:  # type: ignore[no-untyped-def]
        for _ in self._body(key, sock, buf, length, close):
            pass

    def _body(
        self, key: tuple[str, str, int], sock: socket.socket, buf: bytearray, length: int,
        close: bool,
    ) -> Iterator[bytes]:  # fmt: skip
        done = False
        try:
            remaining = length
            if buf:
                first = bytes(buf[:remaining])
                del buf[: len(first)]
                remaining -= len(first)
                yield first
            while remaining > 0:
                data = sock.recv(min(CHUNK, remaining))
                if not data:
                    raise tuf_errors.DownloadError(
                        f"IncompleteRead: connection closed after {length - remaining} of "
                        f"{length} bytes"
                    )
                remaining -= len(data)
                yield data
            done = True
        except OSError as exc:
            raise tuf_errors.DownloadError(f"download broke off: {exc}") from exc
        finally:
            if close or not done:  # a body not read to its end leaves the stream unusable
                self._drop(key)
