"""What the shared suite cannot show about the Redis backend: expiry by TTL, blocking waits, key layout."""

from __future__ import annotations

import asyncio
import dataclasses
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from cortex.backends import Backends, BackendUrls, open_backends
from cortex.errors import BackendError
from cortex.redisdb import POOL_SIZE, parse_url, split_url
from cortex.requests import Duplicate, NewRequest
from cortex.store.base import Swept
from tests.servers.databases import REDIS_URL, redis_namespace


@pytest.fixture
async def url() -> AsyncIterator[str]:
    async with redis_namespace() as namespaced:
        yield namespaced


@pytest.fixture
async def backends(url: str, tmp_path: Path) -> AsyncIterator[Backends]:
    opened = await open_backends(BackendUrls(queue=url, store=url, blobs=f"file:///{tmp_path / 'blobs'}"))
    try:
        yield opened
    finally:
        await opened.aclose()


@pytest.fixture
async def raw() -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        yield client
    finally:
        await client.aclose()


def _request(rid: str, *, retention: float, ref: str | None = None) -> NewRequest:
    created = time.time()
    return NewRequest(
        id=rid, api="api", created_at=created, expires_at=created + retention, headers=(), payload_ref=ref
    )


async def test_redis_expiry_removes_the_record_and_sweep_still_finds_its_blob(
    backends: Backends, url: str, raw: aioredis.Redis
) -> None:
    _, prefix = split_url(url)
    await backends.records.create(_request("r1", retention=0.3, ref="blob-1"))
    assert await raw.exists(f"{prefix}r:r1") == 1
    assert 0 < await raw.pttl(f"{prefix}r:r1") <= 300
    await asyncio.sleep(0.5)
    # Redis itself deleted the record at its retention, no sweep needed
    assert await raw.exists(f"{prefix}r:r1") == 0
    assert await backends.records.get("api", "r1", now=0.0) is None
    # the blob is not orphaned: the sweep still names it, once, and counts the record it swept from
    # its index (whether Redis had already dropped the record or not: a full batch means "sweep again")
    assert await backends.records.sweep(now=time.time()) == Swept(deleted=1, blob_keys=["blob-1"])
    assert await backends.records.sweep(now=time.time()) == Swept(deleted=0, blob_keys=[])


async def test_an_unexpired_record_swept_early_is_counted(backends: Backends) -> None:
    await backends.records.create(_request("r1", retention=60, ref="blob-1"))
    assert await backends.records.sweep(now=time.time() + 61) == Swept(deleted=1, blob_keys=["blob-1"])
    assert await backends.records.get("api", "r1", now=0.0) is None


async def test_the_idempotency_key_expires_with_its_record(backends: Backends, url: str, raw: aioredis.Redis) -> None:
    _, prefix = split_url(url)
    first = dataclasses.replace(_request("r1", retention=0.3), idempotency_key="k", body_digest="d")
    assert await backends.records.create(first) is None
    assert 0 < await raw.pttl(f"{prefix}idem:api:k") <= 300
    again = dataclasses.replace(_request("r2", retention=60), idempotency_key="k", body_digest="d")
    assert await backends.records.create(again) == Duplicate(id="r1", body_digest="d")
    await asyncio.sleep(0.5)
    assert await raw.exists(f"{prefix}r:r1", f"{prefix}idem:api:k") == 0
    # the key is free again: a new request takes it
    later = dataclasses.replace(_request("r3", retention=60), idempotency_key="k")
    assert await backends.records.create(later) is None
    assert await backends.records.create(dataclasses.replace(later, id="r4")) == Duplicate(id="r3", body_digest=None)


async def test_every_key_is_under_the_url_prefix(backends: Backends, url: str, raw: aioredis.Redis) -> None:
    _, prefix = split_url(url)
    await backends.records.create(_request("r1", retention=60, ref="blob-1"))
    await backends.queue.enqueue("api", "r1")
    await backends.catalog.put_api("api", {"name": "api"}, "spec-1", now=0.0)
    await backends.queue.lease("api", visibility=30)
    keys = sorted([key.decode() async for key in raw.scan_iter(match=f"{prefix}*")])
    records = ("r:r1", "recent:api", "blobs:expiry", "blobs:refs", "expiry:api", "apis", "apis:created")
    counted = ("status:apis", "status:api:in_queue")  # the APIs with counts, the API's ids by status
    queue = ("q:{api}:due", "q:{api}:attempts", "q:{api}:tokens")
    assert keys == sorted(f"{prefix}{name}" for name in (*records, *counted, *queue))


