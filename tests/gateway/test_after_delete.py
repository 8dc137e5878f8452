"""A deleted API's requests stay readable at ``GET /<name>/<id>`` until they expire; nothing else is served."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import pytest

from cortex.auth import KeyRing, key_digest
from cortex.backends import Backends
from cortex.gateway import GatewaySettings, create_app
from cortex.ids import new_id
from cortex.requests import Outcome, now
from tests.helpers import api_yaml, deploy

CLUSTER_KEY = "cluster-key-0123456789abcdef"


def client_of(backends: Backends, keys: KeyRing | None = None) -> httpx.AsyncClient:
    # a table read on every request: the delete is seen at once
    settings = GatewaySettings(catalog_ttl=0.0, keys=keys or KeyRing())
    transport = httpx.ASGITransport(app=create_app(backends, settings=settings))
    return httpx.AsyncClient(transport=transport, base_url="http://gw")


async def completed_then_deleted(backends: Backends, client: httpx.AsyncClient, headers: dict[str, str]) -> str:
    await deploy(backends.catalog, api_yaml("echo"))
    rid: str = (await client.post("/echo", content=b"{}", headers=headers)).json()["id"]
    assert await backends.records.start("echo", rid, attempts=1, now=now()) is not None
    assert await backends.records.finish("echo", rid, Outcome.completed(b'{"label": "cat"}'), now=now())
    assert await backends.catalog.delete_api("echo")
    return rid


@pytest.fixture
async def client(backends: Backends) -> AsyncIterator[httpx.AsyncClient]:
    async with client_of(backends) as made:
        yield made


async def test_a_finished_request_is_read_after_its_api_is_deleted(
    client: httpx.AsyncClient, backends: Backends
) -> None:
    rid = await completed_then_deleted(backends, client, {})
    answer = await client.get(f"/echo/{rid}")
    assert answer.status_code == 200
    body = json.loads(answer.content)
    assert (body["id"], body["status"], body["result"]) == (rid, "completed", {"label": "cat"})
    assert "timestamp" in body


async def test_nothing_else_is_served_for_a_deleted_api(client: httpx.AsyncClient, backends: Backends) -> None:
    rid = await completed_then_deleted(backends, client, {})
    unknown = new_id()
    for response in (
        await client.get(f"/echo/{unknown}"),
        await client.get("/echo/not-an-id"),
        await client.post("/echo", content=b"{}"),
        await client.delete(f"/echo/{rid}"),
    ):
        assert response.status_code == 404
        assert response.json()["error"].startswith("no API is deployed at /echo")


async def test_a_cluster_key_is_still_needed(backends: Backends) -> None:
    keys = KeyRing(cluster=frozenset({key_digest(CLUSTER_KEY)}))
    authorization = {"Authorization": f"Bearer {CLUSTER_KEY}"}
    async with client_of(backends, keys) as client:
        rid = await completed_then_deleted(backends, client, authorization)
        assert (await client.get(f"/echo/{rid}")).status_code == 401
        assert (
            await client.get(f"/echo/{rid}", headers={"Authorization": "Bearer wrong-key-0123456789"})
        ).status_code == 403
        assert (await client.get(f"/echo/{rid}", headers=authorization)).json()["status"] == "completed"


async def test_a_deployed_api_is_read_only_at_its_own_endpoint(client: httpx.AsyncClient, backends: Backends) -> None:
    # its own keys are checked there; another path ending in its name must not bypass them
    await deploy(backends.catalog, api_yaml("keyed", extra="networking: {endpoint: /team/keyed}"))
    rid = (await client.post("/team/keyed", content=b"{}")).json()["id"]
    assert (await client.get(f"/team/keyed/{rid}")).status_code == 200
    assert (await client.get(f"/other/keyed/{rid}")).status_code == 404
    assert (await client.get(f"/keyed/{rid}")).status_code == 404
