"""The handshake machine, driven by byte strings only: commands out, no sockets."""

from __future__ import annotations

import errno
import socket
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from takedown.enforce.handshake import (
    BAD_REQUEST,
    CONNECTION_ESTABLISHED,
    SOCKS_METHOD_CHOSEN,
    SOCKS_METHOD_REFUSED,
    Close,
    Handshake,
    Mode,
    OpenUpstream,
    Send,
    StartSniffing,
    Upstream,
    socks_reply,
)

HELLO = b"\x16\x03\x01\x00\x05hello"
GREETING = b"\x05\x01\x00"


def socks_request(atyp: int, address: bytes, port: int = 443) -> bytes:
    return b"\x05\x01\x00" + bytes([atyp]) + address + struct.pack("!H", port)


def feed(machine: Handshake, data: bytes, step: int) -> list[object]:
    """Feed ``data`` in pieces of ``step`` bytes; all commands, in order."""
    out: list[object] = []
    for i in range(0, len(data), step):
        out.extend(machine.receive(data[i : i + step]))
    return out


# -- CONNECT -----------------------------------------------------------------------------


@pytest.mark.parametrize("step", [1, 7, 1000])
def test_connect_opens_upstream_then_tunnels_with_the_early_bytes(step: int) -> None:
    m = Handshake(Mode.CONNECT)
    head = b"CONNECT Pbs.Twimg.com:443 HTTP/1.1\r\nHost: pbs.twimg.com:443\r\n\r\n"
    out = feed(m, head + HELLO, step)
    assert out == [OpenUpstream(Upstream("pbs.twimg.com", 443, len(head)))]
    assert out[0].upstream.is_name
    # whether they came with the head or after it, the early bytes go to the sniffer
    assert m.connected(("127.0.0.1", 5555)) == [
        Send(CONNECTION_ESTABLISHED, "client gone before the tunnel opened"),
        StartSniffing(HELLO),
    ]


def test_connect_partial_head_asks_for_more() -> None:
    m = Handshake(Mode.CONNECT)
    assert m.receive(b"CONN") == []
    assert m.receive(b"ECT a.example:443 HTTP/1.1\r\n") == []
    out = m.receive(b"\r\nearly")
    assert out == [
        OpenUpstream(Upstream("a.example", 443, len(b"CONNECT a.example:443 HTTP/1.1\r\n\r\n")))
    ]
    assert m.connected(None) == [
        Send(CONNECTION_ESTABLISHED, "client gone before the tunnel opened"),
        StartSniffing(b"early"),
    ]


def test_connect_ipv6_literal() -> None:
    m = Handshake(Mode.CONNECT)
    (cmd,) = m.receive(b"CONNECT [2001:db8::1]:8443 HTTP/1.1\r\n\r\n")
    assert isinstance(cmd, OpenUpstream)
    assert (cmd.upstream.host, cmd.upstream.port, cmd.upstream.is_name) == (
        "2001:db8::1",
        8443,
        False,
    )


@pytest.mark.parametrize(
    "bad",
    [
        b"GET / HTTP/1.1\r\n\r\n",
        b"CONNECT a.example HTTP/1.1\r\n\r\n",
        b"CONNECT a.example:0 HTTP/1.1\r\n\r\n",
        b"CONNECT a.example:443\r\n\r\n",
        b"CONNECT " + b"a" * 9000,
    ],
)
def test_connect_bad_input_answers_400_and_closes(bad: bytes) -> None:
    out = Handshake(Mode.CONNECT).receive(bad)
    assert out[0] == Send(BAD_REQUEST)
    assert isinstance(out[1], Close) and out[1].handshake_error and not out[1].reset
    assert len(out) == 2


def test_connect_upstream_failure_is_a_502() -> None:
    m = Handshake(Mode.CONNECT)
    m.receive(b"CONNECT a.example:443 HTTP/1.1\r\n\r\n")
    send, close = m.upstream_failed(errno.ECONNREFUSED, "refused", ("127.0.0.1", 443))
    assert isinstance(send, Send) and send.data.startswith(b"HTTP/1.1 502 Bad Gateway\r\n")
    assert b"upstream connection failed: refused" in send.data
    assert close == Close("upstream ('127.0.0.1', 443): refused")


def test_client_closing_mid_handshake() -> None:
    m = Handshake(Mode.CONNECT)
    m.receive(b"CONNECT a.exa")
    assert m.client_closed() == [Close("client closed during handshake")]


# -- SOCKS5 ------------------------------------------------------------------------------

NAME = b"video.twimg.com"


@pytest.mark.parametrize(
    ("request_bytes", "host", "is_name"),
    [
        (socks_request(3, bytes([len(NAME)]) + NAME), "video.twimg.com", True),
        (socks_request(1, bytes([127, 0, 0, 1])), "127.0.0.1", False),
        (socks_request(4, socket.inet_pton(socket.AF_INET6, "::1")), "::1", False),
    ],
)
@pytest.mark.parametrize("step", [1, 3, 1000])
def test_socks_greeting_then_request(
    request_bytes: bytes, host: str, is_name: bool, step: int
) -> None:
    m = Handshake(Mode.SOCKS5)
    out = feed(m, GREETING + request_bytes + HELLO, step)
    assert out[0] == Send(SOCKS_METHOD_CHOSEN)
    assert len(out) == 2 and isinstance(out[1], OpenUpstream)
    up = out[1].upstream
    assert (up.host, up.port, up.is_name) == (host, 443, is_name)
    bound = ("127.0.0.1", 1080)
    reply = socks_reply(0, bound)
    assert reply == b"\x05\x00\x00\x01\x7f\x00\x00\x01\x04\x38"
    assert m.connected(bound) == [
        Send(reply, "client gone before the tunnel opened"),
        StartSniffing(HELLO),
    ]


