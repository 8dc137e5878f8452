"""Webhooks end to end in-process: gateway, dequeuer, dispatcher, and a real receiver on loopback."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from standardwebhooks.webhooks import Webhook

from cortex.backends import Backends
from cortex.metrics import OperatorMetrics
from cortex.webhooks.dispatcher import WebhookDispatcher
from tests.dequeuer.conftest import Cluster
from tests.promtext import value

MakeCluster = Callable[..., Awaitable[Cluster]]


@dataclasses.dataclass
class Receiver:
    url: str
    deliveries: list[tuple[dict[str, str], bytes]] = dataclasses.field(default_factory=list)
    refuse: int = 0  #: answer 503 to this many deliveries first
    hang: bool = False

    def events(self) -> list[tuple[str, str]]:
        return [(json.loads(body)["id"], headers["webhook-id"].split("_", 3)[3]) for headers, body in self.deliveries]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    box = Receiver(url="")

    async def hook(request: web.Request) -> web.Response:
        if box.hang:
            await asyncio.sleep(60)
        body = await request.read()
        if box.refuse > 0:
            box.refuse -= 1
            return web.Response(status=503, text="down for maintenance")
        box.deliveries.append(({k.lower(): v for k, v in request.headers.items()}, body))
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    box.url = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
    yield box
    await runner.cleanup()


async def secret_of(backends: Backends, api: str) -> str:
    entry = await backends.catalog.get_api(api)
    assert entry is not None
    meta = dict(entry.meta)
    if "webhook_secret" not in meta:  # deployed straight into the catalog by the test helper
        from cortex.webhooks.signing import new_secret

        meta["webhook_secret"] = new_secret()
        await backends.catalog.put_api(api, entry.spec, entry.spec_id, now=0.0, meta=meta)
    secret: str = meta["webhook_secret"]
    return secret


async def until(check: Callable[[], bool], what: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def run_dispatcher(backends: Backends, **options: Any) -> tuple[asyncio.Event, asyncio.Task[None]]:
    stop = asyncio.Event()
    dispatcher = WebhookDispatcher(backends, first_retry=options.pop("first_retry", 0.05), **options)
    return stop, asyncio.create_task(dispatcher.run(stop))


async def stop_dispatcher(handle: tuple[asyncio.Event, asyncio.Task[None]]) -> None:
    handle[0].set()
    await asyncio.wait_for(handle[1], timeout=20)


async def test_api_webhook_events_arrive_signed_with_the_record(make_cluster: MakeCluster, receiver: Receiver) -> None:
    cluster = await make_cluster(
        extra=f"async: {{webhook: {{url: '{receiver.url}', events: [in_progress, completed, failed]}}}}"
    )
    secret = await secret_of(cluster.backends, "echo")
    dispatcher = await run_dispatcher(cluster.backends)
    try:
        rid = await cluster.submit(json={"x": 1})
        async with cluster.dequeuer():
            done = await cluster.wait(rid)
        await until(lambda: len(receiver.deliveries) >= 2, "two deliveries")
    finally:
        await stop_dispatcher(dispatcher)
    assert sorted(receiver.events()) == [(rid, "completed"), (rid, "in_progress")]
    for headers, body in receiver.deliveries:
        payload = Webhook(secret).verify(body, headers)  # an independent implementation of the scheme
        assert payload["id"] == rid
    completed = next(json.loads(b) for h, b in receiver.deliveries if h["webhook-id"].endswith("completed"))
    assert completed["status"] == "completed" and completed["result"] == done["result"]
    state = (await cluster.status(rid))["webhook"]
    assert state["status"] == "delivered" and state["attempts"] == 1


async def test_request_header_webhook_gets_the_terminal_event(make_cluster: MakeCluster, receiver: Receiver) -> None:
    cluster = await make_cluster()
    await secret_of(cluster.backends, "echo")
    dispatcher = await run_dispatcher(cluster.backends)
    try:
        rid = await cluster.submit(json={}, headers={"X-Cortex-Webhook-URL": receiver.url})
        async with cluster.dequeuer():
            await cluster.wait(rid)
        await until(lambda: len(receiver.deliveries) >= 1, "the delivery")
        await asyncio.sleep(0.2)
    finally:
        await stop_dispatcher(dispatcher)
    assert receiver.events() == [(rid, "completed")]


async def test_a_receiver_down_three_times_gets_the_event_exactly_once(
    make_cluster: MakeCluster, receiver: Receiver
) -> None:
    cluster = await make_cluster(extra=f"async: {{webhook: {{url: '{receiver.url}'}}}}")
    await secret_of(cluster.backends, "echo")
    receiver.refuse = 3
    dispatcher = await run_dispatcher(cluster.backends)
    try:
        rid = await cluster.submit(json={})
        async with cluster.dequeuer():
            await cluster.wait(rid)
        await until(lambda: len(receiver.deliveries) >= 1, "the fourth attempt")
        await asyncio.sleep(0.5)  # time for a (wrong) duplicate to show up
    finally:
        await stop_dispatcher(dispatcher)
    assert receiver.events() == [(rid, "completed")]
    state = (await cluster.status(rid))["webhook"]
    assert state == {"status": "delivered", "attempts": 4, "last_error": None}


async def test_a_delivery_survives_a_dispatcher_restart(make_cluster: MakeCluster, receiver: Receiver) -> None:
    cluster = await make_cluster(extra=f"async: {{webhook: {{url: '{receiver.url}'}}}}")
    await secret_of(cluster.backends, "echo")
    receiver.refuse = 1
    first = await run_dispatcher(cluster.backends, first_retry=3.0)  # the retry comes after the stop
    rid = await cluster.submit(json={})
    async with cluster.dequeuer():
        await cluster.wait(rid)
    await until(lambda: receiver.refuse == 0, "the first, refused attempt")
    await stop_dispatcher(first)  # the process goes away between two attempts
    assert receiver.deliveries == []
    state = (await cluster.status(rid))["webhook"]
    assert state["status"] == "retrying" and "503" in state["last_error"]
    second = await run_dispatcher(cluster.backends)
    try:
        await until(lambda: len(receiver.deliveries) >= 1, "the delivery after the restart")
    finally:
        await stop_dispatcher(second)
    assert receiver.events() == [(rid, "completed")]


async def test_a_hung_receiver_never_slows_the_workers(make_cluster: MakeCluster, receiver: Receiver) -> None:
    cluster = await make_cluster(extra=f"async: {{webhook: {{url: '{receiver.url}'}}}}", concurrency=4)
    await secret_of(cluster.backends, "echo")
    receiver.hang = True
    dispatcher = await run_dispatcher(cluster.backends, timeout=30.0)
    try:
        rids = [await cluster.submit(json={"i": i}) for i in range(20)]
        async with cluster.dequeuer():
            for rid in rids:
                assert (await cluster.wait(rid))["status"] == "completed"
        assert receiver.deliveries == []  # every request finished while no delivery had been answered
    finally:
        receiver.hang = False
        dispatcher[1].cancel()
        with pytest.raises(asyncio.CancelledError):
            await dispatcher[1]


async def test_cancel_sends_the_cancelled_event(make_cluster: MakeCluster, receiver: Receiver) -> None:
    cluster = await make_cluster(extra=f"async: {{webhook: {{url: '{receiver.url}'}}}}")
    await secret_of(cluster.backends, "echo")
    dispatcher = await run_dispatcher(cluster.backends)
    try:
        rid = await cluster.submit(json={})
        assert (await cluster.client.delete(f"/echo/{rid}")).status_code == 200
        await until(lambda: len(receiver.deliveries) >= 1, "the cancelled event")
    finally:
        await stop_dispatcher(dispatcher)
    assert receiver.events() == [(rid, "cancelled")]
    assert json.loads(receiver.deliveries[0][1])["status"] == "cancelled"


async def test_deliveries_are_counted_by_result(make_cluster: MakeCluster, receiver: Receiver) -> None:
    cluster = await make_cluster(extra=f"async: {{webhook: {{url: '{receiver.url}'}}}}")
    await secret_of(cluster.backends, "echo")
    receiver.refuse = 2
    metrics = OperatorMetrics()
    dispatcher = await run_dispatcher(cluster.backends, metrics=metrics)
    try:
        rid = await cluster.submit(json={})
        async with cluster.dequeuer():
            await cluster.wait(rid)
        await until(lambda: len(receiver.deliveries) >= 1, "the third attempt")
        await until(lambda: b'result="delivered"' in metrics.exposition(), "the count")
    finally:
        await stop_dispatcher(dispatcher)
    text = metrics.exposition().decode()
    name = "cortex_async_webhook_deliveries_total"
    assert value(text, name, api_name="echo", result="retrying") == 2
    assert value(text, name, api_name="echo", result="delivered") == 1
    assert value(text, name, result="failed") == 0
