"""A dequeuer cut off from its database keeps running, backs off, and works again once it heals.

Before, a PostgreSQL restart crashed the dequeuer on an unmapped asyncpg error, three times in a
row. Here the dequeuer reaches the shared server through a loopback proxy of the test's own that
blackholes every byte, then heals and closes the connections the cut went through (what a server
restart does to them). The time from healing until a new request completes is printed (``-s``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from cortex.backends import BackendUrls, open_backends
from cortex.dequeuer.worker import Dequeuer, DequeuerSettings
from cortex.gateway import create_app
from tests.dequeuer.conftest import UserServer
from tests.gateway.test_deadlines import DEADLINES, _through
from tests.helpers import api_yaml, deploy
from tests.servers.cutter import Cutter, cutter
from tests.servers.databases import POSTGRES_URL, REDIS_URL, postgres_namespace, redis_namespace


@pytest.fixture(params=["redis", "postgres"])
async def urls(request: pytest.FixtureRequest) -> AsyncIterator[tuple[str, str, str, Cutter]]:
    """The backend's name, its direct URL, the same through a proxy (1 s deadlines), the proxy."""
    backend: str = request.param
    server = urlsplit(REDIS_URL if backend == "redis" else POSTGRES_URL)
    namespace = redis_namespace if backend == "redis" else postgres_namespace
    async with namespace() as url, cutter(server.hostname or "127.0.0.1", server.port or 0) as proxy:
        yield backend, url, f"{_through(url, proxy.port)}&{DEADLINES[backend]}", proxy


async def test_a_dequeuer_cut_off_from_its_database_waits_and_resumes(
    urls: tuple[str, str, str, Cutter], user_server: UserServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    backend, direct, proxied, proxy = urls
    blobs = f"file:///{tmp_path / 'blobs'}"
    gateway_side = await open_backends(BackendUrls(queue=direct, store=direct, blobs=blobs))
    worker_side = await open_backends(BackendUrls(queue=proxied, store=proxied, blobs=blobs))
    caplog.set_level(logging.INFO, logger="cortex.dequeuer.worker")
    try:
        spec = await deploy(gateway_side.catalog, api_yaml("echo"))
        settings = DequeuerSettings(user_port=user_server.port, lease_seconds=3.0, poll_interval=0.02)
        worker = Dequeuer(spec, worker_side, settings)
        stop = asyncio.Event()
        running = asyncio.create_task(worker.run(stop))
        transport = httpx.ASGITransport(app=create_app(gateway_side))
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:

            async def completed(body: bytes, timeout: float) -> None:
                rid = (await client.post("/echo", content=body)).json()["id"]
                deadline = time.monotonic() + timeout
                while (await client.get(f"/echo/{rid}")).json()["status"] != "completed":
                    assert time.monotonic() < deadline, f"{rid} not completed within {timeout}s"
                    await asyncio.sleep(0.02)

            await completed(b'{"before": 1}', 10)
            proxy.blackhole()
            await asyncio.sleep(5)
            assert not running.done(), "the dequeuer stopped during the outage"
            proxy.heal()
            healed = time.monotonic()
            await completed(b'{"after": 1}', 20)
            recovered = time.monotonic() - healed
        assert not running.done(), "the dequeuer stopped after the outage"
        stop.set()
        await asyncio.wait_for(running, timeout=10)
    finally:
        await worker_side.aclose()
        await gateway_side.aclose()
    retries = [r.getMessage() for r in caplog.records if "could not take work from the queue" in r.getMessage()]
    assert retries, "the outage was not logged"
    ours = [record for record in caplog.records if record.name.startswith("cortex.")]
    assert all(record.exc_info is None for record in ours), "a traceback was logged"
    assert all(not record.getMessage().endswith(": ") for record in ours), "an error without its reason"
    print(f"\n{backend}: a new request completed {recovered:.2f}s after healing; take retries: {len(retries)}")
