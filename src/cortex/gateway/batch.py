"""``POST /<endpoint>/batch``: many payloads, stored and queued in one atomic step of the data plane.

Each payload becomes one request, exactly as if it had been POSTed alone as ``application/json``
with the batch's other headers (priority, webhook URL, ...); the answer is ``{"ids": [...]}`` in the
payloads' order. Nothing of a batch is stored unless all of it is: a bad payload is named by its
index, and the records, queue entries and idempotency keys go in with
:meth:`~cortex.dataplane.base.DataPlane.submit_many`. Payloads over the inline limit go to the
blob store first, as a single submission's body does.

An ``Idempotency-Key`` names the batch: its ``n``-th request holds the key ``<key>\\n<n>`` (a
newline, which no client's key can hold, keeps these apart from the keys of single submissions),
with the digest of the whole body; sending the same batch again answers the same ids.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from cortex.backends import Backends
from cortex.errors import BackendError
from cortex.gateway.answers import error_response
from cortex.gateway.asked import Asked
from cortex.gateway.batchbody import BatchProblem, is_json_lines, split_batch
from cortex.gateway.body import BodyTimeout, PayloadTooLarge, limited
from cortex.gateway.directory import RoutedApi
from cortex.ids import new_id
from cortex.requests import Duplicate, NewRequest, now
from cortex.store.base import BlobStore

log = logging.getLogger(__name__)

#: the last segment of ``POST /<endpoint>/batch`` (never a request id: those are 26 characters)
BATCH = "batch"
#: payloads a batch may hold by default (``cortex gateway --max-batch-items``)
DEFAULT_MAX_ITEMS = 1000
#: bytes a batch's body may take by default (``cortex gateway --max-batch-bytes``): it is read whole
DEFAULT_MAX_BYTES = 32 * 2**20
#: what each payload's request is stored with as its ``Content-Type``
_ITEM_TYPE = ("Content-Type", "application/json")


def item_key(key: str, index: int) -> str:
    """The idempotency key of the ``index``-th request of the batch sent with ``Idempotency-Key: key``."""
    return f"{key}\n{index}"


async def submit_batch(
    backends: Backends,
    request: Request,
    api: RoutedApi,
    asked: Asked,
    headers: Sequence[tuple[str, str]],
    *,
    max_items: int,
    max_bytes: int,
    inline_limit: int,
    body_timeout: float,
) -> Response:
    """Store and queue every payload of the batch, or none; 200 ``{"ids": [...]}`` once all are durable.

    ``headers`` are those to store with each request (the gateway's own and the hop's left out).
    """
    json_lines = is_json_lines(request.headers.get("content-type"))
    if json_lines is None:
        return error_response(
            415,
            "a batch is a JSON array (Content-Type: application/json) or JSON Lines"
            " (application/x-ndjson or application/jsonl)",
        )
    digest = hashlib.sha256() if asked.idempotency_key is not None else None
    body = await _read_body(request, max_bytes, digest, body_timeout)
    if isinstance(body, Response):
        return body
    payloads = split_batch(body, json_lines=json_lines, max_items=max_items, max_item_size=api.max_payload_size)
    if isinstance(payloads, BatchProblem):
        return _refused(payloads)
    created = now()
    stored_headers = (*(h for h in headers if h[0].lower() != "content-type"), _ITEM_TYPE)
    requests = []
    for index, payload in enumerate(payloads):
        request_id = new_id()
        ref = request_id if len(payload) > inline_limit else None
        requests.append(
            NewRequest(
                id=request_id,
                api=api.name,
                created_at=created,
                expires_at=created + api.retention,
                headers=stored_headers,
                payload=None if ref else payload,
                payload_ref=ref,
                idempotency_key=None if asked.idempotency_key is None else item_key(asked.idempotency_key, index),
                body_digest=None if digest is None else digest.hexdigest(),
                webhook_url=asked.webhook_url,
                priority=asked.priority,
            )
        )
    refs = [(new.payload_ref, payload) for new, payload in zip(requests, payloads, strict=True) if new.payload_ref]
    if not await _put_blobs(backends.blobs, refs, api.name):
        return error_response(503, "the payloads could not be stored, and nothing was queued; send the batch again")
    try:
        held = await backends.plane.submit_many(requests)
    except BackendError as exc:
        # the step may have happened (a timeout cannot tell): the blobs stay, the records may name them
        log.error("could not store a batch of %d requests of %s: %s", len(requests), api.name, exc)
        return error_response(
            503,
            "the batch could not be stored and queued (all of it or none was); send it again (with the same"
            " Idempotency-Key, it is never queued twice)",
        )
    if held is None:
        return _ids([new.id for new in requests])
    await _delete_blobs(backends.blobs, [key for key, _ in refs])
    return _replayed(asked.idempotency_key, requests, held)


async def _read_body(request: Request, max_bytes: int, digest: Any, body_timeout: float) -> bytes | Response:
    """The whole body (a batch is parsed whole), or the 4xx of one too large, cut short or stalled."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        return _too_large(max_bytes)
    try:
        return b"".join([chunk async for chunk in limited(request.stream(), max_bytes, digest, idle=body_timeout)])
    except PayloadTooLarge:
        return _too_large(max_bytes)
    except ClientDisconnect:
        return error_response(400, "the client closed the connection before the body was complete")
    except BodyTimeout:
        message = f"the body stopped arriving for {body_timeout:g}s; nothing was stored"
        return error_response(408, message, headers={"Connection": "close"})


def _replayed(key: str | None, requests: list[NewRequest], held: list[Duplicate | None]) -> Response:
    """The answer to a batch whose key is held: the same ids for the same body, else a 409."""
    holders = [holder for holder in held if holder is not None]
    if len(holders) == len(requests) and all(holder.body_digest == requests[0].body_digest for holder in holders):
        return _ids([holder.id for holder in holders])
    return error_response(
        409, f"Idempotency-Key {key!r} was already used with another body, by the batch of request {holders[0].id}"
    )


def _ids(ids: list[str]) -> Response:
    return Response(json.dumps({"ids": ids}, separators=(",", ":")).encode(), media_type="application/json")


def _refused(problem: BatchProblem) -> Response:
    body: dict[str, object] = {"error": problem.error}
    if problem.items:
        body["items"] = [item.as_json() for item in problem.items]
    return Response(json.dumps(body).encode(), status_code=problem.status, media_type="application/json")


def _too_large(max_bytes: int) -> Response:
    return error_response(
        413, f"a batch's body may take at most {max_bytes} bytes (cortex gateway --max-batch-bytes); split it"
    )


async def _put_blobs(blobs: BlobStore, refs: list[tuple[str, bytes]], api: str) -> bool:
    """Store the payloads over the inline limit, each under its key; on failure, delete those stored (False)."""
    stored: list[str] = []
    try:
        for key, payload in refs:
            await blobs.put(key, _once(payload))
            stored.append(key)
    except BackendError as exc:
        log.error("could not store the payloads of a batch of %s: %s", api, exc)
        await _delete_blobs(blobs, stored)
        return False
    return True


async def _delete_blobs(blobs: BlobStore, keys: list[str]) -> None:
    """Delete the blobs of a batch that was not stored; one left behind (the store down) only costs space."""
    for key in keys:
        with contextlib.suppress(BackendError):
            await blobs.delete(key)


async def _once(payload: bytes) -> AsyncIterator[bytes]:
    yield payload
