"""A gateway cut off from its database answers 503 within its deadline, is not ready, and heals.

The database is the shared local server seen through a loopback proxy of the test's own
(:mod:`tests.servers.cutter`), which the test blackholes: nothing passes either way, as in a network
partition, and the shared server itself is never touched. The deadlines are set to 1 s in the URL;
the answers are asserted well within 10 s. The time from healing until the gateway serves again is
measured and printed (run with ``-s``), not asserted.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest
import redis.asyncio as aioredis

from cortex.backends import Backends, BackendUrls, open_backends
from cortex.gateway import GatewaySettings, create_app
from cortex.gateway.running import CATALOG_TASK
from cortex.store.base import ApiEntry, Catalog
from tests.helpers import PassThroughCatalog, api_yaml, deploy
from tests.servers.cutter import Cutter, cutter
from tests.servers.databases import POSTGRES_URL, REDIS_URL, postgres_namespace, redis_namespace

#: the deadline each backend call gets here, in seconds
DEADLINE = 1.0
#: a generous bound on one answer during the outage, derived from the deadline
ANSWER_BOUND = 10 * DEADLINE
#: the deadline options of each backend's URL
DEADLINES = {
    "redis": f"socket_timeout={DEADLINE:g}&socket_connect_timeout={DEADLINE:g}",
    "postgres": f"command_timeout={DEADLINE:g}&connect_timeout={DEADLINE:g}",
}
SOME_ID = "01m96eswaaebwf6qc5sjqehhs3"


def _through(url: str, port: int) -> str:
    """``url`` with its host and port replaced by the proxy's."""
    parts = urlsplit(url)
    credentials = parts.netloc.rpartition("@")[0]
    netloc = f"{credentials}@127.0.0.1:{port}" if credentials else f"127.0.0.1:{port}"
    return urlunsplit(parts._replace(netloc=netloc))


async def _sessions(backend: str, name: str) -> int:
    """The connections the server holds for clients named ``name`` (asked directly, not through the proxy)."""
    if backend == "postgres":
        conn = await asyncpg.connect(POSTGRES_URL)
        try:
            count: int = await conn.fetchval("SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", name)
            return count
        finally:
            await conn.close()
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        clients = await client.client_list()
        return sum(1 for entry in clients if entry.get("name") == name)
    finally:
        await client.aclose()


@pytest.fixture(params=["redis", "postgres"])
async def proxied(request: pytest.FixtureRequest) -> AsyncIterator[tuple[str, str, str, Cutter]]:
    """The backend's name, a URL through a proxy (deadlines of 1 s, clients named), the name, the proxy."""
    backend: str = request.param
    server = urlsplit(REDIS_URL if backend == "redis" else POSTGRES_URL)
    name = f"cortex-test-{secrets.token_hex(4)}"
    naming = f"client_name={name}" if backend == "redis" else f"application_name={name}"
    namespace = redis_namespace if backend == "redis" else postgres_namespace
    async with namespace() as url, cutter(server.hostname or "127.0.0.1", server.port or 0) as proxy:
        yield backend, f"{_through(url, proxy.port)}&{DEADLINES[backend]}&{naming}", name, proxy


async def _timed(call: Awaitable[httpx.Response]) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = await call
    return response, time.monotonic() - started


def _assert_outage(response: httpx.Response, elapsed: float, what: str) -> None:
    assert response.status_code == 503, f"{what}: {response.status_code} {response.text}"
    assert response.headers["retry-after"] == "1", what
    assert elapsed < ANSWER_BOUND, f"{what} took {elapsed:.1f}s with a deadline of {DEADLINE:g}s"


