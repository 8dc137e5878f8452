"""Counts by status (:meth:`RecordStore.counts`): kept by every step that changes a status, on every backend."""

from __future__ import annotations

import asyncio

from cortex.backends import Backends
from cortex.requests import ErrorKind, NewRequest, Outcome, RequestError, Status, now


def new(rid: str, *, api: str = "api", retention: float = 600) -> NewRequest:
    created = now()
    return NewRequest(id=rid, api=api, created_at=created, expires_at=created + retention, headers=(), payload=b"{}")


def expect(**counts: int) -> dict[Status, int]:
    return {status: counts.get(status.value, 0) for status in Status}


async def test_an_api_without_requests_counts_zero_in_every_status(backends: Backends) -> None:
    assert await backends.records.counts("api", now=now()) == expect()


async def test_the_counts_follow_each_step_of_the_data_plane(backends: Backends) -> None:
    plane, records = backends.plane, backends.records
    for n in range(4):
        assert await plane.submit(new(f"r{n}")) is None
    assert await records.counts("api", now=now()) == expect(in_queue=4)

    taken = await plane.take("api", visibility=30, limit=3, max_attempts=3, timeout=0)
    assert len(taken) == 3 and all(t.started for t in taken)
    assert await records.counts("api", now=now()) == expect(in_queue=1, in_progress=3)

    await plane.finish(taken[0].lease, Outcome(Status.COMPLETED, result=b"{}"), now=now())
    failure = RequestError(ErrorKind.HTTP_STATUS.value, "boom")
    await plane.finish(taken[1].lease, Outcome(Status.FAILED, error=failure), now=now())
    # a finish that finds the record terminal already changes nothing
    await plane.finish(taken[0].lease, Outcome(Status.FAILED, error=failure), now=now())
    assert await records.counts("api", now=now()) == expect(in_queue=1, in_progress=1, completed=1, failed=1)


async def test_the_counts_follow_the_record_stores_own_steps(backends: Backends) -> None:
    records = backends.records
    for n in range(3):
        await records.create(new(f"r{n}"))
    assert await records.start("api", "r0", attempts=1, now=now()) is not None
    cancelled = Outcome(Status.CANCELLED, error=RequestError(ErrorKind.PURGED.value, "purged"))
    assert await records.finish("api", "r1", cancelled, now=now())
    assert not await records.finish("api", "r1", Outcome(Status.COMPLETED, result=b"1"), now=now())
    assert await records.finish("api", "r0", Outcome(Status.COMPLETED, result=b"1"), now=now())
    assert await records.counts("api", now=now()) == expect(in_queue=1, completed=1, cancelled=1)


async def test_each_api_counts_only_its_own_requests(backends: Backends) -> None:
    await backends.plane.submit(new("a1", api="api"))
    await backends.plane.submit(new("b1", api="other"))
    await backends.plane.submit(new("b2", api="other"))
    assert await backends.records.counts("api", now=now()) == expect(in_queue=1)
    assert await backends.records.counts("other", now=now()) == expect(in_queue=2)


async def test_swept_records_are_no_longer_counted(backends: Backends) -> None:
    records = backends.records
    await backends.plane.submit(new("short", retention=1))
    await backends.plane.submit(new("long"))
    taken = await backends.plane.take("api", visibility=30, limit=2, max_attempts=3, timeout=0)
    for t in taken:
        await backends.plane.finish(t.lease, Outcome(Status.COMPLETED, result=b"{}"), now=now())
    later = now() + 5
    while (await records.sweep(now=later)).deleted:
        pass
    assert await records.counts("api", now=later) == expect(completed=1)


async def test_an_expired_request_still_queued_leaves_the_counts_once_swept(backends: Backends) -> None:
    await backends.plane.submit(new("short", retention=1))
    await backends.plane.submit(new("long"))
    later = now() + 5
    while (await backends.records.sweep(now=later)).deleted:
        pass
    assert await backends.records.counts("api", now=later) == expect(in_queue=1)


async def test_concurrent_steps_in_batches_are_each_counted_once(backends: Backends) -> None:
    """Submissions, takes, finishes and cancels run together (batched where the backend batches them)."""
    plane, records = backends.plane, backends.records
    answers = await asyncio.gather(*(plane.submit(new(f"r{n:02d}")) for n in range(40)))
    assert answers == [None] * 40
    batches = await asyncio.gather(
        *(plane.take("api", visibility=30, limit=5, max_attempts=3, timeout=0) for _ in range(5))
    )
    taken = [t for batch in batches for t in batch]
    assert len(taken) == 25 and len({t.lease.id for t in taken}) == 25
    taken_ids = {t.lease.id for t in taken}
    queued = sorted(f"r{n:02d}" for n in range(40) if f"r{n:02d}" not in taken_ids)
    failure = RequestError(ErrorKind.HTTP_STATUS.value, "500")
    cancelled = Outcome(Status.CANCELLED, error=RequestError(ErrorKind.PURGED.value, "purged"))
    await asyncio.gather(
        *(plane.finish(t.lease, Outcome(Status.COMPLETED, result=b"{}"), now=now()) for t in taken[:15]),
        *(plane.finish(t.lease, Outcome(Status.FAILED, error=failure), now=now()) for t in taken[15:20]),
        *(records.finish("api", rid, cancelled, now=now()) for rid in queued[:6]),
    )
    assert await records.counts("api", now=now()) == expect(
        in_queue=9, in_progress=5, completed=15, failed=5, cancelled=6
    )


async def test_a_batch_is_counted_with_the_step_that_stores_it(backends: Backends) -> None:
    batch = [new(f"b{n}") for n in range(5)] + [new("o1", api="other")]
    assert await backends.plane.submit_many(batch) is None
    assert await backends.records.counts("api", now=now()) == expect(in_queue=5)
    assert await backends.records.counts("other", now=now()) == expect(in_queue=1)
    taken = await backends.plane.take("api", visibility=30, limit=2, max_attempts=3, timeout=0)
    await backends.plane.finish(taken[0].lease, Outcome(Status.COMPLETED, result=b"{}"), now=now())
    assert await backends.records.counts("api", now=now()) == expect(in_queue=3, in_progress=1, completed=1)
