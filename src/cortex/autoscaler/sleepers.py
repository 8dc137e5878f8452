"""Watching the queues of sleeping APIs, so the first request to one wakes it at once, not at the next tick.

An API at zero replicas with nothing queued is *sleeping*. Its first request is submitted by a
gateway, in another process (on Kubernetes, another pod; there may be several gateways), so the
autoscaler learns of it from the backend, which announces every enqueue anyway to wake idle
workers: a datagram to the sockets of the state directory (SQLite), a token on the API's wake-up
list (Redis), a ``NOTIFY`` (PostgreSQL). :meth:`~cortex.queue.base.Queue.wait_work` waits for
that announcement without taking it from a worker; when it comes, the autoscaler ticks at once.

Why the backend rather than a call from the gateway to the operator: every path that enqueues
(any gateway's submit, a redelivery) is covered without knowing the operator's address or holding
its token; a submit costs nothing more (the announcement is already part of its one round trip);
and a gateway never needs to know which APIs are asleep. The price is one waiting task per
sleeping API in the operator.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable

from cortex.errors import CortexError
from cortex.queue.base import Queue

log = logging.getLogger(__name__)

#: seconds one wait lasts before it is begun again (it ends at once when work arrives)
WATCH_S = 60.0
#: seconds before a wait that failed (the backend unreachable) is tried again
RETRY_S = 1.0


class Sleepers:
    """One waiting task per sleeping API; ``woken(api)`` is called once when work arrives for it."""

    def __init__(self, queue: Queue, woken: Callable[[str], None]) -> None:
        self._queue = queue
        self._woken = woken
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def watch(self, apis: Iterable[str]) -> None:
        """Watch exactly ``apis`` from now on: a watch already under way goes on, the others stop."""
        wanted = set(apis)
        for api in set(self._tasks) - wanted:
            self._tasks.pop(api).cancel()
        for api in wanted:
            task = self._tasks.get(api)
            if task is None or task.done():  # done: it woke its API, which is asleep again
                self._tasks[api] = asyncio.create_task(self._watch(api), name=f"autoscaler: watch {api}")

    @property
    def watched(self) -> set[str]:
        """The APIs whose queues are being watched."""
        return {api for api, task in self._tasks.items() if not task.done()}

    async def _watch(self, api: str) -> None:
        while True:
            try:
                if await self._queue.wait_work(api, timeout=WATCH_S):
                    break
            except CortexError as exc:  # the regular tick still wakes it; retry the quick way later
                log.warning("autoscaler: api %s: cannot watch its queue (retrying in %gs): %s", api, RETRY_S, exc)
                await asyncio.sleep(RETRY_S)
        log.debug("autoscaler: api %s: work arrived while at zero replicas; ticking now", api)
        self._woken(api)

    async def aclose(self) -> None:
        """Stop every watch."""
        tasks, self._tasks = list(self._tasks.values()), {}
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
