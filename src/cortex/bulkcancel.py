"""Cancelling an API's requests in bulk: those a deleted API leaves behind (the operator,
:mod:`cortex.operator.leftovers`), and those a purge drops (the gateway's ``POST /<api>/purge``).

Cortex deleted an API's queue with the API. Here the queue and the records are shared by every
API of the cluster, keyed by name, so :func:`cancel_requests` empties the name's queue through the
public :class:`~cortex.queue.base.Queue` and :class:`~cortex.store.base.RecordStore` steps instead:

- every visible queue entry is leased, its record finished ``cancelled`` (``error.kind`` says why:
  ``api_deleted``, ``purged``) and the lease acked;
- every unfinished record among the API's newest (:data:`~cortex.store.base.RECENT_KEPT`) is finished
  the same way and its entry removed: this reaches the entries still leased by a replica that died
  (a dequeuer that leases them later finds the record terminal and drops them), and the queued
  requests waiting out a retry delay.

With ``queued_only`` (a purge: ``POST /<api>/purge``) only the ``in_queue`` requests are cancelled: a
visible entry whose request is ``in_progress`` (its lease lapsed) is handed back untouched once the
queue has been walked, and a running request keeps running.

Every request cancelled gets its ``cancelled`` webhook, as one cancelled by ``DELETE /<api>/<id>``
does: queued (durably) before the record is finished. A deleted API's deliveries are signed and
sent with the spec and secret it had (:meth:`~cortex.store.base.Catalog.get_retired_api`).

Records keep their retention, so a request stays readable until it expires.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from cortex.queue.base import Lease, Queue
from cortex.requests import ErrorKind, Outcome, RequestError, RequestRecord, Status, now
from cortex.spec import ApiSpec
from cortex.store.base import RECENT_KEPT, RecordStore
from cortex.webhooks.events import schedule

#: how long the operator holds what it leases while it cancels it
_VISIBILITY = 60.0
#: requests leased, and cancelled at once, per step
_BATCH = 100

T = TypeVar("T")


async def cancel_requests(
    queue: Queue,
    records: RecordStore,
    api: str,
    spec: ApiSpec | None,
    *,
    kind: ErrorKind,
    reason: str,
    queued_only: bool = False,
    on_cancelled: Callable[[list[str]], Awaitable[None]] | None = None,
) -> int:
    """Cancel the unfinished requests of ``api`` (only the ``in_queue`` ones if ``queued_only``) with
    ``error`` ``{kind, reason}``; return how many were cancelled.

    Each one's ``cancelled`` webhook is queued before its status is written, as a single cancel
    queues it (``spec``: the API's, for its webhook configuration; None when it is not known).
    ``on_cancelled`` is told the ids of each batch cancelled; none is kept here, so the memory a
    purge takes does not grow with the queue.
    """
    outcome = Outcome(Status.CANCELLED, error=RequestError(kind.value, reason))
    count = 0
    running: list[Lease] = []  # held until the walk ends, so that it does not find them again

    async def cancel(request_id: str, webhook_url: str | None) -> bool:
        await schedule(queue, spec, api, request_id, webhook_url, "cancelled")
        return await records.finish(api, request_id, outcome, now=now())

    async def tell(ids: list[str]) -> None:
        nonlocal count
        count += len(ids)
        if on_cancelled is not None and ids:
            await on_cancelled(ids)

    async def leased(lease: Lease) -> str | None:
        record = await records.get(api, lease.id, now=now())
        if record is not None and queued_only and record.status is Status.IN_PROGRESS:
            running.append(lease)
            return None
        done = record is not None and not record.status.terminal and await cancel(lease.id, record.webhook_url)
        await queue.ack(lease)
        return lease.id if done else None

    async def listed(record: RequestRecord) -> str | None:
        wanted = record.status is Status.IN_QUEUE if queued_only else not record.status.terminal
        if not (wanted and await cancel(record.id, record.webhook_url)):
            return None
        await queue.remove(api, record.id)
        return record.id

    try:
        while leases := await queue.lease(api, visibility=_VISIBILITY, limit=_BATCH):
            await tell(await _each(leased, leases))
    finally:
        for lease in running:
            await queue.release(lease)
    listing = await records.recent(api, limit=RECENT_KEPT, now=now())
    for start in range(0, len(listing), _BATCH):
        await tell(await _each(listed, listing[start : start + _BATCH]))
    return count


async def _each(step: Callable[[T], Awaitable[str | None]], items: list[T]) -> list[str]:
    """Run ``step`` on every item of one batch at once (the backends pipeline concurrent calls: a purge of
    100,000 requests is not 400,000 round trips one after the other); the ids it answered.

    Every step ends before the first error, if any, is raised (a :class:`~cortex.errors.BackendError`
    as such, not in a group), so no step of the batch is left running.
    """
    results = await asyncio.gather(*(step(item) for item in items), return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return [result for result in results if isinstance(result, str)]
