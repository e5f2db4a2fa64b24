"""The OpenAPI document as a contract: what every route shares in it.

- ``errors_doc(401, 404, ...)``: the error statuses a route can send, each with the one
  error model (``models.ErrorBody``, ``{"error", "where"}``) and an example;
- the two bearer security schemes, ``platformToken`` and ``staffToken``, as dependencies
  that only declare the scheme (the token checks stay in ``deps`` and ``regulator_api``:
  401 is still ``{"error", "where": "Authorization"}`` with ``WWW-Authenticate: Bearer``);
- ``api_fields({...})``: errors raised by library functions name a CLI flag or argument
  (``--platform``, ``ID``); a route renames them to its own request fields;
- the request bodies that routes read themselves (to refuse oversized or malformed bodies
  before parsing them) as JSON Schemas under ``components/schemas`` (``body_doc``);
- ``install(app)``: the document, with those schemas and the notice webhook
  (``Takedown-Signature``, ``Idempotency-Key``) that platforms receive.

Operation ids are the route functions' names (``operation_id``), unique across the app.

Example::

    @router.get("/x/{x_id}", response_model=X, responses=errors_doc(401, 404, 422))
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from fastapi.security import HTTPBearer

from takedown.errors import TakedownError
from takedown.web.models import ErrorBody
from takedown.web.webhook_doc import NOTICE_SCHEMA, WEBHOOKS

# --- security -------------------------------------------------------------------------------

platform_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="platformToken",
    description="A platform's API token (`takedown platform token issue SLUG`).",
)
staff_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="staffToken",
    description="A staff account's API token (`takedown api-token issue NAME`).",
)

operator_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="operatorToken",
    description="A network operator's report token (`takedown operator add NAME`); every "
    "report is also signed (`Takedown-Signature`).",
)


# A measure's legal basis as the examples of the public and the regulator APIs show it.
LEGAL_BASIS_EXAMPLE: dict[str, Any] = {
    "items": 620,
    "by_category": {"drugs": 620},
    "decisions_total": 1,
    "decisions": [
        {
            "decision": "RKN-1",
            "authority": "Roskomnadzor",
            "date": "2021-03-01",
            "items": 620,
            "by_category": {"drugs": 620},
        }
    ],
}


# --- errors ---------------------------------------------------------------------------------

_ERRORS: dict[int, tuple[str, dict[str, Any]]] = {
    400: ("Malformed JSON body.", {"error": "malformed JSON: Expecting value", "where": "body"}),
    401: (
        "No bearer token, or not a valid one for this API.",
        {"error": "invalid token", "where": "Authorization"},
    ),
    403: (
        "Not allowed: the account's role, the four-eyes rule, or a cross-site form.",
        {"error": "bob proposed measure 3; four eyes", "where": "account"},
    ),
    404: (
        "No such object (or not one the caller may see).",
        {"error": "no notice 7", "where": "notice_id"},
    ),
    409: (
        "The request contradicts the recorded state.",
        {"error": "measure 3 is active; there is nothing to approve", "where": "measure_id"},
    ),
    413: ("Body too large.", {"error": "body larger than 8388608 bytes", "where": "body"}),
    415: (
        "Body not of the documented content type.",
        {"error": "send the form as application/x-www-form-urlencoded", "where": "Content-Type"},
    ),
    422: (
        "A field, parameter or header is invalid.",
        {"error": "unknown action 'gone'", "where": "action"},
    ),
    429: (
        "Too many requests from this address (see Retry-After).",
        {"error": "too many requests from this address", "where": "public"},
    ),
    503: (
        "The public pages are busy (see Retry-After).",
        {"error": "the public pages are busy; try again shortly", "where": "public"},
    ),
}
_RETRY_AFTER = {
    "Retry-After": {"description": "whole seconds to wait", "schema": {"type": "integer"}}
}
_AUTHENTICATE = {
    "WWW-Authenticate": {"description": "the scheme to use", "schema": {"type": "string"}}
}
HTML = {"text/html": {"schema": {"type": "string"}}}
PUBLIC_ERRORS = (422, 429, 503)  # what any public page may answer (web.guard, format=)


def errors_doc(*statuses: int, html: bool = False) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for the error ``statuses``: the error model, an example, and for the
    public pages that answer errors as pages (``html``) a ``text/html`` alternative."""
    out: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        description, sample = _ERRORS[status]
        content: dict[str, Any] = {"application/json": {"example": sample}}
        if html:
            content.update(HTML)
        doc: dict[str, Any] = {"model": ErrorBody, "description": description, "content": content}
        if status == 401:
            doc["headers"] = _AUTHENTICATE
        if status in (429, 503):
            doc["headers"] = _RETRY_AFTER
        out[status] = doc
    return out


