"""The dequeuer's metrics, read back from its admin port's ``/metrics`` and compared with the store."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from cortex.dequeuer.metrics import DURATION_BUCKETS
from cortex.dequeuer.service import admin_app
from cortex.dequeuer.worker import Dequeuer
from tests.dequeuer.conftest import Cluster
from tests.promtext import samples, value

MakeCluster = Callable[..., Awaitable[Cluster]]


async def scrape(dequeuer: Dequeuer) -> str:
    async with TestClient(TestServer(admin_app(dequeuer))) as client:
        response = await client.get("/metrics")
        assert response.status == 200 and response.headers["Content-Type"].startswith("text/plain")
        return await response.text()


async def scrape_once_counted(dequeuer: Dequeuer, ended: int) -> str:
    """The metrics once ``ended`` requests are counted: a record reads terminal a moment before its counters move."""
    for _ in range(100):
        text = await scrape(dequeuer)
        if value(text, "cortex_async_requests_total") >= ended:
            return text
        await asyncio.sleep(0.05)
    return text


async def test_each_answer_is_counted_with_its_latency_and_queue_time(make_cluster: MakeCluster) -> None:
    cluster = await make_cluster()
    ids = [await cluster.submit(json={"n": n}) for n in range(3)]
    async with cluster.dequeuer() as dequeuer:
        results = [await cluster.wait(rid) for rid in ids]
        text = await scrape_once_counted(dequeuer, 3)
    assert [r["status"] for r in results] == ["completed"] * 3
    samples(text)  # parses, no series twice
    answered = dict(api_name="echo", api_kind="AsyncAPI")
    assert value(text, "cortex_async_request_count_total", status_code="200", **answered) == 3
    assert value(text, "cortex_async_latency_count", **answered) == 3
    assert value(text, "cortex_async_queue_time_seconds_count", api_name="echo") == 3
    assert value(text, "cortex_async_requests_total", api_name="echo", status="completed") == 3
    assert value(text, "cortex_async_latency_bucket", le=str(DURATION_BUCKETS[-1])) == 3
    assert DURATION_BUCKETS[0] == 0.005 and DURATION_BUCKETS[-1] == 6 * 3600


async def test_failures_and_cancels_are_counted_by_outcome(make_cluster: MakeCluster) -> None:
    cluster = await make_cluster()

    async def broken(request: web.Request) -> web.Response:
        return web.Response(status=500, text="boom")

    cluster.user.handler = broken
    failed = await cluster.submit(json={})
    cancelled = await cluster.submit(json={})
    assert (await cluster.client.delete(f"/echo/{cancelled}")).status_code == 200
    async with cluster.dequeuer() as dequeuer:
        assert (await cluster.wait(failed))["status"] == "failed"
        text = await scrape_once_counted(dequeuer, 1)
    assert value(text, "cortex_async_request_count_total", status_code="500") == 1
    assert value(text, "cortex_async_request_count_total", status_code="200") == 0
    assert value(text, "cortex_async_requests_total", status="failed") == 1
    # cancelled before it was leased: the gateway ended it, so no dequeuer counted it
    assert value(text, "cortex_async_requests_total", status="cancelled") == 0
