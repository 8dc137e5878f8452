"""The data plane's contract (submit, take, finish); every backend passes it unchanged."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import pytest

from cortex.backends import Backends, BackendUrls, open_backends
from cortex.dataplane.base import Finished, Taken
from cortex.errors import BackendError
from cortex.requests import Duplicate, ErrorKind, NewRequest, Outcome, Status, now


def new(rid: str = "r1", *, key: str | None = None, digest: str | None = None, retention: float = 600) -> NewRequest:
    created = now()
    return NewRequest(
        id=rid,
        api="api",
        created_at=created,
        expires_at=created + retention,
        headers=(("Content-Type", "application/json"), ("X-A", "1")),
        payload=b'{"n": 1}',
        idempotency_key=key,
        body_digest=digest,
        webhook_url="http://127.0.0.1:9/hook",
    )


async def take(backends: Backends, *, limit: int = 10, max_attempts: int = 3, visibility: float = 30.0) -> list[Taken]:
    return await backends.plane.take(
        "api", visibility=visibility, limit=limit, max_attempts=max_attempts, timeout=0.0, poll=0.01
    )


async def test_submit_stores_the_record_and_queues_it_in_one_step(backends: Backends) -> None:
    assert await backends.plane.submit(new()) is None
    record = await backends.records.get("api", "r1", now=now())
    assert record is not None and record.status == Status.IN_QUEUE
    depth = await backends.queue.depth("api")
    assert (depth.queued, depth.in_flight) == (1, 0)


async def test_a_held_idempotency_key_stores_and_queues_nothing(backends: Backends) -> None:
    assert await backends.plane.submit(new("r1", key="k", digest="d")) is None
    assert await backends.plane.submit(new("r2", key="k", digest="d")) == Duplicate(id="r1", body_digest="d")
    assert await backends.records.get("api", "r2", now=now()) is None
    assert (await backends.queue.depth("api")).queued == 1


async def test_concurrent_submissions_each_get_their_own_answer(backends: Backends) -> None:
    """Submitted together (one batch where the backend batches): keys held, repeated and fresh."""
    assert await backends.plane.submit(new("r0", key="held", digest="d0")) is None
    answers = await asyncio.gather(
        backends.plane.submit(new("r1", key="k", digest="d1")),
        backends.plane.submit(new("r2")),
        backends.plane.submit(new("r3", key="held", digest="d3")),
        backends.plane.submit(new("r4", key="k", digest="d4")),
        backends.plane.submit(new("r5", key="a")),
    )
    assert list(answers) == [
        None,
        None,
        Duplicate(id="r0", body_digest="d0"),
        Duplicate(id="r1", body_digest="d1"),
        None,
    ]
    for rid in ("r1", "r2", "r5"):
        record = await backends.records.get("api", rid, now=now())
        assert record is not None and record.status == Status.IN_QUEUE
    for rid in ("r3", "r4"):
        assert await backends.records.get("api", rid, now=now()) is None
    assert (await backends.queue.depth("api")).queued == 4


async def test_an_expired_holder_frees_its_idempotency_key(backends: Backends) -> None:
    first = new("r1", key="k", retention=0.05)
    assert await backends.plane.submit(first) is None
    later = dataclasses.replace(new("r2", key="k"), created_at=first.expires_at + 1, expires_at=first.expires_at + 600)
    assert await backends.plane.submit(later) is None
    assert (await backends.queue.depth("api")).queued == 2


async def test_take_leases_and_starts_with_the_payload(backends: Backends) -> None:
    await backends.plane.submit(new())
    (taken,) = await take(backends)
    assert taken.started and not taken.exhausted
    assert taken.lease.attempts == 1
    record = taken.record
    assert record is not None
    assert (record.id, record.status, record.attempts, record.payload) == ("r1", Status.IN_PROGRESS, 1, b'{"n": 1}')
    assert record.headers == (("Content-Type", "application/json"), ("X-A", "1"))
    stored = await backends.records.get("api", "r1", now=now())
    assert stored is not None and stored.status == Status.IN_PROGRESS and stored.attempts == 1
    assert await take(backends) == []


async def test_take_waits_for_work_and_returns_empty_when_none_comes(backends: Backends) -> None:
    assert await backends.plane.take("api", visibility=30, limit=1, max_attempts=3, timeout=0.2, poll=0.01) == []


async def test_a_lease_past_max_attempts_is_not_started(backends: Backends) -> None:
    await backends.plane.submit(new())
    for attempt in (1, 2):
        (taken,) = await take(backends, max_attempts=2, visibility=0.01)
        assert taken.started and taken.lease.attempts == attempt
        await _lapse(backends)
    (taken,) = await take(backends, max_attempts=2)
    assert taken.exhausted and not taken.started
    assert taken.record is not None and taken.record.webhook_url == "http://127.0.0.1:9/hook"
    stored = await backends.records.get("api", "r1", now=now())
    assert stored is not None and stored.attempts == 2
    failed = Outcome.failed(ErrorKind.MAX_ATTEMPTS, "attempted twice")
    assert await backends.plane.finish(taken.lease, failed, now=now()) is Finished.FINISHED
    stored = await backends.records.get("api", "r1", now=now())
    assert stored is not None and stored.status == Status.FAILED and stored.error is not None
    assert stored.error.kind == "max_attempts"


async def test_finish_records_the_outcome_and_acks(backends: Backends) -> None:
    await backends.plane.submit(new())
    (taken,) = await take(backends)
    done = await backends.plane.finish(taken.lease, Outcome.completed(b'{"ok": true}'), now=now())
    assert done is Finished.FINISHED
    stored = await backends.records.get("api", "r1", now=now())
    assert stored is not None and stored.status == Status.COMPLETED and stored.result == b'{"ok": true}'
    depth = await backends.queue.depth("api")
    assert (depth.queued, depth.in_flight) == (0, 0)


async def test_finish_is_fenced_by_the_lease(backends: Backends) -> None:
    await backends.plane.submit(new())
    (old,) = await take(backends, visibility=0.01)
    await _lapse(backends)
    (current,) = await take(backends)
    assert current.lease.token != old.lease.token
    lost = await backends.plane.finish(old.lease, Outcome.completed(b'"stale"'), now=now())
    assert lost is Finished.LEASE_LOST
    stored = await backends.records.get("api", "r1", now=now())
    assert stored is not None and stored.status == Status.IN_PROGRESS and stored.result is None
    assert (await backends.queue.depth("api")).in_flight == 1
    done = await backends.plane.finish(current.lease, Outcome.completed(b'"fresh"'), now=now())
    assert done is Finished.FINISHED
    stored = await backends.records.get("api", "r1", now=now())
    assert stored is not None and stored.result == b'"fresh"'


async def test_finish_of_a_cancelled_request_only_acks(backends: Backends) -> None:
    await backends.plane.submit(new())
    (taken,) = await take(backends)
    assert await backends.records.finish("api", "r1", Outcome(Status.CANCELLED), now=now())
    done = await backends.plane.finish(taken.lease, Outcome.completed(b"1"), now=now())
    assert done is Finished.ALREADY_TERMINAL
    stored = await backends.records.get("api", "r1", now=now())
    assert stored is not None and stored.status == Status.CANCELLED and stored.result is None
    assert (await backends.queue.depth("api")).total == 0


async def test_a_terminal_record_is_taken_but_not_started(backends: Backends) -> None:
    await backends.plane.submit(new())
    assert await backends.records.finish("api", "r1", Outcome(Status.CANCELLED), now=now())
    (taken,) = await take(backends)
    assert not taken.started and taken.record is None


@pytest.mark.parametrize(
    ("queue", "store"),
    [
        ("sqlite:///{tmp}/a.db", "sqlite:///{tmp}/b.db"),
        ("redis://127.0.0.1:6379/0", "sqlite:///{tmp}/b.db"),
        ("redis://127.0.0.1:6379/0?prefix=a", "redis://127.0.0.1:6379/0?prefix=b"),
    ],
)
async def test_a_queue_and_a_store_on_two_servers_are_refused(queue: str, store: str, tmp_path: Path) -> None:
    urls = BackendUrls(
        queue=queue.format(tmp=tmp_path), store=store.format(tmp=tmp_path), blobs=f"file:///{tmp_path}/blobs"
    )
    with pytest.raises(BackendError, match="must be the same server"):
        await open_backends(urls)


async def _lapse(backends: Backends) -> None:
    """Wait until a 10 ms lease has lapsed (on the backend's clock: poll the depth, bounded)."""
    for _ in range(200):
        if (await backends.queue.depth("api")).queued:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the lease never lapsed")


async def test_concurrent_finishes_each_get_their_own_answer(backends: Backends) -> None:
    for rid in ("a", "b", "c"):
        await backends.plane.submit(new(rid))
    taken = {item.lease.id: item for item in await take(backends)}
    lost = dataclasses.replace(taken["c"].lease, token=taken["c"].lease.token + 1)
    answers = await asyncio.gather(
        backends.plane.finish(taken["a"].lease, Outcome.completed(b'"a"'), now=now()),
        backends.plane.finish(taken["b"].lease, Outcome.failed(ErrorKind.HTTP_STATUS, "500"), now=now()),
        backends.plane.finish(lost, Outcome.completed(b'"c"'), now=now()),
    )
    assert list(answers) == [Finished.FINISHED, Finished.FINISHED, Finished.LEASE_LOST]
    statuses = [(await backends.records.get("api", rid, now=now())) for rid in ("a", "b", "c")]
    assert [record.status if record else None for record in statuses] == [
        Status.COMPLETED,
        Status.FAILED,
        Status.IN_PROGRESS,
    ]
