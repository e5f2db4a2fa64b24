"""Fixtures of the prober tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import trustme

HOST = "pbs.twimg.com"  # the logical media host the TLS tests name


@pytest.fixture(scope="module")
def tls() -> Iterator[tuple[trustme.CA, str]]:
    """A CA and a PEM file (key + chain) for ``HOST`` issued by it."""
    ca = trustme.CA()
    cert = ca.issue_cert(HOST)
    with cert.private_key_and_cert_chain_pem.tempfile() as pem:
        yield ca, pem
