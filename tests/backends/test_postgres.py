"""What the shared suite cannot show about the PostgreSQL backend: NOTIFY wake-ups, schemas, concurrent opens."""

from __future__ import annotations

import asyncio
import dataclasses
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from cortex.backends import Backends, BackendUrls, Resources, open_backends
from cortex.errors import BackendError
from cortex.postgresdb import open_server, parse_url, split_url, wrap_errors
from cortex.requests import Duplicate, NewRequest
from tests.servers.databases import POSTGRES_URL, postgres_namespace


@pytest.fixture
async def url() -> AsyncIterator[str]:
    async with postgres_namespace() as namespaced:
        yield namespaced


def _urls(url: str, tmp_path: Path) -> BackendUrls:
    return BackendUrls(queue=url, store=url, blobs=f"file:///{tmp_path / 'blobs'}")


@pytest.fixture
async def backends(url: str, tmp_path: Path) -> AsyncIterator[Backends]:
    opened = await open_backends(_urls(url, tmp_path))
    try:
        yield opened
    finally:
        await opened.aclose()


async def test_notify_wakes_a_waiter_of_another_pool_at_once(backends: Backends, url: str, tmp_path: Path) -> None:
    producer = await open_backends(_urls(url, tmp_path))
    try:
        # poll=5 and a 1 s safety poll: only the notification can explain a quick wake-up
        waiting = asyncio.create_task(backends.queue.wait_lease("api", visibility=30, timeout=10, poll=5))
        await asyncio.sleep(0.3)
        enqueued = time.monotonic()
        await producer.queue.enqueue("api", "r1")
        leases = await waiting
        assert [lease.id for lease in leases] == ["r1"]
        assert time.monotonic() - enqueued < 0.2
    finally:
        await producer.aclose()


async def test_a_waiter_wakes_when_a_lease_lapses(backends: Backends) -> None:
    await backends.queue.enqueue("api", "r1")
    await backends.queue.lease("api", visibility=0.3)
    started = time.monotonic()
    (lease,) = await backends.queue.wait_lease("api", visibility=30, timeout=10)
    assert lease.attempts == 2
    assert 0.2 < time.monotonic() - started < 0.7


async def test_concurrent_creates_with_one_idempotency_key_store_one(
    backends: Backends, url: str, tmp_path: Path
) -> None:
    other = await open_backends(_urls(url, tmp_path))
    try:
        requests = [
            NewRequest(
                id=f"r{i}", api="api", created_at=1.0, expires_at=2e10, headers=(), idempotency_key="k", body_digest="d"
            )
            for i in range(8)
        ]
        stores = [backends.records, other.records]
        answers = await asyncio.gather(*(stores[i % 2].create(r) for i, r in enumerate(requests)))
    finally:
        await other.aclose()
    stored = [r.id for r, answer in zip(requests, answers, strict=True) if answer is None]
    assert len(stored) == 1
    assert all(answer in (None, Duplicate(id=stored[0], body_digest="d")) for answer in answers)
    # an expired holder gives its key to the next request
    later = dataclasses.replace(requests[0], id="late", created_at=3e10, expires_at=4e10)
    assert await backends.records.create(later) is None


async def test_tables_live_in_the_url_schema(backends: Backends, url: str) -> None:
    _, schema = split_url(url)
    conn = await asyncpg.connect(POSTGRES_URL)
    try:
        rows = await conn.fetch("SELECT table_name FROM information_schema.tables WHERE table_schema = $1", schema)
    finally:
        await conn.close()
    assert sorted(row[0] for row in rows) == [
        "apis",
        "applied_ddl",
        "queue",
        "queue_version",
        "request_count_changes",
        "request_counts",
        "requests",
        "retired_apis",
        "store_version",
    ]


async def test_processes_opening_a_new_schema_together_do_not_race(url: str, tmp_path: Path) -> None:
    opened = await asyncio.gather(*(open_backends(_urls(url, tmp_path)) for _ in range(6)))
    for backends in opened:
        await backends.aclose()


def test_url_schema_defaults_and_is_removed_from_the_driver_url() -> None:
    assert split_url("postgresql://u@h:5432/db?schema=team_a&sslmode=disable") == (
        "postgresql://u@h:5432/db?sslmode=disable",
        "team_a",
    )
    assert split_url("postgres://u:pw@h/db") == ("postgres://u:pw@h/db", "cortex")
    with pytest.raises(BackendError, match="invalid schema"):
        split_url('postgresql://h/db?schema=x";drop')


def test_the_deadlines_default_and_are_taken_from_the_url() -> None:
    assert parse_url("postgresql://u@h/db") == ("postgresql://u@h/db", "cortex", 10.0, 10.0)
    parsed = parse_url("postgresql://u@h/db?command_timeout=1.5&connect_timeout=2&application_name=gw")
    assert parsed == ("postgresql://u@h/db?application_name=gw", "cortex", 1.5, 2.0)
    for bad in ("command_timeout=0", "connect_timeout=soon"):
        with pytest.raises(BackendError, match="give seconds"):
            parse_url(f"postgresql://u@h/db?{bad}")


def test_a_driver_broken_by_a_lost_connection_is_a_backend_error() -> None:
    # asyncpg raised this through a restart of the server, and it crashed the dequeuer
    with pytest.raises(BackendError, match="take failed") as raised, wrap_errors("take", "postgresql://h/db"):
        raise asyncpg.InternalClientError("cannot switch to state 15; another operation is in progress")
    assert isinstance(raised.value.__cause__, asyncpg.InternalClientError)


async def test_unreachable_server_is_a_backend_error(tmp_path: Path) -> None:
    dead = "postgresql://postgres@127.0.0.1:1/test"
    with pytest.raises(BackendError, match=re.escape("127.0.0.1:1")) as caught:
        await open_backends(_urls(dead, tmp_path))
    assert caught.value.__cause__ is not None


async def test_a_schema_already_applied_is_checked_without_its_lock(
    backends: Backends, url: str, tmp_path: Path
) -> None:
    # a replica's dequeuer starting while another process holds the schema lock (a deploy applying
    # a newer version, say) is not held up when its own version of the schema is there already
    _, schema = split_url(url)
    holder = await asyncpg.connect(POSTGRES_URL)
    try:
        async with holder.transaction():
            await holder.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"cortex-schema:{schema}")
            # without the check it waits for the lock: the guard's deadline then fails the test
            again = await asyncio.wait_for(open_backends(_urls(url, tmp_path)), 20)
            await again.aclose()
    finally:
        await holder.close()


async def test_another_schema_text_is_applied_again(backends: Backends, url: str) -> None:
    # another cortex version (another text) applies its own: the check is per text, not per schema
    resources = Resources()
    try:
        server = await open_server(url, resources, "CREATE TABLE IF NOT EXISTS {s}.newer (x INTEGER);")
        async with server.pool.acquire() as conn:
            assert await conn.fetchval(server.sql("SELECT count(*) FROM {s}.newer")) == 0
    finally:
        await resources.aclose()
