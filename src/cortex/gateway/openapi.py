"""The gateway's OpenAPI 3.1 document (DESIGN §2), served at ``GET /openapi.json``.

It is data, written by hand next to the routes it describes (but for the ``Request`` schema, derived
from the record's declaration in :mod:`cortex.recordfields`), and checked against them by
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
from cortex.recordanswer import answer_schema
from cortex.requests import Status

#: where the gateway serves the document
OPENAPI_PATH = "/openapi.json"
#: the shapes of the submission's optional headers, documented here and enforced by the gateway:
#: visible ASCII (HTTP trims the spaces around a header's value, so none may start or end it)
IDEMPOTENCY_KEY_PATTERN = r"^[!-~]([ -~]{0,253}[!-~])?$"
WEBHOOK_URL_PATTERN = r"^https?://[!-.0-~][!-~]*$"  # a host after the scheme: the first character is no '/'
MAX_WEBHOOK_URL = 2048
#: ``X-Cortex-Priority``: an integer in this range, higher taken first (0 when absent)
PRIORITY_HEADER = "X-Cortex-Priority"
MIN_PRIORITY, MAX_PRIORITY = 0, 9

_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "string", "description": "What was wrong, and what to do about it."}},
}

_SUBMITTED = {
    "type": "object",
    "required": ["id"],
    "properties": {
        "id": {"$ref": "#/components/schemas/RequestId"},
        "status": {
            "type": "string",
            "enum": [status.value for status in Status],
            "description": "Only with Prefer: wait, when the request did not end within the wait.",
        },
    },
    "additionalProperties": False,
}

_BATCH_SUBMITTED = {
    "type": "object",
    "required": ["ids"],
    "properties": {
        "ids": {
            "type": "array",
            "items": {"$ref": "#/components/schemas/RequestId"},
            "description": "One id per payload, in the payloads' order.",
        }
    },
    "additionalProperties": False,
}

_BATCH_REFUSED = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {"type": "string"},
        "items": {
            "type": "array",
            "description": "The bad payloads (at most 100 listed), by index from 0; 'line' (from 1) in JSON Lines.",
            "items": {
                "type": "object",
                "required": ["index", "error"],
                "properties": {
                    "index": {"type": "integer", "minimum": 0},
                    "line": {"type": "integer", "minimum": 1},
                    "error": {"type": "string"},
                },
            },
        },
    },
}

#: a request's record as ``GET /<endpoint>/<id>`` answers it: derived from the record's declaration
_REQUEST = answer_schema()

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

_PRIORITY = {
    "name": PRIORITY_HEADER,
    "in": "header",
    "required": False,
    "description": f"{MIN_PRIORITY} to {MAX_PRIORITY}, default {MIN_PRIORITY}: a worker takes the queued requests of"
    " the highest priority first, the oldest first within one.",
    "schema": {"type": "integer", "minimum": MIN_PRIORITY, "maximum": MAX_PRIORITY, "default": MIN_PRIORITY},
    "example": 9,
}

_WEBHOOK_URL = {
    "name": "X-Cortex-Webhook-URL",
    "in": "header",
    "required": False,
    "description": "Where this request's events are POSTed (instead of the API's async.webhook.url).",
    "schema": {"type": "string", "pattern": WEBHOOK_URL_PATTERN},
    "example": "https://example.com/hooks/cortex",
}

#: the longest ``Prefer: wait`` / ``?wait=`` the gateway grants, in seconds
MAX_WAIT = 60.0

_PREFER_WAIT = {
    "name": "Prefer",
    "in": "header",
    "required": False,
    "description": f"wait=N (RFC 7240, N seconds, at most {MAX_WAIT:g}): answer once the request has ended, or "
    "after N seconds as it then stands. The gateway is woken by the backend's notification of the finish, "
    "not by polling. Answered with Preference-Applied: wait=N; other preferences are ignored.",
    "schema": {"type": "string"},
}

_WAIT_QUERY = {
    "name": "wait",
    "in": "query",
    "required": False,
    "description": f"As Prefer: wait=N: seconds to wait for the request to end (at most {MAX_WAIT:g}; more is "
    "taken as that). Not a number from 0 up is 400.",
    "schema": {"type": "number", "minimum": 0},
}

_APPLIED = {"Preference-Applied": {"schema": {"type": "string"}, "description": "wait=N, when a wait was asked."}}


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
                "summary": "Store and queue a request; answers its id once both are durable (with Prefer: wait, "
                "the finished request if it ends within the wait).",
                "parameters": [_IDEMPOTENCY_KEY, _WEBHOOK_URL, _PREFER_WAIT, _PRIORITY],
                "requestBody": {
                    "required": False,
                    "description": "Any body, any content type; forwarded as it is to the user server.",
                    "content": {"*/*": {"schema": {}}},
                },
                "responses": {
                    "200": {
                        **_json(
                            "Stored and queued: its id (and, with Prefer: wait, its status); or, with Prefer: "
                            "wait, the request itself once it ended within the wait.",
                            {
                                "oneOf": [
                                    {"$ref": "#/components/schemas/Submitted"},
                                    {"$ref": "#/components/schemas/Request"},
                                ]
                            },
                        ),
                        "headers": _APPLIED,
                        "links": {
                            "status": {"operationId": "status", "parameters": {"id": "$response.body#/id"}},
                            "cancel": {"operationId": "cancel", "parameters": {"id": "$response.body#/id"}},
                        },
                    },
                    "400": _error(
                        "A malformed Idempotency-Key, X-Cortex-Webhook-URL or X-Cortex-Priority, or the body was cut"
                        " short."
                    ),
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
        "/{endpoint}/batch": {
            "parameters": [_ENDPOINT],
            "post": {
                "operationId": "submit_batch",
                "summary": "Store and queue one request per payload, all or none; answers their ids in order once "
                "all are durable.",
                "description": "Each payload becomes a request as if POSTed alone with Content-Type: "
                "application/json and the batch's other headers. An Idempotency-Key names the batch: the same "
                "batch again answers the same ids. At most --max-batch-items payloads (default 1000) and "
                "--max-batch-bytes of body (default 32 MiB); each payload within the API's async.max_payload_size. "
                "An API deployed at the endpoint '<endpoint>/batch' is routed first.",
                "parameters": [_IDEMPOTENCY_KEY, _WEBHOOK_URL, _PRIORITY],
                "requestBody": {
                    "required": True,
                    "description": "The payloads: a JSON array, or JSON Lines (one payload per line; blank lines are "
                    "skipped).",
                    "content": {
                        media: {"schema": {"type": "array", "minItems": 1, "items": {}}}
                        for media in ("application/json", "application/x-ndjson", "application/jsonl")
                    },
                },
                "responses": {
                    "200": _json("All stored and queued: their ids.", {"$ref": "#/components/schemas/BatchSubmitted"}),
                    "400": _json(
                        "Bad payloads (each named in 'items'; nothing was stored), a body that is no JSON array "
                        "or holds no payload, a malformed header, or a body cut short.",
                        _BATCH_REFUSED,
                    ),
                    **_ACCESS,
                    "404": _NOT_FOUND,
                    "408": _error("The body stopped arriving for longer than the gateway's body timeout."),
                    "409": _error("The Idempotency-Key was already used with another body."),
                    "413": _error("More payloads, or a larger body, than the gateway's batch limits."),
                    "415": _error("A Content-Type that is neither JSON nor JSON Lines."),
                    "431": _HEADER_TOO_LARGE,
                    "503": _UNAVAILABLE,
                },
            },
        },
        "/{endpoint}/purge": {
            "parameters": [_ENDPOINT],
            "post": {
                "operationId": "purge",
                "summary": "Cancel every queued request of the API (error kind 'purged'); running ones keep running.",
                "description": "Needs a key of the cluster when the cluster has one (an API's own key is refused "
                "then); else one of the API's own keys when it has some.",
                "responses": {
                    "200": _json(
                        "How many queued requests were cancelled.",
                        {
                            "type": "object",
                            "required": ["cancelled"],
                            "properties": {"cancelled": {"type": "integer", "minimum": 0}},
                        },
                    ),
                    **_ACCESS,
                    "404": _NOT_FOUND,
                    "431": _HEADER_TOO_LARGE,
                    "503": _UNAVAILABLE,
                },
            },
        },
        "/{endpoint}/{id}": {
            "parameters": [_ENDPOINT, _ID],
            "get": {
                "operationId": "status",
                "summary": "The request's status; its result once completed. With a wait, answered once it ended.",
                "parameters": [_PREFER_WAIT, _WAIT_QUERY],
                "responses": {
                    "200": {**_json("The request.", {"$ref": "#/components/schemas/Request"}), "headers": _APPLIED},
                    "400": _error("A bad ?wait= (not a number of seconds from 0 up)."),
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
        "/{endpoint}/{id}/events": {
            "parameters": [_ENDPOINT, _ID],
            "get": {
                "operationId": "events",
                "summary": "Server-Sent Events: one 'status' event per status the request takes, until it ends.",
                "description": "Each event's data is the request as GET /{endpoint}/{id} answers it: in_queue, "
                "in_progress, then the terminal status (whose event carries the result); the stream then closes. "
                "Woken by the backend's notifications of starts and finishes; comment lines keep it alive.",
                "responses": {
                    "200": {
                        "description": "The stream.",
                        "content": {"text/event-stream": {"schema": {"type": "string"}}},
                    },
                    **_ACCESS,
                    "404": _NOT_FOUND,
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
            "BatchSubmitted": _BATCH_SUBMITTED,
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
