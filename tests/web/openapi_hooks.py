"""Schemathesis hooks for tests/web/test_openapi_contract.py: cases the contract cannot
rule out in OpenAPI terms but documents in prose are not generated as valid requests.

- ``/public/lookup``: exactly one of ``host`` and ``decision``; ``/public/appeals/new``:
  exactly one of ``measure`` and ``item`` (OpenAPI cannot relate two query parameters);
- ``/api/platform/responses``: a ``key`` used twice in one batch is refused (JSON Schema
  cannot say that a property is unique across the items of an array).

Each is filtered from generation only; the server still refuses them (422), as the
operations' descriptions say, and tests/web cover those refusals.
"""

from __future__ import annotations

from typing import Any

import schemathesis

_ONE_OF = {
    "/public/lookup": ("host", "decision"),
    "/public/appeals/new": ("measure", "item"),
}


@schemathesis.hook
def filter_case(context: Any, case: Any) -> bool:
    path = case.operation.path
    if path in _ONE_OF:
        query = case.query or {}
        given = [name for name in _ONE_OF[path] if query.get(name) not in (None, "")]
        return len(given) == 1
    if path == "/api/platform/responses" and isinstance(case.body, dict):
        items = case.body.get("responses")
        if isinstance(items, list):
            keys = [
                r["key"].strip()
                for r in items
                if isinstance(r, dict) and isinstance(r.get("key"), str) and r["key"].strip()
            ]
            return len(keys) == len(set(keys))
    return True