def ok_doc(sample: Any, *, status: int = 200, html: bool = False) -> dict[int | str, Any]:
    """``responses=`` entry with the example of a route's success answer."""
    content: dict[str, Any] = {"application/json": {"example": example(sample)}}
    if html:
        content.update(HTML)
    return {status: {"content": content}}


def page_doc(model: type[Any], sample: Any, *, status: int = 200) -> dict[int | str, Any]:
    """``responses=`` entry of a public page: ``model`` as JSON (``?format=json`` or
    ``Accept: application/json``), else the HTML page."""
    return {
        status: {
            "model": model,
            "description": "The page, or its JSON twin.",
            "content": {"application/json": {"example": example(sample)}, **HTML},
        }
    }


FORMAT_DOC = "json: the page's JSON twin (as `Accept: application/json`); html: the page"


@contextlib.contextmanager
def api_fields(names: dict[str | None, str]) -> Iterator[None]:
    """Rename the ``where`` of an error raised inside to the API's own field name (library
    functions name the CLI's flags and arguments: ``--platform``, ``ID``)."""
    try:
        yield
    except TakedownError as exc:
        if exc.where in names:
            exc.where = names[exc.where]
        raise


def operation_id(route: APIRoute) -> str:
    """A route's operationId: its function's name (stable, unique across the app)."""
    return route.name


# --- request bodies read by the routes themselves -------------------------------------------

RECEIPT_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"  # appeals.receipt_digest
ROW_ID = {"type": "integer", "minimum": 1, "maximum": 2**31 - 1}
# 1..2^31-1 written in decimal (a form or a query sends text)
_ROW_ID_DIGITS = (
    r"0*([1-9][0-9]{0,8}|1[0-9]{9}|20[0-9]{8}|21[0-3][0-9]{7}|214[0-6][0-9]{6}"
    r"|2147[0-3][0-9]{5}|21474[0-7][0-9]{4}|214748[0-2][0-9]{3}|2147483[0-5][0-9]{2}"
    r"|21474836[0-3][0-9]|214748364[0-7])"
)
ROW_ID_TEXT = rf"^\s*{_ROW_ID_DIGITS}\s*$"  # a form field: white space around allowed
ROW_ID_QUERY = rf"^({_ROW_ID_DIGITS})?$"  # a query parameter: empty is absent
# Appeal text (``appeals.check_filing``): stripped of white space at both ends, then no
# control characters but tab and line breaks (grounds, not blank) or none (contact).
_CC = r"\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f"
TEXT_LINES = rf"^\s*[^{_CC}]*[^\s{_CC}][^{_CC}]*\s*$"
TEXT_LINE = r"^\s*[^\x00-\x1f\x7f-\x9f]*\s*$"
NOT_BLANK = r"\S"
NO_NUL = r"^[^\x00]*$"  # PostgreSQL text holds no NUL
NOT_BLANK_NO_NUL = r"^[^\x00]*[^\s\x00][^\x00]*$"

_FORM_ID = {"type": "string", "pattern": ROW_ID_TEXT}
# a host name as the lookup takes it (LDH and "_" labels; ``match.matcher.normalised_query``
# also takes internationalised names, which no pattern here tells from invalid ones)
_LABEL = r"[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
HOST_NAME = rf"^\s*{_LABEL}(\.{_LABEL})*\.?\s*$"
_RESPONSE_TEXT = {"type": ["string", "null"], "maxLength": 4000, "pattern": NO_NUL}
_RESPONSE_KEY = {
    "type": ["string", "null"],
    "maxLength": 200,
    "pattern": NO_NUL,
    "description": "client key: a repeat with the same key is not stored twice",
}
_DONE = {
    "type": "object",
    "properties": {
        "action": {"enum": ["removed", "restricted", "needs_info"]},
        "reason": _RESPONSE_TEXT,
        "policy": _RESPONSE_TEXT,
        "key": _RESPONSE_KEY,
    },
    "required": ["action"],
    "additionalProperties": False,
}
_REJECTED = {
    "type": "object",
    "properties": {
        "action": {"const": "rejected"},
        "reason": {"type": "string", "maxLength": 4000, "pattern": NOT_BLANK_NO_NUL},
        "policy": {"type": "string", "maxLength": 4000, "pattern": NOT_BLANK_NO_NUL},
        "key": _RESPONSE_KEY,
    },
    "required": ["action", "reason", "policy"],
    "additionalProperties": False,
    "description": "a rejection names the reason and the platform policy it relies on",
}


