"""The sniffers over real ClientHellos (Python ssl, openssl s_client) and HTTP requests."""

from __future__ import annotations

import socket
import ssl
import struct
import subprocess
import threading

import pytest
import trustme
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from takedown.enforce import sniff as sniff_mod
from takedown.enforce.sniff import MAX_SNIFF, NEED_MORE, Protocol, Sniffed, Sniffer, sniff

# --- building ClientHellos -------------------------------------------------------------


def client_hello(server_hostname: str | None, *, tls12_only: bool = False) -> bytes:
    """The bytes a real Python ssl client sends first (one TLS record)."""
    ctx = ssl.create_default_context()
    if tls12_only:
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    out = ssl.MemoryBIO()
    obj = ctx.wrap_bio(ssl.MemoryBIO(), out, server_hostname=server_hostname)
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    return out.read()


def handshake_message(wire: bytes) -> bytes:
    """Concatenate the fragments of the handshake records in ``wire``."""
    msg, pos = b"", 0
    while pos < len(wire):
        assert wire[pos] == 22
        (length,) = struct.unpack("!H", wire[pos + 3 : pos + 5])
        msg += wire[pos + 5 : pos + 5 + length]
        pos += 5 + length
    return msg


def records(message: bytes, size: int) -> bytes:
    """Split a handshake message into TLS records of ``size`` bytes (legal fragmentation)."""
    out = b""
    for i in range(0, len(message), size):
        frag = message[i : i + size]
        out += b"\x16\x03\x01" + struct.pack("!H", len(frag)) + frag
    return out


def with_extension(message: bytes, ext_type: int, data: bytes) -> bytes:
    """A ClientHello handshake message with one more extension appended."""
    body = message[4:]
    pos = 2 + 32
    pos += 1 + body[pos]
    pos += 2 + struct.unpack("!H", body[pos : pos + 2])[0]
    pos += 1 + body[pos]
    (ext_len,) = struct.unpack("!H", body[pos : pos + 2])
    exts = body[pos + 2 : pos + 2 + ext_len] + struct.pack("!HH", ext_type, len(data)) + data
    new_body = body[:pos] + struct.pack("!H", len(exts)) + exts
    return b"\x01" + len(new_body).to_bytes(3, "big") + new_body


def synthetic_hello(extensions: bytes, *, suites: bytes = b"\x13\x01") -> bytes:
    """A ClientHello handshake message built field by field, with raw extensions."""
    body = (
        b"\x03\x03"
        + bytes(32)
        + b"\x00"
        + struct.pack("!H", len(suites))
        + suites
        + b"\x01\x00"
        + struct.pack("!H", len(extensions))
        + extensions
    )
    return b"\x01" + len(body).to_bytes(3, "big") + body


def sni_ext(name: bytes, name_type: int = 0) -> bytes:
    entry = bytes([name_type]) + struct.pack("!H", len(name)) + name
    data = struct.pack("!H", len(entry)) + entry
    return struct.pack("!HH", 0, len(data)) + data


def server_accepts(wire: bytes) -> bool:
    """Does a real TLS server (OpenSSL via ssl) answer this ClientHello with a ServerHello?"""
    ca = trustme.CA()
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("pbs.twimg.com").configure_cert(ctx)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_side=True)
    incoming.write(wire)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        return outgoing.pending > 0 and outgoing.read()[0] == 22
    except ssl.SSLError:
        return False
    return True


def sni_end(message: bytes) -> int:
    """Offset in a ClientHello handshake message just past its server_name extension."""
    body = message[4:]
    pos = 2 + 32
    pos += 1 + body[pos]
    pos += 2 + struct.unpack("!H", body[pos : pos + 2])[0]
    pos += 1 + body[pos]
    pos += 2  # the extensions block's length
    while True:
        ext_type, length = struct.unpack("!HH", body[pos : pos + 4])
        pos += 4 + length
        if ext_type == 0:
            return 4 + pos


