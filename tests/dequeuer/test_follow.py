"""A dequeuer started by hand follows its API's redeploys and deletes (issue 18, point 6).

``serve(follow=True)`` runs as ``cortex dequeuer`` runs it, in-process, against a real user
server on loopback; the API is redeployed and deleted through the catalog, as ``cortex deploy``
and ``cortex delete`` do.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
from aiohttp import web

from cortex.backends import BackendUrls, open_backends
from cortex.dequeuer.service import serve
from cortex.dequeuer.worker import DequeuerSettings
from cortex.gateway import create_app
from tests.dequeuer.conftest import UserServer
from tests.e2e.conftest import free_port
from tests.helpers import api_yaml, deploy


async def _until(condition: Callable[[], Awaitable[object]], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not await condition():
        assert time.monotonic() < deadline, f"{what} not within {timeout}s"
        await asyncio.sleep(0.02)


async def test_a_redeploy_takes_effect_and_a_delete_stops_it(tmp_path: Path, user_server: UserServer) -> None:
    urls = BackendUrls.for_state_dir(tmp_path)
    backends = await open_backends(urls)
    release = asyncio.Event()

    async def held(request: web.Request) -> web.Response:
        await release.wait()
        return web.json_response({"done": True})

    user_server.handler = held
    admin = free_port()
    stop = asyncio.Event()
    settings = DequeuerSettings(user_port=user_server.port, lease_seconds=5, grace_period=10, poll_interval=0.02)
    try:
        await deploy(backends.catalog, api_yaml("echo", concurrency=8))
        app = create_app(backends)
        async with (
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as gateway,
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{admin}") as replica,
        ):
            running = asyncio.create_task(
                serve("echo", urls, settings, admin_port=admin, follow=True, follow_interval=0.1, stop=stop)
            )

            async def spec_id() -> str | None:
                try:
                    found: str = (await replica.get("/status")).json()["spec_id"]
                except httpx.TransportError:
                    return None
                return found

            await _until(spec_id, "the admin port")
            first = await spec_id()
            await deploy(backends.catalog, api_yaml("echo", concurrency=2, extra="async: {request_timeout: 77}"))

            async def redeployed() -> bool:
                return await spec_id() not in (None, first)

            await _until(redeployed, "the redeploy")
            ids = [(await gateway.post("/echo", content=b"{}")).json()["id"] for _ in range(6)]

            async def two_running() -> bool:
                return user_server.concurrent == 2

            await _until(two_running, "two requests running")

            async def statuses() -> list[str]:
                return [(await gateway.get(f"/echo/{rid}")).json()["status"] for rid in ids]

            assert sorted(await statuses()) == ["in_progress"] * 2 + ["in_queue"] * 4  # max_concurrency: 2, not 8
            release.set()

            async def all_done() -> bool:
                return await statuses() == ["completed"] * 6

            await _until(all_done, "the six requests")
            assert user_server.max_concurrent == 2
            assert await backends.catalog.delete_api("echo")
            await asyncio.wait_for(running, timeout=30)  # the delete stopped it, not the stop event
            assert not stop.is_set()
    finally:
        stop.set()
        await backends.aclose()
