"""The requests a deleted API leaves behind: cancelled, so that none runs on a later API of the same name.

Cortex deleted an API's queue with the API. Here the queue and the records are shared by every
API of the cluster, keyed by name, so the operator empties the name's queue through the public
:class:`~cortex.queue.base.Queue` and :class:`~cortex.store.base.RecordStore` steps instead:

- every visible queue entry is leased, its record finished ``cancelled`` (``error.kind`` =
  ``api_deleted``) and the lease acked;
- every unfinished record among the API's newest (:data:`~cortex.store.base.RECENT_KEPT`) is finished
  the same way and its entry removed: this reaches the entries still leased by a replica that died
  (a dequeuer that leases them later finds the record terminal and drops them).

Records keep their retention, so a request stays readable until it expires.
"""

from __future__ import annotations

from cortex.queue.base import Queue
from cortex.requests import ErrorKind, Outcome, RequestError, Status, now
from cortex.store.base import RECENT_KEPT, RecordStore

#: how long the operator holds what it leases while it cancels it
_VISIBILITY = 60.0
_BATCH = 100


async def cancel_leftovers(queue: Queue, records: RecordStore, api: str, *, reason: str) -> int:
    """Cancel every request of ``api`` that has not finished, with ``reason``; return how many were cancelled."""
    outcome = Outcome(Status.CANCELLED, error=RequestError(ErrorKind.API_DELETED.value, reason))
    cancelled = 0
    while leases := await queue.lease(api, visibility=_VISIBILITY, limit=_BATCH):
        for lease in leases:
            cancelled += await records.finish(api, lease.id, outcome, now=now())
            await queue.ack(lease)
    for record in await records.recent(api, limit=RECENT_KEPT, now=now()):
        if not record.status.terminal and await records.finish(api, record.id, outcome, now=now()):
            cancelled += 1
            await queue.remove(api, record.id)
    return cancelled