def wire_offset(message_offset: int, size: int) -> int:
    """Where message byte ``message_offset`` ends on the wire, in records of ``size``."""
    return message_offset + 5 * -(-message_offset // size)


REAL = client_hello("pbs.twimg.com")
REAL_MSG = handshake_message(REAL)
REAL_SNI_END = wire_offset(sni_end(REAL_MSG), len(REAL_MSG))

# --- TLS -------------------------------------------------------------------------------


def test_python_client_hello_gives_sni() -> None:
    assert sniff(REAL) == Sniffed(Protocol.TLS, "pbs.twimg.com", "", ("pbs.twimg.com",))


def test_a_real_hello_is_decided_the_moment_its_sni_has_arrived() -> None:
    assert 0 < REAL_SNI_END < len(REAL)
    for i in range(REAL_SNI_END):
        assert sniff(REAL[:i]) is NEED_MORE, i
    for i in range(REAL_SNI_END, len(REAL) + 1):
        assert sniff(REAL[:i]) == sniff(REAL), i


def test_bytes_after_the_hello_do_not_change_the_verdict() -> None:
    assert sniff(REAL + b"\x17\x03\x03\x00\x10" + bytes(16)).host == "pbs.twimg.com"


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64, 100, 511])
def test_hello_split_into_many_records(size: int) -> None:
    wire = records(REAL_MSG, size)
    assert server_accepts(wire)
    end = wire_offset(sni_end(REAL_MSG), size)
    for i in range(end):
        assert sniff(wire[:i]) is NEED_MORE, i
    assert sniff(wire[:end]).host == sniff(wire).host == "pbs.twimg.com"


def test_tls12_hello_and_case_and_idn() -> None:
    assert sniff(client_hello("Media.Example.ORG", tls12_only=True)).host == "media.example.org"
    assert sniff(client_hello("bücher.example")).host == "xn--bcher-kva.example"


def test_hello_without_sni() -> None:
    got = sniff(client_hello(None))
    assert got is not None
    assert (got.protocol, got.host) == (Protocol.TLS, None)
    assert "server_name" in got.detail


def test_large_multi_segment_hello_like_post_quantum_key_share() -> None:
    # ~1.2 KB ML-KEM key share plus padding: an ~9 KB ClientHello in 1400-byte records,
    # checked to be acceptable to a real TLS server.
    big = with_extension(REAL_MSG, 0x4A4A, bytes(8000))  # GREASE type
    wire = records(big, 1400)
    assert len(wire) > 8000 and server_accepts(wire)
    end = wire_offset(sni_end(big), 1400)
    for cut in range(0, end, 7):
        assert sniff(wire[:cut]) is NEED_MORE
    assert sniff(wire[:end]).host == sniff(wire).host == "pbs.twimg.com"


def test_a_large_extension_after_the_sni_cannot_hide_it() -> None:
    """The evasion: a legal 17 KB extension after the SNI (an unknown GREASE type, which
    servers ignore; a real TLS server accepts the hello) made the ClientHello longer than
    the sniff window. The SNI in its first bytes decides, before the rest arrives."""
    msg = with_extension(REAL_MSG, 0x4A4A, bytes(17_000))
    wire = records(msg, 16384)
    assert server_accepts(wire)
    assert sniff(wire[:REAL_SNI_END]).host == "pbs.twimg.com"
    assert sniff(wire).host == "pbs.twimg.com"


def test_more_than_the_window_after_the_sni_is_ignored() -> None:
    msg = with_extension(REAL_MSG, 0x5A5A, bytes(65_000))  # the extensions block's maximum
    wire = records(msg, 512)
    assert len(wire) > MAX_SNIFF
    assert sniff(wire).host == "pbs.twimg.com"


def test_sni_beyond_the_window_is_unknown_at_the_window() -> None:
    pad = struct.pack("!HH", 0x0015, 60_000) + bytes(60_000)
    msg = synthetic_hello(pad + sni_ext(b"t.co"))
    assert sniff(records(msg, 16384)).host == "t.co"  # 60 KB in: inside the window
    # the fixed fields can be large too: 30,000 cipher suites, then the extensions
    small_pad = struct.pack("!HH", 0x0015, 8000) + bytes(8000)
    far = synthetic_hello(small_pad + sni_ext(b"t.co"), suites=b"\x13\x01" * 30_000)
    wire = records(far, 16384)
    assert sniff(wire[: MAX_SNIFF - 1]) is NEED_MORE
    got = sniff(wire)
    assert got is not None and got.protocol is Protocol.UNKNOWN
    assert str(MAX_SNIFF) in got.detail


