"""The OpenAPI document as a contract: schemathesis (every check) against the app as
``takedown serve`` builds it, on a real uvicorn server on loopback over a seeded database,
once with a platform's token, once with a staff token and once for the public JSON; and
the document itself (valid OpenAPI, security, errors, examples, operationIds)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from notices.support import ServerThread
from openapi_spec_validator import validate
from referencing.jsonschema import DRAFT202012 as DRAFT

from takedown.clock import SimClock
from takedown.fleet import store as fleet
from takedown.notices import outbox
from takedown.store.db import Database
from takedown.store.migrate import upgrade
from takedown.web.app import AppSettings, build
from takedown.web.guard import PublicLimits
from tests import staff
from tests.appeals_support import START, make_world
from tests.conftest import _truncate_all as truncate_all
from tests.web.webapp import takedown

HERE = Path(__file__).resolve().parent
NOW = START + timedelta(days=2)
MAX_EXAMPLES = 25
SEED = 20210310


@dataclass
class Served:
    url: str
    platform_token: str
    staff_token: str
    workdir: Path
    db_url: str
    operator_token: str = ""


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    """A seeded database (two platforms with tokens, staff with tokens, items, measures,
    notices) behind the whole app on 127.0.0.1, on SQLite and PostgreSQL. The public limits
    are lifted: the fuzzer would meet 429s long before it met anything else (they are
    documented)."""
    work = tmp_path_factory.mktemp("openapi")
    if request.param == "sqlite":
        url = f"sqlite:///{work / 'takedown.db'}"
        db = Database(url)
        upgrade(db)
    else:
        url = request.getfixturevalue("pg_database")
        db = Database(url)
        request.addfinalizer(lambda: truncate_all(Database(url)))
    world = make_world(db)
    outbox.send(db, now=START + timedelta(hours=2), actor="test")
    staff_token = staff.token(db, "erin", "approver", now=START)
    _, operator_token = fleet.add_operator(db, "rostelecom", now=START, actor=staff.BOOTSTRAP)
    limits = PublicLimits(concurrency=64, rate=0, filings_per_hour=0)
    app = build(AppSettings(db=db, clock=SimClock(NOW), public_limits=limits))
    with ServerThread(app) as server:
        yield Served(server.url, world.twitter_token, staff_token, work, url, operator_token)
    db.close()


def schemathesis(served: Served, name: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``st run`` (every check, bounded and deterministic) against the served schema."""
    report = served.workdir / f"{name}.ndjson"
    cmd = [
        sys.executable,
        "-c",
        "from schemathesis.cli import schemathesis; schemathesis()",
        "run",
        f"{served.url}/openapi.json",
        "--checks",
        "all",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--seed",
        str(SEED),
        "--generation-deterministic",
        # one worker: ast.parse in concurrent threads (hypothesis describing a filter) can
        # fail on CPython 3.11.7 with "AST constructor recursion depth mismatch"
        "--workers",
        "1",
        "--no-color",
        "--request-timeout",
        "20",
        "--report",
        "ndjson",
        "--report-ndjson-path",
        str(report),
        "--continue-on-failure",
        *args,
    ]
    env = {
        **os.environ,
        "NO_COLOR": "1",
        "SCHEMATHESIS_HOOKS": "openapi_hooks",
        "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
    }
    return subprocess.run(
        cmd, capture_output=True, text=True, timeout=900, check=False, env=env, cwd=served.workdir
    )


