from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
from aiohttp import web

from cortex.backends import Backends
from cortex.dequeuer.worker import Dequeuer, DequeuerSettings
from cortex.gateway import create_app
from tests.helpers import api_yaml, deploy

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclasses.dataclass
class Received:
    request_id: str | None
    content_type: str | None
    body: bytes
    headers: dict[str, str]


@dataclasses.dataclass
class UserServer:
    """A real HTTP server on loopback playing the user's container; tests swap its handler."""

    port: int
    received: list[Received] = dataclasses.field(default_factory=list)
    handler: Handler | None = None
    ready: bool = True
    concurrent: int = 0
    max_concurrent: int = 0


@pytest.fixture
async def user_server() -> AsyncIterator[UserServer]:
    server = UserServer(port=0)

    async def root(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        server.received.append(
            Received(
                request.headers.get("X-Cortex-Request-ID"),
                request.headers.get("Content-Type"),
                body,
                {name.lower(): value for name, value in request.headers.items()},
            )
        )
        server.concurrent += 1
        server.max_concurrent = max(server.max_concurrent, server.concurrent)
        try:
            if server.handler is not None:
                return await server.handler(request)
            return web.json_response({"echo": body.decode("latin-1")})
        finally:
            server.concurrent -= 1

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(status=200 if server.ready else 503, text="ok" if server.ready else "loading")

    app = web.Application()
    app.router.add_post("/", root)
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server.port = runner.addresses[0][1]
    yield server
    await runner.cleanup()


@dataclasses.dataclass
class Cluster:
    """Gateway (in-process) + one dequeuer against the user server."""

    backends: Backends
    client: httpx.AsyncClient
    user: UserServer
    api: str = "echo"

    async def submit(self, **kwargs: Any) -> str:
        response = await self.client.post(f"/{self.api}", **kwargs)
        assert response.status_code == 200, response.text
        rid: str = response.json()["id"]
        return rid

    async def status(self, rid: str) -> dict[str, Any]:
        response = await self.client.get(f"/{self.api}/{rid}")
        assert response.status_code == 200, response.text
        data: dict[str, Any] = json.loads(response.content)
        return data

    async def wait(
        self, rid: str, *, statuses: tuple[str, ...] = ("completed", "failed"), timeout: float = 10
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            data = await self.status(rid)
            if data["status"] in statuses:
                return data
            assert time.monotonic() < deadline, f"{rid} still {data['status']} after {timeout}s"
            await asyncio.sleep(0.02)

    @contextlib.asynccontextmanager
    async def dequeuer(self, **settings: Any) -> AsyncIterator[Dequeuer]:
        entry = await self.backends.catalog.get_api(self.api)
        assert entry is not None
        from cortex.spec import ApiSpec

        options: dict[str, Any] = {"user_port": self.user.port, "lease_seconds": 3.0, "grace_period": 2.0}
        options["poll_interval"] = 0.02
        options.update(settings)
        worker = Dequeuer(ApiSpec.from_dict(entry.spec), self.backends, DequeuerSettings(**options))
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop))
        try:
            yield worker
        finally:
            stop.set()
            await asyncio.wait_for(task, timeout=10)


@pytest.fixture
async def make_cluster(backends: Backends, user_server: UserServer) -> AsyncIterator[Callable[..., Awaitable[Cluster]]]:
    clients: list[httpx.AsyncClient] = []

    async def make(extra: str = "", concurrency: int = 1, container: str = "") -> Cluster:
        await deploy(backends.catalog, api_yaml("echo", extra=extra, concurrency=concurrency, container=container))
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(backends)), base_url="http://gw")
        clients.append(client)
        return Cluster(backends, client, user_server)

    yield make
    for client in clients:
        await client.aclose()