def test_hello_whose_records_overflow_max_sniff_is_decided_at_max_sniff() -> None:
    msg = synthetic_hello(struct.pack("!HH", 0x0015, 12_000) + bytes(12_000) + sni_ext(b"t.co"))
    wire = records(msg, 1)  # 6 wire bytes per message byte: the SNI lies past MAX_SNIFF
    assert sniff(wire[: MAX_SNIFF - 1]) is NEED_MORE
    got = sniff(wire[:MAX_SNIFF])
    assert got is not None and got.protocol is Protocol.UNKNOWN
    assert sniff(wire) == got


def test_openssl_s_client_servername() -> None:
    captured: list[bytes] = []
    with socket.create_server(("127.0.0.1", 0)) as srv:
        port = srv.getsockname()[1]

        def accept() -> None:
            conn, _ = srv.accept()
            with conn:
                conn.settimeout(10)
                buf = b""
                while sniff(buf) is NEED_MORE:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    buf += chunk
                captured.append(buf)

        t = threading.Thread(target=accept)
        t.start()
        subprocess.run(
            ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "t.co"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=30,
            check=False,
        )
        t.join(timeout=30)
    assert sniff(captured[0]) == Sniffed(Protocol.TLS, "t.co", "", ("t.co",))


@pytest.mark.parametrize(
    ("wire", "detail"),
    [
        (b"\x16\x03\x01\x00\x00", "empty"),
        (b"\x16\x02\x00\x00\x05" + bytes(5), "version"),
        (b"\x16\x03\x01\x00\x04\x02\x00\x00\x00", "not a ClientHello"),
        (b"\x16\x03\x01\xff\xff", "too large"),
        (b"\x16\x03\x01\x00\x02\x01\x00\x15\x03\x01\x00\x02\x02\x28", "type 21"),
        (b"\x80\x2e\x01\x03\x01", "not TLS"),
    ],
)
def test_bad_records_are_unknown(wire: bytes, detail: str) -> None:
    got = sniff(wire)
    assert got is not None and got.protocol is Protocol.UNKNOWN, got
    assert detail in got.detail


@pytest.mark.parametrize(
    ("message", "host", "detail"),
    [
        (synthetic_hello(sni_ext(b"Pbs.Twimg.Com.")), "pbs.twimg.com", ""),
        (synthetic_hello(sni_ext(b"a..b")), None, "server name"),
        (synthetic_hello(sni_ext(b"192.0.2.1")), None, "address literal"),
        (synthetic_hello(sni_ext(b"\xff\xfe")), None, "UTF-8"),
        (synthetic_hello(sni_ext(b"x" * 300)), None, "server name"),
        (synthetic_hello(sni_ext(b"t.co", name_type=1)), None, "no host_name"),
        (synthetic_hello(b""), None, "no server_name"),
    ],
)
def test_synthetic_hellos(message: bytes, host: str | None, detail: str) -> None:
    got = sniff(records(message, 1000))
    assert got is not None and got.protocol is Protocol.TLS
    assert got.host == host
    assert detail in got.detail


@pytest.mark.parametrize(
    ("message", "detail"),
    [
        (synthetic_hello(b"\x00\x2b\x00\x00" * 2 + sni_ext(b"t.co")), "duplicate extension"),
        (synthetic_hello(b"\x00\x00\xff\xff"), "runs past the end"),
        (synthetic_hello(b"\x00\x00\x00\x05\x00\x09\x00\x00\x01"), "runs past the end"),
        (synthetic_hello(b"\x00\x2b"), "runs past the end"),
        (synthetic_hello(sni_ext(b"t.co"), suites=b"\x13"), "cipher_suites"),
        (synthetic_hello(sni_ext(b"t.co"), suites=b""), "cipher_suites"),
    ],
)
def test_bogus_extensions_are_malformed(message: bytes, detail: str) -> None:
    got = sniff(records(message, 1000))
    assert got is not None and got.protocol is Protocol.UNKNOWN
    assert detail in got.detail


def test_sni_at_the_end_of_a_large_hello_is_found() -> None:
    msg = synthetic_hello(struct.pack("!HH", 0xFE0D, 5000) + bytes(5000) + sni_ext(b"t.co"))
    assert sniff(records(msg, 300)).host == "t.co"


