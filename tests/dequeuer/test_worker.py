"""The dequeuer against a real user server on loopback, fed by the in-process gateway."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from aiohttp import web

from tests.dequeuer.conftest import Cluster

MakeCluster = Callable[..., Awaitable[Cluster]]


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b'{"text": "hello"}', "application/json"),
        ("héllo wörld".encode(), "text/plain; charset=utf-8"),
        (bytes(range(256)), "application/octet-stream"),
    ],
)
async def test_user_server_gets_the_original_request(make_cluster: MakeCluster, body: bytes, content_type: str) -> None:
    cluster = await make_cluster()
    rid = await cluster.submit(content=body, headers={"Content-Type": content_type, "X-Trace": "t1"})
    async with cluster.dequeuer():
        data = await cluster.wait(rid)
    assert data["status"] == "completed", data
    (got,) = cluster.user.received
    assert got.request_id == rid
    assert got.body == body
    assert got.content_type == content_type
    assert got.headers["x-trace"] == "t1"
    assert data["result"] == {"echo": body.decode("latin-1")}
    assert data["attempts"] == 1 and data["timestamp"].endswith("Z")


@pytest.mark.parametrize("answer", [b"[1, 2, 3]", b"42", b'"text"', b"null", b'  {"padded": true}  '])
async def test_result_is_any_json_value_verbatim(make_cluster: MakeCluster, answer: bytes) -> None:
    cluster = await make_cluster()

    async def reply(request: web.Request) -> web.Response:
        return web.Response(body=answer, content_type="application/json")

    cluster.user.handler = reply
    rid = await cluster.submit(content=b"{}")
    async with cluster.dequeuer():
        await cluster.wait(rid)
    response = await cluster.client.get(f"/echo/{rid}")
    assert b'"result":' + answer + b"," in response.content
    assert response.json()["status"] == "completed"


async def test_status_moves_through_in_progress(make_cluster: MakeCluster) -> None:
    cluster = await make_cluster()
    release = asyncio.Event()

    async def slow(request: web.Request) -> web.Response:
        await release.wait()
        return web.json_response({"done": True})

    cluster.user.handler = slow
    rid = await cluster.submit(content=b"{}")
    assert (await cluster.status(rid))["status"] == "in_queue"
    async with cluster.dequeuer():
        running = await cluster.wait(rid, statuses=("in_progress",))
        assert "started_at" in running and "result" not in running
        release.set()
        done = await cluster.wait(rid)
    assert done["status"] == "completed" and done["result"] == {"done": True}


def _answer(status: int, body: bytes, content_type: str) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def reply(request: web.Request) -> web.Response:
        return web.Response(status=status, body=body, headers={"Content-Type": content_type})

    return reply


@pytest.mark.parametrize(
    ("status", "body", "content_type", "kind", "words"),
    [
        (500, b"boom", "text/plain", "http_status", "answered 500: boom"),
        (404, b"", "text/plain", "http_status", "(empty body)"),
        (200, b"<html></html>", "text/html", "content_type", "answered text/html"),
        (200, b"{not json", "application/json", "invalid_json", "not valid JSON"),
        (200, b"\xff\xfe{}", "application/json", "invalid_json", "not valid JSON"),
    ],
)
async def test_answers_that_are_not_2xx_json_fail_with_a_kind(
    make_cluster: MakeCluster, status: int, body: bytes, content_type: str, kind: str, words: str
) -> None:
    cluster = await make_cluster()
    cluster.user.handler = _answer(status, body, content_type)
    rid = await cluster.submit(content=b"{}")
    async with cluster.dequeuer():
        data = await cluster.wait(rid)
    assert data["status"] == "failed"
    assert data["error"]["kind"] == kind and words in data["error"]["message"], data["error"]
    assert "result" not in data


async def test_2xx_other_than_200_completes(make_cluster: MakeCluster) -> None:
    cluster = await make_cluster()
    cluster.user.handler = _answer(201, b'{"created": 1}', "application/problem+json")
    rid = await cluster.submit(content=b"{}")
    async with cluster.dequeuer():
        assert (await cluster.wait(rid))["result"] == {"created": 1}


async def test_dropped_connection_fails_as_unreachable_once_attempts_run_out(make_cluster: MakeCluster) -> None:
    cluster = await make_cluster(extra="async: {max_attempts: 1}")

    async def hang_up(request: web.Request) -> web.Response:
        assert request.transport is not None
        request.transport.abort()
        await asyncio.sleep(1)
        raise AssertionError("unreachable")

    cluster.user.handler = hang_up
    rid = await cluster.submit(content=b"{}")
    async with cluster.dequeuer():
        data = await cluster.wait(rid)
    assert data["error"]["kind"] == "unreachable", data


async def test_a_server_that_went_away_mid_request_gets_the_request_again(make_cluster: MakeCluster) -> None:
    cluster = await make_cluster()
    calls = 0

    async def crash_once(request: web.Request) -> web.Response:
        nonlocal calls
        calls += 1
        if calls == 1:  # as if the container died holding the request
            assert request.transport is not None
            request.transport.abort()
        return web.json_response({"call": calls})

    cluster.user.handler = crash_once
    rid = await cluster.submit(content=b"{}")
    async with cluster.dequeuer():
        data = await cluster.wait(rid, timeout=15)
    assert data["status"] == "completed" and data["result"] == {"call": 2}
    assert data["attempts"] == 2


async def test_request_timeout_fails_as_timeout(make_cluster: MakeCluster) -> None:
    cluster = await make_cluster(extra="async: {request_timeout: 300ms}")

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(5)
        return web.json_response({})

    cluster.user.handler = slow
    rid = await cluster.submit(content=b"{}")
    async with cluster.dequeuer():
        data = await cluster.wait(rid)
    assert data["status"] == "failed" and data["error"]["kind"] == "timeout", data
    assert "0.3s" in data["error"]["message"]


async def test_nothing_is_sent_before_readiness_passes(make_cluster: MakeCluster) -> None:
    probe = """
    readiness_probe:
      http_get: {port: 8080, path: /healthz}
      period_seconds: 1
      failure_threshold: 1
    """
    cluster = await make_cluster(container=probe)
    cluster.user.ready = False
    rid = await cluster.submit(content=b"{}")
    async with cluster.dequeuer() as worker:
        await asyncio.sleep(1.5)
        assert cluster.user.received == [] and not worker.prober.ready
        assert (await cluster.status(rid))["status"] == "in_queue"
        cluster.user.ready = True
        data = await cluster.wait(rid)
    assert data["status"] == "completed"


async def test_max_concurrency_bounds_requests_in_flight(make_cluster: MakeCluster) -> None:
    cluster = await make_cluster(concurrency=3)

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(0.2)
        return web.json_response({})

    cluster.user.handler = slow
    rids = [await cluster.submit(content=b"{}") for _ in range(9)]
    async with cluster.dequeuer():
        for rid in rids:
            assert (await cluster.wait(rid))["status"] == "completed"
    assert cluster.user.max_concurrent == 3


async def test_large_payload_is_streamed_and_its_blob_deleted(make_cluster: MakeCluster) -> None:
    cluster = await make_cluster()
    body = b"0123456789" * 50_000
    rid = await cluster.submit(content=body, headers={"Content-Type": "application/octet-stream"})
    async with cluster.dequeuer():
        await cluster.wait(rid)
    assert cluster.user.received[0].body == body
    from cortex.errors import NotFound

    with pytest.raises(NotFound):
        _ = [chunk async for chunk in cluster.backends.blobs.open(rid)]


async def test_stop_drains_running_requests(make_cluster: MakeCluster) -> None:
    cluster = await make_cluster()

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(0.5)
        return web.json_response({"finished": True})

    cluster.user.handler = slow
    rid = await cluster.submit(content=b"{}")
    async with cluster.dequeuer():
        await cluster.wait(rid, statuses=("in_progress",))
    # the context exit asked for a stop; the request finished inside the grace period
    assert (await cluster.status(rid))["result"] == {"finished": True}


async def test_work_past_the_grace_period_is_handed_back(make_cluster: MakeCluster) -> None:
    cluster = await make_cluster()

    async def endless(request: web.Request) -> web.Response:
        await asyncio.sleep(30)
        return web.json_response({})

    cluster.user.handler = endless
    rid = await cluster.submit(content=b"{}")
    async with cluster.dequeuer(grace_period=0.2):
        await cluster.wait(rid, statuses=("in_progress",))
    depth = await cluster.backends.queue.depth("echo")
    assert (depth.queued, depth.in_flight) == (1, 0)
    (lease,) = await cluster.backends.queue.lease("echo", visibility=30)
    assert lease.attempts == 1  # handing back does not count as an attempt


async def test_requests_whose_workers_died_max_attempts_times_fail(make_cluster: MakeCluster) -> None:
    cluster = await make_cluster(extra="async: {max_attempts: 2}")
    rid = await cluster.submit(content=b"{}")
    for _ in range(2):  # two workers took it and died (their leases lapse)
        assert len(await cluster.backends.queue.lease("echo", visibility=0.01)) == 1
        await asyncio.sleep(0.02)
    async with cluster.dequeuer():
        data = await cluster.wait(rid)
    assert data["status"] == "failed" and data["error"]["kind"] == "max_attempts"
    assert cluster.user.received == []
    assert (await cluster.backends.queue.depth("echo")).total == 0


async def test_lease_is_renewed_while_a_long_request_runs(make_cluster: MakeCluster) -> None:
    cluster = await make_cluster()

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(1.0)
        return web.json_response({})

    cluster.user.handler = slow
    rid = await cluster.submit(content=b"{}")
    async with cluster.dequeuer(lease_seconds=0.3):
        await cluster.wait(rid, statuses=("in_progress",))
        await asyncio.sleep(0.6)  # two lease lengths: without renewal it would be visible again
        assert await cluster.backends.queue.lease("echo", visibility=30) == []
        data = await cluster.wait(rid)
    assert data["attempts"] == 1 and len(cluster.user.received) == 1


async def test_cancelled_queued_request_never_reaches_the_user_server(make_cluster: MakeCluster) -> None:
    cluster = await make_cluster()
    rid = await cluster.submit(content=b"{}")
    response = await cluster.client.delete(f"/echo/{rid}")
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    again = await cluster.client.delete(f"/echo/{rid}")
    assert again.status_code == 200  # repeating a cancel is harmless
    async with cluster.dequeuer():
        await asyncio.sleep(0.5)
    assert cluster.user.received == []
    assert (await cluster.status(rid))["status"] == "cancelled"
    assert (await cluster.backends.queue.depth("echo")).total == 0


async def test_cancelling_a_running_request_closes_the_upstream_connection(make_cluster: MakeCluster) -> None:
    cluster = await make_cluster()
    disconnected = asyncio.Event()

    async def endless(request: web.Request) -> web.Response:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:  # aiohttp cancels the handler when the client goes away
            disconnected.set()
            raise
        return web.json_response({})

    cluster.user.handler = endless
    rid = await cluster.submit(content=b"{}")
    async with cluster.dequeuer(cancel_check=0.05):
        await cluster.wait(rid, statuses=("in_progress",))
        assert (await cluster.client.delete(f"/echo/{rid}")).json()["status"] == "cancelled"
        await asyncio.wait_for(disconnected.wait(), timeout=10)
        rid2 = await cluster.submit(content=b"{}")  # the replica is free again
        cluster.user.handler = None
        assert (await cluster.wait(rid2))["status"] == "completed"
    assert (await cluster.status(rid))["status"] == "cancelled"


async def test_cancelling_a_finished_request_is_409_with_its_status(make_cluster: MakeCluster) -> None:
    cluster = await make_cluster()
    rid = await cluster.submit(content=b"{}")
    async with cluster.dequeuer():
        await cluster.wait(rid)
    response = await cluster.client.delete(f"/echo/{rid}")
    assert response.status_code == 409
    assert response.json() == {"error": f"request {rid} is already completed", "status": "completed"}
    assert (await cluster.client.delete("/echo/01hzzzzzzzzzzzzzzzzzzzzzzz")).status_code == 404


async def test_5xx_is_retried_only_when_the_api_asks(make_cluster: MakeCluster) -> None:
    cluster = await make_cluster(extra="async: {retry: {http_5xx: true, backoff: 100ms}}")
    calls = 0

    async def flaky(request: web.Request) -> web.Response:
        nonlocal calls
        calls += 1
        if calls < 3:
            return web.Response(status=503, text="warming up")
        return web.json_response({"call": calls})

    cluster.user.handler = flaky
    rid = await cluster.submit(content=b"{}")
    async with cluster.dequeuer():
        data = await cluster.wait(rid)
    assert data["status"] == "completed" and data["result"] == {"call": 3} and data["attempts"] == 3


async def test_5xx_retries_stop_at_max_attempts_with_the_last_error(make_cluster: MakeCluster) -> None:
    cluster = await make_cluster(extra="async: {max_attempts: 2, retry: {http_5xx: true, backoff: 100ms}}")
    cluster.user.handler = _answer(500, b"still broken", "text/plain")
    rid = await cluster.submit(content=b"{}")
    async with cluster.dequeuer():
        data = await cluster.wait(rid)
    assert data["status"] == "failed" and data["attempts"] == 2
    assert data["error"]["kind"] == "http_status" and "still broken" in data["error"]["message"]
    assert len(cluster.user.received) == 2


async def test_connection_retry_can_be_turned_off(make_cluster: MakeCluster) -> None:
    cluster = await make_cluster(extra="async: {retry: {connection: false}}")

    async def hang_up(request: web.Request) -> web.Response:
        assert request.transport is not None
        request.transport.abort()
        await asyncio.sleep(1)
        raise AssertionError("unreachable")

    cluster.user.handler = hang_up
    rid = await cluster.submit(content=b"{}")
    async with cluster.dequeuer():
        data = await cluster.wait(rid)
    assert data["error"]["kind"] == "unreachable" and data["attempts"] == 1
