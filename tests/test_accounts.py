"""Token hashing and the constant-time check shared by staff and platform tokens."""

from __future__ import annotations

import hashlib

import pytest

from takedown import accounts, platforms
from takedown.errors import AuthError


def test_a_token_is_stored_as_its_sha256() -> None:
    assert accounts.hash_token("tdr_x") == hashlib.sha256(b"tdr_x").hexdigest()
    assert platforms.hash_token is accounts.hash_token  # one home for both kinds


def test_digest_matches_only_a_stored_equal_digest() -> None:
    d = accounts.hash_token("secret")
    assert accounts.digest_matches(d, d)
    assert not accounts.digest_matches(accounts.hash_token("other"), d)
    assert not accounts.digest_matches(None, d)  # no row: still compared, never a match
    assert not accounts.digest_matches(None, "0" * 64)


@pytest.mark.parametrize("token", [None, ""])
def test_a_missing_token_is_refused(token: str | None) -> None:
    with pytest.raises(AuthError, match="missing bearer token"):
        accounts.presented_digest(token)