# --- HTTP ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_bytes", "host", "names"),
    [
        (b"GET / HTTP/1.1\r\nHost: Pbs.Twimg.Com:8443\r\n\r\n", "pbs.twimg.com", None),
        (b"GET / HTTP/1.0\r\nUser-Agent: x\r\nhOsT:\tt.co \r\n\r\n", "t.co", None),
        (b"HEAD /x?y HTTP/1.1\r\nHost: t.co:\r\n\r\n", "t.co", None),
        (
            b"GET http://a.example:81/p HTTP/1.1\r\nHost: b.example\r\n\r\n",
            "a.example",
            ("a.example", "b.example"),
        ),
        (b"GET https://u:p@A.example/ HTTP/1.1\r\n\r\n", "a.example", None),
        (
            b"CONNECT pbs.twimg.com:443 HTTP/1.1\r\nHost: pbs.twimg.com:443\r\n\r\n",
            "pbs.twimg.com",
            None,
        ),
        (b"POST / HTTP/1.1\r\nHost: [2001:db8::1]:80\r\n\r\nbody", None, ()),
        (b"GET / HTTP/1.1\r\nHost: 192.0.2.7\r\n\r\n", None, ()),
        (b"GET / HTTP/1.0\r\n\r\n", None, ()),
        (
            b"GET / HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n",
            None,
            ("a.example", "b.example"),
        ),
    ],
)
def test_http_host(request_bytes: bytes, host: str | None, names: tuple[str, ...] | None) -> None:
    got = sniff(request_bytes)
    assert got is not None and got.protocol is Protocol.HTTP
    assert got.host == host
    assert got.names == (names if names is not None else (host,))
    head = request_bytes[: request_bytes.index(b"\r\n\r\n") + 3]
    for i in range(len(head) + 1):
        assert sniff(request_bytes[:i]) is NEED_MORE, i


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"get / HTTP/1.1\r\n",
        b"BREW / HTTP/1.1\r\n",
        b"GET / HTTP/2.0\r\n",
        b"GET /\r\n",
        b"GET  / HTTP/1.1\r\n",
        b"GET / HTTP/1.1 x\r\n",
        b"GET /\x01 HTTP/1.1\r\n",
        b"GET / HTTP/1.1\r\nno colon here\r\n\r\n",
        b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
        b"SSH-2.0-OpenSSH_9.2\r\n",
        b"\x00\x00\x00\x01",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    ],
)
def test_not_http1_is_unknown(request_bytes: bytes) -> None:
    got = sniff(request_bytes)
    assert got is not None and got.protocol is Protocol.UNKNOWN, got


def test_unknown_is_decided_early() -> None:
    assert sniff(b"GET / HTTX") is not None
    assert sniff(b"XYZ") is not None
    assert sniff(b"CONN") is NEED_MORE
    assert sniff(b"GET / HTTP/1.") is NEED_MORE


def test_http_headers_longer_than_max_sniff_are_unknown() -> None:
    req = b"GET / HTTP/1.1\r\n" + b"X-Pad: " + b"a" * MAX_SNIFF + b"\r\nHost: t.co\r\n\r\n"
    assert sniff(req[: MAX_SNIFF - 1]) is NEED_MORE
    got = sniff(req)
    assert got is not None and got.protocol is Protocol.UNKNOWN


# --- never raises, always decides by MAX_SNIFF, verdicts stable under more bytes --------

FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _check(buf: bytes) -> Sniffed | None:
    got = sniff_mod._sniff(buf[:MAX_SNIFF])  # the inner function: no safety net to hide bugs
    assert got is None or isinstance(got, Sniffed)
    if len(buf) >= MAX_SNIFF:
        assert got is not None
    return got


@FUZZ
@given(st.binary(max_size=3000))
def test_fuzz_random_bytes(buf: bytes) -> None:
    _check(buf)
    _check(b"\x16\x03\x01" + buf)
    _check(b"GET / HTTP/1.1\r\n" + buf)


