"""The queue contract; every backend passes it unchanged."""

from __future__ import annotations

import asyncio
import time

from cortex.backends import Backends


async def test_lease_returns_oldest_first_and_hides_it(backends: Backends) -> None:
    q = backends.queue
    for rid in ("a", "b", "c"):
        await q.enqueue("api", rid)
    first = await q.lease("api", visibility=30)
    assert [lease.id for lease in first] == ["a"]
    assert first[0].attempts == 1
    rest = await q.lease("api", visibility=30, limit=5)
    assert [lease.id for lease in rest] == ["b", "c"]
    assert await q.lease("api", visibility=30) == []


async def test_queues_are_separate_per_api(backends: Backends) -> None:
    q = backends.queue
    await q.enqueue("one", "x")
    assert await q.lease("two", visibility=30) == []
    assert [lease.id for lease in await q.lease("one", visibility=30)] == ["x"]


async def test_enqueue_twice_is_one_item(backends: Backends) -> None:
    q = backends.queue
    await q.enqueue("api", "a")
    await q.enqueue("api", "a")
    assert (await q.depth("api")).queued == 1


async def test_lapsed_lease_is_taken_again_with_one_more_attempt(backends: Backends) -> None:
    q = backends.queue
    await q.enqueue("api", "a")
    (old,) = await q.lease("api", visibility=0.05)
    await asyncio.sleep(0.1)
    (new,) = await q.lease("api", visibility=30)
    assert new.id == "a" and new.attempts == 2
    # the first holder lost it: it can neither renew nor ack the new lease
    assert not await q.renew(old, visibility=30)
    assert not await q.ack(old)
    assert await q.ack(new)


async def test_renew_keeps_the_lease(backends: Backends) -> None:
    q = backends.queue
    await q.enqueue("api", "a")
    (lease,) = await q.lease("api", visibility=0.2)
    for _ in range(3):
        await asyncio.sleep(0.1)
        assert await q.renew(lease, visibility=0.2)
    assert await q.lease("api", visibility=30) == []


async def test_ack_removes(backends: Backends) -> None:
    q = backends.queue
    await q.enqueue("api", "a")
    (lease,) = await q.lease("api", visibility=0.05)
    assert await q.ack(lease)
    await asyncio.sleep(0.1)
    assert await q.lease("api", visibility=30) == []
    assert await q.depth("api") == (await q.depth("api")).__class__(queued=0, in_flight=0)


async def test_release_hands_back_without_counting_an_attempt(backends: Backends) -> None:
    q = backends.queue
    await q.enqueue("api", "a")
    (lease,) = await q.lease("api", visibility=30)
    assert await q.release(lease)
    assert not await q.ack(lease)
    (again,) = await q.lease("api", visibility=30)
    assert again.id == "a" and again.attempts == 1


async def test_release_of_an_attempted_lease_counts_it(backends: Backends) -> None:
    q = backends.queue
    await q.enqueue("api", "a")
    (lease,) = await q.lease("api", visibility=30)
    assert await q.release(lease, attempted=True)
    (again,) = await q.lease("api", visibility=30)
    assert again.attempts == 2


async def test_release_with_delay(backends: Backends) -> None:
    q = backends.queue
    await q.enqueue("api", "a")
    (lease,) = await q.lease("api", visibility=30)
    assert await q.release(lease, delay=0.2)
    assert await q.lease("api", visibility=30) == []
    await asyncio.sleep(0.3)
    assert len(await q.lease("api", visibility=30)) == 1


async def test_depth_counts_queued_and_in_flight(backends: Backends) -> None:
    q = backends.queue
    for rid in ("a", "b", "c"):
        await q.enqueue("api", rid)
    await q.lease("api", visibility=30)
    depth = await q.depth("api")
    assert (depth.queued, depth.in_flight, depth.total) == (2, 1, 3)
    empty = await q.depth("other")
    assert (empty.queued, empty.in_flight, empty.oldest_queued_age) == (0, 0, 0.0)


#: seconds the backends' clocks (server time, statement start) may differ from the test's measurements
SLACK = 0.05