def test_url_prefix_defaults_and_is_removed_from_the_client_url() -> None:
    assert split_url("redis://h:6379/0?prefix=team-a&socket_timeout=5") == (
        "redis://h:6379/0?socket_timeout=5",
        "team-a:",
    )
    assert split_url("rediss://:secret@h/1") == ("rediss://:secret@h/1", "cortex:")
    with pytest.raises(BackendError, match="invalid key prefix"):
        split_url("redis://h/0?prefix=a{b}")


def test_the_deadlines_default_and_are_taken_from_the_url() -> None:
    assert parse_url("redis://h:6379/0?prefix=p") == (
        "redis://h:6379/0?socket_timeout=5&socket_connect_timeout=5",
        "p:",
        5.0,
    )
    assert parse_url("redis://h/0?socket_timeout=1.5") == (
        "redis://h/0?socket_timeout=1.5&socket_connect_timeout=1.5",
        "cortex:",
        1.5,
    )
    with pytest.raises(BackendError, match="give seconds"):
        parse_url("redis://h/0?socket_connect_timeout=-1")


async def test_a_wait_longer_than_the_socket_timeout_is_not_an_outage(url: str, tmp_path: Path) -> None:
    short = f"{url}&socket_timeout=0.4"
    opened = await open_backends(BackendUrls(queue=short, store=short, blobs=f"file:///{tmp_path / 'blobs'}"))
    try:
        started = time.monotonic()
        assert await opened.queue.wait_lease("api", visibility=5, timeout=1.5) == []
        assert time.monotonic() - started >= 1.4
    finally:
        await opened.aclose()


async def test_a_waiter_blocks_on_the_server_and_wakes_at_once(backends: Backends) -> None:
    # poll=5 and a 1 s safety poll: only the blocking read can explain a quick wake-up
    waiting = asyncio.create_task(backends.queue.wait_lease("api", visibility=30, timeout=10, poll=5))
    await asyncio.sleep(0.3)
    enqueued = time.monotonic()
    await backends.queue.enqueue("api", "r1")
    leases = await waiting
    assert [lease.id for lease in leases] == ["r1"]
    assert time.monotonic() - enqueued < 0.2


async def test_watches_of_many_sleeping_apis_leave_the_shared_pool_free(backends: Backends) -> None:
    """More watches than the shared pool has connections: each blocks on the watch client's own."""
    queue = backends.queue
    apis = [f"api{i}" for i in range(POOL_SIZE + 16)]
    watches = [asyncio.create_task(queue.wait_work(api, timeout=30)) for api in apis]
    try:
        await asyncio.sleep(0.5)  # every watch has looked at its queue and blocks
        shared = queue._server.client.connection_pool  # type: ignore[attr-defined]
        assert len(shared._in_use_connections) == 0  # redis-py's count of checked-out connections
        for api in apis:
            await queue.enqueue(api, f"r-{api}")
        assert all(await asyncio.wait_for(asyncio.gather(*watches), timeout=20))
    finally:
        for watch in watches:
            watch.cancel()
        await asyncio.gather(*watches, return_exceptions=True)


async def test_a_waiter_wakes_when_a_lease_lapses(backends: Backends) -> None:
    await backends.queue.enqueue("api", "r1")
    await backends.queue.lease("api", visibility=0.3)
    started = time.monotonic()
    (lease,) = await backends.queue.wait_lease("api", visibility=30, timeout=10)
    assert lease.attempts == 2
    assert 0.2 < time.monotonic() - started < 0.7


async def test_unreachable_server_is_a_backend_error(tmp_path: Path) -> None:
    dead = "redis://127.0.0.1:1/0"
    with pytest.raises(BackendError, match=re.escape(dead)) as caught:
        await open_backends(BackendUrls(queue=dead, store=dead, blobs=f"file:///{tmp_path}"))
    assert caught.value.__cause__ is not None