@FUZZ
@given(st.data())
def test_fuzz_mutated_real_hello(data: st.DataObject) -> None:
    wire = bytearray(records(REAL_MSG, data.draw(st.integers(1, 600))))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(wire) - 1))
        if data.draw(st.booleans()):
            wire[i] = data.draw(st.integers(0, 255))
        else:  # an oversized length field
            wire[i : i + 2] = b"\xff\xff"
    cut = data.draw(st.integers(0, len(wire)))
    _check(bytes(wire[:cut]))
    _check(bytes(wire))


@FUZZ
@given(st.lists(st.tuples(st.integers(0, 0xFFFF), st.binary(max_size=300)), max_size=8))
def test_fuzz_bogus_extensions(exts: list[tuple[int, bytes]]) -> None:
    raw = b"".join(struct.pack("!HH", t, len(d)) + d for t, d in exts)
    got = _check(records(synthetic_hello(raw), 512))
    assert got is not None


@FUZZ
@given(st.binary(min_size=1, max_size=400), st.binary(max_size=400))
def test_fuzz_a_verdict_never_changes_with_more_bytes(prefix: bytes, extra: bytes) -> None:
    for base in (prefix, REAL[: len(prefix)] + prefix, b"GET / HTTP/1.1\r\n" + prefix):
        got = _check(base)
        if got is not None:
            later = _check(base + extra)
            assert later is not None
            assert (later.protocol, later.host, later.names) == (got.protocol, got.host, got.names)


@settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.large_base_example],
)
@given(st.binary(min_size=1, max_size=300), st.integers(0, 100))
def test_fuzz_huge_buffers_always_decided(tile: bytes, extra: int) -> None:
    buf = (tile * (MAX_SNIFF // len(tile) + 1))[: MAX_SNIFF + extra]
    assert _check(b"GET / HTTP/1.1\r\n" + buf) is not None
    assert sniff(buf) is not None
    assert sniff(b"\x16\x03\x01\x00\x01\x01" + buf) is not None


def _verdict(got: Sniffed | None) -> tuple[object, ...] | None:
    return None if got is None else (got.protocol, got.host, got.names)


INCREMENTAL_BASES = [
    REAL,
    records(REAL_MSG, 300),
    records(with_extension(REAL_MSG, 0x4A4A, bytes(3000)), 700),
    records(synthetic_hello(b"\x00\x2b\x00\x00" * 2 + sni_ext(b"t.co")), 9),
    b"GET http://t.co/x HTTP/1.1\r\nHost: example.org\r\nX-A: b\r\n\r\n",
]


@FUZZ
@given(st.data())
def test_fuzz_feeding_segments_agrees_with_one_shot(data: st.DataObject) -> None:
    """A Sniffer fed a flow segment by segment reaches the verdict one call over the same
    bytes reaches; for TLS at the same byte."""
    base = bytearray(data.draw(st.sampled_from(INCREMENTAL_BASES)))
    for _ in range(data.draw(st.integers(0, 2))):
        base[data.draw(st.integers(0, len(base) - 1))] = data.draw(st.integers(0, 255))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(base)), max_size=30)))
    sniffer, buf, first = Sniffer(), bytearray(), None
    for cut in [*cuts, len(base)]:
        buf += base[len(buf) : cut]
        got = sniffer.feed(buf)
        if got is not None and first is None:
            first = got
            assert _verdict(got) == _verdict(sniff(bytes(buf)))  # decided on these bytes
        if base[0] == 22:  # TLS: never later than one call over the same bytes
            assert _verdict(got) == _verdict(sniff(bytes(buf)))
        assert got is first or got == first  # once decided, for good
    if base[0] == 22 or first is not None:
        assert _verdict(first) == _verdict(sniff(bytes(base)))


def test_a_dripped_hello_is_decided_at_its_sni() -> None:
    wire = records(with_extension(REAL_MSG, 0x4A4A, bytes(17_000)), 16384)
    sniffer, buf = Sniffer(), bytearray()
    for i in range(REAL_SNI_END - 1):
        buf.append(wire[i])
        assert sniffer.feed(buf) is NEED_MORE, i
    buf.append(wire[REAL_SNI_END - 1])
    got = sniffer.feed(buf)
    assert got is not None and got.host == "pbs.twimg.com"


def test_public_sniff_never_raises_on_odd_types() -> None:
    assert sniff(bytearray(REAL)).host == "pbs.twimg.com"
    assert sniff(memoryview(REAL)).host == "pbs.twimg.com"
