"""Gateway keys in-process: 401 without a key, 403 with a wrong one, per cluster and per API."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest

from cortex.auth import KeyRing, key_digest
from cortex.backends import Backends, open_backends
from cortex.gateway import GatewaySettings, create_app
from cortex.gateway.server import settings_from_environ
from tests.helpers import api_yaml, deploy
from tests.promtext import value
from tests.servers.databases import urls_for

CLUSTER_KEY = "cluster-key-6c1d8f2e9a"
INTERNAL_KEY = "internal-key-0b7e3c5d1f"
OWN_KEY = "own-key-of-keyed-4a9b2c"
HASHED_KEY = "hashed-key-of-hashed-7e1f"

Gateway = Callable[[KeyRing], httpx.AsyncClient]


@pytest.fixture
async def backends(tmp_path: Path) -> AsyncIterator[Backends]:
    async with urls_for("sqlite", tmp_path) as urls:
        opened = await open_backends(urls)
        try:
            await deploy(opened.catalog, api_yaml("open"))
            await deploy(opened.catalog, api_yaml("keyed", extra=f"async: {{api_keys: [{OWN_KEY}]}}"))
            hashed = key_digest(HASHED_KEY)
            await deploy(opened.catalog, api_yaml("hashed", extra=f"async: {{api_keys: ['{hashed}']}}"))
            yield opened
        finally:
            await opened.aclose()


@pytest.fixture
async def gateway(backends: Backends) -> AsyncIterator[Gateway]:
    clients: list[httpx.AsyncClient] = []

    def make(ring: KeyRing) -> httpx.AsyncClient:
        app = create_app(backends, settings=GatewaySettings(keys=ring))
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw")
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()


NO_CLUSTER_KEYS = KeyRing(internal=frozenset({key_digest(INTERNAL_KEY)}))
CLUSTER_KEYS = KeyRing(cluster=frozenset({key_digest(CLUSTER_KEY)}), internal=frozenset({key_digest(INTERNAL_KEY)}))


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.mark.parametrize(
    ("ring", "api", "headers", "status"),
    [
        # no cluster keys: an API without its own is open, one with them needs one of them
        (NO_CLUSTER_KEYS, "open", {}, 200),
        (NO_CLUSTER_KEYS, "keyed", {}, 401),
        (NO_CLUSTER_KEYS, "keyed", bearer("not-the-key-of-keyed"), 403),
        (NO_CLUSTER_KEYS, "keyed", bearer(OWN_KEY), 200),
        (NO_CLUSTER_KEYS, "keyed", {"X-Cortex-API-Key": OWN_KEY}, 200),
        (NO_CLUSTER_KEYS, "keyed", bearer(HASHED_KEY), 403),  # another API's key
        (NO_CLUSTER_KEYS, "keyed", bearer(INTERNAL_KEY), 200),  # the replicas' key, for chaining
        (NO_CLUSTER_KEYS, "hashed", bearer(HASHED_KEY), 200),  # configured as its sha256 digest
        (NO_CLUSTER_KEYS, "keyed", {"Authorization": f"Basic {OWN_KEY}"}, 401),
        # cluster keys: every API needs a key; a cluster key opens every API
        (CLUSTER_KEYS, "open", {}, 401),
        (CLUSTER_KEYS, "open", bearer("wrong-key-0123456789"), 403),
        (CLUSTER_KEYS, "open", bearer(CLUSTER_KEY), 200),
        (CLUSTER_KEYS, "open", bearer(INTERNAL_KEY), 200),
        (CLUSTER_KEYS, "open", bearer(OWN_KEY), 403),
        (CLUSTER_KEYS, "keyed", bearer(CLUSTER_KEY), 200),
        (CLUSTER_KEYS, "keyed", bearer(OWN_KEY), 200),
    ],
)
async def test_submit_needs_an_accepted_key(
    gateway: Gateway, ring: KeyRing, api: str, headers: dict[str, str], status: int
) -> None:
    response = await gateway(ring).post(f"/{api}", json={"x": 1}, headers=headers)
    assert response.status_code == status, response.text
    if status == 200:
        assert "id" in response.json()
        return
    assert response.headers["content-type"] == "application/json"
    message = response.json()["error"]
    assert f"api {api}" in message
    if status == 401:
        assert response.headers["www-authenticate"] == 'Bearer realm="cortex"'
        assert "Bearer <key>" in message
    else:
        assert "www-authenticate" not in response.headers
        assert "not accepted" in message and "async.api_keys" in message
    for key in (OWN_KEY, CLUSTER_KEY, INTERNAL_KEY, HASHED_KEY):
        assert key not in response.text


async def test_nothing_is_queued_for_a_refused_request(gateway: Gateway, backends: Backends) -> None:
    client = gateway(CLUSTER_KEYS)
    assert (await client.post("/open", content=b"x")).status_code == 401
    assert (await client.post("/open", content=b"x", headers=bearer("wrong-key-0123456789"))).status_code == 403
    assert (await backends.queue.depth("open")).queued == 0


async def test_reading_and_cancelling_need_the_key_too(gateway: Gateway) -> None:
    client = gateway(NO_CLUSTER_KEYS)
    rid = (await client.post("/keyed", content=b"x", headers=bearer(OWN_KEY))).json()["id"]
    assert (await client.get(f"/keyed/{rid}")).status_code == 401
    assert (await client.get(f"/keyed/{rid}", headers=bearer("wrong-key-0123456789"))).status_code == 403
    assert (await client.delete(f"/keyed/{rid}")).status_code == 401
    assert (await client.get(f"/keyed/{rid}", headers=bearer(OWN_KEY))).json()["status"] == "in_queue"
    cancelled = await client.delete(f"/keyed/{rid}", headers={"X-Cortex-API-Key": OWN_KEY})
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"


async def test_health_and_metrics_stay_open(gateway: Gateway) -> None:
    client = gateway(CLUSTER_KEYS)
    assert (await client.get("/healthz")).status_code == 200
    assert (await client.get("/readyz")).status_code == 200  # a kubelet's probe sends no key
    assert (await client.get("/metrics")).status_code == 200
    # an unknown API is 404 before any key is asked for: its name is not a secret
    assert (await client.post("/nowhere", content=b"x")).status_code == 404


async def test_refusals_are_counted_under_their_api(gateway: Gateway) -> None:
    client = gateway(CLUSTER_KEYS)
    await client.post("/open", content=b"x")
    text = (await client.get("/metrics")).text
    assert value(text, "cortex_async_gateway_requests_total", api_name="open", route="submit", code="401") == 1


def test_settings_from_the_environment_keep_digests_only() -> None:
    settings = settings_from_environ(
        {
            "CORTEX_API_KEYS": f"{CLUSTER_KEY}  {key_digest(OWN_KEY)}",
            "CORTEX_GATEWAY_INTERNAL_KEYS": key_digest(INTERNAL_KEY),
            "CORTEX_REFUSE_PRIVATE_WEBHOOKS": "true",
        }
    )
    assert settings.keys.cluster == {key_digest(CLUSTER_KEY), key_digest(OWN_KEY)}
    assert settings.keys.internal == {key_digest(INTERNAL_KEY)}
    assert settings.refuse_private_webhooks
    assert CLUSTER_KEY not in repr(settings)
    assert settings_from_environ({}) == GatewaySettings()