def _with_item(variant: dict[str, Any]) -> dict[str, Any]:
    return {
        **variant,
        "properties": {"item_id": ROW_ID, **variant["properties"]},
        "required": ["item_id", *variant["required"]],
    }


REQUEST_SCHEMAS: dict[str, dict[str, Any]] = {
    "ItemResponse": {
        "title": "ItemResponse",
        "description": "The platform's answer for one item (the item is the URL's).",
        "oneOf": [_DONE, _REJECTED],
        "examples": [{"action": "removed"}],
    },
    "BatchResponses": {
        "title": "BatchResponses",
        "description": "Answers for many items, stored all or nothing. Keys are unique "
        "within a request.",
        "type": "object",
        "properties": {
            "responses": {
                "type": "array",
                "minItems": 1,
                "maxItems": 5000,
                "items": {"oneOf": [_with_item(_DONE), _with_item(_REJECTED)]},
            }
        },
        "required": ["responses"],
        "examples": [
            {
                "responses": [
                    {"item_id": 42, "action": "removed"},
                    {"item_id": 43, "action": "rejected", "reason": "satire", "policy": "ToS 4.2"},
                ]
            }
        ],
    },
    "PlatformAppeal": {
        "title": "PlatformAppeal",
        "description": "An appeal by the platform against one measure on it or one of its "
        "items (exactly one of them).",
        "type": "object",
        "properties": {
            "measure_id": {"oneOf": [ROW_ID, {"type": "null"}]},
            "item_id": {"oneOf": [ROW_ID, {"type": "null"}]},
            "appellant": {"const": "platform"},
            "grounds": {"type": "string", "maxLength": 5000, "pattern": TEXT_LINES},
            "contact": {
                "type": ["string", "null"],
                "maxLength": 500,
                "pattern": TEXT_LINE,
                "description": "whom the regulator may reach; never public",
            },
        },
        "required": ["grounds"],
        "oneOf": [
            {
                "required": ["measure_id"],
                "properties": {"measure_id": ROW_ID, "item_id": {"type": "null"}},
            },
            {
                "required": ["item_id"],
                "properties": {"item_id": ROW_ID, "measure_id": {"type": "null"}},
            },
        ],
        "examples": [
            {"measure_id": 3, "grounds": "the listed posts are gone", "contact": "legal@x.example"}
        ],
    },
    "PointReport": {
        "title": "PointReport",
        "description": "An enforcement point's report (takedown.fleet.reports), signed with "
        "Ed25519 over `<t>.<body>` by the key derived from the operator's token.",
        "type": "object",
        "properties": {
            "operator": {"type": "string", "pattern": "^[a-z0-9][a-z0-9-]{0,63}$"},
            "point_id": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._:-]{0,99}$"},
            "sent_at": {"type": "string", "format": "date-time"},
            "sequence": {"type": ["integer", "null"], "minimum": 0},
            "set_age_seconds": {"type": ["number", "null"]},
            "fail_open": {"type": "boolean"},
            "fail_open_reason": {"type": "string", "maxLength": 1000},
            "directives": {
                "type": "array",
                "maxItems": 10000,
                "items": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "string", "minLength": 1, "maxLength": 200},
                        "measure_id": {"type": ["integer", "null"], "minimum": 0},
                        "flows": {"type": "integer", "minimum": 0},
                        "bytes": {"type": "integer", "minimum": 0},
                    },
                    "required": ["id", "flows", "bytes"],
                    "additionalProperties": False,
                },
            },
        },
        "required": ["operator", "point_id", "sent_at", "fail_open"],
        "additionalProperties": False,
        "examples": [
            {
                "operator": "rostelecom",
                "point_id": "msk-1",
                "sent_at": "2021-03-12T10:00:00Z",
                "sequence": 12,
                "set_age_seconds": 42.0,
                "fail_open": False,
                "fail_open_reason": "",
                "directives": [{"id": "m3", "measure_id": 3, "flows": 120, "bytes": 5400000}],
            }
        ],
    },
    "ReportedMatches": {
        "title": "ReportedMatches",
        "description": "Re-uploads of the platform's listed items it found with the shared "
        "hashes and acted on; each counts as a removed re-upload. Stored all or nothing; a "
        "repeated key is not stored twice.",
        "type": "object",
        "properties": {
            "matches": {
                "type": "array",
                "minItems": 1,
                "maxItems": 5000,
                "items": {
                    "type": "object",
                    "properties": {
                        "item_id": ROW_ID,
                        "action": {"enum": ["removed", "restricted"]},
                        "signal_type": {"const": "pdq"},
                        "hash": {
                            "type": ["string", "null"],
                            "pattern": "^[0-9A-Fa-f]{64}$",
                            "description": "the PDQ hash of the media acted on",
                        },
                        "url": {
                            "type": ["string", "null"],
                            "maxLength": 8000,
                            "pattern": NOT_BLANK_NO_NUL,
                            "description": "where the re-upload was",
                        },
                        "key": {
                            "type": ["string", "null"],
                            "maxLength": 200,
                            "pattern": NOT_BLANK_NO_NUL,
                            "description": "client key: a repeat with the same key is not "
                            "stored twice",
                        },
                    },
                    "required": ["item_id", "action"],
                    "additionalProperties": False,
                },
            }
        },
        "required": ["matches"],
        "additionalProperties": False,
        "examples": [
            {
                "matches": [
                    {
                        "item_id": 42,
                        "action": "removed",
                        "signal_type": "pdq",
                        "hash": "72069555782808fbd585849b05e87e1da7b5af52b0748c3e3bf88330fb1e751b",
                        "url": "https://twitter.com/other/status/9",
                        "key": "m-1",
                    }
                ]
            }
        ],
    },
    "Rejection": {
        "title": "Rejection",
        "type": "object",
        "properties": {"reason": {"type": "string", "pattern": NOT_BLANK_NO_NUL}},
        "required": ["reason"],
        "examples": [{"reason": "figures stale"}],
    },
    "AppealFiling": {
        "title": "AppealFiling",
        "description": "The public appeal form, exactly one of measure_id and item_id; "
        "other fields are ignored (at most 20 in all).",
        "type": "object",
        "properties": {
            "measure_id": {"type": "string"},
            "item_id": {"type": "string"},
            "appellant": {"enum": ["platform", "author", "user", "other"]},
            "grounds": {"type": "string", "maxLength": 5000, "pattern": TEXT_LINES},
            "contact": {"type": "string", "maxLength": 500, "pattern": TEXT_LINE},
        },
        "required": ["appellant", "grounds"],
        "maxProperties": 20,
        "oneOf": [  # an empty field is not given
            {
                "required": ["measure_id"],
                "properties": {"measure_id": _FORM_ID, "item_id": {"const": ""}},
            },
            {
                "required": ["item_id"],
                "properties": {"item_id": _FORM_ID, "measure_id": {"const": ""}},
            },
        ],
        "examples": [{"measure_id": "3", "appellant": "user", "grounds": "My site is slowed"}],
    },
}


