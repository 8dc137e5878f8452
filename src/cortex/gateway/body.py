"""A submission's body, read as it arrives: bounded in size and in the time between two chunks.

Small bodies are kept whole (they go in the record); past ``inline_limit`` the buffered head and
the rest of the stream go to a blob keyed by the request id, never held in memory whole.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from cortex.store.base import BlobStore


class PayloadTooLarge(Exception):
    """The body grew past the API's ``async.max_payload_size``."""


class BodyTimeout(Exception):
    """The body stopped arriving for longer than :attr:`GatewaySettings.body_timeout`."""


async def take_body(
    blobs: BlobStore, request_id: str, stream: AsyncIterator[bytes], *, inline_limit: int
) -> tuple[bytes | None, str | None]:
    """Read the body: ``(bytes, None)`` for a small one, ``(None, blob key)`` once it outgrew ``inline_limit``."""
    head: list[bytes] = []
    size = 0
    async for chunk in stream:
        head.append(chunk)
        size += len(chunk)
        if size > inline_limit:
            await blobs.put(request_id, _chain(head, stream))
            return None, request_id
    return b"".join(head), None


async def limited(
    stream: AsyncIterator[bytes], limit: int, digest: Any = None, *, idle: float | None = None
) -> AsyncIterator[bytes]:
    """The body's chunks; :class:`PayloadTooLarge` past ``limit`` bytes, :class:`BodyTimeout` after
    ``idle`` seconds without a chunk (uvicorn has no such deadline: a stalled client would hold the
    request, and its half-written blob, forever)."""
    size = 0
    while True:
        try:
            async with asyncio.timeout(idle):
                chunk = await anext(stream)
        except StopAsyncIteration:
            return
        except TimeoutError:
            raise BodyTimeout from None
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge
        if chunk:
            if digest is not None:
                digest.update(chunk)
            yield chunk


async def _chain(head: list[bytes], rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    while head:
        yield head.pop(0)  # drop each buffered chunk as it is written
    async for chunk in rest:
        yield chunk
