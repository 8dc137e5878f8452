"""The data plane: the three steps of a request, each atomic and one round trip on every backend.

The gateway and the dequeuer see only this interface (DESIGN §1):

- :meth:`DataPlane.submit`: the record, its queue entry and its idempotency key, all or nothing;
- :meth:`DataPlane.submit_many`: the same for a batch of requests (``POST /<api>/batch``), all or nothing;
- :meth:`DataPlane.take`: leases, and the start of each leased request (``attempts`` counted,
  ``max_attempts`` applied), returned together with the record and where its payload is;
- :meth:`DataPlane.finish`: the outcome and the ack, fenced by the lease.

Each backend does each step its own best way: SQLite in one commit (its group commit), Redis in
one Lua script, PostgreSQL in one statement. That is why the queue and the records of a cluster
must live on one server (:func:`cortex.backends.open_backends` refuses two).
"""

from __future__ import annotations

import abc
import asyncio
import dataclasses
import enum
from collections.abc import Sequence
from types import TracebackType

from cortex.dataplane.watch import ChangeWatch
from cortex.queue.base import Lease
from cortex.requests import Duplicate, NewRequest, Outcome, RequestRecord


@dataclasses.dataclass(frozen=True, slots=True)
class Taken:
    """A lease taken together with the start of its request."""

    lease: Lease
    #: the request: started (``in_progress``, with payload and headers) when ``started``; else as
    #: it stood (with its payload, when past ``max_attempts``), or None when it is missing, expired or already terminal
    record: RequestRecord | None
    #: False when the lease is past ``max_attempts`` (not started: it is to be failed) or the
    #: record could not be started (missing or terminal: the lease is only to be acked)
    started: bool

    @property
    def exhausted(self) -> bool:
        """The lease is past ``max_attempts``: the request is to be failed, not run."""
        return not self.started and self.record is not None


class Finished(enum.Enum):
    """What :meth:`DataPlane.finish` did."""

    #: the outcome is recorded and the lease acked
    FINISHED = "finished"
    #: the record was already terminal (cancelled meanwhile, say) or gone: only the lease was acked
    ALREADY_TERMINAL = "already_terminal"
    #: the lease is no longer held (it lapsed and another worker took the request, or it was
    #: removed): nothing was written
    LEASE_LOST = "lease_lost"


class DataPlane(abc.ABC):
    """The steps of a request that touch both its record and its queue entry."""

    _watch: ChangeWatch | None = None

    @property
    def changes(self) -> ChangeWatch:
        """This process's one subscription to the starts and finishes the steps announce (:mod:`.watch`)."""
        if self._watch is None:
            self._watch = ChangeWatch(self._listen_changes, stops_itself=self._listen_stops_itself)
        return self._watch

    #: whether :meth:`_listen_changes` returns by itself once the watch is closed (else it is cancelled)
    _listen_stops_itself = False

    async def _listen_changes(self, watch: ChangeWatch) -> None:
        """Run the backend's subscription (see :class:`ChangeWatch`); by default nothing is announced."""
        watch.subscribed()
        await asyncio.Event().wait()

    @abc.abstractmethod
    async def submit(self, request: NewRequest) -> Duplicate | None:
        """Store ``request`` as an ``in_queue`` record and queue it, atomically; durable once this returns.

        If ``request.idempotency_key`` is held by an unexpired request of the same API, nothing is
        stored and that request is returned as a :class:`~cortex.requests.Duplicate`; an expired
        holder frees the key. Should this raise :class:`~cortex.errors.BackendError`, the request
        may or may not be stored (a timeout cannot tell): either both the record and its queue
        entry exist or neither does, so a retry with the same idempotency key finds it queued or
        queues it.
        """

    @abc.abstractmethod
    async def submit_many(self, requests: Sequence[NewRequest]) -> list[Duplicate | None] | None:
        """Store and queue every request of ``requests``, all or nothing, in one atomic step and one round trip.

        None once every record and queue entry is stored (durable), queued in the order given.
        Should an unexpired request hold the idempotency key of any of them, nothing is stored and
        the answer says, per request in order, the :class:`~cortex.requests.Duplicate` holding its
        key, or None. An expired holder frees the key, as in :meth:`submit`. A request id already
        stored raises :class:`~cortex.errors.BackendError` and stores nothing; so may an outage,
        after which either all the requests are stored or none is.

        Raises:
            ValueError: ``requests`` is empty, or repeats an id or an (API, idempotency key) pair.
        """

    @abc.abstractmethod
    async def take(
        self, api: str, *, visibility: float, limit: int, max_attempts: int, timeout: float, poll: float = 0.05
    ) -> list[Taken]:
        """Lease up to ``limit`` requests of ``api``, waiting up to ``timeout`` seconds for one.

        Each lease hides its request for ``visibility`` seconds and counts an attempt; in the same
        step each request whose lease is within ``max_attempts`` moves to ``in_progress`` with
        that attempt count and comes back with its payload and headers. ``poll`` bounds the pause
        between two looks where the backend cannot be woken.
        """

    @abc.abstractmethod
    async def finish(self, lease: Lease, outcome: Outcome, *, now: float) -> Finished:
        """Record ``outcome`` (dropping the payload and headers) and ack ``lease``, atomically.

        Fenced by the lease: when another worker holds a newer lease on the request (or the
        entry is gone), nothing is written and :attr:`Finished.LEASE_LOST` says so. A terminal
        status never changes: a record already terminal is left as it is and only the lease
        is acked.
        """

    async def aclose(self) -> None:
        """Release what the data plane holds beyond the shared connections (wake-up sockets, listeners)."""
        if self._watch is not None:
            await self._watch.aclose()

    async def __aenter__(self) -> DataPlane:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


def check_batch(requests: Sequence[NewRequest]) -> None:
    """Refuse what :meth:`DataPlane.submit_many` cannot store as given (see its ``Raises``)."""
    if not requests:
        raise ValueError("a batch needs at least one request")
    if len({request.id for request in requests}) != len(requests):
        raise ValueError("a batch repeats a request id")
    keys = [(request.api, request.idempotency_key) for request in requests if request.idempotency_key is not None]
    if len(set(keys)) != len(keys):
        raise ValueError("a batch repeats an idempotency key")
