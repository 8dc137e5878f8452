"""Progress reports (issue 19 point 2), through the real dequeuer's admin port on every backend.

The user server posts ``POST $CORTEX_DEQUEUER_URL/progress`` while it runs a request; the events
stream of a real gateway on loopback shows ``in_queue``, ``in_progress``, each progress and the
terminal status, in that order; the GET answer keeps the last progress.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import httpx
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from cortex.dequeuer.progress import MAX_PROGRESS_BYTES, PROGRESS_INTERVAL
from cortex.dequeuer.service import admin_app
from cortex.gateway import create_app, waiting
from tests.dequeuer.conftest import Cluster
from tests.gateway.test_wait import next_event, served
from tests.promtext import value

MakeCluster = Callable[..., Awaitable[Cluster]]
ID = "X-Cortex-Request-ID"


async def _post(url: str, request_id: str, body: bytes) -> int:
    async with aiohttp.ClientSession() as session, session.post(url, data=body, headers={ID: request_id}) as answer:
        return answer.status


async def test_the_events_stream_shows_queued_started_each_progress_and_the_end_in_order(
    make_cluster: MakeCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    # no re-read without a notification within the test's timeout: each event comes from one
    monkeypatch.setattr(waiting, "EVENTS_RECHECK", 3600.0)
    cluster = await make_cluster()
    admin: dict[str, str] = {}
    admin_up = asyncio.Event()
    shown = {1: asyncio.Event(), 2: asyncio.Event()}

    async def reporting(request: web.Request) -> web.Response:
        await admin_up.wait()
        for step, seen in shown.items():  # the next step only once the stream showed this one
            assert await _post(admin["url"], request.headers[ID], b'{"step": %d, "of": 2}' % step) == 202
            await seen.wait()
        return web.json_response({"done": True})

    cluster.user.handler = reporting
    async with served(create_app(cluster.backends)) as url, httpx.AsyncClient(base_url=url, timeout=60) as client:
        rid = (await client.post("/echo", json={"n": 1})).json()["id"]
        async with client.stream("GET", f"/echo/{rid}/events") as stream:
            lines = stream.aiter_lines()
            seen: list[tuple[str, Any]] = [await next_event(lines)]  # in_queue: no dequeuer runs yet
            async with cluster.dequeuer() as dequeuer, TestServer(admin_app(dequeuer)) as server:
                admin["url"] = str(server.make_url("/progress"))
                admin_up.set()
                while True:
                    name, data = await next_event(lines)
                    seen.append((name, data))
                    if name == "progress":
                        step = data["step"]
                        assert isinstance(step, int)
                        shown[step].set()
                    elif data["status"] == "completed":
                        break
        record = (await client.get(f"/echo/{rid}")).json()
    assert [(name, data["status"] if name == "status" else data) for name, data in seen] == [
        ("status", "in_queue"),
        ("status", "in_progress"),
        ("progress", {"step": 1, "of": 2}),
        ("progress", {"step": 2, "of": 2}),
        ("status", "completed"),
    ]
    assert record["progress"] == {"step": 2, "of": 2} and record["progress_at"].endswith("Z")
    assert seen[-1][1]["progress"] == {"step": 2, "of": 2}


async def test_a_thousand_reports_cost_a_write_per_interval_and_the_last_one_is_kept(
    make_cluster: MakeCluster,
) -> None:
    cluster = await make_cluster()
    admin: dict[str, str] = {}
    admin_up = asyncio.Event()
    spent: list[float] = []

    async def chatty(request: web.Request) -> web.Response:
        await admin_up.wait()
        started = time.monotonic()
        async with aiohttp.ClientSession() as session:
            for n in range(1000):
                async with session.post(admin["url"], data=b"%d" % n, headers={ID: request.headers[ID]}) as answer:
                    assert answer.status == 202
        spent.append(time.monotonic() - started)
        return web.json_response({"done": True})

    cluster.user.handler = chatty
    rid = await cluster.submit(json={"n": 1})
    async with cluster.dequeuer() as dequeuer, TestServer(admin_app(dequeuer)) as server:
        admin["url"] = str(server.make_url("/progress"))
        admin_up.set()
        record = await cluster.wait(rid, timeout=60)
        reports, writes = dequeuer.progress.reports, dequeuer.progress.writes
        async with aiohttp.ClientSession() as session, session.get(server.make_url("/metrics")) as answer:
            exposition = await answer.text()
    assert record["status"] == "completed" and record["progress"] == 999
    assert reports == 1000
    assert value(exposition, "cortex_async_progress_reports_total", api_name="echo") == 1000
    assert value(exposition, "cortex_async_progress_writes_total", api_name="echo") == writes
    # the first at once, then one per interval while reports come, then the flush before the outcome
    assert 1 <= writes <= 2 + spent[0] / PROGRESS_INTERVAL, (writes, spent)


@pytest.fixture
async def admin(make_cluster: MakeCluster) -> AsyncIterator[tuple[TestClient[web.Request, web.Application], str]]:
    """The admin port of a dequeuer running one request (its user server holds it until the test ends)."""
    cluster = await make_cluster()
    release, running = asyncio.Event(), asyncio.Event()

    async def holding(request: web.Request) -> web.Response:
        running.set()
        await release.wait()
        return web.json_response({"done": True})

    cluster.user.handler = holding
    rid = await cluster.submit(json={"n": 1})
    async with cluster.dequeuer() as dequeuer, TestClient(TestServer(admin_app(dequeuer))) as client:
        await running.wait()
        yield client, rid
        release.set()


async def test_a_running_request_takes_any_json_value(
    admin: tuple[TestClient[web.Request, web.Application], str],
) -> None:
    client, rid = admin
    for body in (b'{"step": 1}', b"0.25", b'"loading weights"', b"[1, 2]", b"null"):
        response = await client.post("/progress", data=body, headers={ID: rid})
        assert response.status == 202, await response.text()
        assert (await response.json()) == {"id": rid}


@pytest.mark.parametrize(
    ("body", "headers", "status", "says"),
    [
        (b"{}", {}, 400, "X-Cortex-Request-ID"),
        (b"{", {ID: "{rid}"}, 400, "not JSON"),
        (b"", {ID: "{rid}"}, 400, "not JSON"),
        (b'{"a": NaN}', {ID: "{rid}"}, 400, "NaN"),
        (b"\xff\xfe", {ID: "{rid}"}, 400, "not JSON"),
        (b'"' + b"x" * MAX_PROGRESS_BYTES + b'"', {ID: "{rid}"}, 413, "over the 4096 accepted"),
        (b"{}", {ID: "01hqz0000000000000000000ab"}, 404, "not running on this replica"),
    ],
)
async def test_bad_reports_are_refused_with_a_clear_message(
    admin: tuple[TestClient[web.Request, web.Application], str],
    body: bytes,
    headers: dict[str, str],
    status: int,
    says: str,
) -> None:
    client, rid = admin
    response = await client.post("/progress", data=body, headers={k: v.format(rid=rid) for k, v in headers.items()})
    assert response.status == status
    assert says in (await response.json())["error"]


async def test_an_oversize_chunked_report_is_refused(
    admin: tuple[TestClient[web.Request, web.Application], str],
) -> None:
    client, rid = admin

    async def chunks() -> AsyncIterator[bytes]:
        yield b'"'
        for _ in range(10):
            yield b"x" * 1000
        yield b'"'

    response = await client.post("/progress", data=chunks(), headers={ID: rid})
    assert response.status == 413 and "larger than 4096 bytes" in (await response.json())["error"]
