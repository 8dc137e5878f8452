"""A cancel or a purge at one gateway wakes the waiters of another at once (issue 19), on every backend.

Two gateways, each with its own backends opened on the same servers (as two processes would be),
so each holds its own subscription to the backend's notifications. A wait at the second gateway
outlasts the test's timeout: only the first gateway's announcement can answer it in time.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from cortex.backends import Backends, open_backends
from cortex.gateway import GatewaySettings, create_app
from tests.conftest import BACKENDS
from tests.gateway.test_wait import until_waiting
from tests.helpers import api_yaml, deploy
from tests.servers.databases import urls_for

Gateways = tuple[httpx.AsyncClient, httpx.AsyncClient, Backends]


@pytest.fixture(params=BACKENDS)
async def gateways(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Gateways]:
    async with urls_for(request.param, tmp_path) as urls:
        first, second = await open_backends(urls), await open_backends(urls)
        try:
            await deploy(first.catalog, api_yaml("echo"))
            async with (
                httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(first)), base_url="http://a") as a,
                httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=create_app(second, settings=GatewaySettings())),
                    base_url="http://b",
                ) as b,
            ):
                yield a, b, second
        finally:
            await first.aclose()
            await second.aclose()


async def _subscribed(backends: Backends) -> None:
    """Until ``backends``' subscription is up (its first waiter is woken when it connects)."""
    watch = backends.plane.changes
    probe = watch.waiter("probe")
    assert await watch.wait("probe", probe, 30.0)


async def test_a_cancel_at_one_gateway_answers_a_wait_at_another(gateways: Gateways) -> None:
    a, b, second = gateways
    await _subscribed(second)
    rid = (await a.post("/echo", content=b"{}")).json()["id"]
    waiting = asyncio.create_task(b.get(f"/echo/{rid}", headers={"Prefer": "wait=60"}))
    await until_waiting(second, rid)
    assert (await a.delete(f"/echo/{rid}")).status_code == 200
    answer = await asyncio.wait_for(waiting, 30)
    assert answer.json()["status"] == "cancelled"


async def test_a_purge_at_one_gateway_answers_the_waits_at_another(gateways: Gateways) -> None:
    a, b, second = gateways
    await _subscribed(second)
    ids = [(await a.post("/echo", content=b"{}")).json()["id"] for _ in range(3)]
    waits = [asyncio.create_task(b.get(f"/echo/{rid}", params={"wait": "60"})) for rid in ids]
    for rid in ids:
        await until_waiting(second, rid)
    assert (await a.post("/echo/purge")).json() == {"cancelled": 3}
    answers = await asyncio.wait_for(asyncio.gather(*waits), 30)
    assert [answer.json()["status"] for answer in answers] == ["cancelled"] * 3
    assert [answer.json()["error"]["kind"] for answer in answers] == ["purged"] * 3
