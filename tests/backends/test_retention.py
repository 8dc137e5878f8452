"""Retention, checked by reading each backend directly: after ``async.retention`` nothing of a request is left.

The record, its result, its payload (inline or blob), its stored headers, its idempotency key and its
queue entry are gone; on SQLite not even the bytes stay in the database or WAL file. A sweep that
skipped the records without a blob (or any other kind) leaves one of them behind and fails here.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as aioredis

from cortex.backends import Backends, BackendUrls, local_path, open_backends
from cortex.errors import NotFound
from cortex.gateway import GatewaySettings
from cortex.gateway.app import Gateway
from cortex.postgresdb import split_url as pg_split
from cortex.redisdb import split_url as redis_split
from cortex.requests import NewRequest, Outcome, Status, now
from tests.conftest import BACKENDS
from tests.servers.databases import urls_for

MARK = b"SECRET-7f3a9c"
IDS = ("r-done", "r-inline", "r-blob", "r-cancelled")


@pytest.fixture(params=BACKENDS)
async def opened(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[tuple[str, BackendUrls, Backends]]:
    async with urls_for(request.param, tmp_path) as urls:
        backends = await open_backends(urls)
        try:
            yield request.param, urls, backends
        finally:
            await backends.aclose()


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


def _request(rid: str, *, retention: float, ref: str | None = None, key: str | None = None) -> NewRequest:
    created = now()
    return NewRequest(
        id=rid,
        api="api",
        created_at=created,
        expires_at=created + retention,
        headers=(("X-Secret", (MARK + b"-header").decode()),),
        payload=None if ref else MARK + b"-payload-" + rid.encode(),
        payload_ref=ref,
        idempotency_key=key,
        body_digest="d" if key else None,
    )


async def test_after_retention_nothing_of_a_request_is_left(opened: tuple[str, BackendUrls, Backends]) -> None:
    name, urls, backends = opened
    retention = 0.5
    await backends.plane.submit(_request("r-done", retention=retention, key="key-done"))
    (taken,) = await backends.plane.take("api", visibility=30, limit=1, max_attempts=3, timeout=1.0)
    await backends.plane.finish(taken.lease, Outcome.completed(b'"' + MARK + b'-result"'), now=now())
    await backends.plane.submit(_request("r-inline", retention=retention, key="key-inline"))
    await backends.blobs.put("blob-1", _chunks(MARK + b"-blob"))
    await backends.plane.submit(_request("r-blob", retention=retention, ref="blob-1"))
    await backends.plane.submit(_request("r-cancelled", retention=retention))
    assert await backends.records.finish("api", "r-cancelled", Outcome(Status.CANCELLED), now=now())
    await backends.queue.remove("api", "r-cancelled")
    assert await leftovers(name, urls, IDS)  # the reading below sees what is there

    await asyncio.sleep(retention + 0.2)
    await Gateway(backends, GatewaySettings()).sweep_once()

    with pytest.raises(NotFound):
        await anext(backends.blobs.open("blob-1"))
    for _ in range(100):  # SQLite's WAL is emptied by its writer thread, just after the sweep
        left = await leftovers(name, urls, IDS)
        if not left:
            break
        await asyncio.sleep(0.05)
    assert left == []


async def test_the_sweep_loop_removes_more_than_a_batch_of_expired_blobs(
    opened: tuple[str, BackendUrls, Backends],
) -> None:
    _, _, backends = opened
    count = 1100  # more than one sweep batch (1,000)
    for start in range(0, count, 100):
        batch = range(start, min(start + 100, count))
        await asyncio.gather(*(backends.blobs.put(f"blob-{i}", _chunks(b"x")) for i in batch))
        await asyncio.gather(
            *(backends.plane.submit(_request(f"r{i:05d}", retention=0.3, ref=f"blob-{i}")) for i in batch)
        )
    await asyncio.sleep(0.5)
    gateway = Gateway(backends, GatewaySettings(sweep_interval=3600))
    sweeper = asyncio.create_task(gateway.sweep_forever())
    try:
        for _ in range(600):  # the first pass of the loop, bounded
            left = [i for i in (0, count // 2, count - 1) if await _blob_exists(backends, f"blob-{i}")]
            if not left:
                break
            await asyncio.sleep(0.05)
    finally:
        sweeper.cancel()
        with pytest.raises(asyncio.CancelledError):
            await sweeper
    missing = [i for i in range(count) if await _blob_exists(backends, f"blob-{i}")]
    assert missing == []
    assert (await backends.queue.depth("api")).total == 0


async def _blob_exists(backends: Backends, key: str) -> bool:
    try:
        await anext(backends.blobs.open(key))
    except NotFound:
        return False
    return True


async def leftovers(name: str, urls: BackendUrls, ids: tuple[str, ...]) -> list[str]:
    """What is left of requests ``ids`` (API ``api``), read from the backend itself."""
    if name == "sqlite":
        return _sqlite_leftovers(local_path(urls.store), ids)
    if name == "redis":
        return await _redis_leftovers(urls.store, ids)
    return await _postgres_leftovers(urls.store, ids)


def _sqlite_leftovers(path: Path, ids: tuple[str, ...]) -> list[str]:
    left = []
    conn = sqlite3.connect(path)
    try:
        marks = ",".join("?" * len(ids))
        for table in ("requests", "queue"):
            for (rid,) in conn.execute(f"SELECT id FROM {table} WHERE id IN ({marks})", ids):
                left.append(f"{table} row {rid}")
    finally:
        conn.close()
    for file in (path, Path(f"{path}-wal")):
        if file.exists() and MARK in file.read_bytes():
            left.append(f"bytes of a payload, result or header in {file.name}")
    return left


async def _redis_leftovers(url: str, ids: tuple[str, ...]) -> list[str]:
    client_url, prefix = redis_split(url)
    client = aioredis.Redis.from_url(client_url)
    left = []
    try:
        for rid in ids:
            if await client.exists(f"{prefix}r:{rid}"):
                left.append(f"record {rid}")
            if await client.zscore(f"{prefix}q:{{api}}:due", rid) is not None:
                left.append(f"queue entry {rid}")
            for index in ("blobs:refs", "expiry:api"):
                if await client.hexists(f"{prefix}{index}", rid):
                    left.append(f"{index} entry {rid}")
        for key in ("key-done", "key-inline"):
            if await client.exists(f"{prefix}idem:api:{key}"):
                left.append(f"idempotency key {key}")
        if await client.llen(f"{prefix}blobs:done"):
            left.append("blob keys not handed over")
    finally:
        await client.aclose()
    return left


async def _postgres_leftovers(url: str, ids: tuple[str, ...]) -> list[str]:
    dsn, schema = pg_split(url)
    conn = await asyncpg.connect(dsn)
    left = []
    try:
        for table in ("requests", "queue"):
            rows = await conn.fetch(f'SELECT id FROM "{schema}".{table} WHERE id = ANY($1::text[])', list(ids))
            left += [f"{table} row {row[0]}" for row in rows]
    finally:
        await conn.close()
    return left
