"""The gateway's table of APIs, refreshed in the background: a deploy routes at once, a delete stops routing,
and a gateway that never read the catalog answers 503 (not 404) for every API.

The gateway runs with its lifespan (so its refresher runs) on the embedded backend of a temporary state
directory; a second set of backends plays the operator that deploys and deletes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from cortex.backends import Backends, BackendUrls, open_backends
from cortex.errors import BackendError
from cortex.gateway import GatewaySettings, create_app
from cortex.store.base import ApiEntry
from tests.helpers import PassThroughCatalog, api_yaml, deploy


class _Unreadable(PassThroughCatalog):
    """A catalog whose list of APIs cannot be read, as during an outage that began before the gateway read it."""

    async def list_apis(self) -> list[ApiEntry]:
        raise BackendError("the catalog cannot be read (the test's)")


@pytest.fixture
async def operator(tmp_path: Path) -> AsyncIterator[Backends]:
    backends = await open_backends(BackendUrls.for_state_dir(tmp_path))
    try:
        yield backends
    finally:
        await backends.aclose()


async def test_a_deploy_routes_at_once(operator: Backends, tmp_path: Path) -> None:
    urls = BackendUrls.for_state_dir(tmp_path)
    # a refresh a minute: the deploy below routes because the unknown path asked for one fresh read
    app = create_app(open_backends=lambda: open_backends(urls), settings=GatewaySettings(catalog_ttl=60))
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
        assert (await client.post("/echo", content=b"{}")).status_code == 404
        await deploy(operator.catalog, api_yaml("echo"))
        await asyncio.sleep(0.3)  # past the interval between two reads that unknown paths may ask for
        submitted = await client.post("/echo", content=b"{}")
        assert submitted.status_code == 200, submitted.text


async def test_a_delete_stops_routing(operator: Backends, tmp_path: Path) -> None:
    await deploy(operator.catalog, api_yaml("echo"))
    urls = BackendUrls.for_state_dir(tmp_path)
    app = create_app(open_backends=lambda: open_backends(urls), settings=GatewaySettings(catalog_ttl=0.5))
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
        submitted = await client.post("/echo", content=b"{}")
        assert submitted.status_code == 200, submitted.text
        assert await operator.catalog.delete_api("echo")
        started = time.monotonic()
        while (await client.post("/echo", content=b"{}")).status_code != 404:
            assert time.monotonic() - started < 10, "a deleted API still routed 10s after its delete"
            await asyncio.sleep(0.05)
        # its requests stay readable by name until they expire
        assert (await client.get(f"/echo/{submitted.json()['id']}")).status_code == 200


async def test_a_gateway_that_never_read_the_catalog_answers_503_for_every_api(
    operator: Backends, tmp_path: Path
) -> None:
    await deploy(operator.catalog, api_yaml("echo"))
    urls = BackendUrls.for_state_dir(tmp_path)

    async def opened() -> Backends:
        backends = await open_backends(urls)
        backends.catalog = _Unreadable(backends.catalog)
        return backends

    app = create_app(open_backends=opened)
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
        for path in ("/echo", "/never-deployed"):
            answer = await client.post(path, content=b"{}")
            assert answer.status_code == 503, f"{path}: {answer.status_code} {answer.text}"
            assert answer.headers["retry-after"] == "1"
        assert (await client.get("/echo/01m96eswaaebwf6qc5sjqehhs3")).status_code == 503
