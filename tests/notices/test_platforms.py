"""Platforms: host patterns, tokens (hashed, constant-time), key rotation."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from takedown import platforms
from takedown.errors import AuthError, Conflict, InputError, PatternError
from takedown.store.schema import Platform, PlatformToken

from .support import START, make_platform


@pytest.mark.parametrize(
    ("spec", "pattern", "cls"),
    [("Twitter.COM=text", "twitter.com", "text"), ("*.twimg.com=media", "*.twimg.com", "media")],
)
def test_host_spec(spec: str, pattern: str, cls: str) -> None:
    assert platforms.parse_host_spec(spec) == platforms.HostSpec(pattern, cls)


@pytest.mark.parametrize(
    "spec", ["*t.co=links", "*.com=media", "co=text", "t.co", "=x", "a.b=Bad!"]
)
def test_bad_host_specs(spec: str) -> None:
    with pytest.raises((InputError, PatternError)):
        platforms.parse_host_spec(spec)


def test_tokens_stored_hashed_and_checked(db) -> None:  # type: ignore[no-untyped-def]
    pid, secret, token = make_platform(db)
    with db.reading() as s:
        stored = list(s.scalars(select(PlatformToken.token_hash)))
        assert stored == [platforms.hash_token(token)] and token not in stored
        assert s.scalar(select(Platform.webhook_secret)) == secret
        assert platforms.authenticate(s, token) == pid
        for bad in (None, "", token + "x", token[:-1]):
            with pytest.raises(AuthError):
                platforms.authenticate(s, bad)
    new = platforms.issue_token(db, "twitter", now=START, actor="t", revoke_others=True)
    with db.reading() as s:
        with pytest.raises(AuthError):
            platforms.authenticate(s, token)
        assert platforms.authenticate(s, new) == pid


def test_rotate_key_and_duplicates(db) -> None:  # type: ignore[no-untyped-def]
    _pid, secret, _ = make_platform(db)
    new = platforms.rotate_key(db, "twitter", now=START, actor="t")
    assert new != secret
    with db.reading() as s:
        assert s.scalar(select(Platform.webhook_secret)) == new
    with pytest.raises(Conflict):
        make_platform(db)
    [info] = platforms.list_platforms(db)
    assert info.tokens == 1 and [h.pattern for h in info.hosts] == ["twitter.com", "*.twimg.com"]
    with pytest.raises(InputError):
        platforms.add_platform(
            db, "Bad Slug", name="x", notice_url=None, hosts=[], now=START, actor="t"
        )
    with pytest.raises(InputError):
        platforms.add_platform(
            db, "x", name="x", notice_url="ftp://x", hosts=[], now=START, actor="t"
        )