def _assert_clean(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, result.stdout[-20000:] + result.stderr[-5000:]


@pytest.mark.slow
def test_platform_api_contract(served: Served) -> None:
    result = schemathesis(
        served,
        "platform",
        "--include-tag",
        "platform",
        "--header",
        f"Authorization: Bearer {served.platform_token}",
    )
    _assert_clean(result)


@pytest.mark.slow
def test_regulator_api_contract(served: Served) -> None:
    result = schemathesis(
        served,
        "staff",
        "--include-tag",
        "regulator",
        "--header",
        f"Authorization: Bearer {served.staff_token}",
    )
    _assert_clean(result)


@pytest.mark.slow
def test_operator_api_contract(served: Served) -> None:
    """Unsigned or badly signed reports are what a fuzzer sends: each is refused with the
    error model (tests/fleet cover the signed ones)."""
    result = schemathesis(
        served,
        "operator",
        "--include-tag",
        "operator",
        "--header",
        f"Authorization: Bearer {served.operator_token}",
    )
    _assert_clean(result)


@pytest.mark.slow
def test_public_json_contract(served: Served) -> None:
    result = schemathesis(served, "public", "--include-tag", "public")
    _assert_clean(result)


# --- the document ---------------------------------------------------------------------------

METHODS = ("get", "put", "post", "delete", "patch")


@pytest.fixture(scope="module")
def document(served: Served) -> dict[str, Any]:
    """The document as served."""
    r = httpx.get(f"{served.url}/openapi.json", timeout=30)
    assert r.status_code == 200
    return r.json()


def operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in doc["paths"].items():
        for method in METHODS:
            if method in item:
                yield path, method, item[method]


def test_the_document_is_valid_openapi(document: dict[str, Any]) -> None:
    validate(document)
    assert document["openapi"].startswith("3.1")
    schemes = document["components"]["securitySchemes"]
    assert schemes["platformToken"] == schemes["platformToken"] | {
        "type": "http",
        "scheme": "bearer",
    }
    assert schemes["staffToken"] == schemes["staffToken"] | {"type": "http", "scheme": "bearer"}
    assert schemes["operatorToken"] == schemes["operatorToken"] | {
        "type": "http",
        "scheme": "bearer",
    }


def test_the_console_and_mounts_are_not_in_the_contract(document: dict[str, Any]) -> None:
    paths = set(document["paths"])
    assert not [p for p in paths if p.startswith(("/console", "/metrics", "/feed", "/static"))]
    assert "/healthz" not in paths
    assert {p.split("/")[1] for p in paths} == {"api", "public"}


def test_every_operation_is_documented_as_a_contract(document: dict[str, Any]) -> None:
    ids = []
    for path, method, op in operations(document):
        label = f"{method.upper()} {path}"
        ids.append(op.get("operationId"))
        assert op.get("operationId"), label
        security = op.get("security")
        if path.startswith("/api/platform/"):
            assert security == [{"platformToken": []}], label
        elif path == "/api/operators/reports":
            assert security == [{"operatorToken": []}], label
        elif path.startswith("/api/"):
            assert security == [{"staffToken": []}], label
        else:
            assert path.startswith("/public") and not security, label
        responses = op["responses"]
        errors = [s for s in responses if s.startswith(("4", "5"))]
        assert "422" in errors, label
        if security:
            assert "401" in errors, label
            assert "WWW-Authenticate" in responses["401"]["headers"], label
        else:
            assert {"429", "503"} <= set(errors), label
        for status in errors:
            body = responses[status]["content"]["application/json"]
            assert body["schema"] == {"$ref": "#/components/schemas/ErrorBody"}, (label, status)
            assert set(body["example"]) == {"error", "where"}, (label, status)
        [ok] = [s for s in responses if s.startswith("2")]
        success = responses[ok]["content"]["application/json"]
        assert success["schema"] and "example" in success, label
        assert success["schema"] != {}, label
        if "requestBody" in op:
            [content] = op["requestBody"]["content"].values()
            assert "example" in content, label
        for param in op.get("parameters", []):
            if param["in"] == "path":
                assert param["schema"].get("examples"), (label, param["name"])
    assert len(ids) == len(set(ids)), "operationIds are unique"


def test_examples_match_their_schemas(document: dict[str, Any]) -> None:
    """Each example, request and response, is valid by the schema beside it."""
    from jsonschema import Draft202012Validator
    from referencing import Registry, Resource

    registry = Registry().with_resource(
        "urn:doc", Resource.from_contents(document, default_specification=DRAFT)
    )

    def check(schema: dict[str, Any], example: Any, label: str) -> None:
        resolved = json.loads(json.dumps(schema).replace('"#/', '"urn:doc#/'))
        errors = list(Draft202012Validator(resolved, registry=registry).iter_errors(example))
        assert not errors, (label, [e.message for e in errors][:3])

    for path, method, op in operations(document):
        label = f"{method.upper()} {path}"
        for status, response in op["responses"].items():
            for media, content in response.get("content", {}).items():
                if "example" in content:
                    check(content["schema"], content["example"], f"{label} {status} {media}")
        for content in op.get("requestBody", {}).get("content", {}).values():
            check(content["schema"], content["example"], f"{label} body")


def test_the_notice_webhook_is_declared(document: dict[str, Any]) -> None:
    hook = document["webhooks"]["notice"]["post"]
    headers = {p["name"] for p in hook["parameters"] if p["in"] == "header"}
    assert headers == {"Takedown-Signature", "Idempotency-Key"}
    for path in ("/api/platform/items/{item_id}/response", "/api/platform/responses"):
        params = document["paths"][path]["post"]["parameters"]
        assert "Idempotency-Key" in {p["name"] for p in params if p["in"] == "header"}


# --- errors name the request's fields -------------------------------------------------------


def test_api_errors_name_request_fields_never_cli_flags(served: Served) -> None:
    staff_auth = {"Authorization": f"Bearer {served.staff_token}"}
    platform_auth = {"Authorization": f"Bearer {served.platform_token}"}
    with httpx.Client(base_url=served.url, timeout=30) as c:
        cases = [
            (
                c.get("/api/status", params={"platform": "nope"}, headers=staff_auth),
                404,
                "platform",
            ),
            (
                c.get("/api/measures", params={"platform": "no"}, headers=staff_auth),
                404,
                "platform",
            ),
            (c.get("/api/status", params={"at": "May 17"}, headers=staff_auth), 422, "at"),
            (c.get("/api/measures", params={"state": "on"}, headers=staff_auth), 422, "state"),
            (c.post("/api/measures/9999/approve", headers=staff_auth), 404, "measure_id"),
            (c.get("/api/measures/9999", headers=staff_auth), 404, "measure_id"),
            (c.get("/api/items/9999", headers=staff_auth), 404, "item_id"),
            (c.get("/api/platform/notices/9999", headers=platform_auth), 404, "notice_id"),
            (c.post("/api/platform/notices/9999/ack", headers=platform_auth), 404, "notice_id"),
            (c.get("/api/platform/notices?limit=0", headers=platform_auth), 422, "limit"),
            (
                c.post(
                    "/api/platform/responses",
                    json={"responses": [{"item_id": 1, "action": "removed"}]},
                    headers={**platform_auth, "Idempotency-Key": "k" * 151},
                ),
                422,
                "Idempotency-Key",
            ),
            (c.get("/public/measures/9999", params={"format": "json"}), 404, "measure_id"),
            (c.get("/public/lookup", params={"format": "xml"}), 422, "format"),
        ]
        for r, status, where in cases:
            assert (r.status_code, r.json()) == (status, r.json() | {"where": where}), r.url
            assert set(r.json()) == {"error", "where"}


def test_unknown_paths_and_methods_answer_the_error_model(served: Served) -> None:
    with httpx.Client(base_url=served.url, timeout=30) as c:
        missing = c.get("/api/nothing-here")
        assert missing.status_code == 404
        assert missing.json() == {"error": "not found", "where": "path"}
        wrong = c.delete("/api/status")
        assert wrong.status_code == 405 and wrong.headers["allow"] == "GET"
        assert wrong.json() == {"error": "method not allowed", "where": "method"}
        page = c.get("/console/login")  # the console keeps its HTML
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")


def test_the_cli_still_names_its_flags(served: Served) -> None:
    result = takedown(served.db_url, "status", "--platform", "nope")
    assert result.returncode != 0
    assert "--platform" in result.stderr