def test_socks_bytes_after_the_request_are_kept_for_sniffing() -> None:
    m = Handshake(Mode.SOCKS5)
    out = m.receive(GREETING + socks_request(1, bytes([127, 0, 0, 1])) + HELLO)
    assert [type(c) for c in out] == [Send, OpenUpstream]
    assert m.connected(None)[1] == StartSniffing(HELLO)


def test_socks_partial_greeting_and_request() -> None:
    m = Handshake(Mode.SOCKS5)
    assert m.receive(b"\x05") == []
    assert m.receive(b"\x02\x00") == []
    assert m.receive(b"\x02") == [Send(SOCKS_METHOD_CHOSEN)]
    assert m.receive(b"\x05\x01\x00\x03") == []
    assert m.receive(bytes([len(NAME)]) + NAME) == []
    (cmd,) = m.receive(b"\x01\xbb")
    assert cmd == OpenUpstream(Upstream("video.twimg.com", 443, 4 + 1 + len(NAME) + 2))


def test_socks_without_no_auth_is_refused_with_ff() -> None:
    out = Handshake(Mode.SOCKS5).receive(b"\x05\x01\x02")
    assert out[0] == Send(SOCKS_METHOD_REFUSED)
    assert isinstance(out[1], Close) and out[1].handshake_error


def test_socks_wrong_version_is_refused_before_the_greeting() -> None:
    out = Handshake(Mode.SOCKS5).receive(b"\x04\x01\x00\x50")
    assert out[0] == Send(SOCKS_METHOD_REFUSED) and isinstance(out[1], Close)


@pytest.mark.parametrize(
    ("req", "code"),
    [
        (b"\x05\x02\x00\x01\x7f\x00\x00\x01\x00\x50", 7),  # BIND
        (b"\x05\x01\x00\x09\x7f\x00\x00\x01\x00\x50", 8),  # unknown address type
        (b"\x05\x01\x00\x01\x7f\x00\x00\x01\x00\x00", 4),  # port 0
        (b"\x05\x01\x00\x03\x02\xff\xfe\x00\x50", 4),  # non-ASCII name
        (b"\x04\x01\x00\x01\x7f\x00\x00\x01\x00\x50", 1),  # bad version in the request
    ],
)
def test_socks_request_errors_reply_with_their_code(req: bytes, code: int) -> None:
    out = Handshake(Mode.SOCKS5).receive(GREETING + req)
    assert out[0] == Send(SOCKS_METHOD_CHOSEN)
    assert out[1] == Send(socks_reply(code))
    assert isinstance(out[2], Close) and out[2].handshake_error
    assert len(out) == 3


@pytest.mark.parametrize(
    ("err", "code"),
    [
        (errno.ECONNREFUSED, 5),
        (errno.ENETUNREACH, 3),
        (errno.EHOSTUNREACH, 4),
        (errno.ETIMEDOUT, 6),
        (errno.EPERM, 1),
    ],
)
def test_socks_upstream_failure_reply_codes(err: int, code: int) -> None:
    m = Handshake(Mode.SOCKS5)
    m.receive(GREETING + socks_request(1, bytes([127, 0, 0, 1])))
    send, close = m.upstream_failed(err, "x", None)
    assert send == Send(socks_reply(code))
    assert close == Close("upstream None: x")


# -- transparent -----------------------------------------------------------------------------


def test_transparent_opens_the_original_destination() -> None:
    m = Handshake(Mode.TRANSPARENT)
    assert m.redirected(("10.0.2.2", 443), ("127.0.0.1", 3128)) == [
        OpenUpstream(Upstream("10.0.2.2", 443))
    ]
    # nothing to answer: the client thinks it talks to the server already
    assert m.connected(("10.0.2.15", 40000)) == [StartSniffing(b"")]


@pytest.mark.parametrize("listener", [("127.0.0.1", 3128), ("::ffff:127.0.0.1", 3128)])
def test_transparent_flow_to_the_listener_itself_is_reset(listener: tuple[str, int]) -> None:
    out = Handshake(Mode.TRANSPARENT).redirected(("127.0.0.1", 3128), listener)
    assert out == [Close("not redirected (destination is the listener)", reset=True)]


def test_transparent_upstream_failure_resets() -> None:
    m = Handshake(Mode.TRANSPARENT)
    m.redirected(("10.0.2.2", 443), ("127.0.0.1", 3128))
    assert m.upstream_failed(errno.ECONNREFUSED, "refused", ("10.0.2.2", 443)) == [
        Close("upstream ('10.0.2.2', 443): refused", reset=True)
    ]


def test_transparent_mode_receives_no_handshake() -> None:
    with pytest.raises(ValueError):
        Handshake(Mode.TRANSPARENT).receive(b"x")


# -- any input -------------------------------------------------------------------------------


@given(st.sampled_from([Mode.CONNECT, Mode.SOCKS5]), st.lists(st.binary(max_size=64)))
def test_any_input_yields_well_formed_commands(mode: Mode, pieces: list[bytes]) -> None:
    """Whatever a client sends: at most one OpenUpstream or one Close, and nothing after it."""
    m = Handshake(mode)
    done = False
    for piece in pieces:
        out = m.receive(piece)
        assert all(isinstance(c, Send | OpenUpstream | Close) for c in out)
        ends = [c for c in out if isinstance(c, OpenUpstream | Close)]
        assert len(ends) <= 1 and (not ends or out[-1] is ends[0])
        if ends:
            done = True
            break
    if done and isinstance(ends[0], OpenUpstream):
        assert 0 < ends[0].upstream.port < 65536