async def test_cut_off_from_its_database_the_gateway_answers_503_in_time_and_heals(
    proxied: tuple[str, str, str, Cutter], tmp_path: Path
) -> None:
    backend, url, name, proxy = proxied
    urls = BackendUrls(queue=url, store=url, blobs=f"file:///{tmp_path / 'blobs'}")
    setup = await open_backends(urls)
    try:
        await deploy(setup.catalog, api_yaml("echo"))
    finally:
        await setup.aclose()
    app = create_app(open_backends=lambda: open_backends(urls), settings=GatewaySettings(catalog_ttl=1.0))
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
        submitted = await client.post("/echo", content=b"{}")
        assert submitted.status_code == 200, submitted.text
        request_id = submitted.json()["id"]
        assert (await client.get("/readyz")).text == "ready"
        assert await _sessions(backend, name) > 0

        proxy.blackhole()
        outage = [
            ("POST", *await _timed(client.post("/echo", content=b'{"n": 1}'))),
            ("GET", *await _timed(client.get(f"/echo/{request_id}"))),
            ("GET unknown", *await _timed(client.get(f"/echo/{SOME_ID}"))),
            ("POST again", *await _timed(client.post("/echo", content=b'{"n": 2}'))),
        ]
        for what, response, elapsed in outage:
            _assert_outage(response, elapsed, what)
        await asyncio.sleep(1.1)  # past the cached answer of the last ping
        ready, elapsed = await _timed(client.get("/readyz"))
        _assert_outage(ready, elapsed, "GET /readyz")
        assert "not ready" in ready.json()["error"]
        assert (await client.get("/healthz")).status_code == 200  # alive all along: not to be restarted

        proxy.heal()
        healed = time.monotonic()
        serving = ready_at = None
        while serving is None or ready_at is None:
            assert time.monotonic() - healed < 30, "the gateway did not serve again within 30s of healing"
            if serving is None and (await client.post("/echo", content=b'{"n": 3}')).status_code == 200:
                serving = time.monotonic() - healed
            if ready_at is None and (await client.get("/readyz")).status_code == 200:
                ready_at = time.monotonic() - healed
            await asyncio.sleep(0.05)
        assert (await client.get(f"/echo/{request_id}")).status_code == 200
    each = ", ".join(f"{what} {elapsed:.2f}s" for what, _, elapsed in outage)
    print(
        f"\n{backend}: deadline {DEADLINE:g}s; answers during the cut: {each}, GET /readyz {elapsed:.2f}s;"
        f" serving {serving:.2f}s and ready {ready_at:.2f}s after healing"
    )
    for _ in range(50):  # the server notices closed sockets at once; give it a moment to drop the sessions
        if await _sessions(backend, name) == 0:
            break
        await asyncio.sleep(0.1)
    assert await _sessions(backend, name) == 0, "the gateway left connections open after it stopped"


class _CountedCatalog(PassThroughCatalog):
    """The catalog, noting which task asked for each list of the deployed APIs."""

    def __init__(self, inner: Catalog) -> None:
        super().__init__(inner)
        self.listed_by: list[str] = []

    async def list_apis(self) -> list[ApiEntry]:
        task = asyncio.current_task()
        self.listed_by.append(task.get_name() if task is not None else "")
        return await self.inner.list_apis()


async def test_in_an_outage_a_request_meets_one_deadline_and_no_read_of_the_catalog(
    proxied: tuple[str, str, str, Cutter], tmp_path: Path
) -> None:
    # the catalog is read by the gateway's refresher alone: a request pays its own call only
    backend, url, _, proxy = proxied
    urls = BackendUrls(queue=url, store=url, blobs=f"file:///{tmp_path / 'blobs'}")
    setup = await open_backends(urls)
    try:
        await deploy(setup.catalog, api_yaml("echo"))
    finally:
        await setup.aclose()
    counted: list[_CountedCatalog] = []

    async def opened() -> Backends:
        backends = await open_backends(urls)
        counted.append(_CountedCatalog(backends.catalog))
        backends.catalog = counted[0]
        return backends

    # a refresh every 0.2 s: the requests below overlap reads of the refresher, some failing
    app = create_app(open_backends=opened, settings=GatewaySettings(catalog_ttl=0.2))
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
        submitted = await client.post("/echo", content=b"{}")
        assert submitted.status_code == 200, submitted.text
        request_id = submitted.json()["id"]
        proxy.blackhole()
        before = len(counted[0].listed_by)
        outage = []
        for n in range(4):
            outage.append(("POST", *await _timed(client.post("/echo", content=b'{"n": %d}' % n))))
            outage.append(("GET", *await _timed(client.get(f"/echo/{request_id}"))))
        for what, response, elapsed in outage:
            _assert_outage(response, elapsed, what)
        during = counted[0].listed_by[before:]
        proxy.heal()
    assert during, "the refresher kept trying the catalog during the outage"
    assert set(during) == {CATALOG_TASK}, f"a request read the catalog: {during}"
    slowest = max(elapsed for _, _, elapsed in outage)
    print(f"\n{backend}: deadline {DEADLINE:g}s; slowest of {len(outage)} answers during the cut {slowest:.2f}s")
