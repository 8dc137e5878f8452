"""The requests a deleted API leaves behind: cancelled, so that none runs on a later API of the same name.

Cortex deleted an API's queue with the API; here the queue and the records are shared by every API
of the cluster, keyed by name, so the operator cancels them (:func:`cortex.bulkcancel.cancel_requests`,
``error.kind`` = ``api_deleted``), each with its ``cancelled`` webhook. Records keep their retention,
so a request stays readable until it expires.
"""

from __future__ import annotations

from cortex.bulkcancel import cancel_requests
from cortex.queue.base import Queue
from cortex.requests import ErrorKind
from cortex.spec import ApiSpec
from cortex.store.base import RecordStore


async def cancel_leftovers(queue: Queue, records: RecordStore, api: str, spec: ApiSpec | None, *, reason: str) -> int:
    """Cancel every request of ``api`` that has not finished, with ``reason``; return how many were cancelled.

    Each one's ``cancelled`` webhook goes where ``spec`` (the deleted API's) or the request said.
    """
    return await cancel_requests(queue, records, api, spec, kind=ErrorKind.API_DELETED, reason=reason)
