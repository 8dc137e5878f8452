"""Requests cancelled in bulk (a purge, an API's deletion) get their ``cancelled`` webhook, as a single cancel does.

On every backend: the gateway and the operator in-process, the dispatcher, and a real receiver on loopback.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from aiohttp import web
from standardwebhooks.webhooks import Webhook

from cortex import bulkcancel
from cortex.backends import Backends
from cortex.bulkcancel import cancel_requests
from cortex.errors import BackendError
from cortex.gateway import create_app
from cortex.ids import new_id
from cortex.requests import ErrorKind, NewRequest, now
from cortex.webhooks.dispatcher import WebhookDispatcher
from cortex.webhooks.events import WEBHOOK_QUEUE
from tests.helpers import api_yaml
from tests.operator.conftest import Harness


@dataclasses.dataclass
class Delivery:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def record(self) -> dict[str, Any]:
        got: dict[str, Any] = json.loads(self.body)
        return got


@dataclasses.dataclass
class Receiver:
    url: str = ""
    deliveries: list[Delivery] = dataclasses.field(default_factory=list)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    box = Receiver()

    async def hook(request: web.Request) -> web.Response:
        headers = {k.lower(): v for k, v in request.headers.items()}
        box.deliveries.append(Delivery(request.path_qs, headers, await request.read()))
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/{tail:.*}", hook)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    box.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    yield box
    await runner.cleanup()


@pytest.fixture
async def harness(backends: Backends) -> AsyncIterator[Harness]:
    made = Harness(backends)
    try:
        yield made
    finally:
        await made.http.aclose()


@pytest.fixture
async def gateway(backends: Backends) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(backends)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as client:
        yield client


def with_webhook(name: str, url: str) -> str:
    return api_yaml(name, extra=f"async: {{webhook: {{url: '{url}'}}}}")


async def delivered(backends: Backends, receiver: Receiver, count: int, timeout: float = 20) -> None:
    """Run the dispatcher until ``count`` deliveries arrived and nothing is left in the webhook queue."""
    stop = asyncio.Event()
    task = asyncio.create_task(WebhookDispatcher(backends, first_retry=0.05).run(stop))
    try:
        deadline = time.monotonic() + timeout
        while True:
            depth = await backends.queue.depth(WEBHOOK_QUEUE)
            if len(receiver.deliveries) >= count and depth.queued == depth.in_flight == 0:
                return
            assert time.monotonic() < deadline, f"{len(receiver.deliveries)} of {count} deliveries, {depth}"
            await asyncio.sleep(0.02)
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=20)


async def secret_of(backends: Backends, api: str) -> str:
    entry = await backends.catalog.get_api(api)
    assert entry is not None
    secret: str = entry.meta["webhook_secret"]
    return secret


async def submit(gateway: httpx.AsyncClient, api: str, headers: dict[str, str] | None = None) -> str:
    answer = await gateway.post(f"/{api}", json={}, headers=headers or {})
    assert answer.status_code == 200, answer.text
    rid: str = answer.json()["id"]
    return rid


async def test_a_purge_sends_each_queued_request_its_cancelled_webhook(
    backends: Backends, harness: Harness, gateway: httpx.AsyncClient, receiver: Receiver
) -> None:
    await harness.operator.deploy(with_webhook("echo", f"{receiver.url}/api"), "/tmp/cortex.yaml")
    await harness.operator.deploy(with_webhook("other", f"{receiver.url}/other"), "/tmp/cortex.yaml")
    secret = await secret_of(backends, "echo")
    running = await submit(gateway, "echo")
    (taken,) = await backends.plane.take("echo", visibility=30, limit=1, max_attempts=3, timeout=1)
    assert taken.lease.id == running
    queued = [await submit(gateway, "echo") for _ in range(2)]
    own = await submit(gateway, "echo", {"X-Cortex-Webhook-URL": f"{receiver.url}/own?n=1"})
    untouched = await submit(gateway, "other")

    answer = await gateway.post("/echo/purge")
    assert answer.json() == {"cancelled": 3}
    await delivered(backends, receiver, 3)

    got = {d.record["id"]: d for d in receiver.deliveries}
    assert len(receiver.deliveries) == 3 and set(got) == {*queued, own}  # not the running one, nor the other API's
    assert {rid: got[rid].path for rid in got} == {queued[0]: "/api", queued[1]: "/api", own: "/own?n=1"}
    for rid, delivery in got.items():
        assert Webhook(secret).verify(delivery.body, delivery.headers)["id"] == rid
        assert delivery.headers["webhook-id"] == f"msg_echo_{rid}_cancelled"
        assert delivery.record["status"] == "cancelled" and delivery.record["error"]["kind"] == "purged"
        assert (await gateway.get(f"/echo/{rid}")).json()["webhook"]["status"] == "delivered"
    assert (await gateway.get(f"/other/{untouched}")).json()["status"] == "in_queue"


async def test_a_deleted_api_sends_its_cancelled_webhooks_signed_with_its_secret(
    backends: Backends, harness: Harness, gateway: httpx.AsyncClient, receiver: Receiver
) -> None:
    await harness.operator.deploy(with_webhook("echo", f"{receiver.url}/api"), "/tmp/cortex.yaml")
    secret = await secret_of(backends, "echo")
    queued = await submit(gateway, "echo")
    own = await submit(gateway, "echo", {"X-Cortex-Webhook-URL": f"{receiver.url}/own"})

    answer = await harness.http.delete("/delete/echo")
    assert answer.json() == {"message": "deleting echo"}
    assert await backends.catalog.get_api("echo") is None  # the deliveries below find its spec and secret retired
    await delivered(backends, receiver, 2)

    assert sorted((d.record["id"], d.path) for d in receiver.deliveries) == sorted([(queued, "/api"), (own, "/own")])
    for delivery in receiver.deliveries:
        assert Webhook(secret).verify(delivery.body, delivery.headers)["status"] == "cancelled"
        assert delivery.record["error"]["kind"] == "api_deleted"
    # deployed again, the name gets a new secret; the old requests' records stay as they were
    await harness.operator.deploy(with_webhook("echo", f"{receiver.url}/api"), "/tmp/cortex.yaml")
    assert await secret_of(backends, "echo") != secret


async def test_a_large_purge_is_handled_in_bounded_batches(backends: Backends, receiver: Receiver) -> None:
    count = 250
    for _ in range(count):
        rid, created = new_id(), now()
        request = NewRequest(
            id=rid, api="big", created_at=created, expires_at=created + 600, headers=(), webhook_url=receiver.url
        )
        assert await backends.records.create(request) is None
        await backends.queue.enqueue("big", rid)
    batches: list[int] = []

    async def told(ids: list[str]) -> None:
        batches.append(len(ids))

    cancelled = await cancel_requests(
        backends.queue,
        backends.records,
        "big",
        None,
        kind=ErrorKind.PURGED,
        reason="r",
        queued_only=True,
        on_cancelled=told,
    )
    assert cancelled == sum(batches) == count
    assert max(batches) <= 100 and len(batches) >= 3  # told batch by batch, never the whole list at once
    assert (await backends.queue.depth(WEBHOOK_QUEUE)).queued == count  # one delivery queued for each


async def test_a_store_error_in_a_batch_is_raised_as_itself_once_every_step_ended() -> None:
    ended: list[int] = []

    async def step(n: int) -> str | None:
        await asyncio.sleep(0.001 * (5 - n))  # the failing one ends first; the others still end
        ended.append(n)
        if n == 3:
            raise BackendError("the store did not answer")
        return f"id{n}" if n % 2 == 0 else None

    with pytest.raises(BackendError, match="did not answer"):  # what the gateway answers 503 to, not a group
        await bulkcancel._each(step, [0, 1, 2, 3, 4])
    assert sorted(ended) == [0, 1, 2, 3, 4]

    async def fine(n: int) -> str | None:
        return f"id{n}" if n % 2 == 0 else None

    assert await bulkcancel._each(fine, [0, 1, 2, 3, 4]) == ["id0", "id2", "id4"]
