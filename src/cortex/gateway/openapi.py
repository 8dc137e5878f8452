"""The gateway's OpenAPI 3.1 document (DESIGN §2), served at ``GET /openapi.json``.

It is data, written by hand next to the routes it describes, and checked against them by
schemathesis (``tests/gateway/test_openapi.py``): every route, parameter and answer the gateway
gives is listed here, each error with the same ``{"error": string}`` body.

An API's endpoint (``networking.endpoint``, by default ``/<name>``) is one path parameter; a nested
endpoint such as ``team/nested`` is sent either as it is or with its slashes encoded (``%2F``),
which the gateway decodes before routing.
"""

from __future__ import annotations

import copy
from typing import Any

from cortex import __version__
from cortex.ids import ID_PATTERN
from cortex.requests import ErrorKind, Status

#: where the gateway serves the document
OPENAPI_PATH = "/openapi.json"
#: the shapes of the submission's optional headers, documented here and enforced by the gateway:
#: visible ASCII (HTTP trims the spaces around a header's value, so none may start or end it)
IDEMPOTENCY_KEY_PATTERN = r"^[!-~]([ -~]{0,253}[!-~])?$"
WEBHOOK_URL_PATTERN = r"^https?://[!-.0-~][!-~]*$"  # a host after the scheme: the first character is no '/'
MAX_WEBHOOK_URL = 2048

_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "string", "description": "What was wrong, and what to do about it."}},
}

_SUBMITTED = {
    "type": "object",
    "required": ["id"],
    "properties": {"id": {"$ref": "#/components/schemas/RequestId"}},
    "additionalProperties": False,
}

_TIMESTAMP = {"type": "string", "format": "date-time", "description": "RFC 3339, UTC"}

_REQUEST = {
    "type": "object",
    "required": ["id", "status", "created_at", "expires_at", "attempts"],
    "properties": {
        "id": {"$ref": "#/components/schemas/RequestId"},
        "status": {"type": "string", "enum": [status.value for status in Status]},
        "result": {"description": "Exactly the JSON the user server answered (any JSON value); when completed."},
        "timestamp": {**_TIMESTAMP, "description": "When it completed (RFC 3339, UTC, seconds); when completed."},
        "error": {
            "type": "object",
            "description": "Why it failed; when failed.",
            "required": ["kind", "message"],
            "properties": {
                "kind": {"type": "string", "enum": [kind.value for kind in ErrorKind]},
                "message": {"type": "string"},
            },
        },
        "created_at": _TIMESTAMP,
        "started_at": _TIMESTAMP,
        "finished_at": _TIMESTAMP,
        "expires_at": {**_TIMESTAMP, "description": "When the record and its result are removed."},
        "attempts": {"type": "integer", "minimum": 0},
        "webhook": {
            "type": "object",
            "description": "The delivery of the request's webhook, once one was tried.",
            "additionalProperties": True,
        },
    },
}

_CONFLICT = {
    "type": "object",
    "required": ["error", "status"],
    "properties": {"error": {"type": "string"}, "status": {"type": "string", "enum": [s.value for s in Status]}},
}

_ENDPOINT = {
    "name": "endpoint",
    "in": "path",
    "required": True,
    "description": "The API's endpoint without its leading '/' (networking.endpoint; by default the API's name).",
    "schema": {"type": "string", "pattern": r"^[A-Za-z0-9_.\-/]+$", "maxLength": 1000},
}

_ID = {
    "name": "id",
    "in": "path",
    "required": True,
    "description": "A request id, as answered by the submission.",
    "schema": {"$ref": "#/components/schemas/RequestId"},
}

_IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "A submission repeated with the same key and body answers the first one's id and queues "
    "nothing; the same key with another body is 409.",
    "schema": {"type": "string", "pattern": IDEMPOTENCY_KEY_PATTERN},
    "example": "order-42",
}

_WEBHOOK_URL = {
    "name": "X-Cortex-Webhook-URL",
    "in": "header",
    "required": False,
    "description": "Where this request's events are POSTed (instead of the API's async.webhook.url).",
    "schema": {"type": "string", "pattern": WEBHOOK_URL_PATTERN},
    "example": "https://example.com/hooks/cortex",
}


def _error(description: str) -> dict[str, Any]:
    return _json(description, {"$ref": "#/components/schemas/Error"})


def _json(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _text(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"text/plain": {"schema": {"type": "string"}}}}


