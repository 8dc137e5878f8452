"""A gateway started before its backend: alive, not ready, 503 to every request, then serving once it answers.

The backend is a server of the test's own (:mod:`tests.servers`), started on a free port only after
the gateway started; a URL a retry cannot fix (unknown scheme, refused login) fails the start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from cortex.backends import BackendUrls, open_backends
from cortex.errors import BackendError
from cortex.gateway import create_app
from tests.e2e.conftest import free_port
from tests.helpers import api_yaml, deploy
from tests.servers.databases import POSTGRES_URL
from tests.servers.private_postgres import private_postgres
from tests.servers.private_redis import private_redis

SOME_ID = "01m96eswaaebwf6qc5sjqehhs3"


def url_on(backend: str, port: int) -> str:
    """The URL of a private server of ``backend`` on ``port`` (the dequeuer's test uses it too)."""
    # short deadlines: the tries before the server is up fail fast either way (a refused connection)
    if backend == "redis":
        return f"redis://127.0.0.1:{port}/0?socket_connect_timeout=2"
    return f"postgresql://postgres@127.0.0.1:{port}/postgres?connect_timeout=2"


@contextlib.asynccontextmanager
async def server_on(backend: str, port: int, folder: Path) -> AsyncIterator[None]:
    """A private server of ``backend`` on ``port``, started now, stopped on exit."""
    if backend == "redis":
        async with private_redis(folder, port=port):
            yield
    else:
        async with private_postgres(port=port):
            yield


@pytest.mark.parametrize("backend", ["redis", "postgres"])
async def test_a_gateway_started_before_its_backend_answers_503_then_serves(
    backend: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    port = free_port()
    url = url_on(backend, port)
    urls = BackendUrls(queue=url, store=url, blobs=f"file:///{tmp_path / 'blobs'}")
    app = create_app(open_backends=lambda: open_backends(urls))
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
        assert (await client.get("/healthz")).status_code == 200  # alive: a restart would not help
        ready = await client.get("/readyz")
        assert ready.status_code == 503 and ready.headers["retry-after"] == "1"
        for call in (client.post("/echo", content=b"{}"), client.get(f"/echo/{SOME_ID}"), client.post("/echo")):
            answer = await call
            assert answer.status_code == 503, answer.text
            assert answer.headers["retry-after"] == "1"
            assert "not reached its backend" in answer.json()["error"]
        said = [record.getMessage() for record in caplog.records]
        assert sum("starts without its backend" in line for line in said) == 1, said
        assert not any("answered 503" in line for line in said), "one line per outage, not one per request"

        (tmp_path / "server").mkdir()
        async with server_on(backend, port, tmp_path / "server"):
            setup = await open_backends(urls)
            try:
                await deploy(setup.catalog, api_yaml("echo"))
            finally:
                await setup.aclose()
            started = time.monotonic()
            while (submitted := await client.post("/echo", content=b"{}")).status_code != 200:
                # 404: the gateway reached the server and read its catalog a moment before the deploy
                assert submitted.status_code in (503, 404), submitted.text
                assert time.monotonic() - started < 30, "the gateway did not serve within 30s of its backend"
                await asyncio.sleep(0.1)
            assert (await client.get(f"/echo/{submitted.json()['id']}")).json()["status"] == "in_queue"
            while (await client.get("/readyz")).status_code != 200:
                assert time.monotonic() - started < 30, "the gateway was not ready within 30s of its backend"
                await asyncio.sleep(0.1)
    said = [record.getMessage() for record in caplog.records]
    assert sum("the gateway reached its backend" in line for line in said) == 1, said


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("foo://127.0.0.1/x", "unsupported queue URL"),
        ("redis://nobody:wrong@127.0.0.1:6379/0", "invalid username-password pair"),
        (POSTGRES_URL.rsplit("/", 1)[0] + "/cortex_no_such_database", "does not exist"),
    ],
)
async def test_a_url_no_retry_can_fix_fails_the_start_at_once(url: str, message: str, tmp_path: Path) -> None:
    urls = BackendUrls(queue=url, store=url, blobs=f"file:///{tmp_path / 'blobs'}")
    app = create_app(open_backends=lambda: open_backends(urls))
    with pytest.raises(BackendError, match=message):
        async with app.router.lifespan_context(app):
            pytest.fail("the gateway started with a URL no retry can fix")


def test_cortex_gateway_with_a_refused_login_exits_with_the_message(tmp_path: Path) -> None:
    url = "redis://nobody:wrong@127.0.0.1:6379/0"
    argv = [sys.executable, "-m", "cortex", "gateway", "--port", str(free_port()), "--queue", url, "--store", url]
    done = subprocess.run(
        [*argv, "--blobs", f"file:///{tmp_path / 'blobs'}"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1, done.stderr
    assert "invalid username-password pair" in done.stderr and "Traceback" not in done.stderr
    assert "is redis-server running" not in done.stderr  # a login refused: the server runs
