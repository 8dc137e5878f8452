"""The data plane's batch step (``submit_many``): all or nothing, in one round trip; every backend passes it."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from cortex.backends import Backends, BackendUrls, open_backends
from cortex.errors import BackendError
from cortex.requests import Duplicate, NewRequest, Status, now
from cortex.sqlitedb import SqliteDatabase
from tests.backends.test_dataplane_conformance import new, take
from tests.faults.test_interrupted_submit import proxied
from tests.servers.databases import urls_for
from tests.servers.private_redis import private_redis

#: the size of batch the issue asks to be one atomic step
THOUSAND = 1000


def batch(prefix: str, count: int, *, key: str | None = None, priority: int | None = None) -> list[NewRequest]:
    """``count`` requests ``<prefix>0``.. with payloads ``{"i": n}`` (keys ``<key>-n`` when ``key`` is given)."""
    return [
        dataclasses.replace(
            new(f"{prefix}{n}", key=None if key is None else f"{key}-{n}", digest="batch-digest"),
            payload=b'{"i": %d}' % n,
            priority=priority,
        )
        for n in range(count)
    ]


async def stored(backends: Backends, ids: list[str]) -> list[str]:
    """The ids of ``ids`` whose record exists."""
    return [rid for rid in ids if await backends.records.get("api", rid, now=now()) is not None]


async def test_a_batch_is_stored_and_queued_in_its_order(backends: Backends) -> None:
    """In the batch's order, whatever the order of the ids (a backend breaking ties by id would not keep it)."""
    requests = [dataclasses.replace(request, id=f"r{4 - n}") for n, request in enumerate(batch("x", 5))]
    assert await backends.plane.submit_many(requests) is None
    record = await backends.records.get("api", "r1", now=now())
    assert record is not None and record.status == Status.IN_QUEUE
    assert record.webhook_url == requests[3].webhook_url
    assert (await backends.queue.depth("api")).queued == 5
    taken = await take(backends, limit=5)
    assert [t.lease.id for t in taken] == ["r4", "r3", "r2", "r1", "r0"]
    assert [t.record.payload for t in taken if t.record is not None] == [b'{"i": %d}' % n for n in range(5)]
    assert all(t.record is not None and t.record.headers == requests[0].headers for t in taken)


async def test_a_held_key_stores_nothing_and_names_its_holder(backends: Backends) -> None:
    assert await backends.plane.submit(new("h1", key="k-1", digest="first")) is None
    requests = batch("r", 3, key="k")
    assert await backends.plane.submit_many(requests) == [None, Duplicate(id="h1", body_digest="first"), None]
    assert await stored(backends, ["r0", "r1", "r2"]) == []
    assert (await backends.queue.depth("api")).queued == 1


async def test_a_replayed_batch_answers_the_holders_of_every_key(backends: Backends) -> None:
    assert await backends.plane.submit_many(batch("r", 3, key="k")) is None
    again = await backends.plane.submit_many(batch("s", 3, key="k"))
    assert again == [Duplicate(id=f"r{n}", body_digest="batch-digest") for n in range(3)]
    assert await stored(backends, ["s0", "s1", "s2"]) == []
    assert (await backends.queue.depth("api")).queued == 3


async def test_of_two_batches_racing_for_their_keys_one_is_stored(backends: Backends) -> None:
    """Sent at once (on PostgreSQL, two statements on two connections): the other answers the first's holders."""
    for round_ in range(3):
        first, second = batch(f"a{round_}-", 20, key=f"k{round_}"), batch(f"b{round_}-", 20, key=f"k{round_}")
        answers = await asyncio.gather(backends.plane.submit_many(first), backends.plane.submit_many(second))
        assert answers.count(None) == 1
        winner, held = (first, answers[1]) if answers[0] is None else (second, answers[0])
        assert held == [Duplicate(id=request.id, body_digest="batch-digest") for request in winner]
    assert (await backends.queue.depth("api")).queued == 60


async def test_an_id_already_stored_fails_the_whole_batch(backends: Backends) -> None:
    """A failure in the middle of the batch (its third request's id exists) leaves nothing of it."""
    assert await backends.plane.submit(new("r2")) is None
    requests = batch("r", 5, key="k")
    with pytest.raises(BackendError):
        await backends.plane.submit_many(requests)
    assert await stored(backends, ["r0", "r1", "r3", "r4"]) == []
    assert (await backends.queue.depth("api")).queued == 1
    # nor did it take the keys of the requests before the failure
    assert await backends.plane.submit(new("t0", key="k-0")) is None


