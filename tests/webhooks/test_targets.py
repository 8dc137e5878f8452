"""Refusing webhooks to non-public addresses: the rule, the gateway's check at submit, the dispatcher's at delivery."""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections.abc import Awaitable, Callable

import httpx
import pytest

from cortex.backends import Backends
from cortex.gateway import GatewaySettings, create_app
from cortex.webhooks.targets import is_public, literal_problem, url_problem
from tests.dequeuer.conftest import Cluster
from tests.helpers import api_yaml, deploy
from tests.webhooks.test_delivery import Receiver, receiver, run_dispatcher, secret_of, stop_dispatcher, until

__all__ = ["receiver"]  # the loopback receiver fixture, shared with the delivery tests

MakeCluster = Callable[..., Awaitable[Cluster]]


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("8.8.8.8", True),
        ("1.1.1.1", True),
        ("2606:4700:4700::1111", True),
        ("::ffff:8.8.8.8", True),
        ("127.0.0.1", False),
        ("127.8.9.10", False),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),  # cloud metadata
        ("100.64.0.1", False),  # carrier-grade NAT
        ("0.0.0.0", False),
        ("224.0.0.1", False),  # multicast
        ("255.255.255.255", False),
        ("::1", False),
        ("::", False),
        ("fe80::1", False),
        ("fc00::1", False),
        ("ff02::1", False),
        ("::ffff:127.0.0.1", False),  # IPv4-mapped
        ("2002:7f00:1::", False),  # 6to4 around 127.0.0.1
        ("2002:808:808::", True),  # 6to4 around 8.8.8.8
        ("64:ff9b::a9fe:a9fe", False),  # NAT64 around 169.254.169.254
        ("2001:0:4136:e378:8000:63bf:f5ff:fffe", False),  # Teredo around 10.0.0.1
    ],
)
def test_is_public(address: str, public: bool) -> None:
    assert is_public(ipaddress.ip_address(address)) is public


async def test_url_problem() -> None:
    assert await url_problem("http://8.8.8.8/hook") is None  # a public literal: no lookup at all
    assert "127.0.0.1 is a private, loopback" in (await url_problem("http://127.0.0.1:9/hook") or "")
    assert "::1 is a private" in (await url_problem("http://[::1]:9/hook") or "")
    problem = await url_problem("http://localhost:9/hook")
    assert problem is not None and problem.startswith("localhost resolves to ") and "non-public" in problem
    problem = await url_problem("http://cortex-test.invalid/hook")  # .invalid never resolves (RFC 6761)
    assert problem is not None and "does not resolve" in problem
    assert literal_problem("example.com") is None  # a name is the resolver's to judge


@pytest.fixture
async def refusing(backends: Backends) -> httpx.AsyncClient:
    await deploy(backends.catalog, api_yaml("echo"))
    app = create_app(backends, settings=GatewaySettings(refuse_private_webhooks=True))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw")


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:8080/hook", "http://localhost:8080/hook", "http://[::1]/hook", "http://169.254.169.254/"],
)
async def test_submit_refuses_a_private_webhook_url(refusing: httpx.AsyncClient, backends: Backends, url: str) -> None:
    async with refusing:
        response = await refusing.post("/echo", content=b"{}", headers={"X-Cortex-Webhook-URL": url})
    assert response.status_code == 400
    message = response.json()["error"]
    assert message.startswith("X-Cortex-Webhook-URL refused: ") and "non-public address" in message
    assert "--refuse-private-webhooks" in message
    assert (await backends.queue.depth("echo")).queued == 0


async def test_submit_accepts_a_public_webhook_url(refusing: httpx.AsyncClient) -> None:
    async with refusing:
        response = await refusing.post("/echo", content=b"{}", headers={"X-Cortex-Webhook-URL": "https://8.8.8.8/h"})
    assert response.status_code == 200, response.text


async def test_by_default_private_webhook_urls_are_accepted(make_cluster: MakeCluster, receiver: Receiver) -> None:
    cluster = await make_cluster()
    response = await cluster.client.post("/echo", content=b"{}", headers={"X-Cortex-Webhook-URL": receiver.url})
    assert response.status_code == 200


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_delivery_refuses_a_private_receiver(make_cluster: MakeCluster, receiver: Receiver, host: str) -> None:
    """A URL that got past the gateway (its API's own, or a name that resolved elsewhere then) is refused."""
    url = receiver.url.replace("127.0.0.1", host)
    cluster = await make_cluster(extra=f"async: {{webhook: {{url: '{url}'}}}}")
    await secret_of(cluster.backends, "echo")
    dispatcher = await run_dispatcher(cluster.backends, refuse_private=True, first_retry=30.0)
    try:
        rid = await cluster.submit(json={})
        async with cluster.dequeuer():
            await cluster.wait(rid)
        deadline = time.monotonic() + 15
        while (state := (await cluster.status(rid)).get("webhook")) is None:
            assert time.monotonic() < deadline, "no delivery was attempted"
            await asyncio.sleep(0.02)
    finally:
        await stop_dispatcher(dispatcher)
    assert receiver.deliveries == []
    assert state["status"] == "retrying" and state["attempts"] == 1
    expected = f"refused: {host} is a private" if host == "127.0.0.1" else "refused: localhost resolves to "
    assert state["last_error"].startswith(expected), state
    assert "--refuse-private-webhooks" in state["last_error"]


async def test_delivery_to_a_private_receiver_goes_through_by_default(
    make_cluster: MakeCluster, receiver: Receiver
) -> None:
    url = receiver.url.replace("127.0.0.1", "localhost")
    cluster = await make_cluster(extra=f"async: {{webhook: {{url: '{url}'}}}}")
    await secret_of(cluster.backends, "echo")
    dispatcher = await run_dispatcher(cluster.backends)
    try:
        rid = await cluster.submit(json={})
        async with cluster.dequeuer():
            await cluster.wait(rid)
        await until(lambda: len(receiver.deliveries) >= 1, "the delivery")
    finally:
        await stop_dispatcher(dispatcher)
    assert receiver.events() == [(rid, "completed")]
