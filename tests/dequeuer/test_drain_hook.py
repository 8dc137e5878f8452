"""``GET /drain``: the user containers' preStop on Kubernetes, answered once the replica has drained."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from cortex.dequeuer.service import admin_app
from tests.dequeuer.conftest import Cluster

MakeCluster = Callable[..., Awaitable[Cluster]]


async def test_a_replica_that_is_not_stopping_answers_at_once(make_cluster: MakeCluster) -> None:
    cluster = await make_cluster()
    # a user container restarting alone (liveness) must not wait for a drain that is not coming
    async with (
        cluster.dequeuer() as dequeuer,
        TestClient(TestServer(admin_app(dequeuer, asyncio.Event(), drain_wait=0.2))) as client,
    ):
        response = await client.get("/drain")
        assert (response.status, await response.text()) == (200, "not stopping")


async def test_the_hook_answers_only_after_the_request_in_flight_is_done(make_cluster: MakeCluster) -> None:
    cluster = await make_cluster()
    release = asyncio.Event()
    order: list[str] = []

    async def slow(request: web.Request) -> web.Response:
        await release.wait()
        order.append("answered")
        return web.json_response({"done": True})

    cluster.user.handler = slow
    rid = await cluster.submit(json={"n": 1})
    async with cluster.dequeuer() as dequeuer:
        while dequeuer.in_flight == 0:
            await asyncio.sleep(0.01)
        stop = asyncio.Event()
        async with TestClient(TestServer(admin_app(dequeuer, stop))) as client:
            stop.set()  # SIGTERM reached the dequeuer
            hook = asyncio.create_task(client.get("/drain"))
            await asyncio.sleep(0.3)
            assert not hook.done()  # the user's server is still needed: its SIGTERM waits
            release.set()
            response = await asyncio.wait_for(hook, 5)
            order.append("drained")
            assert (response.status, await response.text()) == (200, "drained")
        assert order == ["answered", "drained"]
        assert (await cluster.wait(rid))["status"] == "completed"
