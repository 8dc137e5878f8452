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

Records keep their retention, so a request stays readable until it expires.
"""

from __future__ import annotations

from cortex.queue.base import Lease, Queue
from cortex.requests import ErrorKind, Outcome, RequestError, Status, now
from cortex.store.base import RECENT_KEPT, RecordStore

#: how long the operator holds what it leases while it cancels it
_VISIBILITY = 60.0
_BATCH = 100


async def cancel_requests(
    queue: Queue, records: RecordStore, api: str, *, kind: ErrorKind, reason: str, queued_only: bool = False
) -> list[str]:
    """Cancel the unfinished requests of ``api`` (only the ``in_queue`` ones if ``queued_only``) with
    ``error`` ``{kind, reason}``; return the ids of those cancelled."""
    outcome = Outcome(Status.CANCELLED, error=RequestError(kind.value, reason))
    cancelled: list[str] = []
    running: list[Lease] = []  # held until the walk ends, so that it does not find them again
    try:
        while leases := await queue.lease(api, visibility=_VISIBILITY, limit=_BATCH):
            for lease in leases:
                if queued_only:
                    record = await records.get(api, lease.id, now=now())
                    if record is not None and record.status is Status.IN_PROGRESS:
                        running.append(lease)
                        continue
                if await records.finish(api, lease.id, outcome, now=now()):
                    cancelled.append(lease.id)
                await queue.ack(lease)
    finally:
        for lease in running:
            await queue.release(lease)
    for record in await records.recent(api, limit=RECENT_KEPT, now=now()):
        wanted = record.status is Status.IN_QUEUE if queued_only else not record.status.terminal
        if wanted and await records.finish(api, record.id, outcome, now=now()):
            cancelled.append(record.id)
            await queue.remove(api, record.id)
    return cancelled
