"""An API's queue at a glance: its requests by status, its oldest queued request's wait, its replicas busy and idle.

What ``GET /queue/<api>`` answers and ``cortex get <api>`` shows beside Cortex's answer (RunPod's
per-endpoint ``/health``, job counts and worker counts, was the model). Each part comes from where it is
already kept, so a summary costs a few small reads however many requests the store holds:

- ``requests``: the record store's counts by status (:meth:`~cortex.store.base.RecordStore.counts`),
  over what it still holds: the API's retention window (``async.retention``, given as ``retention``);
- ``oldest_queued_age``: the queue's, as the autoscaler reads it (:meth:`~cortex.queue.base.Queue.depth`);
- ``replicas``: what each replica's dequeuer says it runs (:meth:`~cortex.runtime.base.Runtime.loads`,
  the numbers the runtime already asks for to remove idle replicas first). A replica is ``busy`` when it
  runs at least one request, whatever its state (one draining still finishes its work), and ``idle``
  when it is ready and runs none; a ready replica whose dequeuer did not answer is ``unknown``.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping
from typing import Any

from cortex.queue.base import Depth, Queue
from cortex.requests import Status
from cortex.runtime.base import ReplicaState, ReplicaStatus, Runtime
from cortex.store.base import RecordStore

#: the states in which a replica takes requests
_READY = (ReplicaState.READY, ReplicaState.READY_OUT_OF_DATE)


@dataclasses.dataclass(frozen=True, slots=True)
class ReplicaLoad:
    """An API's replicas by what they are doing."""

    requested: int  #: the replica count last asked for
    ready: int  #: taking requests
    busy: int  #: running at least one request (draining ones included)
    idle: int  #: ready and running none
    unknown: int  #: ready, but its dequeuer did not say what it runs
    in_flight: int  #: requests running on the replicas that said

    def to_json(self) -> dict[str, int]:
        """The fields by name."""
        return dataclasses.asdict(self)


def replica_load(requested: int, replicas: list[ReplicaStatus], loads: Mapping[str, int | None]) -> ReplicaLoad:
    """Count ``replicas`` by their state and ``loads`` (requests each runs, by replica id; None or absent: unknown)."""
    ready = busy = idle = unknown = in_flight = 0
    for replica in replicas:
        load = loads.get(replica.id)
        is_ready = replica.state in _READY
        ready += is_ready
        if load is not None and load > 0:
            busy += 1
            in_flight += load
        elif is_ready and load is None:
            unknown += 1
        elif is_ready:
            idle += 1
    return ReplicaLoad(requested, ready, busy, idle, unknown, in_flight)


@dataclasses.dataclass(frozen=True, slots=True)
class QueueSummary:
    """One API's queue summary (see the module's docstring for where each part comes from)."""

    api: str
    counts: dict[Status, int]
    depth: Depth
    replicas: ReplicaLoad
    retention: float  #: seconds the store keeps a record: the window the counts cover

    def to_json(self) -> dict[str, Any]:
        """The answer of ``GET /queue/<api>`` and the ``queue`` section of ``GET /get/<api>``."""
        return {
            "api": self.api,
            "requests": {status.value: n for status, n in self.counts.items()},
            "oldest_queued_age": self.depth.oldest_queued_age,
            "retention": self.retention,
            "replicas": self.replicas.to_json(),
        }


async def summarize(
    api: str, *, retention: float, records: RecordStore, queue: Queue, runtime: Runtime, now: float
) -> QueueSummary:
    """``api``'s queue summary now: the store's counts, the queue's depth and the replicas' loads, read together.

    Raises:
        BackendError: the queue or the record store did not answer.
    """
    counts, depth, loads = await asyncio.gather(records.counts(api, now=now), queue.depth(api), runtime.loads(api))
    load = replica_load(runtime.requested(api), runtime.replicas(api), loads)
    return QueueSummary(api, counts, depth, load, retention)