async def test_an_expired_holder_frees_its_key_for_a_batch(backends: Backends) -> None:
    first = new("h1", key="k-1", retention=0.05)
    assert await backends.plane.submit(first) is None
    later = [
        dataclasses.replace(request, created_at=first.expires_at + 1, expires_at=first.expires_at + 600)
        for request in batch("r", 3, key="k")
    ]
    assert await backends.plane.submit_many(later) is None
    assert await stored(backends, ["r0", "r1", "r2"]) == ["r0", "r1", "r2"]


async def test_the_priority_of_a_batch_is_honoured(backends: Backends) -> None:
    assert await backends.plane.submit_many(batch("low", 3)) is None
    high = [dataclasses.replace(request, id=f"high{1 - n}") for n, request in enumerate(batch("x", 2, priority=9))]
    assert await backends.plane.submit_many(high) is None
    taken = await take(backends, limit=5)
    assert [t.lease.id for t in taken] == ["high1", "high0", "low0", "low1", "low2"]


@pytest.mark.parametrize(
    ("requests", "problem"),
    [
        ([], "at least one"),
        ([new("r1"), new("r1")], "repeats a request id"),
        ([new("r1", key="k"), new("r2", key="k")], "repeats an idempotency key"),
    ],
)
async def test_a_batch_the_step_cannot_store_as_given_is_refused(
    backends: Backends, requests: list[NewRequest], problem: str
) -> None:
    with pytest.raises(ValueError, match=problem):
        await backends.plane.submit_many(requests)
    assert (await backends.queue.depth("api")).queued == 0


async def test_a_thousand_requests_take_one_round_trip(backend_name: str, tmp_path: Path) -> None:
    """Counted at the socket (Redis, PostgreSQL): the batch after the first is one message and one answer."""
    async with proxied(backend_name, tmp_path) as (through, direct, proxy):
        turns = []
        for round_ in range(2):  # the first also loads the script or prepares the statement
            requests = batch(f"b{round_}-", THOUSAND, key=f"k{round_}")
            requests = [dataclasses.replace(request, api="echo") for request in requests]
            before = proxy.turns
            assert await through.plane.submit_many(requests) is None
            turns.append(proxy.turns - before)
        assert turns[1] == 1
        assert (await direct.queue.depth("echo")).queued == 2 * THOUSAND


@pytest.fixture(params=["redis", "postgres"])
def backend_name(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


async def test_a_thousand_requests_take_one_sqlite_commit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Counted at the connections: every COMMIT any of the database's connections runs."""
    statements: list[str] = []
    connect: Callable[..., sqlite3.Connection] = SqliteDatabase._connect

    def traced(self: SqliteDatabase, timeout: float | None = None) -> sqlite3.Connection:
        conn = connect(self, timeout)
        conn.set_trace_callback(statements.append)
        return conn

    monkeypatch.setattr(SqliteDatabase, "_connect", traced)
    async with urls_for("sqlite", tmp_path) as urls:
        backends = await open_backends(urls)
        try:
            before = len(statements)
            assert await backends.plane.submit_many(batch("r", THOUSAND, key="k")) is None
            run = statements[before:]
            assert (await backends.queue.depth("api")).queued == THOUSAND
        finally:
            await backends.aclose()
    assert [s for s in run if s.strip().upper().startswith(("COMMIT", "BEGIN"))] == ["BEGIN IMMEDIATE", "COMMIT"]


async def test_a_redis_out_of_memory_refuses_the_whole_batch(tmp_path: Path) -> None:
    """Redis does not roll a script back; it refuses a write for want of memory only before the
    script's first write (``scriptVerifyOOM`` in its script.c: "otherwise we can't stop in the
    middle"). The batch's script does all its checks before it writes, so a server out of memory
    refuses the whole batch, and one that runs out during a batch lets it finish: never a part of it.
    """
    async with private_redis(tmp_path) as server:
        url = f"{server.url}?prefix=oom"
        backends = await open_backends(BackendUrls(queue=url, store=url, blobs=f"file://{tmp_path / 'blobs'}"))
        admin = aioredis.Redis.from_url(server.url)
        try:
            assert await backends.plane.submit_many(batch("a", 3)) is None
            await admin.config_set("maxmemory-policy", "noeviction")
            await admin.config_set("maxmemory", int((await admin.info("memory"))["used_memory"]))
            with pytest.raises(BackendError, match="maxmemory"):
                await backends.plane.submit_many(batch("b", THOUSAND, key="k"))
            await admin.config_set("maxmemory", 0)
            assert (await backends.queue.depth("api")).queued == 3
            assert await stored(backends, ["b0", f"b{THOUSAND - 1}"]) == []
            assert await admin.keys("oom:idem*") == []
            assert await backends.plane.submit_many(batch("c", 3, key="k")) is None  # its keys were not taken
            assert len(await admin.keys("oom:idem*")) == 3
        finally:
            await admin.aclose()
            await backends.aclose()