_NOT_ALLOWED = {
    **_error("Method not allowed here; the Allow header lists those that are."),
    "headers": {"Allow": {"schema": {"type": "string"}, "required": True}},
}
_UNAVAILABLE = _error("The queue or the store is unavailable; nothing was changed, try again.")
_NOT_FOUND = _error("No API is deployed at this endpoint, or no such request (unknown, another API's, or expired).")
_HEADER_TOO_LARGE = _error("The request line and headers are larger than the gateway accepts.")
#: only where API keys are configured (cluster-wide, or the API's async.api_keys)
_ACCESS = {
    "401": {
        **_error("The API needs a key: 'Authorization: Bearer <key>' or 'X-Cortex-API-Key: <key>'."),
        "headers": {"WWW-Authenticate": {"schema": {"type": "string"}, "required": True}},
    },
    "403": _error("The key is not one the API accepts."),
}

_DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "cortex-async gateway",
        "version": __version__,
        "description": "Submit requests to asynchronous APIs, read their status and result, cancel them.",
    },
    "paths": {
        "/{endpoint}": {
            "parameters": [_ENDPOINT],
            "post": {
                "operationId": "submit",
                "summary": "Store and queue a request; answers its id once both are durable.",
                "parameters": [_IDEMPOTENCY_KEY, _WEBHOOK_URL],
                "requestBody": {
                    "required": False,
                    "description": "Any body, any content type; forwarded as it is to the user server.",
                    "content": {"*/*": {"schema": {}}},
                },
                "responses": {
                    "200": {
                        **_json("Stored and queued.", {"$ref": "#/components/schemas/Submitted"}),
                        "links": {
                            "status": {"operationId": "status", "parameters": {"id": "$response.body#/id"}},
                            "cancel": {"operationId": "cancel", "parameters": {"id": "$response.body#/id"}},
                        },
                    },
                    "400": _error("A malformed Idempotency-Key or X-Cortex-Webhook-URL, or the body was cut short."),
                    **_ACCESS,
                    "404": _NOT_FOUND,
                    "408": _error("The body stopped arriving for longer than the gateway's body timeout."),
                    "409": _error("The Idempotency-Key was already used with another body."),
                    "413": _error("The body is larger than the API's async.max_payload_size."),
                    "431": _HEADER_TOO_LARGE,
                    "503": _UNAVAILABLE,
                },
            },
        },
        "/{endpoint}/{id}": {
            "parameters": [_ENDPOINT, _ID],
            "get": {
                "operationId": "status",
                "summary": "The request's status; its result once completed.",
                "responses": {
                    "200": _json("The request.", {"$ref": "#/components/schemas/Request"}),
                    **_ACCESS,
                    "404": _NOT_FOUND,
                    "431": _HEADER_TOO_LARGE,
                    "503": _UNAVAILABLE,
                },
            },
            "delete": {
                "operationId": "cancel",
                "summary": "Cancel: a queued request never runs, a running one has its upstream call aborted.",
                "responses": {
                    "200": _json("Cancelled (now or before).", {"$ref": "#/components/schemas/Request"}),
                    **_ACCESS,
                    "404": _NOT_FOUND,
                    "409": _json("The request already finished.", _CONFLICT),
                    "431": _HEADER_TOO_LARGE,
                    "503": _UNAVAILABLE,
                },
            },
        },
        "/healthz": {
            "get": {"operationId": "healthz", "summary": "Liveness.", "responses": {"200": _text("ok")}},
        },
        "/readyz": {
            "get": {
                "operationId": "readyz",
                "summary": "Readiness: 503 while the gateway cannot reach its backend (a ping, cached 1 s).",
                "responses": {"200": _text("ready"), "503": _UNAVAILABLE},
            },
        },
        "/metrics": {
            "get": {
                "operationId": "metrics",
                "summary": "Prometheus metrics of this gateway (and of the operator, in a local cluster).",
                "responses": {"200": _text("The Prometheus text exposition format.")},
            },
        },
        OPENAPI_PATH: {
            "get": {
                "operationId": "openapi",
                "summary": "This document.",
                "responses": {"200": _json("The OpenAPI document.", {"type": "object"})},
            },
        },
    },
    "components": {
        "schemas": {
            "Error": _ERROR,
            "Submitted": _SUBMITTED,
            "Request": _REQUEST,
            "RequestId": {
                "type": "string",
                "pattern": ID_PATTERN,
                "description": "26 characters of lowercase Crockford base32: 48 bits of milliseconds, 80 random bits.",
            },
        },
        "responses": {"MethodNotAllowed": _NOT_ALLOWED},
    },
}


def openapi_document() -> dict[str, Any]:
    """The gateway's OpenAPI document (a fresh copy: callers may change it)."""
    return copy.deepcopy(_DOCUMENT)
