"""Credentials in request headers: not stored, not forwarded, not logged, unless the API forwards them.

Gateway in-process, a real dequeuer and a real user server on loopback, on every backend.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import pytest

from cortex.auth import KeyRing
from cortex.backends import Backends, open_backends
from cortex.gateway import GatewaySettings, create_app
from cortex.requests import Status, now
from tests.dequeuer.conftest import Cluster, UserServer
from tests.helpers import api_yaml, deploy
from tests.servers.databases import urls_for

MakeCluster = Callable[..., Awaitable[Cluster]]

USER_TOKEN = "user-token-5f0c2a7d91e4"
COOKIE = "session=cookie-3b8e6d1a40f2"
PROXY = "Basic proxy-cred-9c4d7e2b1a"
OWN_KEY = "gateway-key-2d9f4b7c1e03"
CREDENTIALS = {
    "Authorization": f"Bearer {USER_TOKEN}",
    "Cookie": COOKIE,
    "Proxy-Authorization": PROXY,
    "X-Cortex-API-Key": OWN_KEY,
}
SECRETS = (USER_TOKEN, COOKIE, PROXY, OWN_KEY)
SENSITIVE = ("authorization", "cookie", "proxy-authorization", "x-cortex-api-key")


async def test_by_default_no_credential_is_stored(make_cluster: MakeCluster) -> None:
    cluster = await make_cluster()
    rid = await cluster.submit(content=b"{}", headers={**CREDENTIALS, "X-Custom": "kept"})
    record = await cluster.backends.records.start("echo", rid, attempts=1, now=now())
    assert record is not None
    stored = {name.lower(): value for name, value in record.headers}
    assert stored["x-custom"] == "kept"
    assert not set(SENSITIVE) & set(stored), stored


async def test_by_default_no_credential_reaches_the_user_server_or_the_logs(
    make_cluster: MakeCluster, user_server: UserServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    cluster = await make_cluster()
    rid = await cluster.submit(content=b"{}", headers={**CREDENTIALS, "X-Custom": "kept"})
    async with cluster.dequeuer():
        assert (await cluster.wait(rid))["status"] == "completed"
    (received,) = user_server.received
    assert received.headers["x-custom"] == "kept"
    assert not set(SENSITIVE) & set(received.headers), received.headers
    assert caplog.records  # the gateway and the dequeuer did log this request...
    for secret in SECRETS:  # ...and no credential
        assert secret not in caplog.text


async def test_an_api_that_forwards_them_gets_them(make_cluster: MakeCluster, user_server: UserServer) -> None:
    cluster = await make_cluster(extra="async: {forward_sensitive_headers: true}")
    rid = await cluster.submit(content=b"{}", headers=CREDENTIALS)
    async with cluster.dequeuer():
        assert (await cluster.wait(rid))["status"] == "completed"
    (received,) = user_server.received
    assert received.headers["authorization"] == f"Bearer {USER_TOKEN}"
    assert received.headers["cookie"] == COOKIE
    assert received.headers["proxy-authorization"] == PROXY
    assert "x-cortex-api-key" not in received.headers  # the gateway's own header never is


async def test_the_key_the_gateway_checked_is_never_forwarded(backends: Backends, user_server: UserServer) -> None:
    extra = f"async: {{forward_sensitive_headers: true, api_keys: [{OWN_KEY}]}}"
    await deploy(backends.catalog, api_yaml("echo", extra=extra))
    app = create_app(backends, settings=GatewaySettings(keys=KeyRing()))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as client:
        cluster = Cluster(backends, client, user_server)
        # the key in Authorization: that header is the gateway's, not the user server's
        first = await cluster.submit(content=b"{}", headers={"Authorization": f"Bearer {OWN_KEY}", "Cookie": COOKIE})
        # the key in X-Cortex-API-Key: the client's own Authorization goes through
        second = await cluster.submit(
            content=b"{}", headers={"X-Cortex-API-Key": OWN_KEY, "Authorization": f"Bearer {USER_TOKEN}"}
        )
        # the key in both: neither is the user server's
        third = await cluster.submit(
            content=b"{}", headers={"X-Cortex-API-Key": OWN_KEY, "Authorization": f"Bearer {OWN_KEY}"}
        )
        async with cluster.dequeuer():
            for rid in (first, second, third):
                await until_finished(backends, rid)
    by_id = {received.request_id: received.headers for received in user_server.received}
    assert "authorization" not in by_id[first] and by_id[first]["cookie"] == COOKIE
    assert by_id[second]["authorization"] == f"Bearer {USER_TOKEN}" and "x-cortex-api-key" not in by_id[second]
    assert "authorization" not in by_id[third] and "x-cortex-api-key" not in by_id[third]
    assert all(OWN_KEY not in value for headers in by_id.values() for value in headers.values())


async def until_finished(backends: Backends, rid: str, timeout: float = 10) -> None:
    """Wait for a request to complete (read from the store: the gateway would want a key)."""
    deadline = time.monotonic() + timeout
    while (record := await backends.records.get("echo", rid, now=now())) is None or not record.status.terminal:
        assert time.monotonic() < deadline, f"{rid} not finished after {timeout}s"
        await asyncio.sleep(0.02)
    assert record.status == Status.COMPLETED, record


@pytest.fixture
async def embedded(tmp_path: Path) -> AsyncIterator[Backends]:
    async with urls_for("sqlite", tmp_path) as urls:
        opened = await open_backends(urls)
        try:
            yield opened
        finally:
            await opened.aclose()


async def test_no_credential_is_ever_written_to_the_embedded_store(
    embedded: Backends, user_server: UserServer, tmp_path: Path
) -> None:
    await deploy(embedded.catalog, api_yaml("echo"))
    await deploy(embedded.catalog, api_yaml("forwards", extra="async: {forward_sensitive_headers: true}"))
    app = create_app(embedded)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as client:
        cluster = Cluster(embedded, client, user_server)
        rid = await cluster.submit(content=b"x" * 100_000, headers=CREDENTIALS)  # a blob, too
        async with cluster.dequeuer():
            assert (await cluster.wait(rid))["status"] == "completed"
        forwarded = Cluster(embedded, client, user_server, api="forwards")
        kept = await forwarded.submit(content=b"{}", headers={"Cookie": COOKIE})
        async with forwarded.dequeuer():
            assert (await forwarded.wait(kept))["status"] == "completed"
    files = [path for path in tmp_path.rglob("*") if path.is_file()]
    assert any(path.name.startswith("cortex.db") for path in files)
    for path in files:
        content = path.read_bytes()
        for secret in (USER_TOKEN, PROXY, OWN_KEY):  # never sent to an API that forwards them
            assert secret.encode() not in content, f"{secret} found in {path}"
    # the one API that forwards them had its request's headers deleted when it ended
    with sqlite3.connect(tmp_path / "cortex.db") as db:
        rows = db.execute("SELECT id, headers FROM requests").fetchall()
    assert {row[0] for row in rows} == {rid, kept} and all(row[1] is None for row in rows)
