"""Forwarding one request to the user server, and the rule that decides how it ended (DESIGN §3).

A ``2xx`` answer with a JSON content type and a body that parses as JSON completes the request;
anything else fails it, with an error whose ``kind`` says which rule was broken.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator, Sequence

import aiohttp
from multidict import CIMultiDict

from cortex.requests import ErrorKind, Outcome

#: how much of a failed answer's body is kept in the error message
EXCERPT = 300


def is_json_media_type(content_type: str) -> bool:
    """Whether a ``Content-Type`` declares JSON (``application/json`` or any ``+json`` type)."""
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def judge(status: int, content_type: str, body: bytes) -> Outcome:
    """How a run ended, from the user server's answer."""
    if not 200 <= status < 300:
        return Outcome.failed(
            ErrorKind.HTTP_STATUS, f"the user server answered {status}: {_excerpt(body)}", http_status=status
        )
    if not is_json_media_type(content_type):
        shown = content_type or "no Content-Type"
        return Outcome.failed(
            ErrorKind.CONTENT_TYPE,
            f"the user server answered {shown}, expected application/json: {_excerpt(body)}",
            http_status=status,
        )
    try:
        json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        return Outcome.failed(
            ErrorKind.INVALID_JSON, f"the user server's answer is not valid JSON ({exc})", http_status=status
        )
    return dataclasses.replace(Outcome.completed(body), http_status=status)


async def forward(
    session: aiohttp.ClientSession,
    url: str,
    *,
    request_id: str,
    headers: Sequence[tuple[str, str]],
    body: bytes | AsyncIterator[bytes],
    timeout: float | None,
) -> Outcome:
    """POST ``body`` with the original ``headers`` plus ``X-Cortex-Request-ID`` and judge the answer."""
    sent = CIMultiDict(headers)
    sent["X-Cortex-Request-ID"] = request_id
    # without an original Content-Type, send none rather than aiohttp's application/octet-stream
    skip = () if "Content-Type" in sent else ("Content-Type",)
    try:
        async with session.post(
            url,
            data=body,
            headers=sent,
            skip_auto_headers=skip,
            timeout=aiohttp.ClientTimeout(total=timeout),
            allow_redirects=False,
        ) as response:
            answer = await response.read()
            return judge(response.status, response.headers.get("Content-Type", ""), answer)
    except TimeoutError:
        return Outcome.failed(
            ErrorKind.TIMEOUT, f"the user server did not answer within {timeout:g}s (async.request_timeout)"
        )
    except aiohttp.ClientConnectorError as exc:
        return Outcome.failed(ErrorKind.UNREACHABLE, f"could not connect to the user server at {url}: {exc.os_error}")
    except (aiohttp.ClientError, asyncio.IncompleteReadError, ConnectionError) as exc:
        return Outcome.failed(ErrorKind.UNREACHABLE, f"the connection to the user server broke: {exc!r}")


def _excerpt(body: bytes) -> str:
    text = body[:EXCERPT].decode("utf-8", errors="replace")
    return text + ("…" if len(body) > EXCERPT else "") if text else "(empty body)"
