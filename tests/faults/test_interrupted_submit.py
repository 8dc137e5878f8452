"""A submission cut or stalled at every point of its one step: a retry with its key finds it queued or queues it.

The gateway runs in-process on Redis or PostgreSQL reached through a proxy (:mod:`tests.servers.cutter`)
that cuts the connection before the step reaches the server, cuts it after the server ran the step
(the answer is lost), or holds the step until the client's timeout has fired and delivers it late
(a frozen server). Whatever happened, the client got 503, and the documented retry with the same
``Idempotency-Key`` is answered 200 with an id that is queued exactly once and reaches a terminal status.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from cortex.backends import Backends, BackendUrls, open_backends
from cortex.dataplane.base import Finished
from cortex.gateway import GatewaySettings, create_app
from cortex.requests import Outcome, now
from tests.helpers import api_yaml, deploy
from tests.servers.cutter import Cutter, cutter
from tests.servers.databases import urls_for

#: the client's timeout on the proxied connections (what a frozen server runs past)
CLIENT_TIMEOUT = {"redis": "socket_timeout=1", "postgres": "command_timeout=1"}


@contextlib.asynccontextmanager
async def proxied(backend: str, tmp_path: Path) -> AsyncIterator[tuple[Backends, Backends, Cutter]]:
    """Backends through a cutter (the gateway's), the same backends direct (the test's), and the cutter."""
    async with urls_for(backend, tmp_path) as urls:
        parts = urlsplit(urls.store)
        assert parts.hostname is not None and parts.port is not None
        async with cutter(parts.hostname, parts.port) as proxy:
            url = urls.store.replace(f"{parts.hostname}:{parts.port}", f"127.0.0.1:{proxy.port}", 1)
            url += "&" + CLIENT_TIMEOUT[backend]
            direct = await open_backends(urls)
            try:
                await deploy(direct.catalog, api_yaml("echo"))
                through = await open_backends(BackendUrls(queue=url, store=url, blobs=urls.blobs))
                try:
                    yield through, direct, proxy
                finally:
                    await through.aclose()
            finally:
                await direct.aclose()


async def _submit(client: httpx.AsyncClient, key: str) -> httpx.Response:
    return await client.post("/echo", content=b'{"n": 1}', headers={"Idempotency-Key": key})


@pytest.mark.parametrize("backend", ["redis", "postgres"])
@pytest.mark.parametrize("fault", ["before", "after", "stall-thaw-retry", "stall-retry-thaw"])
async def test_a_retry_after_a_fault_finds_the_request_queued_or_queues_it(
    backend: str, fault: str, tmp_path: Path
) -> None:
    async with proxied(backend, tmp_path) as (through, direct, proxy):
        app = create_app(through, settings=GatewaySettings(catalog_ttl=3600))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as client:
            warm = await client.post("/echo", content=b"{}")  # scripts loaded, statements prepared, API cached
            assert warm.status_code == 200
            assert await _run_all(direct) == [warm.json()["id"]]

            proxy.arm(fault.partition("-")[0])
            first = await _submit(client, "key-1")
            assert first.status_code == 503, first.text
            assert "send it again" in first.json()["error"]
            assert proxy.happened == [fault.partition("-")[0]]
            if fault == "stall-thaw-retry":
                proxy.thaw()
                await asyncio.wait_for(proxy.delivered.wait(), 10)
            again = await _submit(client, "key-1")
            if fault == "stall-retry-thaw":
                proxy.thaw()
                await asyncio.wait_for(proxy.delivered.wait(), 10)
            assert again.status_code == 200, again.text
            request_id = again.json()["id"]

            assert await _run_all(direct) == [request_id]  # queued exactly once
            status = await client.get(f"/echo/{request_id}")
            assert status.json()["status"] == "completed"
            assert (await _submit(client, "key-1")).json()["id"] == request_id


async def _run_all(backends: Backends) -> list[str]:
    """Take every queued request of ``echo`` and complete it (the dequeuer's steps); their ids."""
    ran = []
    while taken := await backends.plane.take("echo", visibility=30, limit=10, max_attempts=3, timeout=0.3):
        for item in taken:
            assert item.started, f"request {item.lease.id} was queued but could not be started"
            done = await backends.plane.finish(item.lease, Outcome.completed(b"{}"), now=now())
            assert done is Finished.FINISHED
            ran.append(item.lease.id)
    return ran
