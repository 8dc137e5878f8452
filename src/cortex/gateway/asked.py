"""What a client asks of the gateway beyond the body: a wait, a priority, an idempotency key, a webhook.

Pure functions of the request's headers and query, each answering the value asked for or what is
wrong with it (the gateway turns that into a 400 naming the header). The limits they enforce are
the OpenAPI document's (:mod:`cortex.gateway.openapi`), so the document and the checks agree.
"""

from __future__ import annotations

import dataclasses
import math
import re

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import Response

from cortex.gateway.answers import error_response, shown
from cortex.gateway.openapi import (
    IDEMPOTENCY_KEY_PATTERN,
    MAX_PRIORITY,
    MAX_WAIT,
    MAX_WEBHOOK_URL,
    MIN_PRIORITY,
    PRIORITY_HEADER,
    WEBHOOK_URL_PATTERN,
)
from cortex.webhooks.events import URL_HEADER

_IDEMPOTENCY_KEY = re.compile(IDEMPOTENCY_KEY_PATTERN)
_WEBHOOK_URL = re.compile(WEBHOOK_URL_PATTERN)


def wait_asked(request: Request) -> float | Response | None:
    """The seconds ``?wait=N`` or ``Prefer: wait=N`` asks to wait (at most :data:`MAX_WAIT`), None when none
    is asked, or the 400 of a bad ``?wait=``."""
    text = request.query_params.get("wait")
    if text is None:
        return prefer_wait(request)
    try:
        asked = float(text)
    except ValueError:
        asked = math.nan
    if not math.isfinite(asked) or asked < 0:
        return error_response(400, f"wait must be a number of seconds from 0 to {MAX_WAIT:g} (got {shown(text, 40)!r})")
    return min(asked, MAX_WAIT)


def prefer_wait(request: Request) -> float | None:
    """The seconds ``Prefer: wait=N`` asks to wait, at most :data:`MAX_WAIT`; None when none is asked.

    A preference the gateway does not understand, or a wait that is not a number, is ignored (RFC 7240).
    """
    asked: float | None = None
    for header in request.headers.getlist("prefer"):
        for preference in header.split(","):
            name, _, value = preference.partition(";")[0].strip().partition("=")
            if name.strip().lower() != "wait":
                continue
            try:
                seconds = float(value.strip().strip('"'))
            except ValueError:
                continue
            if math.isfinite(seconds) and seconds >= 0:
                asked = min(seconds, MAX_WAIT)
    return asked


def extension_header_problem(key: str | None, webhook_url: str | None) -> str | None:
    """What is wrong with ``Idempotency-Key`` or ``X-Cortex-Webhook-URL``, or None."""
    if key is not None and _IDEMPOTENCY_KEY.fullmatch(key) is None:
        return "Idempotency-Key must be 1 to 255 printable characters (ASCII, not starting or ending with a space)"
    if webhook_url is not None and (len(webhook_url) > MAX_WEBHOOK_URL or _WEBHOOK_URL.fullmatch(webhook_url) is None):
        return f"X-Cortex-Webhook-URL must be an http:// or https:// URL (got {webhook_url[:100]!r})"
    return None


def priority_asked(header: str | None) -> tuple[int | None, str | None]:
    """The ``X-Cortex-Priority`` asked for (None when absent), or what is wrong with it."""
    if header is None:
        return None, None
    if header.isascii() and header.isdigit() and MIN_PRIORITY <= int(header) <= MAX_PRIORITY:
        return int(header), None
    return None, f"{PRIORITY_HEADER} must be an integer from {MIN_PRIORITY} to {MAX_PRIORITY} (got {header[:20]!r})"


@dataclasses.dataclass(frozen=True, slots=True)
class Asked:
    """What a submission (one request or a batch) asks beyond its body, checked."""

    idempotency_key: str | None
    webhook_url: str | None
    priority: int | None


def submission_asked(headers: Headers) -> Asked | str:
    """The ``Idempotency-Key``, ``X-Cortex-Webhook-URL`` and ``X-Cortex-Priority`` of a submission, or what is wrong."""
    key = headers.get("idempotency-key")
    webhook_url = headers.get(URL_HEADER)
    priority, problem = priority_asked(headers.get(PRIORITY_HEADER))
    problem = problem or extension_header_problem(key, webhook_url)
    return Asked(key, webhook_url, priority) if problem is None else problem
