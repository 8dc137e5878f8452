"""What the gateway answers besides ``{"id"}``: a request's record as JSON, and its errors.

Every error is JSON ``{"error": message}`` whose message names what was wrong (DESIGN §2). The
record's JSON (:func:`render_record`) is derived from the record's declaration in
:mod:`cortex.recordanswer`, below the gateway and the webhooks, which both deliver it.
"""

from __future__ import annotations

import json
import logging

from starlette.responses import Response

from cortex.errors import BackendError
from cortex.gateway.directory import RoutedApi
from cortex.recordanswer import render_record as render_record

log = logging.getLogger("cortex.gateway.app")

#: seconds a client is asked to wait before it tries again after a 503 (an outage of the backend)
RETRY_AFTER = "1"


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    """Every error the gateway answers: JSON ``{"error": message}``; a 503 says when to try again."""
    body = json.dumps({"error": message}).encode()
    if status == 503 and not (headers and "Retry-After" in headers):
        headers = {**(headers or {}), "Retry-After": RETRY_AFTER}
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def too_large(api: RoutedApi) -> Response:
    return error_response(
        413,
        f"the body is larger than api {api.name}'s limit of {api.max_payload_size} bytes"
        " (raise async.max_payload_size in its configuration)",
    )


def not_allowed(method: str, path: str, allow: str, hint: str) -> Response:
    return error_response(405, f"method {method} is not allowed on {shown(path)}: {hint}", headers={"Allow": allow})


def shown(text: str, limit: int = 200) -> str:
    """A client's path or id as quoted in an error message: whole if short, else its start."""
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def unknown_request(api: RoutedApi, request_id: str) -> Response:
    return error_response(404, f"request {shown(request_id)} of api {api.name} not found (unknown or expired)")


def store_unavailable(api: str, request_id: str, action: str, exc: BackendError) -> Response:
    """Log, in one line, that ``action`` on one request met a backend error, and answer the 503 that says to retry."""
    log.error(
        "could not %s request %s of %s: %s", action, request_id, api, exc, extra=log_context(api, request_id, action)
    )
    return error_response(503, "the request store is unavailable; try again")


def log_context(api: str, request_id: str, action: str) -> dict[str, str]:
    """The ``extra=`` of a log line about one request (the JSON logs' ``api``, ``request_id``, ``action``)."""
    return {"api": api, "request_id": request_id, "action": action}
