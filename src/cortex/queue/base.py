"""The queue interface: a durable queue of request ids per API with leases (at-least-once).

A lease hides a request from other workers for ``visibility`` seconds. The holder renews it while
the work runs, and acks it when the request has reached a terminal status. A lease that lapses
(its worker died) makes the request visible again, and the next lease counts one more attempt.
"""

from __future__ import annotations

import abc
import asyncio
import dataclasses
import time
from types import TracebackType


@dataclasses.dataclass(frozen=True, slots=True)
class Lease:
    """A request held by one worker until ``ack``, ``release`` or the visibility lapses."""

    api: str
    id: str
    #: how many times the request has been leased, this lease included
    attempts: int
    #: identifies this lease: a lease that lapsed and was taken again cannot be acked by its old holder
    token: int


@dataclasses.dataclass(frozen=True, slots=True)
class Depth:
    """How much work an API has: what the autoscaler reads."""

    queued: int  #: waiting for a worker (visible)
    in_flight: int  #: leased by a worker (invisible)
    #: seconds the longest-waiting visible request has been visible (since its enqueue, the lapse
    #: of its lease or its release, whichever came last); 0.0 when nothing is queued
    oldest_queued_age: float = 0.0

    @property
    def total(self) -> int:
        """Queued plus leased: Cortex's ``cortex_async_in_flight``."""
        return self.queued + self.in_flight


class Queue(abc.ABC):
    """A durable queue of request ids, one logical queue per API."""

    @abc.abstractmethod
    async def enqueue(self, api: str, request_id: str) -> None:
        """Add ``request_id`` to ``api``'s queue; durable once this returns.

        Enqueueing an id that is already in the queue is a no-op.
        """

    @abc.abstractmethod
    async def lease(self, api: str, *, visibility: float, limit: int = 1) -> list[Lease]:
        """Take up to ``limit`` visible requests, hiding each for ``visibility`` seconds.

        Returns at once; an empty list when nothing is visible. Requests whose lease lapsed are
        visible again. Oldest first, as far as the backend can tell.
        """

    @abc.abstractmethod
    async def renew(self, lease: Lease, *, visibility: float) -> bool:
        """Extend ``lease`` to ``visibility`` seconds from now; False if it is no longer held."""

    @abc.abstractmethod
    async def ack(self, lease: Lease) -> bool:
        """Remove the leased request from the queue; False if the lease is no longer held."""

    @abc.abstractmethod
    async def release(self, lease: Lease, *, delay: float = 0.0, attempted: bool = False) -> bool:
        """Hand the request back, visible again after ``delay`` seconds.

        Unless ``attempted``, the handed-back lease does not count as an attempt (a draining worker
        gives back work it never finished); an attempted one does (the user server went away
        mid-request and the request will be tried again). False if the lease is no longer held.
        """

    @abc.abstractmethod
    async def remove(self, api: str, request_id: str) -> bool:
        """Remove ``request_id`` whether leased or not; False if it was not queued."""

    @abc.abstractmethod
    async def depth(self, api: str) -> Depth:
        """Queued and leased counts for ``api``, and how long its oldest queued request has waited.

        The age counts from when the request last became visible, on the backend's clock: a
        request leased and handed back (or whose lease lapsed) waits afresh, since it is the wait
        for a worker that the age measures, not the request's whole life.
        """

    async def wait_lease(
        self, api: str, *, visibility: float, limit: int = 1, timeout: float, poll: float = 0.05
    ) -> list[Lease]:
        """Like :meth:`lease`, but waits up to ``timeout`` seconds for work to arrive.

        The base implementation polls, backing off from 5 ms to ``poll`` seconds; backends with
        blocking reads override it.
        """
        deadline = time.monotonic() + timeout
        delay = 0.005
        while True:
            leases = await self.lease(api, visibility=visibility, limit=limit)
            remaining = deadline - time.monotonic()
            if leases or remaining <= 0:
                return leases
            await asyncio.sleep(min(delay, remaining))
            delay = min(delay * 2, poll)

    async def wait_work(self, api: str, *, timeout: float, poll: float = 0.25) -> bool:
        """Wait up to ``timeout`` seconds until ``api`` has work (queued or leased); True once it has.

        Leases nothing, and leaves a waiting worker its wake-up: this is how the autoscaler learns
        at once that a request arrived for an API at zero replicas, from whichever gateway (or
        other process) enqueued it. True may come early (woken for work already finished), never
        late. The base implementation looks at :meth:`depth` every ``poll`` seconds; the backends,
        which announce each enqueue to wake idle workers, wait for that announcement instead.
        """
        deadline = time.monotonic() + timeout
        while True:
            if (await self.depth(api)).total:
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            await asyncio.sleep(min(poll, remaining))

    async def aclose(self) -> None:  # noqa: B027 - a backend without resources has nothing to close
        """Release connections and threads."""

    async def __aenter__(self) -> Queue:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
