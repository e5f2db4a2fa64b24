"""Fixtures the enforcement-point tests share: a trustme CA and a TLS/HTTP origin server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from test_server_support import CA, Origin, make_ca


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> CA:
    return make_ca(str(tmp_path_factory.mktemp("ca")))


@pytest.fixture(scope="module")
def origin(ca: CA) -> Iterator[Origin]:
    o = Origin(ca).start()
    yield o
    o.stop()
