"""Round trips per request on the servers: one per step of the data plane, plus the status read.

Counted at the socket, by a pass-through proxy (:mod:`tests.servers.cutter`) between the process
and Redis or PostgreSQL: each message a client sends and waits on is one round trip, whatever the
server runs for it (a Lua script's inner commands, a PL/pgSQL function's statements).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from cortex.dataplane.base import Finished
from cortex.gateway import GatewaySettings, create_app
from cortex.ids import new_id
from cortex.requests import NewRequest, Outcome, now
from tests.faults.test_interrupted_submit import proxied

REQUESTS = 20
#: submit, take, finish, and one GET of the status
STEPS = 4
#: round trips not per request: a statement prepared again on a second pooled connection, say
ONE_OFFS = 2


@pytest.mark.parametrize("backend", ["redis", "postgres"])
async def test_a_request_costs_one_round_trip_per_step(backend: str, tmp_path: Path) -> None:
    async with proxied(backend, tmp_path) as (through, _, proxy):
        app = create_app(through, settings=GatewaySettings(catalog_ttl=3600))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as client:

            async def one() -> None:
                request_id = (await client.post("/echo", content=b"{}")).json()["id"]
                (taken,) = await through.plane.take("echo", visibility=30, limit=1, max_attempts=3, timeout=0)
                assert taken.lease.id == request_id and taken.started
                assert await through.plane.finish(taken.lease, Outcome.completed(b"1"), now=now()) is Finished.FINISHED
                assert (await client.get(f"/echo/{request_id}")).json()["status"] == "completed"

            await one()  # scripts loaded, statements prepared, the API's spec cached
            before, connections = proxy.sent, proxy.connections
            for _ in range(REQUESTS):
                await one()
            sent, opened = proxy.sent - before, proxy.connections - connections
    assert sent <= STEPS * REQUESTS + ONE_OFFS, (
        f"{sent / REQUESTS:.2f} round trips per request on {backend} ({opened} connections)"
    )


@pytest.mark.parametrize("backend", ["redis", "postgres"])
async def test_concurrent_finishes_share_one_round_trip(backend: str, tmp_path: Path) -> None:
    async with proxied(backend, tmp_path) as (through, _, proxy):
        sent = []
        for _ in range(2):  # the first batch also prepares the statement
            for _ in range(8):
                await through.plane.submit(_new())
            taken = await through.plane.take("echo", visibility=30, limit=8, max_attempts=3, timeout=1)
            assert len(taken) == 8
            before = proxy.sent
            answers = await asyncio.gather(
                *(through.plane.finish(item.lease, Outcome.completed(b"1"), now=now()) for item in taken)
            )
            assert answers == [Finished.FINISHED] * 8
            sent.append(proxy.sent - before)
        assert sent[1] == 1


@pytest.mark.parametrize("backend", ["redis", "postgres"])
async def test_a_progress_report_and_an_announcement_are_one_round_trip_each(backend: str, tmp_path: Path) -> None:
    async with proxied(backend, tmp_path) as (through, _, proxy):
        await through.plane.submit(_new())
        (taken,) = await through.plane.take("echo", visibility=30, limit=1, max_attempts=3, timeout=1)
        assert await through.plane.report_progress(taken.lease, "1", now=now())  # the script loaded, prepared
        await through.plane.announce(["x"])
        sent = []
        for n in range(2, 6):
            before = proxy.sent
            assert await through.plane.report_progress(taken.lease, str(n), now=now())
            sent.append(proxy.sent - before)
        before = proxy.sent
        await through.plane.announce([new_id() for _ in range(100)])  # a purge's worth, at once
        sent.append(proxy.sent - before)
    assert sent == [1] * 5


@pytest.mark.parametrize("backend", ["postgres"])  # Redis keeps nothing on disk: no flush to share
async def test_concurrent_submissions_share_one_round_trip(backend: str, tmp_path: Path) -> None:
    async with proxied(backend, tmp_path) as (through, direct, proxy):
        sent = []
        for batch in range(2):  # the first batch also prepares the statement
            before = proxy.sent
            requests = [_new(key=f"key-{batch}-{index % 6}") for index in range(8)]
            answers = await asyncio.gather(*(through.plane.submit(request) for request in requests))
            sent.append(proxy.sent - before)
            assert answers[:6] == [None] * 6
            assert [answer and answer.id for answer in answers[6:]] == [requests[0].id, requests[1].id]
        assert sent[1] == 1
        assert (await direct.queue.depth("echo")).queued == 12  # 6 per batch: its last 2 keys were repeats


def _new(key: str | None = None) -> NewRequest:
    created = now()
    return NewRequest(
        id=new_id(),
        api="echo",
        created_at=created,
        expires_at=created + 60,
        headers=(),
        payload=b"{}",
        idempotency_key=key,
    )
