"""Forwarding one request to the user server, and the rule that decides how it ended (DESIGN §3).

A ``2xx`` answer with a JSON content type and a body that parses as JSON completes the request;
anything else fails it, with an error whose ``kind`` says which rule was broken.

Every stored payload has a known length, so it is sent with a ``Content-Length``, a blob
streamed from its store as it is sent: a user server that reads ``Content-Length`` only, as
Python's ``http.server`` does, gets the whole body. Chunked encoding would be used only for a
stream of unknown length, and the dequeuer sends none.

A user server that writes its answer's head and body in two writes (Python's ``http.server``
with HTTP/1.1 does) would cost each request about 40 ms on a kept-alive connection: Nagle's
algorithm holds the body until the head is acknowledged, and Linux delays that ACK on a
connection it takes for interactive. Once the head is in, the dequeuer sets ``TCP_QUICKACK``,
which sends the pending ACK at once. Measured here against such a no-op server: p50 44.0 ms
without, 0.3-0.45 ms with it (asyncio and uvloop). Elsewhere than Linux, nothing is done.
``quick_ack=False`` leaves it out: only the benchmark's row that measures the remedy asks for that
(``CORTEX_DEQUEUER_QUICKACK=0``, a private knob of ``python -m cortex.dequeuer``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import socket
from collections.abc import AsyncIterator, Sequence

import aiohttp
from multidict import CIMultiDict

from cortex.requests import ErrorKind, Outcome
from cortex.store.base import SizedBlob

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
    body: bytes | SizedBlob,
    timeout: float | None,
    quick_ack: bool = True,
) -> Outcome:
    """POST ``body`` with the original ``headers`` plus ``X-Cortex-Request-ID`` and judge the answer.

    A :class:`SizedBlob` is streamed with its ``size`` as the ``Content-Length``.
    """
    sent = CIMultiDict((name, _as_sent(value)) for name, value in headers)
    sent["X-Cortex-Request-ID"] = request_id
    for framing in ("Content-Length", "Transfer-Encoding"):  # this hop's own, never a stored one
        sent.popall(framing, None)
    data: bytes | AsyncIterator[bytes] = body if isinstance(body, bytes) else _exactly(body)
    if isinstance(body, SizedBlob):
        sent["Content-Length"] = str(body.size)
    # without an original Content-Type, send none rather than aiohttp's application/octet-stream
    skip = () if "Content-Type" in sent else ("Content-Type",)
    try:
        async with session.post(
            url,
            data=data,
            headers=sent,
            skip_auto_headers=skip,
            timeout=aiohttp.ClientTimeout(total=timeout),
            allow_redirects=False,
        ) as response:
            if quick_ack:
                _ack_now(response)
            answer = await response.read()
            return judge(response.status, response.headers.get("Content-Type", ""), answer)
    except TimeoutError:
        return Outcome.failed(
            ErrorKind.TIMEOUT, f"the user server did not answer within {timeout:g}s (async.request_timeout)"
        )
    except aiohttp.ClientConnectorError as exc:
        return Outcome.failed(ErrorKind.UNREACHABLE, f"could not connect to the user server at {url}: {exc.os_error}")
    except (aiohttp.ClientError, asyncio.IncompleteReadError, ConnectionError) as exc:
        if isinstance(exc.__cause__, ShortBlob):  # aiohttp wraps what the body's stream raised
            return Outcome.failed(ErrorKind.PAYLOAD_LOST, str(exc.__cause__))
        return Outcome.failed(ErrorKind.UNREACHABLE, f"the connection to the user server broke: {exc!r}")


#: Linux's TCP_QUICKACK, None elsewhere
_QUICKACK: int | None = getattr(socket, "TCP_QUICKACK", None)


def _ack_now(response: aiohttp.ClientResponse) -> None:
    """Acknowledge the answer's head at once, so a server's body held back by Nagle follows it now.

    No connection: the whole answer is in already, nothing waits.
    """
    connection = response.connection
    transport = connection.transport if connection is not None else None
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is None or _QUICKACK is None:
        return
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)


def _as_sent(value: str) -> str:
    """A stored header value (its bytes as Latin-1 characters, one for one) as aiohttp must be given it to send
    those bytes: aiohttp encodes header values as UTF-8, and the gateway admits only UTF-8 values."""
    try:
        return value.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return value  # not as the gateway stores headers: sent as it is


class ShortBlob(Exception):
    """A blob's stream ended before the length it announced: the request must not go out short."""


async def _exactly(blob: SizedBlob) -> AsyncIterator[bytes]:
    """The blob's chunks; :class:`ShortBlob` (which aborts the request) if fewer than ``blob.size`` bytes come."""
    sent = 0
    async for chunk in blob.chunks:
        sent += len(chunk)
        yield chunk
    if sent < blob.size:
        raise ShortBlob(f"the stored payload ended after {sent} of its {blob.size} bytes")


def _excerpt(body: bytes) -> str:
    text = body[:EXCERPT].decode("utf-8", errors="replace")
    return text + ("…" if len(body) > EXCERPT else "") if text else "(empty body)"
