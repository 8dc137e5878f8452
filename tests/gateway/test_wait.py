"""Waiting without polling (issue 19): ``Prefer: wait``, ``GET ...?wait=`` and the events stream, on every backend.

The requests are taken and finished through the data plane here, as a dequeuer would; the gateway
learns of each start and finish from the backend's own notification (:mod:`cortex.dataplane.watch`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette

from cortex.backends import Backends
from cortex.dataplane.base import Finished, Taken
from cortex.gateway import GatewaySettings, create_app, waiting
from cortex.ids import new_id
from cortex.requests import Outcome, Status, now
from tests.e2e.conftest import free_port
from tests.helpers import api_yaml, deploy

RESULT = b'{"answer":42}'


@pytest.fixture
async def app(backends: Backends) -> Starlette:
    await deploy(backends.catalog, api_yaml("echo"))
    return create_app(backends, settings=GatewaySettings())


@pytest.fixture
async def client(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as c:
        yield c


async def take_one(backends: Backends) -> Taken:
    (taken,) = await backends.plane.take("echo", visibility=30, limit=1, max_attempts=3, timeout=30)
    assert taken.started
    return taken


async def finish(backends: Backends, taken: Taken) -> None:
    outcome = Outcome(Status.COMPLETED, result=RESULT)
    assert await backends.plane.finish(taken.lease, outcome, now=now()) is Finished.FINISHED


async def until_waiting(backends: Backends, request_id: str) -> None:
    """Until the gateway waits for a notification about ``request_id`` (so the finish must wake it)."""
    while not backends.plane.changes.waiting(request_id):
        await asyncio.sleep(0.005)


async def test_post_with_prefer_wait_answers_the_result_in_one_exchange(
    client: httpx.AsyncClient, backends: Backends
) -> None:
    async def worker() -> None:  # a no-op API: done as soon as it is taken
        await finish(backends, await take_one(backends))

    running = asyncio.create_task(worker())
    response = await client.post("/echo", content=b"{}", headers={"Prefer": "respond-async, wait=5"})
    await running
    assert response.status_code == 200
    assert response.headers["preference-applied"] == "wait=5"
    body = response.json()
    assert body["status"] == "completed" and body["result"] == {"answer": 42}


async def test_post_with_prefer_wait_answers_id_and_status_when_not_done(client: httpx.AsyncClient) -> None:
    response = await client.post("/echo", content=b"{}", headers={"Prefer": "wait=0"})
    assert response.headers["preference-applied"] == "wait=0"
    body = response.json()
    assert set(body) == {"id", "status"} and body["status"] == "in_queue"
    without = await client.post("/echo", content=b"{}")
    assert set(without.json()) == {"id"} and "preference-applied" not in without.headers


@pytest.mark.parametrize("how", ["prefer", "query"])
async def test_get_with_wait_answers_once_the_finish_is_notified(
    client: httpx.AsyncClient, backends: Backends, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    rid = (await client.post("/echo", content=b"{}")).json()["id"]
    taken = await take_one(backends)
    # the wait outlasts the test's timeout: only the notification of the finish can answer it in time
    headers = {"Prefer": "wait=60"} if how == "prefer" else {}
    params = {"wait": "60"} if how == "query" else {}
    waiting = asyncio.create_task(client.get(f"/echo/{rid}", headers=headers, params=params))
    await until_waiting(backends, rid)
    await finish(backends, taken)
    response = await waiting
    assert response.status_code == 200 and response.json()["status"] == "completed"
    assert response.json()["result"] == {"answer": 42}


async def test_get_wait_rereads_at_the_deadline(client: httpx.AsyncClient) -> None:
    rid = (await client.post("/echo", content=b"{}")).json()["id"]
    response = await client.get(f"/echo/{rid}?wait=0.05")
    assert response.json()["status"] == "in_queue"
    assert response.headers["preference-applied"] == "wait=0.05"


async def test_a_cancel_wakes_the_waiters_of_this_gateway(client: httpx.AsyncClient, backends: Backends) -> None:
    rid = (await client.post("/echo", content=b"{}")).json()["id"]
    waiting = asyncio.create_task(client.get(f"/echo/{rid}", headers={"Prefer": "wait=60"}))
    await until_waiting(backends, rid)
    assert (await client.delete(f"/echo/{rid}")).status_code == 200
    assert (await waiting).json()["status"] == "cancelled"


@pytest.mark.parametrize("wait", ["-1", "soon", "nan"])
async def test_a_bad_wait_parameter_is_refused(client: httpx.AsyncClient, wait: str) -> None:
    rid = (await client.post("/echo", content=b"{}")).json()["id"]
    response = await client.get(f"/echo/{rid}", params={"wait": wait})
    assert response.status_code == 400 and "wait must be" in response.json()["error"]


async def test_an_unknown_prefer_or_wait_value_is_ignored(client: httpx.AsyncClient) -> None:
    response = await client.post("/echo", content=b"{}", headers={"Prefer": "handling=lenient, wait=soon"})
    assert set(response.json()) == {"id"} and "preference-applied" not in response.headers


@contextlib.asynccontextmanager
async def served(app: Starlette) -> AsyncIterator[str]:
    """``app`` on a loopback port of this event loop (an SSE stream needs a real connection)."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_level="warning")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        assert not task.done(), "the test server did not start"
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


async def next_event(lines: AsyncIterator[str]) -> tuple[str, dict[str, object]]:
    """The next event (its name and JSON data) of an SSE stream; comment lines are skipped."""
    name, data = "message", ""
    async for line in lines:
        if line.startswith(":"):
            continue
        if not line:
            if data:
                return name, json.loads(data)
            continue
        field, _, value = line.partition(": ")
        if field == "event":
            name = value
        elif field == "data":
            data += value
    raise AssertionError("the stream ended")


async def test_events_stream_shows_each_status_in_order(
    app: Starlette, backends: Backends, monkeypatch: pytest.MonkeyPatch
) -> None:
    # no re-read without a notification within the test's timeout: each event comes from one
    monkeypatch.setattr(waiting, "EVENTS_RECHECK", 3600.0)
    async with served(app) as url, httpx.AsyncClient(base_url=url, timeout=60) as client:
        rid = (await client.post("/echo", content=b"{}")).json()["id"]
        async with client.stream("GET", f"/echo/{rid}/events") as stream:
            assert stream.status_code == 200
            assert stream.headers["content-type"].startswith("text/event-stream")
            lines = stream.aiter_lines()
            assert await next_event(lines) == ("status", (await client.get(f"/echo/{rid}")).json())
            taken = await take_one(backends)
            name, data = await next_event(lines)
            assert name == "status" and data["status"] == "in_progress"
            await finish(backends, taken)
            name, data = await next_event(lines)
            assert name == "status" and data["status"] == "completed" and data["result"] == {"answer": 42}
            assert [line async for line in lines if line and not line.startswith(":")] == []


async def test_events_of_an_unknown_request_is_404(client: httpx.AsyncClient) -> None:
    response = await client.get(f"/echo/{new_id()}/events")
    assert response.status_code == 404
