"""What the gateway answers besides ``{"id"}``: a request's record as JSON, and its errors.

Every error is JSON ``{"error": message}`` whose message names what was wrong (DESIGN §2). The
record's JSON is also what webhooks deliver.
"""

from __future__ import annotations

import functools
import json
from typing import Any

from starlette.responses import Response

from cortex.gateway.directory import RoutedApi
from cortex.requests import RequestRecord, Status, rfc3339

#: seconds a client is asked to wait before it tries again after a 503 (an outage of the backend)
RETRY_AFTER = "1"


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    """Every error the gateway answers: JSON ``{"error": message}``; a 503 says when to try again."""
    body = json.dumps({"error": message}).encode()
    if status == 503 and not (headers and "Retry-After" in headers):
        headers = {**(headers or {}), "Retry-After": RETRY_AFTER}
    return Response(body, status_code=status, media_type="application/json", headers=headers)


#: the same timestamps are formatted again at every poll of a request: keep the recent ones
_timestamp = functools.lru_cache(maxsize=4096)(rfc3339)


def render_record(record: RequestRecord) -> bytes:
    """The JSON body of ``GET /<endpoint>/<id>``: Cortex's fields first, then ours."""
    fields: dict[str, Any] = {"id": record.id, "status": record.status.value}
    tail: dict[str, Any] = {}
    if record.status == Status.COMPLETED and record.finished_at is not None:
        tail["timestamp"] = _timestamp(record.finished_at, millis=False)
    if record.error is not None:
        tail["error"] = {"kind": record.error.kind, "message": record.error.message}
    tail["created_at"] = _timestamp(record.created_at)
    for key, value in (("started_at", record.started_at), ("finished_at", record.finished_at)):
        if value is not None:
            tail[key] = _timestamp(value)
    tail["expires_at"] = _timestamp(record.expires_at)
    tail["attempts"] = record.attempts
    if record.webhook is not None:
        tail["webhook"] = record.webhook
    head = json.dumps(fields, separators=(",", ":"))[:-1]
    rest = json.dumps(tail, separators=(",", ":"))[1:]
    if record.status == Status.COMPLETED and record.result is not None:
        return f'{head},"result":'.encode() + record.result + f",{rest}".encode()
    return f"{head},{rest}".encode()


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