async def test_depth_tells_the_age_of_the_oldest_queued_request(backends: Backends) -> None:
    q = backends.queue
    assert (await q.depth("api")).oldest_queued_age == 0.0
    before_a = time.monotonic()
    await q.enqueue("api", "a")
    await asyncio.sleep(0.3)
    before_b = time.monotonic()
    await q.enqueue("api", "b")
    depth = await q.depth("api")
    assert 0.3 - SLACK <= depth.oldest_queued_age <= time.monotonic() - before_a + SLACK
    (lease,) = await q.lease("api", visibility=30)
    assert lease.id == "a"
    # a leased request is not queued: the oldest queued one is now b
    assert 0.0 <= (await q.depth("api")).oldest_queued_age <= time.monotonic() - before_b + SLACK
    await q.lease("api", visibility=30)
    assert (await q.depth("api")).oldest_queued_age == 0.0
    assert (await q.depth("other")).oldest_queued_age == 0.0


async def test_a_request_handed_back_waits_afresh(backends: Backends) -> None:
    q = backends.queue
    await q.enqueue("api", "a")
    await asyncio.sleep(0.3)
    (lease,) = await q.lease("api", visibility=30)
    before = time.monotonic()
    assert await q.release(lease)
    assert (await q.depth("api")).oldest_queued_age <= time.monotonic() - before + SLACK


async def test_the_age_of_a_lapsed_or_delayed_request_counts_from_when_it_became_visible(backends: Backends) -> None:
    q = backends.queue
    await q.enqueue("api", "lapsed")
    await q.enqueue("api", "delayed")
    before = time.monotonic()
    leases = await q.lease("api", visibility=0.1, limit=2)
    assert [lease.id for lease in leases] == ["lapsed", "delayed"]
    assert await q.release(leases[1], delay=0.1)
    await asyncio.sleep(0.3)
    depth = await q.depth("api")
    assert depth.queued == 2
    # both became visible about 0.1 s after the lease: 0.2 s ago, not 0.3 s (their enqueue)
    assert 0.2 - SLACK <= depth.oldest_queued_age <= time.monotonic() - before - 0.1 + SLACK


async def test_remove(backends: Backends) -> None:
    q = backends.queue
    await q.enqueue("api", "a")
    await q.enqueue("api", "b")
    assert await q.remove("api", "a")
    assert not await q.remove("api", "a")
    assert [lease.id for lease in await q.lease("api", visibility=30, limit=5)] == ["b"]


async def test_wait_lease_wakes_when_work_arrives(backends: Backends) -> None:
    q = backends.queue

    async def later() -> None:
        await asyncio.sleep(0.1)
        await q.enqueue("api", "a")

    task = asyncio.create_task(later())
    leases = await q.wait_lease("api", visibility=30, timeout=5)
    await task
    assert [lease.id for lease in leases] == ["a"]


async def test_wait_lease_gives_up_at_its_deadline(backends: Backends) -> None:
    assert await backends.queue.wait_lease("api", visibility=30, timeout=0.1) == []


async def test_wait_work_is_true_at_once_when_work_is_queued(backends: Backends) -> None:
    await backends.queue.enqueue("api", "a")
    assert await backends.queue.wait_work("api", timeout=0.0)
    assert (await backends.queue.depth("api")).queued == 1  # it only looked: nothing was leased
    await backends.queue.lease("api", visibility=30)
    assert await backends.queue.wait_work("api", timeout=0.0)  # in flight is work too


async def test_wait_work_gives_up_at_its_deadline(backends: Backends) -> None:
    await backends.queue.enqueue("other", "a")  # another API's work does not count
    assert not await backends.queue.wait_work("api", timeout=0.1)


async def test_wait_work_and_a_workers_wait_both_end_at_an_enqueue(backends: Backends) -> None:
    """The autoscaler watching a sleeping API does not take the wake-up of a worker waiting on it."""
    q = backends.queue
    watching = asyncio.create_task(q.wait_work("api", timeout=3600))
    working = asyncio.create_task(q.wait_lease("api", visibility=30, timeout=3600))
    await asyncio.sleep(0.1)
    assert not watching.done() and not working.done()
    await q.enqueue("api", "a")
    assert await asyncio.wait_for(watching, timeout=20)
    (lease,) = await asyncio.wait_for(working, timeout=20)
    assert lease.id == "a"


async def test_concurrent_workers_never_share_a_request(backends: Backends) -> None:
    q = backends.queue
    await asyncio.gather(*(q.enqueue("api", f"r{i:04d}") for i in range(300)))
    seen: list[str] = []

    async def worker() -> None:
        while leases := await q.lease("api", visibility=30, limit=7):
            for lease in leases:
                seen.append(lease.id)
                assert await q.ack(lease)

    await asyncio.gather(*(worker() for _ in range(6)))
    assert sorted(seen) == [f"r{i:04d}" for i in range(300)]
