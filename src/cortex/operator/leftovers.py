"""The requests a deleted API leaves behind: cancelled, so that none runs on a later API of the same name.

Cortex deleted an API's queue with the API; here the queue and the records are shared by every API
of the cluster, keyed by name, so the operator cancels them (:func:`cortex.bulkcancel.cancel_requests`,
``error.kind`` = ``api_deleted``). Records keep their retention, so a request stays readable until it
expires.
"""

from __future__ import annotations

from cortex.bulkcancel import cancel_requests
from cortex.queue.base import Queue
from cortex.requests import ErrorKind
from cortex.store.base import RecordStore


async def cancel_leftovers(queue: Queue, records: RecordStore, api: str, *, reason: str) -> int:
    """Cancel every request of ``api`` that has not finished, with ``reason``; return how many were cancelled."""
    return len(await cancel_requests(queue, records, api, kind=ErrorKind.API_DELETED, reason=reason))
