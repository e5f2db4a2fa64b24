"""measure_transfer against real local uvicorn servers (HTTP and TLS with a trustme CA)."""

from __future__ import annotations

import asyncio
import json
import math
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
import trustme
import uvicorn
from typer.testing import CliRunner

from takedown.errors import InputError
from takedown.measure import TransferResult, compare, measure_transfer, parse_resolve

# --- a real server ---------------------------------------------------------------------


@dataclass
class Seen:
    path: str
    host: str
    client: str
    received: int = 0


@dataclass
class App:
    """ASGI app: /bytes/N streams N bytes, /paced/N?bps=R at R bit/s, POST counts the body."""

    seen: list[Seen] = field(default_factory=list)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        headers = dict(scope["headers"])
        seen = Seen(scope["path"], headers.get(b"host", b"").decode(), scope["client"][0])
        self.seen.append(seen)
        if scope["method"] == "POST":
            more = True
            while more:
                msg = await receive()
                seen.received += len(msg.get("body", b""))
                more = msg.get("more_body", False)
            await self._reply(send, json.dumps({"received": seen.received}).encode())
            return
        parts = scope["path"].strip("/").split("/")
        n = int(parts[1])
        query = parse_qs(scope["query_string"].decode())
        bps = float(query["bps"][0]) if parts[0] == "paced" else 0.0
        await send({"type": "http.response.start", "status": 200, "headers": []})
        chunk = 64 * 1024 if not bps else 4096
        block = bytes(chunk)
        left = n
        gone = asyncio.Event()

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            gone.set()

        # uvicorn drops sends after a disconnect silently: stop when the client has gone.
        watcher = asyncio.create_task(watch())
        try:
            while left > 0 and not gone.is_set():
                piece = block[: min(chunk, left)]
                left -= len(piece)
                await send({"type": "http.response.body", "body": piece, "more_body": left > 0})
                await asyncio.sleep(len(piece) * 8 / bps if bps else 0)
        finally:
            watcher.cancel()

    async def _reply(self, send: Any, body: bytes) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})


@dataclass
class Server:
    port: int
    app: App
    sni: list[str | None]


