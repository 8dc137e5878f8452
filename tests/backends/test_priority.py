"""``X-Cortex-Priority`` in the take's order: highest priority first, then oldest first, on every backend."""

from __future__ import annotations

import asyncio
import dataclasses

from cortex.backends import Backends
from cortex.dataplane.base import Taken
from cortex.requests import NewRequest, Outcome, Status, now


def new(rid: str, priority: int | None = None) -> NewRequest:
    created = now()
    return NewRequest(
        id=rid, api="api", created_at=created, expires_at=created + 600, headers=(), payload=b"{}", priority=priority
    )


async def take(backends: Backends, limit: int) -> list[Taken]:
    return await backends.plane.take("api", visibility=30.0, limit=limit, max_attempts=3, timeout=0.0, poll=0.01)


async def test_a_priority_9_request_submitted_behind_1000_priority_0_requests_starts_before_them(
    backends: Backends,
) -> None:
    for start in range(0, 1000, 100):  # in chunks: each backend stores a chunk at its own pace
        answers = await asyncio.gather(*(backends.plane.submit(new(f"r{n:04}", 0)) for n in range(start, start + 100)))
        assert set(answers) == {None}
    assert await backends.plane.submit(new("urgent", 9)) is None
    assert (await backends.queue.depth("api")).queued == 1001

    (first,) = await take(backends, 1)
    assert first.lease.id == "urgent" and first.started
    assert first.record is not None and first.record.priority == 9
    # then the priority-0 ones (submitted concurrently, so in no order of their ids)
    assert all(t.lease.id.startswith("r") for t in await take(backends, 2))
    depth = await backends.queue.depth("api")
    assert (depth.queued, depth.in_flight) == (998, 3)


async def test_levels_are_taken_highest_first_and_oldest_first_within_one(backends: Backends) -> None:
    for rid, priority in [("a", None), ("b", 5), ("c", 1), ("d", 5), ("e", 9), ("f", 0)]:
        assert await backends.plane.submit(new(rid, priority)) is None
    assert [t.lease.id for t in await take(backends, 3)] == ["e", "b", "d"]
    assert [t.lease.id for t in await take(backends, 10)] == ["c", "a", "f"]
    record = await backends.records.get("api", "a", now=now())
    assert record is not None and record.priority is None  # not sent: shown nowhere, taken as 0


async def test_a_finished_priority_request_is_not_taken_again(backends: Backends) -> None:
    assert await backends.plane.submit(new("p", 7)) is None
    (taken,) = await take(backends, 1)
    await backends.plane.finish(taken.lease, Outcome(Status.COMPLETED, result=b"1"), now=now())
    assert await backends.plane.submit(new("q", 7)) is None
    assert [t.lease.id for t in await take(backends, 10)] == ["q"]
    assert await take(backends, 10) == []
    record = await backends.records.get("api", "p", now=now())
    assert record is not None and dataclasses.replace(record, finished_at=None).priority == 7
