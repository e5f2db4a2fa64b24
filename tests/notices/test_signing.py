"""Webhook signatures: round trip, tampering, the time window, the header parser."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import inspect
import textwrap
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from takedown.errors import AuthError
from takedown.notices import signing

SECRET = "s3cret-key"
T = 1_615_334_400  # 2021-03-10


def _docstring_snippet() -> Callable[[str, bytes, str, float], bool]:
    """The few lines from the signing docstring a platform would write, run as written."""
    code = (signing.__doc__ or "").split("::\n\n", 1)[1].split("\n\nSign the raw", 1)[0]
    namespace: dict[str, Any] = {}
    exec(textwrap.dedent(code), namespace)
    return namespace["verify"]  # type: ignore[no-any-return]


platform_verify = _docstring_snippet()


def test_the_platform_snippet_takes_now_from_its_caller() -> None:
    now = inspect.signature(platform_verify).parameters["now"]
    assert now.default is inspect.Parameter.empty
    assert "time" not in platform_verify.__code__.co_names


def test_header_format_is_the_documented_one() -> None:
    body = b'{"notice_id":1}'
    header = signing.sign(SECRET, body, T)
    expected = hmac.new(SECRET.encode(), f"{T}.".encode() + body, hashlib.sha256).hexdigest()
    assert header == f"t={T},v1={expected}"


@given(body=st.binary(max_size=2000), secret=st.text(min_size=1, max_size=60))
def test_round_trip_and_platform_snippet_agree(body: bytes, secret: str) -> None:
    header = signing.sign(secret, body, T)
    assert signing.verify(secret, body, header, T + 10) == T
    assert platform_verify(secret, body, header, T + 10)


@given(body=st.binary(min_size=1, max_size=500), flip=st.integers(min_value=0))
def test_any_changed_byte_is_refused(body: bytes, flip: int) -> None:
    header = signing.sign(SECRET, body, T)
    pos = flip % len(body)
    changed = body[:pos] + bytes([body[pos] ^ 0x01]) + body[pos + 1 :]
    with pytest.raises(AuthError, match="bad signature"):
        signing.verify(SECRET, changed, header, T)
    assert not platform_verify(SECRET, changed, header, T)


def test_wrong_secret_refused() -> None:
    header = signing.sign(SECRET, b"x", T)
    with pytest.raises(AuthError, match="bad signature"):
        signing.verify("other", b"x", header, T)


@pytest.mark.parametrize("skew", [301, -301, 100_000])
def test_stale_or_future_timestamp_refused(skew: int) -> None:
    header = signing.sign(SECRET, b"x", T)
    with pytest.raises(AuthError, match="window"):
        signing.verify(SECRET, b"x", header, T + skew)
    assert not platform_verify(SECRET, b"x", header, T + skew)


@pytest.mark.parametrize("skew", [300, -300, 0])
def test_window_edges_accepted(skew: int) -> None:
    assert signing.verify(SECRET, b"x", signing.sign(SECRET, b"x", T), T + skew) == T


def test_timestamp_cannot_be_moved_without_the_key() -> None:
    header = signing.sign(SECRET, b"x", T)
    moved = header.replace(f"t={T}", f"t={T + 1000}")
    with pytest.raises(AuthError, match="bad signature"):
        signing.verify(SECRET, b"x", moved, T + 1000)


def test_second_signature_during_rotation() -> None:
    old = signing.sign("old", b"x", T)
    new = signing.sign("new", b"x", T).split(",")[1]
    header = f"{old},{new}"
    assert signing.verify("new", b"x", header, T) == T
    assert signing.verify("old", b"x", header, T) == T


@pytest.mark.parametrize(
    "header", ["", "garbage", "t=abc,v1=00", "v1=00", f"t={T}", "t=1,v1", f"t={T},v2=00"]
)
def test_malformed_headers_refused(header: str) -> None:
    with pytest.raises(AuthError) as info:
        signing.verify(SECRET, b"x", header, T)
    assert info.value.where == signing.HEADER


@given(st.text(max_size=200))
def test_parser_never_crashes(header: str) -> None:
    with contextlib.suppress(AuthError):
        signing.verify(SECRET, b"x", header, T)
