"""The sans-IO handshake parsers of the enforcement point: CONNECT, SOCKS5, original dst."""

from __future__ import annotations

import socket
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from takedown.enforce.decide import Action, Verdict
from takedown.enforce.handshake import (
    SocksError,
    block_response,
    parse_connect,
    parse_original_dst,
    parse_socks_greeting,
    parse_socks_request,
    socks_reply,
)
from takedown.errors import InputError


def test_connect_request() -> None:
    req = b"CONNECT Pbs.Twimg.com:443 HTTP/1.1\r\nHost: pbs.twimg.com:443\r\n\r\n\x16\x03\x01"
    t = parse_connect(req)
    assert t is not None
    assert (t.host, t.port, t.is_name) == ("pbs.twimg.com", 443, True)
    assert req[t.consumed :] == b"\x16\x03\x01"
    t = parse_connect(b"CONNECT [2001:db8::1]:8443 HTTP/1.1\r\n\r\n")
    assert t is not None
    assert (t.host, t.port, t.is_name) == ("2001:db8::1", 8443, False)
    # incomplete: ask for more
    assert parse_connect(b"CONN") is None
    assert parse_connect(b"CONNECT a.example:443 HTTP/1.1\r\n") is None


@pytest.mark.parametrize(
    "bad",
    [
        b"GET / HTTP/1.1\r\n\r\n",
        b"CONNECT a.example HTTP/1.1\r\n\r\n",
        b"CONNECT a.example:0 HTTP/1.1\r\n\r\n",
        b"CONNECT a.example:99999 HTTP/1.1\r\n\r\n",
        b"CONNECT [::1:443 HTTP/1.1\r\n\r\n",
        b"CONNECT a.example:443\r\n\r\n",
        b"CONNECT " + b"a" * 9000,
    ],
)
def test_connect_refuses(bad: bytes) -> None:
    with pytest.raises(InputError) as info:
        parse_connect(bad)
    assert info.value.where


@given(st.binary(max_size=300))
def test_connect_parser_only_input_errors(data: bytes) -> None:
    try:
        t = parse_connect(data)
    except InputError:
        return
    if t is not None:
        assert 0 < t.port < 65536
        assert t.consumed <= len(data)


def test_socks_greeting_and_request() -> None:
    assert parse_socks_greeting(b"\x05") is None
    assert parse_socks_greeting(b"\x05\x02\x00") is None
    assert parse_socks_greeting(b"\x05\x02\x00\x02rest") == (frozenset({0, 2}), 4)
    with pytest.raises(SocksError):
        parse_socks_greeting(b"\x04\x01\x00")
    name = b"video.twimg.com"
    req = b"\x05\x01\x00\x03" + bytes([len(name)]) + name + struct.pack("!H", 443) + b"data"
    assert parse_socks_request(req[:10]) is None
    t = parse_socks_request(req)
    assert t is not None
    assert (t.host, t.port, req[t.consumed :]) == ("video.twimg.com", 443, b"data")
    t = parse_socks_request(b"\x05\x01\x00\x01" + bytes([127, 0, 0, 1]) + b"\x00\x50")
    assert t is not None
    assert (t.host, t.port, t.is_name) == ("127.0.0.1", 80, False)
    t = parse_socks_request(
        b"\x05\x01\x00\x04" + socket.inet_pton(socket.AF_INET6, "::1") + b"\x01\xbb"
    )
    assert t is not None
    assert (t.host, t.port) == ("::1", 443)


@pytest.mark.parametrize(
    ("req", "code"),
    [
        (b"\x05\x02\x00\x01\x7f\x00\x00\x01\x00\x50", 7),  # BIND
        (b"\x05\x01\x00\x09\x7f\x00\x00\x01\x00\x50", 8),  # unknown address type
        (b"\x05\x01\x00\x01\x7f\x00\x00\x01\x00\x00", 4),  # port 0
        (b"\x05\x01\x00\x03\x02\xff\xfe\x00\x50", 4),  # non-ASCII name
    ],
)
def test_socks_refusals_carry_reply_codes(req: bytes, code: int) -> None:
    with pytest.raises(SocksError) as info:
        parse_socks_request(req)
    assert info.value.reply == code


@given(st.binary(max_size=300))
def test_socks_parser_only_socks_errors(data: bytes) -> None:
    try:
        t = parse_socks_request(data)
    except SocksError:
        return
    if t is not None:
        assert t.consumed <= len(data)


def test_socks_reply() -> None:
    assert socks_reply(0, ("127.0.0.1", 1080)) == b"\x05\x00\x00\x01\x7f\x00\x00\x01\x04\x38"
    assert socks_reply(5)[:2] == b"\x05\x05"
    assert len(socks_reply(0, ("::1", 1))) == 4 + 16 + 2


def test_original_dst_decoding() -> None:
    v4 = struct.pack("!HH4s8x", socket.AF_INET, 443, socket.inet_aton("10.0.2.2"))
    assert parse_original_dst(v4, socket.AF_INET) == ("10.0.2.2", 443)
    v6 = struct.pack(
        "!HHI16sI", socket.AF_INET6, 8443, 0, socket.inet_pton(socket.AF_INET6, "fd00::2"), 0
    )
    assert parse_original_dst(v6, socket.AF_INET6) == ("fd00::2", 8443)


def test_451_response() -> None:
    d = Verdict(
        Action.BLOCK,
        directives=("d-block",),
        decisions=("Court 33",),
        reference_urls=("https://register.example/d-block",),
    )
    raw = block_response("linkedin.com", d, "https://isp.example/blocked")
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0] == "HTTP/1.1 451 Unavailable For Legal Reasons"
    assert 'Link: <https://isp.example/blocked>; rel="blocked-by"' in lines
    assert f"Content-Length: {len(body)}" in lines
    assert b"Court 33" in body
    assert b"https://register.example/d-block" in body
    # without an operator URL the public reference is the link
    raw = block_response(None, d, None)
    assert b'Link: <https://register.example/d-block>; rel="blocked-by"' in raw