def body_doc(schema: str, media_type: str = "application/json") -> dict[str, Any]:
    """``openapi_extra=`` declaring a request body the route reads itself."""
    sample = REQUEST_SCHEMAS[schema]["examples"][0]
    return {
        "requestBody": {
            "required": True,
            "content": {
                media_type: {
                    "schema": {"$ref": f"#/components/schemas/{schema}"},
                    "example": example(sample),
                }
            },
        }
    }


IDEMPOTENCY_KEY_DOC = (
    "Makes the request safe to repeat: responses are stored once per key (the n-th of a "
    "batch as `KEY#n` unless it carries its own `key`); a repeat with other content is 409."
)


# --- the document ---------------------------------------------------------------------------


def install(app: FastAPI) -> None:
    """Make ``app.openapi()`` the contract: FastAPI's document plus the request schemas
    the routes read themselves and the notice webhook."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            schemas = doc.setdefault("components", {}).setdefault("schemas", {})
            clash = set(schemas) & {*REQUEST_SCHEMAS, "NoticeDocument"}
            if clash:  # a response model of the same name would be replaced
                raise RuntimeError(f"schema names used twice: {sorted(clash)}")
            schemas.update(REQUEST_SCHEMAS)
            schemas["NoticeDocument"] = NOTICE_SCHEMA
            doc["webhooks"] = WEBHOOKS
            doc = _with_examples(doc)
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


# FastAPI drops every None from the document, which would leave examples without their
# null fields (no longer valid by their schemas): routes hold a reference to each example,
# put back as written once the document is built.
_EXAMPLE_REF = "x-takedown-example"
_EXAMPLES: list[Any] = []


def example(value: Any) -> dict[str, int]:
    """A stand-in for ``value`` in ``responses=``/``openapi_extra=`` (see ``install``)."""
    _EXAMPLES.append(value)
    return {_EXAMPLE_REF: len(_EXAMPLES) - 1}


def _with_examples(node: Any) -> Any:
    if isinstance(node, dict):
        if set(node) == {_EXAMPLE_REF}:
            return _EXAMPLES[node[_EXAMPLE_REF]]
        return {k: _with_examples(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_with_examples(v) for v in node]
    return node