def start_server(
    app: App, certfile: str | None = None, keyfile: str | None = None
) -> tuple[uvicorn.Server, threading.Thread, int, list[str | None]]:
    sock = socket.create_server(("127.0.0.1", 0))
    config = uvicorn.Config(
        app,
        lifespan="off",
        log_level="warning",
        ssl_certfile=certfile,
        ssl_keyfile=keyfile,
    )
    config.load()
    sni: list[str | None] = []
    if config.ssl is not None:
        config.ssl.sni_callback = lambda _obj, name, _ctx: sni.append(name)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    for _ in range(1000):
        if server.started:
            break
        thread.join(0.01)
    assert server.started
    return server, thread, sock.getsockname()[1], sni


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def client_ctx(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    return ctx


def _serve(app: App, certfile: str | None = None, keyfile: str | None = None) -> Iterator[Server]:
    server, thread, port, sni = start_server(app, certfile, keyfile)
    yield Server(port, app, sni)
    server.should_exit = True
    thread.join(10)


@pytest.fixture(scope="module")
def http_server() -> Iterator[Server]:
    yield from _serve(App())


@pytest.fixture(scope="module")
def tls_server(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    cert = ca.issue_cert("pbs.twimg.com", "control.example")
    d = tmp_path_factory.mktemp("tls")
    certfile, keyfile = d / "cert.pem", d / "key.pem"
    cert.cert_chain_pems[0].write_to_path(str(certfile))
    for pem in cert.cert_chain_pems[1:]:
        pem.write_to_path(str(certfile), append=True)
    cert.private_key_pem.write_to_path(str(keyfile))
    yield from _serve(App(), str(certfile), str(keyfile))


# --- a small CONNECT / SOCKS5 relay (a protocol peer, not our enforcement point) ---------


class Relay:
    """Accepts HTTP CONNECT or SOCKS5 CONNECT, records the requested target, relays bytes."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.targets: list[tuple[str, int]] = []
        self.peers: list[str] = []
        self.refuse = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, peer = self.sock.accept()
            except OSError:
                return
            self.peers.append(peer[0])
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            first = conn.recv(1, socket.MSG_PEEK)
            if first == b"\x05":
                host, port = self._socks(conn)
            else:
                host, port = self._connect(conn)
            self.targets.append((host, port))
            if self.refuse:
                conn.sendall(
                    b"\x05\x02\x00\x01" + bytes(6)
                    if first == b"\x05"
                    else b"HTTP/1.1 403 Forbidden\r\n\r\n"
                )
                return
            with socket.create_connection(("127.0.0.1", port)) as up:
                conn.sendall(
                    b"\x05\x00\x00\x01" + bytes(6)
                    if first == b"\x05"
                    else b"HTTP/1.1 200 Connection established\r\n\r\n"
                )
                t = threading.Thread(target=_pipe, args=(up, conn), daemon=True)
                t.start()
                _pipe(conn, up)
                t.join(30)

    def _connect(self, conn: socket.socket) -> tuple[str, int]:
        head = b""
        while not head.endswith(b"\r\n\r\n"):
            head += conn.recv(1)
        target = head.split(b" ")[1].decode()
        host, _, port = target.rpartition(":")
        return host.strip("[]"), int(port)

    def _socks(self, conn: socket.socket) -> tuple[str, int]:
        conn.recv(3)
        conn.sendall(b"\x05\x00")
        _, _, _, atyp = conn.recv(4)
        if atyp == 3:
            host = conn.recv(conn.recv(1)[0]).decode()
        else:
            host = socket.inet_ntop(
                socket.AF_INET if atyp == 1 else socket.AF_INET6, conn.recv(4 if atyp == 1 else 16)
            )
        return host, int.from_bytes(conn.recv(2), "big")

    def close(self) -> None:
        self.sock.close()


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
        dst.shutdown(socket.SHUT_WR)
    except OSError:
        pass


@pytest.fixture
def relay() -> Iterator[Relay]:
    r = Relay()
    yield r
    r.close()


# --- tests -----------------------------------------------------------------------------


def _consistent(r: TransferResult) -> None:
    assert r.error is None, r.error
    assert r.seconds > 0
    assert r.kbps > 0
    assert r.kbps <= r.bytes * 8 / 1000 / r.seconds  # the first chunk is left out


def test_download_plain_http(http_server: Server) -> None:
    url = f"http://127.0.0.1:{http_server.port}/bytes/20000000"
    r = measure_transfer(url, seconds=30)
    assert (r.status, r.bytes, r.direction, r.upload) == (200, 20_000_000, "download", None)
    _consistent(r)
    assert http_server.app.seen[-1].host == f"127.0.0.1:{http_server.port}"


def test_download_stops_after_seconds(http_server: Server) -> None:
    huge = 10**12
    r = measure_transfer(f"http://127.0.0.1:{http_server.port}/bytes/{huge}", seconds=0.3)
    assert r.status == 200 and 0 < r.bytes < huge
    _consistent(r)
    assert r.seconds >= 0.3


def test_resolve_over_tls_uses_the_name_for_sni_host_and_certificate(
    tls_server: Server, client_ctx: ssl.SSLContext
) -> None:
    url = f"https://pbs.twimg.com:{tls_server.port}/bytes/5000000"
    r = measure_transfer(url, resolve={"pbs.twimg.com": "127.0.0.1"}, verify=client_ctx)
    assert (r.status, r.bytes) == (200, 5_000_000)
    _consistent(r)
    assert tls_server.sni[-1] == "pbs.twimg.com"
    assert tls_server.app.seen[-1].host == f"pbs.twimg.com:{tls_server.port}"


def test_certificate_for_another_name_fails_cleanly(
    tls_server: Server, client_ctx: ssl.SSLContext
) -> None:
    url = f"https://t.co:{tls_server.port}/bytes/1000"
    r = measure_transfer(url, resolve={"t.co": "127.0.0.1"}, verify=client_ctx)
    assert r.status is None and r.bytes == 0
    assert r.error is not None and "certificate" in r.error.lower()


def test_refused_connection_is_an_error_not_an_exception() -> None:
    with socket.create_server(("127.0.0.1", 0)) as s:
        port = s.getsockname()[1]
    r = measure_transfer(f"http://127.0.0.1:{port}/", seconds=1)
    assert r.status is None and r.error is not None and r.kbps == 0


def test_source_address_is_bound(http_server: Server) -> None:
    r = measure_transfer(
        f"http://127.0.0.1:{http_server.port}/bytes/1000000", source="127.0.0.2", seconds=5
    )
    assert r.status == 200
    assert http_server.app.seen[-1].client == "127.0.0.2"


def test_upload(http_server: Server) -> None:
    r = measure_transfer(
        f"http://127.0.0.1:{http_server.port}/bytes/3000000", upload=True, seconds=0.3
    )
    assert r.upload is not None
    up = r.upload
    assert (up.direction, up.status, up.error) == ("upload", 200, None)
    assert up.bytes > 0 and up.bytes == http_server.app.seen[-1].received
    assert up.kbps == pytest.approx(up.bytes * 8 / 1000 / up.seconds)
    assert r.to_dict()["upload"]["bytes"] == up.bytes


@pytest.mark.parametrize("scheme", ["http", "socks5"])
def test_through_a_proxy_asks_for_the_resolved_address(
    scheme: str, relay: Relay, tls_server: Server, client_ctx: ssl.SSLContext
) -> None:
    url = f"https://pbs.twimg.com:{tls_server.port}/bytes/2000000"
    r = measure_transfer(
        url,
        proxy=f"{scheme}://127.0.0.1:{relay.port}",
        resolve={"pbs.twimg.com": "127.0.0.1"},
        verify=client_ctx,
        source="127.0.0.3",
    )
    assert (r.status, r.bytes) == (200, 2_000_000)
    assert relay.targets == [("127.0.0.1", tls_server.port)]
    assert relay.peers == ["127.0.0.3"]
    assert tls_server.sni[-1] == "pbs.twimg.com"


@pytest.mark.parametrize("scheme", ["http", "socks5h"])
def test_through_a_proxy_without_resolve_sends_the_name(
    scheme: str, relay: Relay, http_server: Server
) -> None:
    # The relay connects to 127.0.0.1 whatever name it is given: nothing leaves loopback.
    url = f"http://media.example:{http_server.port}/bytes/100000"
    r = measure_transfer(url, proxy=f"{scheme}://127.0.0.1:{relay.port}")
    assert (r.status, r.bytes) == (200, 100_000)
    assert relay.targets == [("media.example", http_server.port)]
    assert http_server.app.seen[-1].host == f"media.example:{http_server.port}"


@pytest.mark.parametrize("scheme", ["http", "socks5"])
def test_proxy_refusal_is_reported(scheme: str, relay: Relay, http_server: Server) -> None:
    relay.refuse = True
    r = measure_transfer(
        f"http://127.0.0.1:{http_server.port}/bytes/10", proxy=f"{scheme}://127.0.0.1:{relay.port}"
    )
    assert r.status is None and r.error is not None
    assert "refused" in r.error


def test_paced_target_against_a_control_is_throttled(http_server: Server) -> None:
    base = f"http://127.0.0.1:{http_server.port}"
    target = measure_transfer(f"{base}/paced/10000000?bps=400000", seconds=1.0)
    control = measure_transfer(f"{base}/bytes/50000000", seconds=1.0)
    _consistent(target)
    _consistent(control)
    verdict = compare(target, control)
    assert verdict.verdict == "throttled"
    assert verdict.ratio == pytest.approx(target.kbps / control.kbps)
    assert compare(control, control).verdict == "normal"


def _result(kbps: float, error: str | None = None) -> TransferResult:
    return TransferResult(1000, 1.0, kbps, 200 if error is None else None, error)


@pytest.mark.parametrize(
    ("target", "control", "threshold", "verdict"),
    [
        (_result(130), _result(50_000), 0.5, "throttled"),
        (_result(25_000), _result(50_000), 0.5, "normal"),  # exactly at the threshold
        (_result(24_999), _result(50_000), 0.5, "throttled"),
        (_result(40_000), _result(50_000), 0.9, "throttled"),
        (_result(60_000), _result(50_000), 0.5, "normal"),
        (_result(0, "ReadTimeout"), _result(50_000), 0.5, "inconclusive"),
        (_result(100), _result(0, "ConnectError"), 0.5, "inconclusive"),
        (_result(100), _result(0), 0.5, "inconclusive"),
    ],
)
def test_compare(
    target: TransferResult, control: TransferResult, threshold: float, verdict: str
) -> None:
    got = compare(target, control, threshold)
    assert got.verdict == verdict
    if verdict != "inconclusive":
        assert got.ratio == pytest.approx(target.kbps / control.kbps)
    else:
        assert math.isnan(got.ratio) and got.to_dict()["ratio"] is None


@pytest.mark.parametrize("threshold", [0, -1, 1.5])
def test_compare_bad_threshold(threshold: float) -> None:
    with pytest.raises(InputError):
        compare(_result(1), _result(2), threshold)


def test_parse_resolve() -> None:
    items = ["PBS.twimg.com.:127.0.0.1", "t.co:[::1]", "x.example:::1", "*:127.0.0.2"]
    assert parse_resolve(items) == {
        "pbs.twimg.com": "127.0.0.1",
        "t.co": "::1",
        "x.example": "::1",
        "*": "127.0.0.2",
    }
    assert parse_resolve(["bücher.example:::1"]) == {"xn--bcher-kva.example": "::1"}
    for bad in ["pbs.twimg.com", "pbs.twimg.com:localhost", ":127.0.0.1", "a..b:127.0.0.1"]:
        with pytest.raises(InputError) as info:
            parse_resolve(["t.co:127.0.0.1", bad])
        assert info.value.where == "--resolve[1]"


@pytest.mark.parametrize(
    ("url", "kwargs"),
    [
        ("ftp://x/", {}),
        ("http://127.0.0.1/", {"seconds": 0}),
        ("http://127.0.0.1/", {"proxy": "gopher://127.0.0.1:1"}),
        ("http://127.0.0.1/", {"proxy": "http://127.0.0.1"}),
    ],
)
def test_bad_arguments(url: str, kwargs: dict[str, Any]) -> None:
    with pytest.raises(InputError):
        measure_transfer(url, **kwargs)


# --- the command -----------------------------------------------------------------------


def test_cli_json_with_control(
    http_server: Server, tls_server: Server, ca: trustme.CA, tmp_path: Path
) -> None:
    from takedown.cli import app

    cafile = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(cafile))
    target = f"https://pbs.twimg.com:{tls_server.port}/paced/10000000?bps=400000"
    control = f"http://127.0.0.1:{http_server.port}/bytes/50000000"
    result = CliRunner().invoke(
        app,
        [
            "measure",
            target,
            "--resolve",
            "pbs.twimg.com:127.0.0.1",
            "--cacert",
            str(cafile),
            "--seconds",
            "0.5",
            "--control",
            control,
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["target"]["status"] == 200 and doc["target"]["error"] is None
    assert doc["control"]["status"] == 200
    assert doc["comparison"]["verdict"] == "throttled"
    assert doc["url"] == target


def test_cli_table_and_failure_exit_code(http_server: Server) -> None:
    from takedown.cli import app

    ok = CliRunner().invoke(
        app, ["measure", f"http://127.0.0.1:{http_server.port}/bytes/1000000", "--seconds", "1"]
    )
    assert ok.exit_code == 0, ok.output
    assert "kbit/s" in ok.stdout
    with socket.create_server(("127.0.0.1", 0)) as s:
        port = s.getsockname()[1]
    bad = CliRunner().invoke(app, ["measure", f"http://127.0.0.1:{port}/", "--json"])
    assert bad.exit_code == 1
    assert json.loads(bad.stdout)["target"]["error"]
