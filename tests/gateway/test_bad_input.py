"""Bad input to the gateway in-process, on every backend: path tricks, wrong methods, bodies cut short or stalled.

Whatever a client sends, the answer is a 4xx with JSON ``{"error"}`` naming what was wrong, never a
5xx; and a request the gateway did not answer 200 left nothing stored or queued.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.types import ASGIApp, Message

from cortex.backends import Backends
from cortex.gateway import GatewaySettings, create_app
from cortex.gateway.openapi import OPENAPI_PATH, openapi_document
from cortex.requests import now
from cortex.spec.fields import RESERVED_ENDPOINTS
from tests.helpers import api_yaml, deploy

BODY_TIMEOUT = 0.3


@pytest.fixture
async def app(backends: Backends) -> ASGIApp:
    await deploy(backends.catalog, api_yaml("echo", extra="async: {max_payload_size: 300Ki}"))
    await deploy(backends.catalog, api_yaml("nested", extra="networking: {endpoint: /team/nested}"))
    return create_app(backends, settings=GatewaySettings(inline_limit=1024, body_timeout=BODY_TIMEOUT))


@pytest.fixture
async def client(app: ASGIApp) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as c:
        yield c


async def nothing_stored(backends: Backends, tmp_path: Path) -> None:
    assert (await backends.queue.depth("echo")).queued == 0
    leftovers = [path.name for path in (tmp_path / "blobs").rglob("*") if path.is_file()]
    assert leftovers == [], f"blob files left behind: {leftovers}"


def assert_json_error(response: httpx.Response, status: int, words: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert words in response.json()["error"]


# -- paths -------------------------------------------------------------------------------------------

#: (method, raw path, status, words of the error); the gateway routes on the percent-decoded path
PATH_TRICKS = [
    ("GET", "/echo/..%2f..%2fblobs", 404, "no API is deployed at /echo/../../blobs"),
    ("GET", "/echo/%2e%2e/%2e%2e/etc/passwd", 404, "no API is deployed at /echo/../../etc/passwd"),
    ("GET", "/echo/%2e%2e", 404, "request .. of api echo not found"),
    ("DELETE", "/echo/%2e%2e", 404, "request .. of api echo not found"),
    ("POST", "/%2e%2e/echo", 404, "no API is deployed at /../echo"),
    ("GET", "/echo/%00", 404, "request \x00 of api echo not found"),
    ("POST", "/echo%00", 404, "no API is deployed at /echo\x00"),
    ("GET", "/echo/01hzzzzzzzzzzzzzzzzzzzzzz%00", 404, "not found"),
    ("POST", "/%C3%A9cho", 404, "no API is deployed at /\u00e9cho"),
    ("POST", "/echo%FF", 404, "no API is deployed at /echo\ufffd"),
    ("POST", "/ECHO", 404, "no API is deployed at /ECHO"),
    ("POST", "/team//nested", 404, "no API is deployed at /team//nested"),
    ("GET", "/team%2Fnested/nope", 404, "request nope of api nested not found"),
    ("GET", "/echo/" + "a" * 10_000, 404, "request aaaaaaaa"),
    ("POST", "/" + "x" * 5_000, 404, "no API is deployed at /xxxx"),
]


@pytest.mark.parametrize(("method", "path", "status", "words"), PATH_TRICKS, ids=[t[1][:40] for t in PATH_TRICKS])
async def test_path_tricks_are_4xx_and_name_the_path(
    client: httpx.AsyncClient, backends: Backends, tmp_path: Path, method: str, path: str, status: int, words: str
) -> None:
    response = await client.request(method, path)
    assert_json_error(response, status, words)
    assert len(response.json()["error"]) < 300, "a client's path is quoted whole in the error"
    await nothing_stored(backends, tmp_path)


async def test_an_encoded_slash_is_a_slash(client: httpx.AsyncClient) -> None:
    submitted = await client.post("/team%2Fnested", content=b"x")
    assert submitted.status_code == 200
    request_id = submitted.json()["id"]
    assert (await client.get(f"/team/nested/{request_id}")).json()["status"] == "in_queue"
    assert (await client.get(f"/team%2fnested%2f{request_id}")).json()["id"] == request_id


async def test_an_id_with_a_trailing_newline_is_not_the_id(client: httpx.AsyncClient) -> None:
    request_id = (await client.post("/echo", content=b"x")).json()["id"]
    assert_json_error(await client.get(f"/echo/{request_id}%0A"), 404, "not found")
    assert_json_error(await client.delete(f"/echo/{request_id}%0A"), 404, "not found")
    assert (await client.get(f"/echo/{request_id}")).json()["status"] == "in_queue"


# -- methods -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "allow", "words"),
    [
        ("POST", "/healthz", "GET, HEAD", "method POST is not allowed on /healthz"),
        ("DELETE", "/metrics", "GET, HEAD", "method DELETE is not allowed on /metrics"),
        ("PUT", OPENAPI_PATH, "GET, HEAD", f"method PUT is not allowed on {OPENAPI_PATH}"),
        ("TRACE", "/echo", "GET, POST, DELETE", "method TRACE is not allowed on /echo"),
        ("CONNECT", "/nowhere", "GET, POST, DELETE", "the gateway answers POST, GET and DELETE"),
        ("OPTIONS", "/echo", "POST", "use POST /echo to submit a request"),
        ("PATCH", "/echo/01hzzzzzzzzzzzzzzzzzzzzzzz", "GET, DELETE", "use GET /echo/<id> to read a request"),
    ],
)
async def test_wrong_methods_are_json_405(
    client: httpx.AsyncClient, method: str, path: str, allow: str, words: str
) -> None:
    response = await client.request(method, path)
    assert_json_error(response, 405, words)
    assert response.headers["allow"] == allow


async def test_the_openapi_document_is_served(client: httpx.AsyncClient) -> None:
    response = await client.get(OPENAPI_PATH)
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    assert response.json() == openapi_document()


def test_no_api_can_take_a_path_the_gateway_serves() -> None:
    own = {path for path in openapi_document()["paths"] if "{" not in path}
    assert own == RESERVED_ENDPOINTS


# -- bodies ------------------------------------------------------------------------------------------


async def call(app: ASGIApp, chunks: list[bytes], then: str, *, declared: int, pause: float = 0.0) -> list[Message]:
    """POST /echo through the ASGI interface: ``chunks`` of the body (``pause`` seconds apart), then
    ``"end"`` (the body is complete), ``"disconnect"`` (the client is gone) or ``"stall"`` (nothing more comes)."""
    pending = list(chunks)
    sent: list[Message] = []

    async def receive() -> Message:
        if pending:
            await asyncio.sleep(pause)
            chunk = pending.pop(0)
            return {"type": "http.request", "body": chunk, "more_body": bool(pending) or then != "end"}
        if then == "disconnect":
            return {"type": "http.disconnect"}
        if then == "stall":
            await asyncio.Event().wait()
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/echo",
        "raw_path": b"/echo",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"gw"), (b"content-length", str(declared).encode())],
        "client": ("127.0.0.1", 50000),
        "server": ("gw", 80),
    }
    await app(scope, receive, send)
    return sent


def status_of(sent: list[Message]) -> int:
    (start,) = [message for message in sent if message["type"] == "http.response.start"]
    status: int = start["status"]
    return status


@pytest.mark.parametrize("size", [100, 200_000], ids=["inline", "blob"])
async def test_a_body_cut_short_stores_and_queues_nothing(
    app: ASGIApp, backends: Backends, tmp_path: Path, size: int
) -> None:
    sent = await call(app, [b"x" * (size // 4)] * 2, "disconnect", declared=size)
    assert status_of(sent) == 400
    await nothing_stored(backends, tmp_path)


@pytest.mark.parametrize("size", [100, 200_000], ids=["inline", "blob"])
async def test_a_stalled_body_is_408_after_the_body_timeout(
    app: ASGIApp, backends: Backends, tmp_path: Path, size: int
) -> None:
    started = time.monotonic()
    sent = await asyncio.wait_for(call(app, [b"x" * (size // 4)] * 2, "stall", declared=size), timeout=10)
    assert BODY_TIMEOUT <= time.monotonic() - started < BODY_TIMEOUT + 5
    assert status_of(sent) == 408
    (start,) = [message for message in sent if message["type"] == "http.response.start"]
    assert (b"connection", b"close") in start["headers"]
    body = b"".join(message.get("body", b"") for message in sent if message["type"] == "http.response.body")
    assert b"the body stopped arriving for 0.3s" in body
    await nothing_stored(backends, tmp_path)


async def test_a_slow_but_steady_body_is_accepted(app: ASGIApp, backends: Backends) -> None:
    # the timeout is between two chunks, not on the whole body: 8 chunks over ~1.2 s pass a 0.3 s timeout
    sent = await call(app, [b"y" * 500] * 8, "end", declared=4000, pause=BODY_TIMEOUT / 2)
    assert status_of(sent) == 200
    (lease,) = await backends.queue.lease("echo", visibility=30)
    record = await backends.records.start("echo", lease.id, attempts=1, now=now())
    assert record is not None and record.payload_ref == lease.id  # over the inline limit: a blob
