"""The notice webhook in the OpenAPI document: what a platform's notice URL receives (the
notice document, its headers and signature), which FastAPI cannot derive from a route."""

from __future__ import annotations

_NOTICE_EXAMPLE = {
    "notice_id": 7,
    "platform": "twitter",
    "kind": "initial",
    "issued_at": "2021-03-10T02:00:00+00:00",
    "deadline_at": "2021-03-11T02:00:00+00:00",
    "items": [
        {
            "id": 42,
            "target": "https://twitter.com/someone/status/1",
            "kind": "url",
            "category": "drugs",
            "basis": "149-FZ art. 15.1",
            "decision": {"reference": "RKN-1", "authority": "Roskomnadzor", "date": "2021-03-01"},
        }
    ],
}
NOTICE_SCHEMA = {
    "title": "NoticeDocument",
    "type": "object",
    "properties": {
        "notice_id": {"type": "integer"},
        "platform": {"type": "string"},
        "kind": {"enum": ["initial", "repeat"]},
        "issued_at": {"type": "string", "format": "date-time"},
        "deadline_at": {"type": "string", "format": "date-time"},
        "items": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "id": {"type": "integer"},
                    "target": {"type": "string"},
                    "kind": {"enum": ["url", "domain", "wildcard", "ip", "cidr"]},
                    "category": {"type": "string"},
                    "basis": {"type": "string"},
                    "decision": {
                        "type": "object",
                        "properties": {
                            "reference": {"type": "string"},
                            "authority": {"type": "string"},
                            "date": {"type": "string"},
                        },
                    },
                },
            },
        },
    },
    "required": ["notice_id", "platform", "kind", "issued_at", "deadline_at", "items"],
}
WEBHOOKS = {
    "notice": {
        "post": {
            "operationId": "notice_webhook",
            "summary": "A notice, POSTed to the platform's notice URL",
            "description": "Delivered at least once; act on each `Idempotency-Key` once. "
            "Verify `Takedown-Signature` over the raw body before parsing it: "
            "`t=<unix seconds>,v1=<hex HMAC-SHA256(secret, t + '.' + body)>`, and refuse a "
            "`t` more than 300 s from your clock.",
            "parameters": [
                {
                    "name": "Takedown-Signature",
                    "in": "header",
                    "required": True,
                    "schema": {"type": "string", "pattern": r"^t=[0-9]+(,v1=[0-9a-f]{64})+$"},
                    "example": "t=1615341600,v1=" + "0" * 64,
                },
                {
                    "name": "Idempotency-Key",
                    "in": "header",
                    "required": True,
                    "description": "the notice's id",
                    "schema": {"type": "string"},
                    "example": "7",
                },
            ],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {"$ref": "#/components/schemas/NoticeDocument"},
                        "example": _NOTICE_EXAMPLE,
                    }
                },
            },
            "responses": {
                "200": {"description": "Received (any 2xx will do)."},
                "401": {"description": "Signature refused; the notice is sent again later."},
            },
        }
    }
}
