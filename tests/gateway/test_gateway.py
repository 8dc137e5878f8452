"""The gateway in-process (httpx.ASGITransport), against the real embedded backends."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from cortex.backends import Backends
from cortex.gateway import GatewaySettings, create_app
from cortex.ids import is_valid_id
from cortex.requests import ErrorKind, Outcome, now
from tests.helpers import api_yaml, deploy


@pytest.fixture
async def client(backends: Backends) -> AsyncIterator[httpx.AsyncClient]:
    await deploy(backends.catalog, api_yaml("echo", extra="async: {max_payload_size: 300Ki, retention: 1h}"))
    await deploy(backends.catalog, api_yaml("nested", extra="networking: {endpoint: /team/nested}"))
    app = create_app(backends, settings=GatewaySettings(inline_limit=1024))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as c:
        yield c


async def test_submit_answers_an_id_and_queues_it(client: httpx.AsyncClient, backends: Backends) -> None:
    response = await client.post("/echo", json={"x": 1})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    request_id = response.json()["id"]
    assert is_valid_id(request_id)
    assert (await backends.queue.depth("echo")).queued == 1
    status = (await client.get(f"/echo/{request_id}")).json()
    assert status["id"] == request_id and status["status"] == "in_queue"
    assert "result" not in status and "timestamp" not in status
    assert status["attempts"] == 0 and status["created_at"].endswith("Z")


async def test_trailing_slash_and_nested_endpoint(client: httpx.AsyncClient) -> None:
    assert (await client.post("/echo/", content=b"x")).status_code == 200
    rid = (await client.post("/team/nested", content=b"x")).json()["id"]
    assert (await client.get(f"/team/nested/{rid}")).json()["status"] == "in_queue"
    assert (await client.get(f"/echo/{rid}")).status_code == 404  # another API's id


async def test_stored_payload_and_headers_are_what_the_client_sent(
    client: httpx.AsyncClient, backends: Backends
) -> None:
    body = bytes(range(256)) * 3
    rid = (
        await client.post(
            "/echo",
            content=body,
            headers={"Content-Type": "application/octet-stream", "X-Custom": "v", "X-Cortex-Request-ID": "forged"},
        )
    ).json()["id"]
    (lease,) = await backends.queue.lease("echo", visibility=30)
    assert lease.id == rid
    record = await backends.records.start("echo", rid, attempts=1, now=now())
    assert record is not None and record.payload == body and record.payload_ref is None
    headers = dict(record.headers)
    assert headers["content-type"] == "application/octet-stream" and headers["x-custom"] == "v"
    assert "x-cortex-request-id" not in headers and "host" not in headers and "content-length" not in headers


async def test_large_body_streams_to_a_blob(client: httpx.AsyncClient, backends: Backends) -> None:
    body = b"z" * 200_000

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(body), 10_000):
            yield body[i : i + 10_000]

    rid = (await client.post("/echo", content=chunks())).json()["id"]
    record = await backends.records.start("echo", rid, attempts=1, now=now())
    assert record is not None and record.payload is None and record.payload_ref == rid
    stored = b"".join([c async for c in backends.blobs.open(rid)])
    assert stored == body


async def test_completed_result_is_spliced_verbatim(client: httpx.AsyncClient, backends: Backends) -> None:
    rid = (await client.post("/echo", content=b"{}")).json()["id"]
    await backends.records.start("echo", rid, attempts=1, now=now())
    await backends.records.finish("echo", rid, Outcome.completed(b'[1, {"b": 2.50}, "\\u00e9"]'), now=now())
    response = await client.get(f"/echo/{rid}")
    assert b'"result":[1, {"b": 2.50}, "\\u00e9"]' in response.content
    data = response.json()
    assert data["status"] == "completed" and data["result"] == [1, {"b": 2.5}, "é"]
    assert data["timestamp"].endswith("Z") and len(data["timestamp"]) == 20
    assert list(data)[:4] == ["id", "status", "result", "timestamp"]


async def test_failed_shows_the_error(client: httpx.AsyncClient, backends: Backends) -> None:
    rid = (await client.post("/echo", content=b"{}")).json()["id"]
    await backends.records.finish("echo", rid, Outcome.failed(ErrorKind.HTTP_STATUS, "got status 500"), now=now())
    data = (await client.get(f"/echo/{rid}")).json()
    assert data["status"] == "failed" and data["error"] == {"kind": "http_status", "message": "got status 500"}
    assert "result" not in data


@pytest.mark.parametrize(
    ("method", "path", "status", "words"),
    [
        ("POST", "/nope", 404, "no API is deployed at /nope"),
        ("GET", "/nope/01hzzzzzzzzzzzzzzzzzzzzzzz", 404, "no API is deployed"),
        ("GET", "/echo/01hzzzzzzzzzzzzzzzzzzzzzzz", 404, "not found"),
        ("GET", "/echo/../../etc/passwd", 404, "no API is deployed"),
        ("GET", "/echo/not-an-id", 404, "request not-an-id of api echo not found"),
        ("GET", "/echo", 405, "use POST /echo"),
        ("PUT", "/echo", 405, "method PUT is not allowed"),
        ("POST", "/echo/01hzzzzzzzzzzzzzzzzzzzzzzz", 405, "use GET /echo/<id>"),
        ("DELETE", "/", 404, "no API is deployed at /"),
    ],
)
async def test_errors_are_json_and_say_what_was_wrong(
    client: httpx.AsyncClient, method: str, path: str, status: int, words: str
) -> None:
    response = await client.request(method, path)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    assert words in response.json()["error"]


async def test_oversized_body_is_413_declared_or_streamed(client: httpx.AsyncClient, backends: Backends) -> None:
    declared = await client.post("/echo", content=b"x" * (300 * 1024 + 1))
    assert declared.status_code == 413
    assert "async.max_payload_size" in declared.json()["error"]

    async def undeclared() -> AsyncIterator[bytes]:
        for _ in range(40):
            yield b"y" * 10_000

    streamed = await client.post("/echo", content=undeclared())
    assert streamed.status_code == 413
    assert (await backends.queue.depth("echo")).queued == 0


async def test_healthz(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert (response.status_code, response.text) == (200, "ok")


async def test_deploys_reach_a_running_gateway(client: httpx.AsyncClient, backends: Backends) -> None:
    assert (await client.post("/late", content=b"x")).status_code == 404
    await deploy(backends.catalog, api_yaml("late"))
    import asyncio

    await asyncio.sleep(0.3)  # past the miss interval: an unknown endpoint re-reads the catalog
    assert (await client.post("/late", content=b"x")).status_code == 200


async def test_expired_request_is_404(backends: Backends) -> None:
    await deploy(backends.catalog, api_yaml("short", extra="async: {retention: 1m}"))
    app = create_app(backends)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as c:
        rid = (await c.post("/short", content=b"x")).json()["id"]
        record = await backends.records.get("short", rid, now=now())
        assert record is not None
        assert await backends.records.get("short", rid, now=record.expires_at) is None
        assert json.loads((await c.get(f"/short/{rid}")).content)["status"] == "in_queue"


async def test_idempotency_key_returns_the_same_id_without_queueing_again(
    client: httpx.AsyncClient, backends: Backends
) -> None:
    headers = {"Idempotency-Key": "order-42"}
    first = await client.post("/echo", json={"a": 1}, headers=headers)
    again = await client.post("/echo", json={"a": 1}, headers=headers)
    assert first.status_code == again.status_code == 200
    assert first.json()["id"] == again.json()["id"]
    assert (await backends.queue.depth("echo")).queued == 1
    other = await client.post("/echo", json={"a": 2}, headers=headers)
    assert other.status_code == 409
    assert "Idempotency-Key 'order-42' was already used with another body" in other.json()["error"]
    fresh = await client.post("/echo", json={"a": 1}, headers={"Idempotency-Key": "order-43"})
    assert fresh.json()["id"] != first.json()["id"]


async def test_idempotent_retry_of_a_large_body_keeps_no_second_blob(
    client: httpx.AsyncClient, backends: Backends, tmp_path: Path
) -> None:
    body = b"q" * 100_000  # over the inline limit: streamed to a blob before the key is checked
    headers = {"Idempotency-Key": "big"}
    rid = (await client.post("/echo", content=body, headers=headers)).json()["id"]
    assert (await client.post("/echo", content=body, headers=headers)).json()["id"] == rid
    stored = [path.name for path in (tmp_path / "blobs").rglob("*") if path.is_file()]
    assert stored == [rid]  # the duplicate's upload was deleted


@pytest.mark.parametrize(
    ("headers", "words"),
    [
        ({"Idempotency-Key": "x" * 256}, "Idempotency-Key must be 1 to 255 printable characters"),
        ({"X-Cortex-Webhook-URL": "ftp://example.com/hook"}, "X-Cortex-Webhook-URL must be an http:// or https://"),
        ({"X-Cortex-Webhook-URL": "http:///nohost"}, "X-Cortex-Webhook-URL must be"),
    ],
)
async def test_bad_extension_headers_are_400(client: httpx.AsyncClient, headers: dict[str, str], words: str) -> None:
    response = await client.post("/echo", content=b"{}", headers=headers)
    assert response.status_code == 400 and words in response.json()["error"]
