"""``POST /<api>/purge`` on every backend: every queued request of the API is cancelled, and nothing else."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from cortex.auth import KeyRing, key_digest
from cortex.backends import Backends
from cortex.gateway import GatewaySettings, create_app
from cortex.requests import Outcome, Status, now
from tests.helpers import api_yaml, deploy

CLUSTER_KEY = "cluster-key-0123456789"
API_KEY = "api-own-key-0123456789"
INTERNAL_KEY = "internal-key-0123456789"


@pytest.fixture
async def client(backends: Backends) -> AsyncIterator[httpx.AsyncClient]:
    await deploy(backends.catalog, api_yaml("a"))
    await deploy(backends.catalog, api_yaml("b"))
    app = create_app(backends)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as c:
        yield c


async def submit(client: httpx.AsyncClient, api: str, n: int) -> list[str]:
    ids = []
    for _ in range(n):
        answer = await client.post(f"/{api}", json={})
        assert answer.status_code == 200, answer.text
        ids.append(answer.json()["id"])
    return ids


async def test_purge_cancels_every_queued_request_of_the_api_and_nothing_else(
    client: httpx.AsyncClient, backends: Backends
) -> None:
    (done,) = await submit(client, "a", 1)
    (finished,) = await backends.plane.take("a", visibility=30, limit=1, max_attempts=3, timeout=1)
    await backends.plane.finish(finished.lease, Outcome(Status.COMPLETED, result=b"1"), now=now())
    (running,) = await submit(client, "a", 1)
    (taken,) = await backends.plane.take("a", visibility=30, limit=1, max_attempts=3, timeout=1)
    assert taken.lease.id == running
    queued = await submit(client, "a", 3)
    others = await submit(client, "b", 2)

    answer = await client.post("/a/purge")
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"cancelled": 3}

    async def read(api: str, request_id: str) -> dict[str, object]:
        got = await client.get(f"/{api}/{request_id}")
        assert got.status_code == 200
        body: dict[str, object] = got.json()
        return body

    for request_id in queued:
        record = await read("a", request_id)
        assert record["status"] == "cancelled"
        assert record["error"] == {"kind": "purged", "message": "the queue of api a was purged before this request ran"}
    assert (await read("a", done))["status"] == "completed"
    assert (await read("a", running))["status"] == "in_progress"
    assert [(await read("b", request_id))["status"] for request_id in others] == ["in_queue", "in_queue"]
    depth = await backends.queue.depth("a")
    assert (depth.queued, depth.in_flight) == (0, 1)  # the running one keeps its lease
    assert (await backends.queue.depth("b")).queued == 2
    # the running request finishes as usual
    await backends.plane.finish(taken.lease, Outcome(Status.COMPLETED, result=b"2"), now=now())
    assert (await read("a", running))["status"] == "completed"
    assert (await client.post("/a/purge")).json() == {"cancelled": 0}


async def test_a_lapsed_lease_is_not_purged_and_is_taken_again(client: httpx.AsyncClient, backends: Backends) -> None:
    (request_id,) = await submit(client, "a", 1)
    (taken,) = await backends.plane.take("a", visibility=0.01, limit=1, max_attempts=5, timeout=1)
    depth = await backends.queue.depth("a")
    for _ in range(2000):  # its worker is gone: the lease lapses (in 10 ms)
        if not depth.in_flight:
            break
        await asyncio.sleep(0.005)
        depth = await backends.queue.depth("a")
    assert (await client.post("/a/purge")).json() == {"cancelled": 0}
    (again,) = await backends.plane.take("a", visibility=30, limit=1, max_attempts=5, timeout=1)
    assert again.lease.id == request_id and again.lease.attempts == taken.lease.attempts + 1


@pytest.mark.parametrize(
    ("ring", "own", "key", "status"),
    [
        (KeyRing(cluster=frozenset({key_digest(CLUSTER_KEY)})), "", None, 401),
        (KeyRing(cluster=frozenset({key_digest(CLUSTER_KEY)})), "", CLUSTER_KEY, 200),
        (KeyRing(cluster=frozenset({key_digest(CLUSTER_KEY)})), API_KEY, API_KEY, 403),
        (
            KeyRing(cluster=frozenset({key_digest(CLUSTER_KEY)}), internal=frozenset({key_digest(INTERNAL_KEY)})),
            "",
            INTERNAL_KEY,
            403,
        ),
        (KeyRing(), API_KEY, None, 401),
        (KeyRing(), API_KEY, API_KEY, 200),
        (KeyRing(), "", None, 200),
    ],
)
async def test_purge_needs_a_key_of_the_cluster(
    backends: Backends, ring: KeyRing, own: str, key: str | None, status: int
) -> None:
    extra = f"async: {{api_keys: [{own}]}}" if own else ""
    await deploy(backends.catalog, api_yaml("a", extra=extra))
    app = create_app(backends, settings=GatewaySettings(keys=ring))
    headers = {} if key is None else {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as c:
        answer = await c.post("/a/purge", headers=headers)
    assert answer.status_code == status, answer.text
    if status != 200:
        assert "purging api a needs" in answer.json()["error"]
