"""Fencing, through the real dequeuer on every backend: a stale worker's late result never wins.

Two dequeuers of one API, a short lease. The first one's renewals cannot reach the backend (its
link to the queue is cut, as in a partition: every renewal fails), so its lease lapses while its
user server is still working; the second dequeuer takes the request and finishes it. Then:

- the first one's late answer arrives: the finish step refuses it (the lease is another's), the
  record keeps the second's result, the first logs ``lease lost`` and counts nothing;
- or its renewals reach the backend again first: it learns the lease is lost, logs it and drops
  the request at once (the call to its user server is aborted, its slot freed).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

import pytest
from aiohttp import web

from cortex.dequeuer.worker import Dequeuer
from cortex.errors import BackendError
from cortex.queue.base import Lease
from tests.dequeuer.conftest import Cluster, UserServer

MakeCluster = Callable[..., Awaitable[Cluster]]
LEASE = 1.0


def _cut_renewals(cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> asyncio.Event:
    """Make the renewals of the first lease on each request fail while the returned event is clear."""
    healed = asyncio.Event()
    renew = cluster.backends.queue.renew

    async def cut(lease: Lease, *, visibility: float) -> bool:
        if lease.attempts == 1 and not healed.is_set():
            raise BackendError("Redis renew failed at the test's cut link: Timeout reading from socket")
        return await renew(lease, visibility=visibility)

    monkeypatch.setattr(cluster.backends.queue, "renew", cut)
    return healed


def _by_order(user: UserServer, first_answers: asyncio.Event) -> None:
    """The first call answers ``first`` once ``first_answers`` is set; later calls ``second`` at once."""
    calls = 0

    async def handler(request: web.Request) -> web.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            await first_answers.wait()
            return web.json_response({"by": "first"})
        return web.json_response({"by": "second"})

    user.handler = handler


def _completed(worker: Dequeuer) -> float:
    """The worker's ``cortex_async_requests{status="completed"}``."""
    value = worker.metrics.registry.get_sample_value(
        "cortex_async_requests_total", {"api_name": "echo", "status": "completed"}
    )
    return value or 0.0


async def _until(check: Callable[[], bool], timeout: float, what: str) -> float:
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < timeout, f"{what} not within {timeout}s"
        await asyncio.sleep(0.01)
    return time.monotonic() - started


def _lease_lost_lines(caplog: pytest.LogCaptureFixture, request_id: str) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == "cortex.dequeuer.worker" and "lease lost" in record.getMessage()
        if request_id in record.getMessage()
    ]


async def test_a_stale_workers_late_result_never_replaces_the_holders(
    make_cluster: MakeCluster, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    cluster = await make_cluster(extra="async: {max_attempts: 3}")
    first_answers = asyncio.Event()
    _by_order(cluster.user, first_answers)
    _cut_renewals(cluster, monkeypatch)  # never healed: the first worker cannot renew
    caplog.set_level(logging.INFO, logger="cortex.dequeuer.worker")
    async with cluster.dequeuer(lease_seconds=LEASE) as first:
        rid = await cluster.submit(content=b"{}")
        await _until(lambda: len(cluster.user.received) == 1, 10, "the first worker's call")
        async with cluster.dequeuer(lease_seconds=LEASE) as second:
            done = await cluster.wait(rid, timeout=15)
            assert done["status"] == "completed" and done["result"] == {"by": "second"}, done
            assert done["attempts"] == 2
            first_answers.set()  # the stale worker's answer arrives after the holder's
            await _until(lambda: first.in_flight == 0, 10, "the first worker's slot freed")
            assert _completed(second) == 1
        assert _completed(first) == 0, "the stale worker counted the request completed too"
    final = await cluster.status(rid)
    assert final["status"] == "completed" and final["result"] == {"by": "second"}, final
    assert [received.request_id for received in cluster.user.received] == [rid, rid]
    lines = _lease_lost_lines(caplog, rid)
    assert lines and "outcome here is dropped" in lines[-1], lines


async def test_a_worker_that_learns_its_lease_is_lost_drops_the_request_at_once(
    make_cluster: MakeCluster, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    cluster = await make_cluster(extra="async: {max_attempts: 3}")
    never = asyncio.Event()
    _by_order(cluster.user, never)  # the first call never answers
    healed = _cut_renewals(cluster, monkeypatch)
    caplog.set_level(logging.INFO, logger="cortex.dequeuer.worker")
    async with cluster.dequeuer(lease_seconds=LEASE) as first:
        rid = await cluster.submit(content=b"{}")
        await _until(lambda: len(cluster.user.received) == 1, 10, "the first worker's call")
        async with cluster.dequeuer(lease_seconds=LEASE) as second:
            done = await cluster.wait(rid, timeout=15)
            assert done["result"] == {"by": "second"}, done
            assert first.in_flight == 1  # still waiting on its user server, renewals failing
            healed.set()  # its next renewal reaches the backend: the lease is another's
            dropped = await _until(lambda: first.in_flight == 0, 10, "the first worker's slot freed")
            await _until(lambda: cluster.user.concurrent == 0, 5, "the first worker's call aborted")
            assert _completed(second) == 1
        assert _completed(first) == 0
    assert (await cluster.status(rid))["result"] == {"by": "second"}
    lines = _lease_lost_lines(caplog, rid)
    assert lines and "abandoned" in lines[-1], lines
    print(f"\nslot freed {dropped:.2f}s after the renewals healed (a renewal every {LEASE / 3:.2f}s)")
