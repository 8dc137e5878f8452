"""Status changes of requests, learnt from the backend's own notifications (issue 19).

Each backend announces, in the same round trip as the step itself, the ids of the requests a take
started or a finish ended: Redis publishes on a channel from inside its scripts, PostgreSQL calls
``pg_notify`` in its statements, SQLite sends a datagram to the sockets of a ``changes`` folder
beside the database. A process holds ONE subscription (:class:`ChangeWatch`) and fans each id out
to the waiters of that id in memory; a waiter then reads the record once.

A notification can be lost (a dropped connection, a full socket buffer): a waiter is only woken
early by one, never kept waiting by its absence. Waiters re-read at their deadline, and every
waiter is woken when the subscription (re)connects, so a change during a gap is seen then.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

#: seconds before a lost subscription is tried again
RECONNECT_S = 1.0


class ChangeWatch:
    """One process's subscription to status changes, fanned out to waiters by request id.

    ``listen`` runs the subscription: it calls :meth:`subscribed` once notifications flow, then
    :meth:`changed` per id, and returns or raises when the subscription is lost (it is run again
    after :data:`RECONNECT_S`). It starts with the first waiter. With ``stops_itself``, ``listen``
    is not cancelled on close but returns within a second once :attr:`closed` is true. Without
    ``listen`` nothing is ever notified and waiters wait for their deadline.
    """

    def __init__(
        self, listen: Callable[[ChangeWatch], Awaitable[None]] | None = None, *, stops_itself: bool = False
    ) -> None:
        self._listen = listen
        self._stops_itself = stops_itself
        self._waiters: dict[str, set[asyncio.Future[None]]] = {}
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    def waiter(self, request_id: str) -> asyncio.Future[None]:
        """A future resolved by the next change of ``request_id`` (or a reconnection); :meth:`forget` it after."""
        if self._task is None and self._listen is not None and not self._closed:
            self._task = asyncio.create_task(self._run(self._listen))
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(request_id, set()).add(future)
        return future

    def forget(self, request_id: str, future: asyncio.Future[None]) -> None:
        """Stop waking ``future``."""
        waiters = self._waiters.get(request_id)
        if waiters is not None:
            waiters.discard(future)
            if not waiters:
                del self._waiters[request_id]

    @property
    def closed(self) -> bool:
        """Whether :meth:`aclose` was called: a ``listen`` that stops itself returns."""
        return self._closed

    def waiting(self, request_id: str) -> bool:
        """Whether a waiter of ``request_id`` is registered."""
        return bool(self._waiters.get(request_id))

    async def wait(self, request_id: str, future: asyncio.Future[None], timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for ``future``; True if a change (or reconnection) came."""
        try:
            if timeout > 0 and not future.done():
                await asyncio.wait({future}, timeout=timeout)
        finally:
            self.forget(request_id, future)
        return future.done()

    def changed(self, request_id: str) -> None:
        """``request_id`` changed status: wake its waiters."""
        for future in self._waiters.pop(request_id, ()):
            if not future.done():
                future.set_result(None)

    def subscribed(self) -> None:
        """Notifications flow (again): wake every waiter, since a change may have been missed meanwhile."""
        waiters, self._waiters = self._waiters, {}
        for futures in waiters.values():
            for future in futures:
                if not future.done():
                    future.set_result(None)

    async def _run(self, listen: Callable[[ChangeWatch], Awaitable[None]]) -> None:
        while not self._closed:
            try:
                await listen(self)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self._closed:
                    return
                log.warning("status-change notifications lost (waiters re-read at their deadline): %s", exc)
            await asyncio.sleep(RECONNECT_S)

    async def aclose(self) -> None:
        """Stop the subscription."""
        self._closed = True
        task, self._task = self._task, None
        if task is not None:
            if self._stops_itself:
                await asyncio.wait({task}, timeout=5 * RECONNECT_S)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
