"""The opt-in ``progress`` webhook: queued after a progress write, at most once per interval per request."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

from cortex.dequeuer.service import admin_app
from tests.dequeuer.conftest import Cluster
from tests.webhooks.test_delivery import Receiver, receiver, run_dispatcher, secret_of, stop_dispatcher, until

__all__ = ["receiver"]

MakeCluster = Callable[..., Awaitable[Cluster]]


async def test_a_progress_webhook_carries_the_running_record_and_is_rate_limited(
    make_cluster: MakeCluster, receiver: Receiver
) -> None:
    cluster = await make_cluster(extra=f"async: {{webhook: {{url: '{receiver.url}', events: [progress, completed]}}}}")
    await secret_of(cluster.backends, "echo")
    admin: dict[str, str] = {}
    admin_up = asyncio.Event()

    async def reporting(request: web.Request) -> web.Response:
        await admin_up.wait()
        headers = {"X-Cortex-Request-ID": request.headers["X-Cortex-Request-ID"]}
        async with aiohttp.ClientSession() as session:
            async with session.post(admin["url"], data=b'{"step": 1}', headers=headers) as answer:
                assert answer.status == 202
            await until(lambda: len(receiver.deliveries) == 1, "the progress delivery")
            # within the webhook interval: stored (the record shows it), not delivered as progress
            async with session.post(admin["url"], data=b'{"step": 2}', headers=headers) as answer:
                assert answer.status == 202
        return web.json_response({"done": True})

    cluster.user.handler = reporting
    dispatcher = await run_dispatcher(cluster.backends)
    try:
        rid = await cluster.submit(json={})
        async with (
            cluster.dequeuer(progress_webhook_every=3600.0) as dequeuer,
            TestServer(admin_app(dequeuer)) as server,
        ):
            admin["url"] = str(server.make_url("/progress"))
            admin_up.set()
            await cluster.wait(rid)
        await until(lambda: len(receiver.deliveries) >= 2, "the completed delivery")
    finally:
        await stop_dispatcher(dispatcher)
    (progress_headers, progress_body), (completed_headers, completed_body) = receiver.deliveries
    progress = json.loads(progress_body)
    assert progress["status"] == "in_progress" and progress["progress"] == {"step": 1}
    assert progress_headers["webhook-id"].startswith(f"msg_echo_{rid}_progress_")
    completed = json.loads(completed_body)
    assert completed_headers["webhook-id"] == f"msg_echo_{rid}_completed"
    assert completed["status"] == "completed" and completed["progress"] == {"step": 2}
